"""`run` and `create`: Docker's flags -> RunOptions -> a container (pulled image if needed)."""
from __future__ import annotations

import json
import os
import signal
import sys

from pydocklite.cli.common import Parser
from pydocklite.errors import ImageNotFoundError, UsageError


def add_create_flags(p) -> None:
    a = p.add_argument
    a("--name", help="Assign a name to the container")
    a("-e", "--env", action="append", default=[], help="Set environment variables")
    a("--env-file", action="append", default=[], help="Read in a file of environment variables")
    a("-p", "--publish", action="append", default=[], help="Publish a container's port(s)")
    a("-P", "--publish-all", action="store_true", help="Publish all exposed ports")
    a("-v", "--volume", action="append", default=[], help="Bind mount a volume")
    a("--tmpfs", action="append", default=[], help="Mount a tmpfs directory")
    a("-w", "--workdir", help="Working directory inside the container")
    a("-u", "--user", help="Username or UID (format: <name|uid>[:<group|gid>])")
    a("--entrypoint", help="Overwrite the default ENTRYPOINT of the image")
    a("-i", "--interactive", action="store_true", help="Keep STDIN open even if not attached")
    a("-t", "--tty", action="store_true", help="Allocate a pseudo-TTY")
    a("-h", "--hostname", help="Container host name")
    a("--network", "--net", action="append", default=[],
      help="Connect a container to a network (bridge, host, none, container:NAME or a "
           "network's name; repeatable)")
    a("--network-alias", action="append", default=[],
      help="Add network-scoped alias for the container")
    a("--ip", default="", help="IPv4 address (e.g., 172.30.100.104)")
    a("--mac-address", default="", help="Container MAC address (e.g., 92:d0:c6:0a:29:33)")
    a("--dns", action="append", default=[], help="Set custom DNS servers")
    a("--dns-search", action="append", default=[], help="Set custom DNS search domains")
    a("--dns-option", "--dns-opt", action="append", default=[], help="Set DNS options")
    a("--add-host", action="append", default=[],
      help="Add a custom host-to-IP mapping (host:ip, or host:host-gateway for the host)")
    a("--domainname", default="", help="Container NIS domain name")
    a("-m", "--memory", help="Memory limit")
    a("--memory-swap", help="Swap limit equal to memory plus swap: '-1' for unlimited swap")
    a("--cpus", type=float, help="Number of CPUs")
    a("--pids-limit", type=int, help="Tune container pids limit (-1 for unlimited)")
    a("--ulimit", action="append", default=[], help="Ulimit options")
    a("--cap-add", action="append", default=[], help="Add Linux capabilities")
    a("--cap-drop", action="append", default=[], help="Drop Linux capabilities")
    a("--read-only", action="store_true", help="Mount the container's root filesystem as read only")
    a("--init", action="store_true", help="Run an init inside the container")
    a("--restart", default="no", help="Restart policy: no, on-failure[:N], always, unless-stopped")
    a("--stop-signal", help="Signal to stop the container")
    a("--stop-timeout", type=int, help="Timeout (in seconds) to stop a container")
    a("-l", "--label", action="append", default=[], help="Set meta data on a container")
    a("--platform", help="Set platform if server is multi-platform capable")
    a("--pull", default="missing", choices=["missing", "always", "never"],
      help="Pull image before running")
    a("--rm", action="store_true", help="Automatically remove the container when it exits")
    a("--signature-policy", metavar="FILE",
      help="Signature policy for an image pulled now (default: "
           "~/.config/containers/policy.json, else /etc/containers/policy.json)")
    a("--privileged", action="store_true", help="Give extended privileges to this container")
    a("--security-opt", action="append", default=[],
      help="Security options: apparmor=PROFILE, label=user:U|role:R|type:T|level:L|disable, "
           "seccomp=unconfined, no-new-privileges")
    a("--health-cmd", help="Command to run to check health")
    a("--health-interval", help="Time between running the check (ms|s|m|h) (default 0s)")
    a("--health-retries", type=int, help="Consecutive failures needed to report unhealthy")
    a("--health-start-period", help="Start period for the container to initialize before "
      "starting health-retries countdown (ms|s|m|h) (default 0s)")
    a("--health-start-interval", help="Time between running the check during the start "
      "period (ms|s|m|h) (default 0s)")
    a("--health-timeout", help="Maximum time to allow one check to run (ms|s|m|h) "
      "(default 0s)")
    a("--no-healthcheck", action="store_true", help="Disable any container-specified "
      "HEALTHCHECK")
    a("--help", action="help", help="Print usage")
    a("image")
    a("command", nargs="...")


