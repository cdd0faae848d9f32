"""IPv4 address management, pure: subnets from Docker's default pools, gateways, one
address per endpoint. Addresses are ints inside, dotted strings at the edges.

Docker's defaults: the `bridge` network is 172.17.0.0/16; user networks take the next free
/16 of 172.18.0.0-172.31.0.0, then /20s of 192.168.0.0/16. A network's gateway is the
first host address unless given; endpoints get the next free address of the subnet (or
of --ip-range) after the last one handed out, so a freed address is not reused at once.
(No `socket` import: `run` parses --ip with this, and socket costs a CLI ~2 ms.)
"""
from __future__ import annotations

import struct

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import Iterable, Iterator, List, Set, Tuple

from pydocklite.errors import UsageError

DEFAULT_BRIDGE_SUBNET = "172.17.0.0/16"
DEFAULT_POOLS = tuple((f"172.{i}.0.0/16", 16) for i in range(17, 32)) + (("192.168.0.0/16", 20),)


class IpamError(UsageError):
    """A subnet, gateway or address that can't be had (the message says why and what to
    do); nothing was changed."""


def ip_to_int(text: str) -> int:
    parts = text.split(".")
    if len(parts) != 4 or not all(p.isdigit() and len(p) <= 3 and int(p) < 256 for p in parts):
        raise IpamError(f"invalid IPv4 address {text!r}: use four numbers, e.g. 10.1.2.3")
    return struct.unpack(">I", bytes(int(p) for p in parts))[0]


def int_to_ip(value: int) -> str:
    return ".".join(str(b) for b in struct.pack(">I", value))


def parse_cidr(text: str, what: str = "subnet") -> Tuple[int, int]:
    """'10.1.0.0/16' -> (network int, prefix length); host bits must be zero."""
    ip, sep, bits = text.partition("/")
    if ":" in ip:
        raise IpamError(f"invalid {what} {text!r}: only IPv4 networks are supported")
    if not sep or not bits.isdigit() or not 0 <= int(bits) <= 32:
        raise IpamError(f"invalid {what} {text!r}: use CIDR notation, e.g. 10.1.0.0/16")
    prefix = int(bits)
    addr = ip_to_int(ip)
    net = addr & mask(prefix)
    if net != addr:
        raise IpamError(f"invalid {what} {text}: it should be {int_to_ip(net)}/{prefix}")
    return net, prefix


