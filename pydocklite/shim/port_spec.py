"""Docker's port publishing syntax: -p [ip:][hostPort:]containerPort[/proto] and -P.

Parsing only; the forwarder that serves the mappings is `pydocklite.shim.ports`.
"""
from __future__ import annotations


TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import Dict, Iterable, List, Tuple

from pydocklite.errors import PydockliteError
from pydocklite.runtime.record import record

PROTOCOLS = ("tcp", "udp")
SYSCTL = "net.ipv4.ip_unprivileged_port_start"


class PortError(PydockliteError):
    """A -p spec that doesn't parse, a host port that can't be bound, a helper that died."""


@record
class PortMapping:
    container_port: int
    protocol: str = "tcp"
    host_ip: str = ""          # "" = the forwarder's default address
    host_port: int = 0         # 0 = a free port chosen by the kernel
    host_port_end: int = 0     # -p 8000-8010:80: the first free port of the range

    @property
    def key(self) -> str:
        return f"{self.container_port}/{self.protocol}"

    def docker_port_line(self) -> str:
        """A line of `docker port`: "80/tcp -> 127.0.0.1:8080"."""
        ip = f"[{self.host_ip}]" if ":" in self.host_ip else self.host_ip
        return f"{self.key} -> {ip}:{self.host_port}"


# --- parsing -----------------------------------------------------------------------------------

def _port_range(text: str, what: str, spec: str) -> Tuple[int, int]:
    lo, _, hi = text.partition("-")
    try:
        a, b = int(lo), int(hi) if hi else int(lo)
    except ValueError:
        raise PortError(f'invalid {what} "{text}" in "{spec}": expected a number or a range') from None
    if not (0 < a <= b <= 65535):
        raise PortError(f'invalid {what} "{text}" in "{spec}": ports are 1-65535')
    return a, b


def parse_publish(spec: str) -> List[PortMapping]:
    """Docker's -p: [ip:][hostPort:]containerPort[/proto], ranges, [ipv6] in brackets."""
    rest, _, proto = spec.partition("/")
    proto = proto.lower() or "tcp"
    if proto not in PROTOCOLS:
        raise PortError(f'invalid protocol "{proto}" in "{spec}": use tcp or udp')
    ip = ""
    if rest.startswith("["):
        end = rest.find("]")
        if end < 0 or rest[end + 1:end + 2] != ":":
            raise PortError(f'invalid IP address in "{spec}"')
        ip, rest = rest[1:end], rest[end + 2:]
        parts = rest.split(":")
        if len(parts) != 2:
            raise PortError(f'invalid port spec "{spec}"')
        host, ctr = parts
    else:
        parts = rest.split(":")
        if len(parts) == 1:
            host, ctr = "", parts[0]
        elif len(parts) == 2:
            host, ctr = parts
        elif len(parts) == 3:
            ip, host, ctr = parts
        else:
            raise PortError(f'invalid port spec "{spec}": put an IPv6 address in brackets')
    if ip:
        try:
            import socket
            socket.inet_pton(socket.AF_INET6 if ":" in ip else socket.AF_INET, ip)
        except OSError:
            raise PortError(f'invalid IP address "{ip}" in "{spec}"') from None
    c_lo, c_hi = _port_range(ctr, "container port", spec)
    if not host:
        return [PortMapping(p, proto, ip) for p in range(c_lo, c_hi + 1)]
    h_lo, h_hi = _port_range(host, "host port", spec)
    if c_lo == c_hi and h_hi > h_lo:
        return [PortMapping(c_lo, proto, ip, h_lo, h_hi)]
    if h_hi - h_lo != c_hi - c_lo:
        raise PortError(f'invalid ranges in "{spec}": host and container ranges differ in size')
    return [PortMapping(c, proto, ip, h) for c, h in zip(range(c_lo, c_hi + 1), range(h_lo, h_hi + 1))]


def publish_all(exposed_ports: Iterable[str], host_ip: str = "") -> List[PortMapping]:
    """-P: every exposed port ("80/tcp", "53/udp", "8080") to a random host port."""
    out = []
    for key in exposed_ports:
        port, _, proto = str(key).partition("/")
        out.extend(parse_publish(f"{port}/{proto or 'tcp'}" if not host_ip else
                                 f"[{host_ip}]::{port}/{proto or 'tcp'}"))
    return out


def inspect_ports(mappings: Iterable[PortMapping]) -> Dict[str, list]:
    """NetworkSettings.Ports of `docker inspect`: {"80/tcp": [{"HostIp":..., "HostPort":...}]}."""
    out: Dict[str, list] = {}
    for m in mappings:
        out.setdefault(m.key, []).append({"HostIp": m.host_ip, "HostPort": str(m.host_port)})
    return out


def unprivileged_port_start() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 1024
