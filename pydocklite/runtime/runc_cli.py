"""runc's command line over api.py: `pydocklite runtime ...` and `./pydocklite-runtime ...`
(the executable engines run: containerd's shim, dockerd, Podman's conmon).

Parsing is hand-rolled (argparse costs milliseconds per container start, and an engine runs
the runtime several times per container). Global flags may come before or after the verb, as
urfave/cli lets runc take them; each verb has its own flags (`-f` is --format for ps but
--force for delete). Exit codes: run and exec return the container's; everything else 0, or
1 with the error on stderr and, with --log, in the log (runc's JSON lines with --log-format
json: containerd and Docker show the last "error" line to the user).
"""
from __future__ import annotations

import os
import sys

USAGE = """usage: pydocklite-runtime [GLOBAL OPTIONS] VERB [OPTIONS] ...
global options: --root DIR, --log FILE, --log-format text|json, --debug,
  --systemd-cgroup (cgroupsPath "slice:prefix:name"), --rootless true|false|auto
verbs (runc's):
  create [--bundle DIR] [--pid-file F] [--console-socket S] [--preserve-fds N]
         [--no-pivot] [--no-new-keyring] ID
  start ID          state ID          kill [--all] ID [SIGNAL]       delete [--force] ID
  run [-d] [--bundle DIR] [--pid-file F] [--console-socket S] ID
  exec [--process FILE | [--cwd D] [--env K=V]... [--user UID[:GID]] ID CMD [ARG...]]
       [--detach] [--pid-file F] [--tty] [--console-socket S] [--preserve-fds N]
  ps [--format table|json] ID       list [--format table|json] [-q]
  pause ID          resume ID         update --resources FILE|- ID
  events [--stats] [--interval 5s] ID                    features
  spec [--rootless] [--bundle DIR]  --version
"""

# global flags: name -> takes a value
_GLOBAL = {"--root": True, "--log": True, "--log-format": True, "--criu": True,
           "--rootless": True, "--debug": False, "--systemd-cgroup": False}
# per verb: flag -> canonical name (None: a boolean); "=" in the name marks a value flag
_VERB_FLAGS = {
    "create": {"--bundle=": "bundle", "-b=": "bundle", "--pid-file=": "pid_file",
               "--console-socket=": "console_socket", "--preserve-fds=": "preserve_fds",
               "--no-pivot": "no_pivot", "--no-new-keyring": "no_new_keyring",
               "--notify-socket=": "notify_socket"},
    "run": {"--bundle=": "bundle", "-b=": "bundle", "--pid-file=": "pid_file",
            "--console-socket=": "console_socket", "--preserve-fds=": "preserve_fds",
            "--detach": "detach", "-d": "detach", "--no-pivot": "no_pivot",
            "--no-new-keyring": "no_new_keyring", "--no-subreaper": "no_subreaper",
            "--keep": "keep"},
    "exec": {"--process=": "process", "-p=": "process", "--detach": "detach", "-d": "detach",
             "--pid-file=": "pid_file", "--console-socket=": "console_socket",
             "--tty": "tty", "-t": "tty", "--cwd=": "cwd", "--env=": "env", "-e=": "env",
             "--user=": "user", "-u=": "user", "--preserve-fds=": "preserve_fds",
             "--no-new-privs": "no_new_privs", "--ignore-paused": "ignore_paused"},
    "kill": {"--all": "all", "-a": "all"},
    "delete": {"--force": "force", "-f": "force"},
    "ps": {"--format=": "format", "-f=": "format"},
    "list": {"--format=": "format", "-f=": "format", "--quiet": "quiet", "-q": "quiet"},
    "update": {"--resources=": "resources", "-r=": "resources"},
    "events": {"--stats": "stats", "--interval=": "interval"},
    "spec": {"--bundle=": "bundle", "-b=": "bundle", "--rootless": "rootless"},
}


class UsageError(Exception):
    pass


