"""start, stop, restart, kill, rm, exec, wait, port, rename, container prune, `container ...`."""
from __future__ import annotations

import sys

from pydocklite.cli.common import Parser, confirm, for_each as _each


def _service(settings):
    from pydocklite.containers.container import ContainerService
    return ContainerService(settings)


def cmd_start(settings, argv) -> int:
    p = Parser("start", "start [OPTIONS] CONTAINER [CONTAINER...]",
               "Start one or more stopped containers")
    p.add_argument("-a", "--attach", action="store_true", help="Attach STDOUT/STDERR")
    p.add_argument("-i", "--interactive", action="store_true", help="Attach container's STDIN")
    p.add_argument("containers", nargs="+")
    args = p.parse_args(argv)
    service = _service(settings)
    if args.attach or args.interactive:
        if len(args.containers) > 1:
            from pydocklite.errors import UsageError
            raise UsageError("you cannot start and attach multiple containers at once")
        from pydocklite.cli.run import start_attached
        state = service.store.get(args.containers[0])
        cfg = state.config.get("Config", {})
        return start_attached(settings, service, state, cfg.get("Tty", False),
                              args.interactive)

    def start(name):
        res = service.start(name)
        if not res.ok:
            from pydocklite.errors import ContainerError
            raise ContainerError(res.error)
        return name
    return _each(args.containers, start)


def cmd_stop(settings, argv) -> int:
    p = Parser("stop", "stop [OPTIONS] CONTAINER [CONTAINER...]",
               "Stop one or more running containers")
    p.add_argument("-t", "--time", "--timeout", type=int, dest="time",
                   help="Seconds to wait before killing the container")
    p.add_argument("-s", "--signal", help="Signal to send to the container")
    p.add_argument("containers", nargs="+")
    args = p.parse_args(argv)
    service = _service(settings)
    return _each(args.containers,
                 lambda n: (service.stop(n, args.time, args.signal), n)[1])


def cmd_restart(settings, argv) -> int:
    p = Parser("restart", "restart [OPTIONS] CONTAINER [CONTAINER...]",
               "Restart one or more containers")
    p.add_argument("-t", "--time", type=int, help="Seconds to wait before killing the container")
    p.add_argument("containers", nargs="+")
    args = p.parse_args(argv)
    service = _service(settings)

    def restart(n):
        res = service.restart(n, args.time)
        if not res.ok:
            from pydocklite.errors import ContainerError
            raise ContainerError(res.error)
        return n
    return _each(args.containers, restart)


def cmd_kill(settings, argv) -> int:
    p = Parser("kill", "kill [OPTIONS] CONTAINER [CONTAINER...]",
               "Kill one or more running containers")
    p.add_argument("-s", "--signal", default="KILL", help="Signal to send to the container")
    p.add_argument("containers", nargs="+")
    args = p.parse_args(argv)
    service = _service(settings)
    return _each(args.containers, lambda n: (service.kill(n, args.signal), n)[1])


def cmd_rm(settings, argv) -> int:
    p = Parser("rm", "rm [OPTIONS] CONTAINER [CONTAINER...]", "Remove one or more containers")
    p.add_argument("-f", "--force", action="store_true",
                   help="Force the removal of a running container (uses SIGKILL)")
    p.add_argument("-v", "--volumes", action="store_true",
                   help="Remove anonymous volumes associated with the container")
    p.add_argument("containers", nargs="+")
    args = p.parse_args(argv)
    service = _service(settings)
    return _each(args.containers,
                 lambda n: (service.remove(n, force=args.force, volumes=args.volumes), n)[1])


def cmd_wait(settings, argv) -> int:
    p = Parser("wait", "wait CONTAINER [CONTAINER...]",
               "Block until one or more containers stop, then print their exit codes")
    p.add_argument("containers", nargs="+")
    args = p.parse_args(argv)
    service = _service(settings)
    return _each(args.containers, service.wait)


def cmd_exec(settings, argv) -> int:
    p = Parser("exec", "exec [OPTIONS] CONTAINER COMMAND [ARG...]",
               "Execute a command in a running container")
    p.add_argument("-d", "--detach", action="store_true", help="Detached mode")
    p.add_argument("-e", "--env", action="append", default=[], help="Set environment variables")
    p.add_argument("-i", "--interactive", action="store_true", help="Keep STDIN open")
    p.add_argument("-t", "--tty", action="store_true", help="Allocate a pseudo-TTY")
    p.add_argument("-u", "--user", help="Username or UID")
    p.add_argument("-w", "--workdir", help="Working directory inside the container")
    p.add_argument("container")
    p.add_argument("command", nargs="...")
    args = p.parse_args(argv)
    if not args.command:
        from pydocklite.errors import UsageError
        raise UsageError("exec needs a command: pydocklite exec CONTAINER COMMAND [ARG...]")
    sys.stdout.flush()
    return _service(settings).exec(args.container, args.command, args.env, args.user,
                                   args.workdir, args.tty, args.interactive)


