"""DNS for container names: the messages (RFC 1035, just what is needed) and the tables.

The namespace host listens on each user network's gateway address, port 53, UDP and TCP.
A query is answered from the asker's point of view: the asker is known by its source
address (an endpoint), the names it may resolve are those of the containers sharing one
of its user-defined networks (their names, aliases and short ids; Docker's default bridge
has no names). Answers carry TTL 0, so nothing caches an address across a restart. Other
names are forwarded to the host's resolvers, or the asker's own --dns servers, through a
socket opened in the host's network namespace (so a resolver on the host's loopback
works too); askers on internal networks only get names of their networks.
"""
from __future__ import annotations

import os
import struct
import time

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import Dict, Iterable, List, Optional, Tuple

from pydocklite.runtime.record import record

TYPE_A, TYPE_PTR, TYPE_AAAA = 1, 12, 28
CLASS_IN = 1
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, REFUSED = 0, 1, 2, 3, 5
_HEADER = struct.Struct(">HHHHHH")
FORWARD_TIMEOUT = 2.0


class DnsFormatError(ValueError):
    pass


@record
class Question:
    id: int
    flags: int
    name: str            # lower case, no final dot
    qtype: int
    end: int             # offset of the end of the question


def parse_query(data: bytes) -> Question:
    """The one question of a query (DnsFormatError for anything else)."""
    if len(data) < _HEADER.size:
        raise DnsFormatError("short message")
    qid, flags, qd, _an, _ns, _ar = _HEADER.unpack_from(data)
    if flags & 0x8000 or qd != 1:
        raise DnsFormatError("not a query with one question")
    labels, offset = [], _HEADER.size
    while True:
        if offset >= len(data):
            raise DnsFormatError("truncated name")
        n = data[offset]
        offset += 1
        if n == 0:
            break
        if n > 63 or offset + n > len(data):
            raise DnsFormatError("bad label")
        labels.append(data[offset:offset + n].decode("ascii", "replace").lower())
        offset += n
    if offset + 4 > len(data):
        raise DnsFormatError("truncated question")
    qtype, qclass = struct.unpack_from(">HH", data, offset)
    if qclass != CLASS_IN:
        raise DnsFormatError("not class IN")
    return Question(qid, flags, ".".join(labels), qtype, offset + 4)


def encode_name(name: str) -> bytes:
    out = b""
    for label in name.strip(".").split("."):
        raw = label.encode("ascii", "replace")[:63]
        out += bytes([len(raw)]) + raw
    return out + b"\0"


def response(query: bytes, q: Question, rcode: int, addresses: Iterable[str] = (),
             ptr: str = "", ttl: int = 0) -> bytes:
    """An authoritative answer to `query` (the question copied, A or PTR records)."""
    answers = b""
    count = 0
    for ip in addresses:
        answers += struct.pack(">HHHIH", 0xC00C, TYPE_A, CLASS_IN, ttl, 4) + \
            bytes(int(p) for p in ip.split("."))
        count += 1
    if ptr:
        name = encode_name(ptr)
        answers += struct.pack(">HHHIH", 0xC00C, TYPE_PTR, CLASS_IN, ttl, len(name)) + name
        count += 1
    flags = 0x8000 | (q.flags & 0x7900) | 0x0400 | 0x0080 | rcode   # QR, opcode+RD, AA, RA
    return _HEADER.pack(q.id, flags, 1, count, 0, 0) + query[_HEADER.size:q.end] + answers


def error(query: bytes, rcode: int) -> bytes:
    """An error answer to a query that may not even parse (FORMERR, SERVFAIL...)."""
    if len(query) < _HEADER.size:
        return b""
    qid, flags = struct.unpack_from(">HH", query)
    try:
        q = parse_query(query)
        return response(query, q, rcode)
    except DnsFormatError:
        return _HEADER.pack(qid, 0x8000 | (flags & 0x7900) | 0x0080 | rcode, 0, 0, 0, 0)


def reverse_name(ip: str) -> str:
    return ".".join(reversed(ip.split("."))) + ".in-addr.arpa"


@record
class Entry:
    """One endpoint as DNS sees it."""
    cid: str
    network: str                 # network id
    ip: str
    names: Tuple[str, ...]       # container name first, then aliases and the short id
    internal: bool
    named: bool                  # False on the default bridge: no names there
    upstream: Tuple[str, ...]    # the container's --dns servers, () for the host's


