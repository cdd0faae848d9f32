"""`inspect` (containers, then images) and `container inspect`: Docker's JSON shape."""
from __future__ import annotations

import sys

from pydocklite.cli.common import Parser


def mount_json(m: dict) -> dict:
    """A recorded mount in Docker's inspect shape (a volume's names it, Driver "local")."""
    if m.get("name"):
        return {"Type": "volume", "Name": m["name"], "Source": m.get("source"),
                "Destination": m.get("target"), "Driver": "local", "Mode": "z",
                "RW": not m.get("readonly"), "Propagation": ""}
    return {"Type": m.get("kind", "bind"), "Source": m.get("source"),
            "Destination": m.get("target"), "Mode": "", "RW": not m.get("readonly"),
            "Propagation": "rprivate" if m.get("kind", "bind") == "bind" else ""}


def container_json(settings, state) -> dict:
    st = state.status()
    cfg = state.config
    c = cfg.get("Config", {})
    args = cfg.get("Args", [])
    from pydocklite.shim.port_spec import PortMapping, inspect_ports
    ports = inspect_ports([PortMapping(**m) for m in cfg.get("PortBindings", [])])
    cdir = settings.layout.containers_dir / state.id
    return {
        "Id": state.id,
        "Created": state.created,
        "Path": args[0] if args else "",
        "Args": args[1:],
        "State": {
            "Status": st.state, "Running": st.running, "Paused": st.state == "paused",
            "Restarting": st.state == "restarting", "OOMKilled": state.oom_killed,
            "Dead": st.state == "dead", "Pid": st.pid if st.running else 0,
            "ExitCode": st.exit_code, "Error": st.error, "StartedAt": state.started_at,
            "FinishedAt": state.finished_at,
        },
        "Image": state.image_id,
        "ResolvConfPath": str(cdir / "resolv.conf"),
        "HostnamePath": str(cdir / "hostname"),
        "HostsPath": str(cdir / "hosts"),
        "LogPath": state.log_path,
        "ShimLogPath": state.shim_log_path,
        "ShimPid": state.shim_pid if st.shim_alive else 0,
        "Name": "/" + state.name,
        "RestartCount": state.restart_count,
        "Driver": cfg.get("StorageDriver", ""),
        "Platform": cfg.get("Platform", "linux"),
        "HostConfig": {**cfg.get("HostConfig", {}), "PortBindings": ports},
        "Mounts": [mount_json(m) for m in cfg.get("Mounts", [])],
        "Config": {**c, "Cmd": c.get("Cmd"), "Entrypoint": c.get("Entrypoint")},
        "NetworkSettings": {"Ports": ports,
                            "NetworkMode": cfg.get("HostConfig", {}).get("NetworkMode", "")},
    }


def cmd_container_inspect(settings, argv) -> int:
    p = Parser("container inspect", "container inspect [OPTIONS] CONTAINER [CONTAINER...]",
               "Display detailed information on one or more containers")
    p.add_argument("-f", "--format", help="Format output using a Go template")
    p.add_argument("-s", "--size", action="store_true", help="Display total file sizes")
    p.add_argument("containers", nargs="+")
    args = p.parse_args(argv)
    return _inspect(settings, args.containers, args.format, images=False)


def cmd_inspect(settings, argv) -> int:
    p = Parser("inspect", "inspect [OPTIONS] NAME|ID [NAME|ID...]",
               "Return low-level information on containers or images")
    p.add_argument("-f", "--format", help="Format output using a Go template")
    p.add_argument("-s", "--size", action="store_true", help="Display total file sizes")
    p.add_argument("--type", choices=["container", "image"], help="Only this type of object")
    p.add_argument("names", nargs="+")
    args = p.parse_args(argv)
    return _inspect(settings, args.names, args.format, images=args.type != "container",
                    containers=args.type != "image")


def _inspect(settings, names, fmt, images=True, containers=True) -> int:
    from pydocklite.cli.images import emit_inspect, inspect_image
    from pydocklite.containers.state import ContainerStore
    from pydocklite.errors import ContainerNotFoundError, ImageNotFoundError
    store = ContainerStore(settings.layout.containers_dir)
    service = None
    results, status = [], 0
    for name in names:
        if containers:
            try:
                results.append(container_json(settings, store.get(name)))
                continue
            except ContainerNotFoundError:
                pass
        if images:
            from pydocklite.images import ImageService
            service = service or ImageService(settings)
            try:
                results.append(inspect_image(service, service.lookup(name)))
                continue
            except ImageNotFoundError:
                pass
        sys.stderr.write(f"Error: No such object: {name}\n")
        status = 1
    emit_inspect(results, fmt)
    return status