def cmd_port(settings, argv) -> int:
    p = Parser("port", "port CONTAINER [PRIVATE_PORT[/PROTO]]",
               "List port mappings or a specific mapping for the container")
    p.add_argument("container")
    p.add_argument("port", nargs="?")
    args = p.parse_args(argv)
    from pydocklite.shim.port_spec import PortMapping
    state = _service(settings).store.get(args.container)
    lines = []
    for m in state.config.get("PortBindings", []):
        pm = PortMapping(**m)
        if args.port:
            want = args.port if "/" in args.port else args.port + "/tcp"
            if pm.key != want:
                continue
            lines.append(f"{pm.host_ip or '127.0.0.1'}:{pm.host_port}")
        else:
            lines.append(PortMapping(pm.container_port, pm.protocol, pm.host_ip or "127.0.0.1",
                                     pm.host_port).docker_port_line())
    sys.stdout.write("".join(line + "\n" for line in lines))
    return 0


def cmd_rename(settings, argv) -> int:
    p = Parser("rename", "rename CONTAINER NEW_NAME", "Rename a container")
    p.add_argument("container")
    p.add_argument("new_name")
    args = p.parse_args(argv)
    _service(settings).rename(args.container, args.new_name)
    return 0


def cmd_container_prune(settings, argv) -> int:
    p = Parser("container prune", "container prune [OPTIONS]", "Remove all stopped containers")
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")
    args = p.parse_args(argv)
    if not args.force and not confirm("WARNING! This will remove all stopped containers."):
        return 0
    removed = _service(settings).prune()
    if removed:
        sys.stdout.write("Deleted Containers:\n" + "".join(f"{c}\n" for c in removed) + "\n")
    sys.stdout.write("Total reclaimed space: 0B\n")
    return 0


def cmd_pause(settings, argv) -> int:
    p = Parser("pause", "pause CONTAINER [CONTAINER...]",
               "Pause all processes within one or more containers\n\nWith a delegated cgroup "
               "the cgroup is frozen; without one (the usual rootless case) every process of "
               "the container is stopped with SIGSTOP ('pydocklite info' says which).")
    p.add_argument("containers", nargs="+")
    args = p.parse_args(argv)
    service = _service(settings)
    return _each(args.containers, lambda n: (service.pause(n), n)[1])


def cmd_unpause(settings, argv) -> int:
    p = Parser("unpause", "unpause CONTAINER [CONTAINER...]",
               "Unpause all processes within one or more containers")
    p.add_argument("containers", nargs="+")
    args = p.parse_args(argv)
    service = _service(settings)
    return _each(args.containers, lambda n: (service.unpause(n), n)[1])


def cmd_container(settings, argv) -> int:
    from pydocklite.cli import inspect as insp, logs, ps, run
    table = {
        "ls": ps.cmd_ps, "list": ps.cmd_ps, "ps": ps.cmd_ps, "run": run.cmd_run,
        "create": run.cmd_create, "start": cmd_start, "stop": cmd_stop, "restart": cmd_restart,
        "kill": cmd_kill, "rm": cmd_rm, "remove": cmd_rm, "wait": cmd_wait, "exec": cmd_exec,
        "port": cmd_port, "rename": cmd_rename, "prune": cmd_container_prune,
        "logs": logs.cmd_logs, "inspect": insp.cmd_container_inspect,
        "pause": cmd_pause, "unpause": cmd_unpause,
    }
    if argv and argv[0] == "commit":
        from pydocklite.cli.dist import cmd_commit
        return cmd_commit(settings, argv[1:])
    lazy = {"attach": ("attach", "cmd_attach"), "update": ("update", "cmd_update"),
            "diff": ("changes", "cmd_diff"), "export": ("changes", "cmd_export")}
    if argv and argv[0] in lazy:
        import importlib
        module, func = lazy[argv[0]]
        return getattr(importlib.import_module(f"pydocklite.cli.{module}"), func)(
            settings, argv[1:])
    if not argv or argv[0] not in table:
        sys.stdout.write("Usage:  pydocklite container COMMAND\n\nManage containers\n\n"
                         "Commands:\n" + "".join(f"  {k}\n" for k in sorted([*table, *lazy])))
        return 0 if not argv or argv[0] in ("-h", "--help") else 125
    return table[argv[0]](settings, argv[1:])