class Names:
    """The DNS view of the endpoints, rebuilt from the host's table on every change."""

    def __init__(self, entries: Iterable[Entry] = (), network_names: Optional[dict] = None):
        self.by_ip: Dict[str, Entry] = {}
        self.by_network: Dict[str, List[Entry]] = {}
        self.by_cid: Dict[str, List[Entry]] = {}
        self.network_names = dict(network_names or {})
        for e in entries:
            self.by_ip[e.ip] = e
            self.by_network.setdefault(e.network, []).append(e)
            self.by_cid.setdefault(e.cid, []).append(e)

    def asker_networks(self, ip: str) -> List[Entry]:
        """The endpoints of the container that owns `ip` (all its networks)."""
        e = self.by_ip.get(ip)
        return self.by_cid.get(e.cid, []) if e is not None else []

    def lookup(self, asker_ip: str, name: str) -> Tuple[bool, List[str]]:
        """(known, addresses) of `name` as the container at `asker_ip` sees it."""
        found: List[str] = []
        known = False
        for mine in self.asker_networks(asker_ip):
            if not mine.named:
                continue
            for e in self.by_network.get(mine.network, ()):
                if name in e.names:
                    known = True
                    if e.ip not in found:
                        found.append(e.ip)
        return known, found

    def reverse(self, asker_ip: str, name: str) -> str:
        """The name of a PTR query's address when the asker shares a user network with it."""
        if not name.endswith(".in-addr.arpa"):
            return ""
        ip = ".".join(reversed(name[:-len(".in-addr.arpa")].split(".")))
        target = self.by_ip.get(ip)
        if target is None or not target.named:
            return ""
        nets = {e.network for e in self.asker_networks(asker_ip) if e.named}
        if target.network not in nets:
            return ""
        net_name = self.network_names.get(target.network, "")
        return f"{target.names[0]}.{net_name}" if net_name else target.names[0]

    def may_forward(self, asker_ip: str) -> Tuple[bool, Tuple[str, ...]]:
        """(allowed, the asker's own upstream servers or ()): only askers with a
        non-internal network get names from outside."""
        mine = self.asker_networks(asker_ip)
        if not mine:
            return False, ()
        allowed = any(not e.internal for e in mine)
        return allowed, mine[0].upstream


def answer(names: Names, asker_ip: str, query: bytes):
    """(reply bytes, None) when answered here, or (None, (question, upstream servers))
    when the query should be forwarded."""
    try:
        q = parse_query(query)
    except DnsFormatError:
        return error(query, FORMERR), None
    if q.qtype == TYPE_PTR:
        target = names.reverse(asker_ip, q.name)
        if target:
            return response(query, q, NOERROR, ptr=target), None
    else:
        known, ips = names.lookup(asker_ip, q.name)
        if known:
            return response(query, q, NOERROR, ips if q.qtype == TYPE_A else ()), None
    allowed, upstream = names.may_forward(asker_ip)
    if not allowed:
        return response(query, q, REFUSED if not names.asker_networks(asker_ip) else NXDOMAIN), \
            None
    return None, (q, upstream)


class Forwarder:
    """Queries passed on to upstream resolvers: each gets a fresh random id (matched on
    the way back, with the server's address) and moves to the next server after
    FORWARD_TIMEOUT; replies go back to the asker with its own id."""

    def __init__(self, sock, servers: Iterable[str]):
        self.sock = sock                       # a UDP socket in the host's network ns
        self.servers = tuple(servers)
        self.pending: Dict[int, list] = {}

    def forward(self, query: bytes, upstream: Tuple[str, ...], reply_to) -> None:
        """reply_to(bytes) gets the upstream's answer (or SERVFAIL)."""
        servers = tuple(upstream) or self.servers
        if not servers or self.sock is None:
            reply_to(error(query, SERVFAIL))
            return
        for _ in range(8):
            new_id = struct.unpack("=H", os.urandom(2))[0]
            if new_id not in self.pending:
                break
        entry = [query, servers, 0, time.monotonic() + FORWARD_TIMEOUT, reply_to]
        self.pending[new_id] = entry
        self._send(new_id, entry)

    def _send(self, new_id: int, entry: list) -> None:
        query, servers, i = entry[0], entry[1], entry[2]
        try:
            self.sock.sendto(struct.pack(">H", new_id) + query[2:], (servers[i], 53))
        except OSError:
            entry[3] = 0.0                      # try the next one at the next tick

    def on_reply(self) -> None:
        try:
            data, addr = self.sock.recvfrom(65535)
        except (BlockingIOError, InterruptedError):
            return
        if len(data) < 2:
            return
        new_id = struct.unpack_from(">H", data)[0]
        entry = self.pending.get(new_id)
        if entry is None or addr[0] != entry[1][entry[2]]:
            return                              # late, spoofed or for someone else
        del self.pending[new_id]
        entry[4](entry[0][:2] + data[2:])

    def tick(self, now: float) -> None:
        for new_id, entry in list(self.pending.items()):
            if entry[3] > now:
                continue
            entry[2] += 1
            if entry[2] >= len(entry[1]):
                del self.pending[new_id]
                entry[4](error(entry[0], SERVFAIL))
                continue
            entry[3] = now + FORWARD_TIMEOUT
            self._send(new_id, entry)


def host_resolvers(path: str = "/etc/resolv.conf") -> Tuple[List[str], List[str], List[str]]:
    """(nameservers, search domains, options) of the host's resolv.conf (IPv4 servers)."""
    servers, search, options = [], [], []
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return servers, search, options
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0].startswith(("#", ";")):
            continue
        if fields[0] == "nameserver" and len(fields) > 1 and ":" not in fields[1]:
            servers.append(fields[1])
        elif fields[0] in ("search", "domain"):
            search = fields[1:]
        elif fields[0] == "options":
            options.extend(fields[1:])
    return servers, search, options
