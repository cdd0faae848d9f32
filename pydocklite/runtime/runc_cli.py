"""`pydocklite runtime VERB ...`: runc's command line over api.py.

Parsing is hand-rolled (argparse costs milliseconds per container start). Exit codes: run and
exec return the container's; everything else 0, or 1 with a one-line message on stderr.
"""
from __future__ import annotations

import os
import sys

USAGE = """usage: pydocklite runtime [--root DIR] VERB [OPTIONS] ...
verbs:
  create [--bundle DIR] [--pid-file F] [--console-socket S] ID
  start ID                 state ID                list [--format table|json] [-q]
  kill [--all] ID [SIGNAL] delete [--force] ID     ps [--format table|json] ID
  run [-d] [--bundle DIR] [--pid-file F] [--console-socket S] ID
  exec [--cwd D] [--env K=V]... [--user UID[:GID]] ID CMD [ARG...]
  spec [--rootless] [--bundle DIR]
  features                 (the runtime-spec features JSON: what this runtime implements)
"""

# flags taking a value, per verb ("*" = global)
_VALUE_FLAGS = {"--root", "--bundle", "-b", "--pid-file", "--console-socket", "--format", "-f",
                "--cwd", "--env", "-e", "--user", "-u", "--log", "--log-format", "--criu",
                "--process", "-p", "--preserve-fds"}


class UsageError(Exception):
    pass


def _parse(args: list) -> tuple:
    """(options dict flag -> value or True or list for --env, positionals)."""
    opts = {}
    pos = []
    i = 0
    while i < len(args):
        a = args[i]
        if len(pos) >= 2 and pos[0] == "exec":
            pos.extend(args[i:])      # the command and its own flags
            break
        if pos and a != "--" and not a.startswith("-"):
            pos.append(a)
            i += 1
            continue
        if a == "--":
            pos.extend(args[i + 1:])
            break
        if a.startswith("-") and len(a) > 1:
            if "=" in a and a.startswith("--"):
                name, val = a.split("=", 1)
            elif a in _VALUE_FLAGS:
                if i + 1 >= len(args):
                    raise UsageError(f"flag {a} needs a value")
                name, val = a, args[i + 1]
                i += 1
            else:
                name, val = a, True
            if name in ("--env", "-e"):
                opts.setdefault("--env", []).append(val)
            else:
                opts[name] = val
        else:
            pos.append(a)
        i += 1
    return opts, pos


def _one_id(pos: list, verb: str) -> str:
    if len(pos) != 1:
        raise UsageError(f"{verb} needs exactly one container id")
    return pos[0]


def _signal(s: str) -> int:
    import signal
    if s.isdigit():
        return int(s)
    name = s.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(getattr(signal, name))
    except AttributeError:
        raise UsageError(f"unknown signal {s!r}") from None


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


def _warn(msg: str) -> None:
    sys.stderr.write(f"pydocklite runtime: warning: {msg}\n")
    _Log.write("warning", msg)


def _single_id_warning_once(root: str, warnings: list) -> list:
    """The single-id fallback is told once per runtime root, not per container."""
    from .idmap import SINGLE_ID_WARNING
    if SINGLE_ID_WARNING not in warnings:
        return warnings
    marker = os.path.join(root, ".single-id-told")
    if os.path.exists(marker):
        return [w for w in warnings if w != SINGLE_ID_WARNING]
    try:
        open(marker, "w").close()
    except OSError:
        pass
    return warnings


def _print_json(obj) -> None:
    import json
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")


