"""`system service`: serve the Docker Engine API in the foreground (as `podman system
service`), or `--install` a systemd user socket + service pair that starts it on demand."""
from __future__ import annotations

import os
import signal
import sys

from pydocklite.cli.common import Parser
from pydocklite.errors import UsageError

from pydocklite.hostinfo import API_SOCKET_NAME as SOCKET_NAME

DEFAULT_IDLE = 5.0

# what a container's create and start need, imported once the service listens, so that no
# request pays for them (the start path's own preload list included)
WARM = ("pydocklite.api.containers", "pydocklite.api.create", "pydocklite.api.attach",
        "pydocklite.api.streams", "pydocklite.api.execs", "pydocklite.api.images",
        "pydocklite.api.system", "pydocklite.api.events", "pydocklite.api.worker",
        "pydocklite.containers.container", "pydocklite.containers.spec_builder",
        "pydocklite.containers.image_files", "pydocklite.containers.inspect_json",
        "pydocklite.containers.publish", "pydocklite.containers.query",
        "pydocklite.shim.launch", "pydocklite.shim.port_spec", "pydocklite.shim.logs",
        "pydocklite.images", "pydocklite.image_json", "pydocklite.oci_layout",
        "snapshotter.snapshots", "snapshotter.content_store", "registry.reference",
        "pydocklite.containers.procs", "pydocklite.containers.fs_access",
        "pydocklite.userns_exec")


def default_socket(settings) -> str:
    return str(settings.runtime_layout.api_socket)


def cmd_service(settings, argv) -> int:
    p = Parser("system service", "system service [OPTIONS] [URI]",
               "Serve the Docker Engine API (default unix://$XDG_RUNTIME_DIR/pydocklite/"
               f"{SOCKET_NAME})")
    p.add_argument("-t", "--time", type=float, default=DEFAULT_IDLE,
                   help="Seconds without a request or open stream before the service exits "
                        f"(0 = never; default {DEFAULT_IDLE:g})")
    p.add_argument("--install", action="store_true",
                   help="Write a systemd user socket + service pair (socket activation) and "
                        "say how to enable it")
    p.add_argument("uri", nargs="?", help="unix:///PATH or tcp://127.0.0.1:PORT (loopback only)")
    args = p.parse_args(argv)
    if args.time < 0:
        raise UsageError("--time must be 0 (never exit) or a number of seconds")
    if args.install:
        return install_units(settings, args.uri, args.time)
    from pydocklite.api.server import systemd_listeners
    listeners = systemd_listeners()
    host_line = None
    if not listeners:
        listeners, host_line = _listen(settings, args.uri)
    else:
        host_line = f"unix://{default_socket(settings)}"
    from pydocklite.api.context import ApiContext
    from pydocklite.api.server import ApiServer
    server = ApiServer(ApiContext(settings), listeners, args.time)
    signal.signal(signal.SIGTERM, lambda *_: server.stop())
    signal.signal(signal.SIGINT, lambda *_: server.stop())
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    # imports done before the first request: a fork (a shim, a worker) made while another
    # thread is inside an import would leave that module's lock held in the child for ever
    _warm()
    os.register_at_fork(after_in_child=_forget_imports_in_progress)
    sys.stdout.write(f"DOCKER_HOST={host_line}\n")
    sys.stdout.flush()
    try:
        server.serve()
    finally:
        for ls in listeners:
            _close_listener(ls, args.uri is None or args.uri.startswith("unix:"))
    return 0