def options_from_args(args):
    from pydocklite.containers.options import (RunOptions, parse_bytes, parse_tmpfs,
                                               parse_volume)
    env = []
    for path in args.env_file:
        try:
            with open(path) as f:
                for line in f:
                    line = line.rstrip("\n")
                    if line.strip() and not line.lstrip().startswith("#"):
                        env.append(line if "=" in line else f"{line}={os.environ.get(line, '')}")
        except OSError as e:
            raise UsageError(f"open {path}: {e.strerror}") from None
    for item in args.env:
        env.append(item if "=" in item else f"{item}={os.environ.get(item, '')}"
                   if item in os.environ else item)
    from pydocklite.containers.netopts import parse as parse_network
    net = parse_network(args.network, args.network_alias, args.ip, args.mac_address, args.dns,
                        args.dns_search, args.dns_option, args.add_host, args.hostname or "",
                        args.domainname)
    labels = tuple(tuple(lbl.split("=", 1)) if "=" in lbl else (lbl, "") for lbl in args.label)
    memory = parse_bytes(args.memory) if args.memory else None
    swap = None
    if args.memory_swap:
        swap = -1 if args.memory_swap == "-1" else parse_bytes(args.memory_swap)
    from pydocklite.containers.options import parse_security_opts
    extra = parse_security_opts(args.security_opt)
    if args.signature_policy:
        extra["signature_policy"] = args.signature_policy
    def duration(flag: str):
        value = getattr(args, flag.replace("-", "_"))
        if value is None:
            return None
        from pydocklite.containers.healthcheck import parse_duration
        return parse_duration(value, "--" + flag)
    if args.no_healthcheck and args.health_cmd:
        raise UsageError("--no-healthcheck conflicts with --health-* options")
    health_test = ("NONE",) if args.no_healthcheck else \
        (("CMD-SHELL", args.health_cmd) if args.health_cmd else ())
    return RunOptions(
        health_test=health_test, health_interval=duration("health-interval"),
        health_timeout=duration("health-timeout"),
        health_start_period=duration("health-start-period"),
        health_start_interval=duration("health-start-interval"),
        health_retries=args.health_retries,
        extra=extra,
        image=args.image, command=tuple(args.command), name=args.name,
        detach=getattr(args, "detach", False), remove=args.rm, interactive=args.interactive,
        tty=args.tty, env=tuple(env), entrypoint=args.entrypoint, workdir=args.workdir,
        user=args.user, hostname=args.hostname, network=net.mode, net=net, publish=tuple(args.publish),
        publish_all=args.publish_all,
        mounts=tuple([parse_volume(v) for v in args.volume] + [parse_tmpfs(t) for t in args.tmpfs]),
        memory=memory, memory_swap=swap, cpus=args.cpus, pids_limit=args.pids_limit,
        ulimits=tuple(args.ulimit), cap_add=tuple(args.cap_add), cap_drop=tuple(args.cap_drop),
        read_only=args.read_only, init=args.init, restart=args.restart,
        stop_signal=args.stop_signal, stop_timeout=args.stop_timeout, labels=labels,
        platform=args.platform, pull=args.pull, privileged=args.privileged)


def ensure_image(settings, opts):
    """The image record for opts.image, pulling it per --pull (messages on stderr). The
    name is parsed here, once: the lookup, the embedded image and the pull share it."""
    from pydocklite.images import ImageService, parse_reference
    service = ImageService(settings)
    ref = parse_reference(opts.image)
    record = None
    if opts.pull != "always":
        try:
            record = service.lookup(opts.image, ref=ref)
        except ImageNotFoundError:
            record = None
    if record is None:
        if opts.pull == "never":
            raise ImageNotFoundError(f"No such image: {opts.image}: pull it first or use "
                                     "--pull missing")
        if opts.pull == "missing":
            from pydocklite.oci_layout import load_embedded
            record = load_embedded(settings, ref)
        if record is None:
            from pydocklite.cli.pull import pull_image
            if opts.pull == "missing":
                sys.stderr.write(f"Unable to find image '{opts.image}' locally\n")
            record = pull_image(settings, opts.image, platform=opts.platform, out=sys.stderr,
                                ref=ref, signature_policy=(opts.extra or {}).get(
                                    "signature_policy"))
    return service, record


def prepare(settings, opts):
    """Image, ports, limits check, container record. Returns (service, state)."""
    from pydocklite.containers.container import ContainerService
    images, record = ensure_image(settings, opts)
    image_config = images.config_json(record)
    ports = _ports(opts, image_config)
    _warn_limits(opts, settings.cgroup_base)
    state = ContainerService(settings).create(opts, record, image_config, ports)
    return state


def _ports(opts, image_config) -> list:
    from pydocklite.containers.publish import resolve_ports
    return resolve_ports(opts, image_config, warn=sys.stderr.write)


def _warn_limits(opts, base=()) -> None:
    if opts.memory is None and opts.cpus is None and opts.pids_limit is None:
        return
    from pydocklite.containers.limits import unenforced
    msg = unenforced(opts.memory, opts.cpus, opts.pids_limit, base)
    if msg:
        sys.stderr.write(f"WARNING: {msg}\n")