def _cmd(verb: str, opts: dict, pos: list, root: str) -> int:
    from . import api
    if verb in ("create", "run"):
        cid = _one_id(pos, verb)
        bundle = opts.get("--bundle") or opts.get("-b") or "."
        if verb == "create":
            created = api.create(bundle, cid, root, console_socket=opts.get("--console-socket"),
                                 pid_file=opts.get("--pid-file"))
            for w in _single_id_warning_once(root, created.warnings):
                _warn(w)
            return 0
        collected = []
        code = api.run(bundle, cid, root, console_socket=opts.get("--console-socket"),
                       detach=bool(opts.get("-d") or opts.get("--detach")),
                       pid_file=opts.get("--pid-file"), on_warning=collected.append)
        for w in _single_id_warning_once(root, collected):
            _warn(w)
        return code
    if verb == "start":
        for w in api.start(_one_id(pos, verb), root) or ():
            _warn(w)
        return 0
    if verb == "state":
        _print_json(api.state(_one_id(pos, verb), root))
        return 0
    if verb == "kill":
        if not 1 <= len(pos) <= 2:
            raise UsageError("kill needs a container id and optionally a signal")
        api.kill(pos[0], _signal(pos[1]) if len(pos) == 2 else 15, root,
                 all_processes=bool(opts.get("--all") or opts.get("-a")))
        return 0
    if verb == "delete":
        for w in api.delete(_one_id(pos, verb), root,
                            force=bool(opts.get("--force") or opts.get("-f"))) or ():
            _warn(w)
        return 0
    if verb == "list":
        items = api.list_containers(root)
        if (opts.get("--format") or opts.get("-f")) == "json":
            _print_json(items)
        elif opts.get("-q") or opts.get("--quiet"):
            for c in items:
                print(c["id"])
        else:
            print(f"{'ID':<20}{'PID':<10}{'STATUS':<10}{'BUNDLE':<40}{'CREATED':<22}OWNER")
            for c in items:
                print(f"{c['id']:<20}{c['pid']:<10}{c['status']:<10}{c['bundle']:<40}"
                      f"{c['created']:<22}{c.get('owner') or os.environ.get('USER', '')}")
        return 0
    if verb == "ps":
        pids = api.processes(_one_id(pos, verb), root)
        if (opts.get("--format") or opts.get("-f")) == "json":
            _print_json(pids)
            return 0
        print(f"{'PID':<10}CMD")
        for pid in pids:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                continue
            print(f"{pid:<10}{cmd}")
        return 0
    if verb == "exec":
        if len(pos) < 2:
            raise UsageError("exec needs a container id and a command")
        user = opts.get("--user") or opts.get("-u")
        uid = gid = None
        if user:
            u, _, g = str(user).partition(":")
            if not u.isdigit() or (g and not g.isdigit()):
                raise UsageError("--user takes UID[:GID] (numbers)")
            uid, gid = int(u), int(g) if g else None
        return api.exec_process(pos[0], pos[1:], root, env=opts.get("--env"),
                                cwd=opts.get("--cwd"), uid=uid, gid=gid,
                                tty=bool(opts.get("-t") or opts.get("--tty")))
    if verb == "features":
        from .spec_fields import features
        _print_json(features())
        return 0
    if verb == "spec":
        from .spec_template import write_spec
        bundle = opts.get("--bundle") or opts.get("-b") or "."
        write_spec(bundle, rootless=bool(opts.get("--rootless")) or os.geteuid() != 0)
        return 0
    raise UsageError(f"unknown verb {verb!r}")


def main(argv: list) -> int:
    """Entry point: `pydocklite runtime ARGV...`; returns the exit code."""
    opts, pos = _parse(list(argv))
    if opts.get("--version") or opts.get("-v"):
        print("pydocklite runtime 0.1.0 (OCI runtime-spec 1.0.2)")
        return 0
    if opts.get("--help") or opts.get("-h") or not pos:
        sys.stdout.write(USAGE) if pos or opts.get("--help") or opts.get("-h") \
            else sys.stderr.write(USAGE)
        return 0 if (opts.get("--help") or opts.get("-h")) else 1
    verb, rest = pos[0], pos[1:]
    from .errors import RuntimeErr
    from .state import default_root
    root = opts.get("--root") or default_root()
    _Log.path = opts.get("--log") or None
    _Log.json = opts.get("--log-format") == "json"
    try:
        return _cmd(verb, opts, rest, root)
    except UsageError as e:
        sys.stderr.write(f"pydocklite runtime {verb}: {e}\n{USAGE}")
        _Log.write("error", f"{verb}: {e}")
        return 1
    except (RuntimeErr, OSError) as e:
        msg = str(e) if not isinstance(e, OSError) or not e.filename else \
            f"{e.filename}: {e.strerror}"
        sys.stderr.write(f"pydocklite runtime {verb}: {msg}\n")
        _Log.write("error", f"{verb} failed: {msg}")
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    _code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_code)      # skip interpreter teardown: a few ms per container on `run`