def _listen(settings, uri):
    from pydocklite.api.server import tcp_listener, unix_listener
    if uri is None or uri.startswith("unix://"):
        path = uri[len("unix://"):] if uri else default_socket(settings)
        if not path.startswith("/"):
            raise UsageError(f"unix socket path {path!r} must be absolute: unix:///PATH")
        if len(path.encode()) > 107:
            raise UsageError(f"unix socket path {path} is too long (at most 107 bytes)")
        return [unix_listener(path)], f"unix://{path}"
    if uri.startswith("tcp://"):
        host, _, port = uri[len("tcp://"):].rstrip("/").rpartition(":")
        if not port.isdigit() or not host:
            raise UsageError(f"invalid address {uri!r}: use tcp://127.0.0.1:PORT")
        sock = tcp_listener(host, int(port))
        sys.stderr.write(f"WARNING: the API listens on {uri} without TLS or authentication: "
                         "every user and program on this host can connect and control your "
                         "containers with your rights. Prefer the unix socket.\n")
        real = sock.getsockname()
        shown = f"[{real[0]}]" if ":" in real[0] else real[0]
        return [sock], f"tcp://{shown}:{real[1]}"
    raise UsageError(f"unsupported address {uri!r}: use unix:///PATH or tcp://127.0.0.1:PORT")


def _close_listener(sock, unlink: bool) -> None:
    try:
        name = sock.getsockname() if sock.family == 1 else None
    except OSError:
        name = None
    sock.close()
    if unlink and isinstance(name, str) and name and os.environ.get("LISTEN_PID") is None:
        try:
            os.unlink(name)
        except OSError:
            pass


def _forget_imports_in_progress() -> None:
    """In a child forked while another thread of the service was importing a module: that
    thread is gone, its half-made module and its import lock with it (else the child's own
    import of that module would wait for ever)."""
    import importlib._bootstrap as bootstrap
    for name, module in list(sys.modules.items()):
        spec = getattr(module, "__spec__", None)
        if spec is not None and getattr(spec, "_initializing", False):
            del sys.modules[name]
    for table in ("_module_locks", "_blocking_on"):
        getattr(bootstrap, table, {}).clear()


def _warm() -> None:
    import importlib
    from pydocklite.shim.launch import _PRELOAD
    for name in WARM + _PRELOAD[0] + _PRELOAD[1]:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    try:                           # the shims forked from here find it loaded
        from snapshotter.fuse_ll3 import load_libfuse3
        load_libfuse3()
    except Exception:  # noqa: BLE001 - no libfuse3: the shim says so when it needs it
        pass


SOCKET_UNIT = """[Unit]
Description=pydocklite Docker Engine API socket

[Socket]
ListenStream={path}
SocketMode=0600
DirectoryMode=0700

[Install]
WantedBy=sockets.target
"""

SERVICE_UNIT = """[Unit]
Description=pydocklite Docker Engine API service
Requires=pydocklite.socket
After=pydocklite.socket

[Service]
Type=exec
{environment}ExecStart={command} system service --time {idle:g}
# containers belong to their shims, not to the service: stopping the service (or its idle
# exit) must not kill them
KillMode=process
"""


def install_units(settings, uri, idle: float) -> int:
    """Write pydocklite.socket + pydocklite.service for systemd's user manager."""
    if uri and not uri.startswith("unix://"):
        raise UsageError("--install makes a unix socket: give unix:///PATH or no address")
    config = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    unit_dir = os.path.join(config, "systemd", "user")
    os.makedirs(unit_dir, exist_ok=True)
    path = uri[len("unix://"):] if uri else "%t/pydocklite/" + SOCKET_NAME
    program = os.path.abspath(sys.argv[0])
    environment = ""
    if program.endswith(".pyz"):
        command = f"{sys.executable} {program}"
    else:
        import pydocklite
        repo = os.path.dirname(os.path.dirname(os.path.abspath(pydocklite.__file__)))
        command = f"{sys.executable} -m pydocklite"
        environment = f"Environment=PYTHONPATH={repo}\n"
    _write(os.path.join(unit_dir, "pydocklite.socket"), SOCKET_UNIT.format(path=path))
    _write(os.path.join(unit_dir, "pydocklite.service"),
           SERVICE_UNIT.format(command=command, idle=idle or 0, environment=environment))
    shown = path.replace("%t", os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}")
    sys.stdout.write(f"Wrote {unit_dir}/pydocklite.socket and pydocklite.service.\n"
                     "Enable them with:\n"
                     "  systemctl --user daemon-reload\n"
                     "  systemctl --user enable --now pydocklite.socket\n"
                     f"then: export DOCKER_HOST=unix://{shown}\n")
    return 0


def _write(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