def cmd_create(settings, argv) -> int:
    p = Parser("create", "create [OPTIONS] IMAGE [COMMAND] [ARG...]", "Create a new container",
               add_help=False)
    add_create_flags(p)
    opts = options_from_args(p.parse_args(argv))
    state = prepare(settings, opts)
    sys.stdout.write(state.id + "\n")
    return 0


def cmd_run(settings, argv) -> int:
    p = Parser("run", "run [OPTIONS] IMAGE [COMMAND] [ARG...]",
               "Create and run a new container from an image", add_help=False)
    p.add_argument("-d", "--detach", action="store_true",
                   help="Run container in background and print container ID")
    add_create_flags(p)
    args = p.parse_args(argv)
    opts = options_from_args(args)
    # the shim is forked now: it loads the runtime while we prepare the container
    pending, exit_r = fork_shim(settings, attached=not opts.detach,
                                interactive=opts.interactive)
    try:
        state = prepare(settings, opts)
        from pydocklite.containers.container import ContainerService
        service = ContainerService(settings)
        if opts.detach:
            res = service.start(state.id, pending=pending)
            if not res.ok:
                sys.stderr.write(f"Error: {res.error}\n")
                return res.exit_code
            sys.stdout.write(state.id + "\n")
            return 0
        return run_attached(service, state, opts.tty, pending, exit_r)
    finally:
        pending.cancel()


def _init_reaps(pid: int) -> None:
    """The shim is our child (forked once: detach.fork_detached); we exit soon after it
    has the container started (or, attached, after it has told the exit), and init, or the
    user's subreaper, reaps it then."""


def fork_shim(settings, attached: bool, interactive: bool, preload: bool = True):
    """A shim forked ahead (launch.fork_ahead) and, when attached, the read end of its exit
    pipe; the shim holds our stdio (stdin only with -i)."""
    from pydocklite.shim.launch import fork_ahead
    if not attached:
        return fork_ahead(settings, preload=preload, reaper=_init_reaps), None
    exit_r, exit_w = os.pipe()
    stdin_fd = 0 if interactive else os.open(os.devnull, os.O_RDONLY)
    try:
        pending = fork_ahead(settings, exit_w, [stdin_fd, 1, 2], preload=preload,
                             reaper=_init_reaps)
    finally:
        os.close(exit_w)          # the shim has its copy: EOF here means it is gone
        if stdin_fd != 0:
            os.close(stdin_fd)
    return pending, exit_r


def start_attached(settings, service, state, tty: bool, interactive: bool) -> int:
    """`start -a`: a shim for an existing container, attached."""
    pending, exit_r = fork_shim(settings, attached=True, interactive=interactive,
                                preload=False)
    try:
        return run_attached(service, state, tty, pending, exit_r)
    finally:
        pending.cancel()


def run_attached(service, state, tty: bool, pending, exit_r: int) -> int:
    """Start the container with the shim forked ahead (holding our stdio and the write end
    of exit_r) and relay until it exits or we detach."""
    restore = None
    if tty and os.isatty(0):
        import termios
        import tty as ttymod
        restore = termios.tcgetattr(0)
        ttymod.setraw(0)
    try:
        service.event(state, "attach")
        res = service.start(state.id, pending=pending)
        if not res.ok:
            if restore is not None:
                _restore(restore)
                restore = None
            sys.stderr.write(f"Error: {res.error}\n")
            return res.exit_code
        pid = res.pid

        def forward(signum, frame):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass
        if not tty:
            for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
                signal.signal(s, forward)
        else:
            _relay_resizes(service, state.id)
        with os.fdopen(exit_r, "rb") as f:
            while True:
                line = f.readline()
                if not line:
                    return 125     # the shim died: ps shows what happened
                msg = json.loads(line)
                if msg.get("detached"):
                    return 0
                if "exit_code" in msg:
                    return int(msg["exit_code"])
    finally:
        if restore is not None:
            _restore(restore)


def _relay_resizes(service, cid: str) -> None:
    """On SIGWINCH (our terminal was resized) tell the shim, which copies the new size from
    the terminal it was handed onto the container's pty master."""
    from pydocklite.state.container import pid_alive
    st = service.store.load(cid)
    shim_pid, start_time = st.shim_pid, st.shim_start_time
    if not shim_pid:
        return

    def on_winch(signum, frame):
        if pid_alive(shim_pid, start_time):
            try:
                os.kill(shim_pid, signal.SIGWINCH)
            except ProcessLookupError:
                pass
    signal.signal(signal.SIGWINCH, on_winch)
    on_winch(signal.SIGWINCH, None)      # a resize before the handler was in place


def _restore(attrs) -> None:
    import termios
    termios.tcsetattr(0, termios.TCSADRAIN, attrs)
