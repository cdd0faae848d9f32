"""A container as Docker's JSON shows it: `inspect` (container_json), shared by the CLI's
`inspect` and the API's GET /containers/{id}/json."""
from __future__ import annotations


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
    from pydocklite.containers import netconfig
    from pydocklite.layout import ContainerFiles
    files = ContainerFiles(settings.layout.containers_dir / state.id)
    return {
        "Id": state.id,
        "Created": state.created,
        "Path": args[0] if args else "",
        "Args": args[1:],
        "State": state.inspect_state(),
        "Image": state.image_id,
        "ResolvConfPath": str(files.etc_file("resolv.conf")),
        "HostnamePath": str(files.etc_file("hostname")),
        "HostsPath": str(files.etc_file("hosts")),
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
        "NetworkSettings": netconfig.settings_json(state, ports),
    }
