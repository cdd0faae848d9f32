"""Entry point: global flags, then a verb looked up in a table and imported lazily.

`pydocklite --help` and `--version` import nothing but this module; each verb's module
is imported only when that verb runs (pip's commands/__init__.py does the same).
"""
from __future__ import annotations

import os
import sys

# verb -> (module under pydocklite.cli, function, one-line summary)
COMMANDS = {
    "run": ("run", "cmd_run", "Create and run a new container from an image"),
    "build": ("build", "cmd_build", "Build an image from a Dockerfile"),
    "create": ("run", "cmd_create", "Create a new container"),
    "start": ("container", "cmd_start", "Start one or more stopped containers"),
    "stop": ("container", "cmd_stop", "Stop one or more running containers"),
    "restart": ("container", "cmd_restart", "Restart one or more containers"),
    "kill": ("container", "cmd_kill", "Kill one or more running containers"),
    "rm": ("container", "cmd_rm", "Remove one or more containers"),
    "ps": ("ps", "cmd_ps", "List containers"),
    "logs": ("logs", "cmd_logs", "Fetch the logs of a container"),
    "exec": ("container", "cmd_exec", "Execute a command in a running container"),
    "inspect": ("inspect", "cmd_inspect", "Return low-level information on containers or images"),
    "port": ("container", "cmd_port", "List port mappings or a specific mapping for the container"),
    "rename": ("container", "cmd_rename", "Rename a container"),
    "cp": ("container_tools", "cmd_cp", "Copy files/folders between a container and the host"),
    "top": ("container_tools", "cmd_top", "Display the running processes of a container"),
    "stats": ("container_tools", "cmd_stats", "Display container resource usage statistics"),
    "wait": ("container", "cmd_wait", "Block until containers stop, then print their exit codes"),
    "pause": ("container", "cmd_pause", "Pause all processes within one or more containers"),
    "unpause": ("container", "cmd_unpause", "Unpause all processes within one or more containers"),
    "pull": ("pull", "cmd_pull", "Download an image from a registry"),
    "images": ("images", "cmd_images", "List images"),
    "rmi": ("images", "cmd_rmi", "Remove one or more images"),
    "tag": ("images", "cmd_tag", "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE"),
    "push": ("dist", "cmd_push", "Upload an image to a registry"),
    "save": ("dist", "cmd_save", "Save one or more images to a tar archive (streamed to STDOUT "
             "by default)"),
    "load": ("dist", "cmd_load", "Load an image from a tar archive or STDIN"),
    "import": ("dist", "cmd_import", "Import the contents from a tarball to create a filesystem "
               "image"),
    "commit": ("dist", "cmd_commit", "Create a new image from a container's changes"),
    "history": ("dist", "cmd_history", "Show the history of an image"),
    "volume": ("volume", "cmd_volume", "Manage volumes (create, ls, inspect, rm, prune)"),
    "network": ("network", "cmd_network", "Manage networks (create, ls, inspect, rm, prune, "
                "connect, disconnect)"),
    "image": ("images", "cmd_image", "Manage images (ls, pull, push, rm, tag, inspect, prune, "
              "save, load, import, history, sign)"),
    "key": ("trust", "cmd_key", "Manage image signing keys (generate)"),
    "container": ("container", "cmd_container", "Manage containers"),
    "system": ("system", "cmd_system", "Manage pydocklite (df, events, info, prune, service: "
               "the Docker Engine API)"),
    "events": ("events", "cmd_events", "Get real time events from pydocklite"),
    "attach": ("attach", "cmd_attach", "Attach local standard input, output, and error "
               "streams to a running container"),
    "update": ("update", "cmd_update", "Update configuration of one or more containers"),
    "diff": ("changes", "cmd_diff", "Inspect changes to files or directories on a container's "
             "filesystem"),
    "export": ("changes", "cmd_export", "Export a container's filesystem as a tar archive"),
    "info": ("system", "cmd_info", "Display system-wide information"),
    "login": ("login", "cmd_login", "Log in to a registry"),
    "logout": ("login", "cmd_logout", "Log out from a registry"),
    "mount": ("mount", "cmd_mount", "Mount an image's files read-only on the host"),
    "unmount": ("mount", "cmd_unmount", "Unmount an image mounted with 'mount'"),
    "runtime": ("runtime", "cmd_runtime", "OCI runtime with runc's verbs (create, start, state, ...)"),
    "version": ("system", "cmd_version", "Show the pydocklite version information"),
}

