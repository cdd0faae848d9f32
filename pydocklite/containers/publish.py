"""Which ports a container publishes, from run's -p/-P (or the API's PortBindings)."""
from __future__ import annotations

import os

from pydocklite.errors import UsageError


def resolve_ports(opts, image_config, warn) -> list:
    """The PortMapping values of -p/-P (RunOptions.publish, .publish_all), checked: ports
    below the unprivileged start are refused for a user; `warn(text)` for what is ignored."""
    if not opts.publish and not opts.publish_all:
        return []
    from pydocklite.shim.port_spec import parse_publish, publish_all, unprivileged_port_start
    if opts.network == "container":
        raise UsageError("conflicting options: port publishing and the container type network "
                         "mode")
    if opts.network == "host":
        warn("WARNING: Published ports are discarded when using host network mode\n")
        return []
    ports = []
    for spec in opts.publish:
        ports.extend(parse_publish(spec))
    if opts.publish_all:
        exposed = (image_config.get("config") or {}).get("ExposedPorts") or {}
        have = {p.key for p in ports}
        ports.extend(p for p in publish_all(exposed) if p.key not in have)
    ports = [p if p.host_port or p.host_port_end else
             p._replace(host_port=free_port(p.host_ip or "127.0.0.1", p.protocol))
             for p in ports]
    low = unprivileged_port_start()
    for p in ports:
        if p.host_port and p.host_port < low and os.geteuid() != 0:
            raise UsageError(
                f"cannot publish host port {p.host_port}: ports below {low} need privileges: "
                f"use a port >= {low}, or let users bind them with "
                f"'sudo sysctl -w net.ipv4.ip_unprivileged_port_start={p.host_port}'")
    return ports


def free_port(host_ip: str, protocol: str) -> int:
    """A host port free now, for a -p without one (as Podman, chosen at create and recorded,
    so that `port`, `ps` and inspect show it)."""
    import socket
    family = socket.AF_INET6 if ":" in host_ip else socket.AF_INET
    kind = socket.SOCK_DGRAM if protocol == "udp" else socket.SOCK_STREAM
    with socket.socket(family, kind) as s:
        s.bind((host_ip.strip("[]"), 0))
        return s.getsockname()[1]