def mask(prefix: int) -> int:
    return (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF


def cidr(net: int, prefix: int) -> str:
    return f"{int_to_ip(net)}/{prefix}"


def contains(outer: Tuple[int, int], addr: int) -> bool:
    return addr & mask(outer[1]) == outer[0]


def overlaps(a: Tuple[int, int], b: Tuple[int, int]) -> bool:
    short = min(a[1], b[1])
    return a[0] & mask(short) == b[0] & mask(short)


def default_subnets() -> Iterator[str]:
    """Docker's default pools, in order, as CIDRs."""
    for pool, size in DEFAULT_POOLS:
        base, prefix = parse_cidr(pool)
        for i in range(1 << (size - prefix)):
            yield cidr(base + (i << (32 - size)), size)


def pick_subnet(taken: Iterable[str], avoid: Iterable[str] = ()) -> str:
    """The first default-pool subnet overlapping none of `taken` (other networks) or
    `avoid` (the host's own networks, the outbound helper's)."""
    busy = [parse_cidr(c) for c in list(taken) + list(avoid)]
    for candidate in default_subnets():
        if candidate == DEFAULT_BRIDGE_SUBNET:
            continue
        net = parse_cidr(candidate)
        if not any(overlaps(net, b) for b in busy):
            return candidate
    raise IpamError("could not find an available, non-overlapping IPv4 address pool among "
                    "the defaults to assign to the network: remove unused networks "
                    "('network prune') or give one with --subnet")


def check_subnet(subnet: str, taken: Iterable[Tuple[str, str]]) -> None:
    """IpamError when `subnet` overlaps a subnet of another network ((name, cidr) pairs)."""
    mine = parse_cidr(subnet)
    for name, other in taken:
        if overlaps(mine, parse_cidr(other)):
            raise IpamError(f"invalid pool request: Pool overlaps with other one on this "
                            f"address space: {subnet} overlaps {other} of network {name}: "
                            f"pick another --subnet")


def default_gateway(subnet: str) -> str:
    net, prefix = parse_cidr(subnet)
    if prefix > 30:
        raise IpamError(f"subnet {subnet} is too small: it needs room for a gateway and "
                        "containers (use /30 or larger)")
    return int_to_ip(net + 1)


def check_in(subnet: str, ip: str, what: str) -> None:
    if not contains(parse_cidr(subnet), ip_to_int(ip)):
        raise IpamError(f"no matching subnet for {what} {ip}: it must be inside {subnet}")


def check_range(subnet: str, ip_range: str) -> None:
    r = parse_cidr(ip_range, "ip range")
    s = parse_cidr(subnet)
    if r[1] < s[1] or not contains(s, r[0]):
        raise IpamError(f"no matching subnet for range {ip_range}: it must be inside {subnet}")


def usable(subnet: str, ip_range: str = "") -> Tuple[int, int]:
    """(first, last) endpoint addresses: the subnet (or range) without its network and
    broadcast addresses."""
    net, prefix = parse_cidr(subnet)
    lo, hi = net + 1, net + (1 << (32 - prefix)) - 2
    if ip_range:
        r, rp = parse_cidr(ip_range)
        lo, hi = max(lo, r), min(hi, r + (1 << (32 - rp)) - 1)
    return lo, hi


def allocate(subnet: str, ip_range: str, gateway: str, taken: Set[str],
             after: str = "", network: str = "") -> str:
    """A free address: the next one after `after` (wrapping), skipping the gateway and
    `taken`. IpamError when none is left."""
    lo, hi = usable(subnet, ip_range)
    skip = {ip_to_int(ip) for ip in taken}
    if gateway:
        skip.add(ip_to_int(gateway))
    start = ip_to_int(after) + 1 if after else lo
    if not lo <= start <= hi:
        start = lo
    count = hi - lo + 1
    for i in range(count):
        candidate = lo + (start - lo + i) % count
        if candidate not in skip:
            return int_to_ip(candidate)
    raise IpamError(f"no available IPv4 addresses on this network's address pools: "
                    f"{network or subnet} is full: disconnect or remove containers, or use a "
                    "network with a larger subnet")


def check_static(subnet: str, gateway: str, ip: str, taken: Set[str], network: str) -> None:
    """IpamError unless `ip` may be given to an endpoint of this network."""
    net = parse_cidr(subnet)
    addr = ip_to_int(ip)
    lo, hi = usable(subnet)
    if not contains(net, addr):
        raise IpamError(f"invalid address {ip}: it is not in network {network}'s subnet "
                        f"{subnet}")
    if not lo <= addr <= hi or ip == gateway:
        raise IpamError(f"invalid address {ip}: it is the network, broadcast or gateway "
                        f"address of {network} ({subnet}): pick another")
    if ip in taken:
        raise IpamError(f"Address already in use: {ip} on network {network}: pick another "
                        "--ip or stop the container holding it")


def mac_for(ip: str) -> str:
    """Docker's MAC address of an endpoint: 02:42 and the four bytes of its IPv4 address."""
    raw = struct.pack(">I", ip_to_int(ip))
    return "02:42:" + ":".join(f"{b:02x}" for b in raw)


def check_mac(mac: str) -> str:
    parts = mac.lower().split(":")
    if len(parts) != 6 or not all(len(p) == 2 and all(c in "0123456789abcdef" for c in p)
                                  for p in parts):
        raise IpamError(f"invalid MAC address {mac!r}: use six hex pairs, e.g. "
                        "02:42:ac:11:00:02")
    if int(parts[0], 16) & 1:
        raise IpamError(f"invalid MAC address {mac}: it is a multicast address (the first "
                        "byte must be even)")
    return ":".join(parts)


def host_networks() -> List[str]:
    """The IPv4 networks of the host's routes (/proc/net/route), to keep new subnets from
    hiding them inside the namespace host."""
    out = []
    try:
        with open("/proc/net/route") as f:
            next(f, None)
            for line in f:
                fields = line.split()
                if len(fields) < 8:
                    continue
                dest = struct.unpack("<I", bytes.fromhex(fields[1]))[0]
                m = struct.unpack("<I", bytes.fromhex(fields[7]))[0]
                if m == 0:
                    continue
                prefix = bin(m).count("1")
                out.append(cidr(dest & mask(prefix), prefix))
    except OSError:
        pass
    return out


def prefix_of(subnet: str) -> int:
    return parse_cidr(subnet)[1]


def broadcast(subnet: str) -> str:
    net, prefix = parse_cidr(subnet)
    return int_to_ip(net + (1 << (32 - prefix)) - 1)