USAGE = """Usage:  pydocklite [OPTIONS] COMMAND

A rootless, daemonless container tool in one file

Options:
      --root DIR               Store root (default $XDG_DATA_HOME/pydocklite)
      --storage-driver NAME    auto, overlay, fuse or vfs (default auto)
  -v, --version                Print version information and quit
  -h, --help                   Print usage

Commands:
{commands}

Run 'pydocklite COMMAND --help' for more information on a command.
"""


def usage() -> str:
    width = max(len(k) for k in COMMANDS) + 2
    lines = [f"  {name:<{width}}{summary}" for name, (_, _, summary) in COMMANDS.items()]
    return USAGE.format(commands="\n".join(lines))


def _split_global(argv: list):
    """Global options come before the verb; returns (options, verb, rest)."""
    opts = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-h", "--help"):
            return opts, "--help", []
        if arg in ("-v", "--version"):
            return opts, "--version", []
        for flag in ("--root", "--storage-driver", "--runtime-dir"):
            if arg == flag:
                if i + 1 >= len(argv):
                    raise SystemExit(_fail(f"flag needs an argument: {flag}"))
                opts[flag[2:].replace("-", "_")] = argv[i + 1]
                i += 2
                break
            if arg.startswith(flag + "="):
                opts[flag[2:].replace("-", "_")] = arg.split("=", 1)[1]
                i += 1
                break
        else:
            if arg.startswith("-"):
                raise SystemExit(_fail(f"unknown flag: {arg}\nSee 'pydocklite --help'."))
            return opts, arg, argv[i + 1:]
    return opts, None, []


# verbs after which a killed namespace host is noticed, restored, and its losses told
NSHOST_VERBS = frozenset(("run", "create", "start", "restart", "ps", "network", "container",
                          "inspect", "stop", "rm", "exec"))


def _namespace_host_check(settings) -> None:
    from pydocklite.nshost.state import host_died
    if host_died(settings.runtime_dir):
        from pydocklite.networks import report_restart
        report_restart(settings, sys.stderr)


def _fail(message: str, code: int = 125) -> int:
    sys.stderr.write(f"pydocklite: {message}\n")
    return code


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    opts, verb, rest = _split_global(argv)
    if verb is None or verb == "--help":
        sys.stdout.write(usage())
        return 0
    if verb == "--version":
        from pydocklite import __version__
        sys.stdout.write(f"pydocklite version {__version__}\n")
        return 0
    if verb not in COMMANDS:
        return _fail(f"'{verb}' is not a pydocklite command.\nSee 'pydocklite --help'")
    module_name, func_name, _ = COMMANDS[verb]
    import importlib
    from pydocklite.settings import Settings
    try:
        settings = Settings.from_environment(**opts)
        if verb in NSHOST_VERBS:
            _namespace_host_check(settings)
        module = importlib.import_module(f"pydocklite.cli.{module_name}")
        return int(getattr(module, func_name)(settings, rest) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # stdout closed early (e.g. `| head`): not an error worth a traceback
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0
    except Exception as e:  # the one place that turns errors into a line and an exit code
        # messages carry names and text from registries, images, archives: escaped
        from pydocklite.errors import classify
        from pydocklite.termsafe import escape
        outcome = classify(e)
        if outcome is not None:
            if outcome.exit_code:
                sys.stderr.write(f"Error: {escape(str(e))}\n")
            return outcome.exit_code
        if isinstance(e, OSError) and e.filename:
            sys.stderr.write(f"Error: {e.strerror}: {escape(str(e.filename))}\n")
            return 125
        import traceback
        traceback.print_exc()
        return 125


def entry() -> None:
    """The program's entry point: main(), then exit without the interpreter's teardown
    (~15 ms of freeing modules, for nothing) once output is flushed and no other thread
    runs; with threads still going, the usual exit waits for them."""
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        pass
    except OSError:
        code = code or 1
    threading = sys.modules.get("threading")
    if threading is None or threading.active_count() <= 1:
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