def _parse(args: list) -> tuple:
    """(global options, verb, verb options, positionals). Repeated value flags (--env) are
    lists. exec's command begins at its second positional and keeps its own flags."""
    glob, opts, pos = {}, {}, []
    verb = None
    i = 0
    while i < len(args):
        a = args[i]
        if verb == "exec" and len(pos) >= 1 and (not a.startswith("-") or len(pos) >= 2):
            pos.extend(args[i:])            # ID then the command with its own flags
            break
        if a == "--":
            pos.extend(args[i + 1:])
            break
        if not a.startswith("-") or a == "-":
            if verb is None:
                verb = a
            else:
                pos.append(a)
            i += 1
            continue
        name, eq, val = a.partition("=") if a.startswith("--") else (a, "", "")
        table = _VERB_FLAGS.get(verb, {})
        if name + "=" in table:          # the verb's own first: `spec --rootless` is a bool
            key, takes, dest = table[name + "="], True, opts
        elif name in table:
            key, takes, dest = table[name], False, opts
        elif name in _GLOBAL:
            key, takes = name, _GLOBAL[name]
            dest = glob
        elif name in ("-h", "--help", "-v", "--version"):
            key, takes, dest = name, False, glob
        else:
            raise UsageError(f"flag provided but not defined: {a}")
        if takes and not eq:
            if i + 1 >= len(args):
                raise UsageError(f"flag needs an argument: {name}")
            val = args[i + 1]
            i += 1
        value = val if takes else (val.lower() not in ("false", "0") if eq else True)
        if key == "env":
            dest.setdefault(key, []).append(value)
        else:
            dest[key] = value
        i += 1
    return glob, verb, opts, pos


class _Log:
    """runc's --log FILE --log-format text|json: warnings and the error go there as well as
    to stderr (containerd reads the last error from log.json; Docker shows it to the user).
    json: {"level": "error", "msg": "...", "time": "2026-12-07T04:00:00Z"} per line;
    text: time="..." level=error msg="..." (logrus's, as runc writes them)."""
    path = None
    json = False

    @classmethod
    def write(cls, level: str, msg: str) -> None:
        if not cls.path:
            return
        import time
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        from .minijson import dumps
        if cls.json:
            line = dumps({"level": level, "msg": msg, "time": now})
        else:
            line = f"time={dumps(now)} level={level} msg={dumps(msg)}"
        try:
            fd = os.open(cls.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                os.write(fd, (line + "\n").encode())
            finally:
                os.close(fd)
        except OSError as e:
            sys.stderr.write(f"pydocklite runtime: cannot write the log {cls.path}: "
                             f"{e.strerror}\n")


def warn(msg: str) -> None:
    sys.stderr.write(f"pydocklite runtime: warning: {msg}\n")
    _Log.write("warning", msg)


def version_text() -> str:
    """runc's --version shape: what Docker's `info` and Podman parse (name, version, commit)."""
    from pydocklite import __version__
    from .spec_fields import OCI_VERSION_MAX
    return (f"pydocklite-runtime version {__version__}\ncommit: none\n"
            f"spec: {OCI_VERSION_MAX}\npython: {sys.version.split()[0]}\n")


def main(argv: list) -> int:
    """Entry point: `pydocklite runtime ARGV...`; returns the exit code."""
    try:
        glob, verb, opts, pos = _parse(list(argv))
    except UsageError as e:
        sys.stderr.write(f"pydocklite runtime: {e}\n{USAGE}")
        return 1
    if glob.get("--version") or glob.get("-v"):
        sys.stdout.write(version_text())
        return 0
    if glob.get("--help") or glob.get("-h") or verb is None:
        (sys.stdout if glob.get("--help") or glob.get("-h") else sys.stderr).write(USAGE)
        return 0 if (glob.get("--help") or glob.get("-h")) else 1
    from .errors import RuntimeErr
    from .state import default_root
    root = glob.get("--root") or default_root()
    _Log.path = glob.get("--log") or None
    _Log.json = glob.get("--log-format") == "json"
    from .runc_verbs import run_verb
    try:
        return run_verb(verb, opts, pos, root, glob)
    except UsageError as e:
        sys.stderr.write(f"pydocklite runtime {verb}: {e}\n{USAGE}")
        _Log.write("error", f"{verb}: {e}")
        return 1
    except (RuntimeErr, OSError, ValueError) as e:
        msg = str(e) if not isinstance(e, OSError) or not e.filename else \
            f"{e.filename}: {e.strerror}"
        sys.stderr.write(f"pydocklite runtime {verb}: {msg}\n")
        _Log.write("error", f"{verb} failed: {msg}")
        return 1
    except KeyboardInterrupt:
        return 130


def entry() -> None:
    """`./pydocklite-runtime`'s entry point (build.sh): main(), then exit without the
    interpreter's teardown (a few ms on every call an engine makes). The cyclic garbage
    collector is off: a call lives milliseconds and frees by reference counting, while the
    collections the imports' allocations trigger cost ~2.5 ms of CPU per `create` (the
    long-lived `events` loop turns it back on)."""
    import gc
    gc.disable()
    code = main(sys.argv[1:])
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:
        code = code or 1
    os._exit(code)


if __name__ == "__main__":
    entry()
