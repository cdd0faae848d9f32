"""The namespace host's packet rules, written to nf_tables over netlink (no `nft` binary).

One table, `ip pydocklite`, rewritten whole in one atomic batch whenever networks or
endpoints change (there are few rules; a batch replaces them all at once, so no packet
ever sees half a rule set):

    chain postrouting  (nat, hook postrouting)
        ip saddr SUBNET oifname != BRIDGE masquerade         per non-internal network
    chain forward      (filter, hook forward, policy drop)
        ct state established,related accept
        ip saddr IP ip daddr HOST_GATEWAY accept              per --add-host ...:host-gateway
        ip daddr HOST_GATEWAY drop
        iifname BRIDGE oifname BRIDGE accept                  per network
        iifname BRIDGE oifname OUTBOUND accept                per non-internal network

So: containers of one network talk over their bridge; traffic between two bridges is dropped (networks are isolated); a
non-internal network goes out through the outbound helper's interface, masqueraded; an
internal one goes nowhere; the host's loopback (the outbound helper's gateway address) is
reachable only by containers that asked for host-gateway.

Wire format (linux/netfilter/nf_tables.h): NFNL_SUBSYS_NFTABLES messages between a
BATCH_BEGIN and a BATCH_END, each with a 4-byte nfgenmsg; expressions are nested
attributes named by their kind ("payload", "cmp", ...).
"""
from __future__ import annotations

import os
import socket
import struct

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import List, Sequence, Tuple

from pydocklite.nshost.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_REQUEST, attr, attr_str

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END = 0x10, 0x11
NFT_MSG_NEWTABLE, NFT_MSG_NEWCHAIN, NFT_MSG_NEWRULE = 0, 3, 6
NFT_MSG_DELTABLE = 2
NFPROTO_IPV4 = 2
NF_INET_FORWARD, NF_INET_POST_ROUTING = 2, 4
NF_DROP, NF_ACCEPT = 0, 1
NFT_REG_VERDICT, NFT_REG_1 = 0, 1
NFT_CMP_EQ, NFT_CMP_NEQ = 0, 1
NFT_META_IIFNAME, NFT_META_OIFNAME = 6, 7
NFT_PAYLOAD_NETWORK_HEADER = 1
NFT_CT_STATE = 0
NLM_F_APPEND = 0x800
CT_ESTABLISHED_RELATED = 2 | 4
IFNAMSIZ = 16
TABLE = "pydocklite"

_HDR = struct.Struct("=IHHII")
_NFGEN = struct.Struct("=BBH")


def _be32(value: int) -> bytes:
    return struct.pack(">I", value)


def _nested_data(kind: int, value: bytes) -> bytes:
    return attr(kind, attr(1, value))       # NFTA_DATA_VALUE


def _expr(name: str, data: bytes) -> bytes:
    return attr(1, attr_str(1, name) + attr(2, data))   # NFTA_LIST_ELEM{NAME, DATA}


def meta(key: int) -> bytes:
    return _expr("meta", attr(1, _be32(NFT_REG_1)) + attr(2, _be32(key)))


def cmp(op: int, value: bytes) -> bytes:
    return _expr("cmp", attr(1, _be32(NFT_REG_1)) + attr(2, _be32(op)) + _nested_data(3, value))


def payload(offset: int, length: int) -> bytes:
    return _expr("payload", attr(1, _be32(NFT_REG_1)) + attr(2, _be32(NFT_PAYLOAD_NETWORK_HEADER))
                 + attr(3, _be32(offset)) + attr(4, _be32(length)))


def bitwise(mask: bytes) -> bytes:
    return _expr("bitwise", attr(1, _be32(NFT_REG_1)) + attr(2, _be32(NFT_REG_1))
                 + attr(3, _be32(len(mask))) + _nested_data(4, mask)
                 + _nested_data(5, b"\0" * len(mask)))


def verdict(code: int) -> bytes:
    inner = attr(2, attr(1, _be32(code)))        # NFTA_DATA_VERDICT{NFTA_VERDICT_CODE}
    return _expr("immediate", attr(1, _be32(NFT_REG_VERDICT)) + attr(2, inner))


def ifname_is(which: int, name: str, equal: bool = True) -> bytes:
    raw = name.encode()[:IFNAMSIZ - 1].ljust(IFNAMSIZ, b"\0")
    return meta(which) + cmp(NFT_CMP_EQ if equal else NFT_CMP_NEQ, raw)


def addr_in(offset: int, cidr: str) -> bytes:
    """ip saddr (offset 12) / daddr (16) within CIDR (a single address: /32)."""
    ip, _, bits = cidr.partition("/")
    prefix = int(bits) if bits else 32
    mask = (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF
    net = struct.unpack(">I", socket.inet_aton(ip))[0] & mask
    expr = payload(offset, 4)
    if prefix < 32:
        expr += bitwise(struct.pack(">I", mask))
    return expr + cmp(NFT_CMP_EQ, struct.pack(">I", net))


def ct_established() -> bytes:
    return (_expr("ct", attr(1, _be32(NFT_REG_1)) + attr(2, _be32(NFT_CT_STATE)))
            + bitwise(struct.pack("=I", CT_ESTABLISHED_RELATED)) + cmp(NFT_CMP_NEQ, b"\0" * 4))


def masquerade() -> bytes:
    return attr(1, attr_str(1, "masq"))


def rules(networks: Sequence[Tuple[str, str, bool]], outbound_if: str, host_gateway: str,
          gateway_allowed: Sequence[str]) -> Tuple[List[bytes], List[bytes]]:
    """The expressions of each rule of the two chains: (postrouting rules, forward rules)."""
    post, fwd = [], [ct_established() + verdict(NF_ACCEPT)]
    if host_gateway:
        for ip in gateway_allowed:
            fwd.append(addr_in(12, ip) + addr_in(16, host_gateway) + verdict(NF_ACCEPT))
        fwd.append(addr_in(16, host_gateway) + verdict(NF_DROP))
    for bridge, subnet, internal in networks:
        # traffic within one bridge (seen here when the kernel passes bridged frames to
        # the IP hooks, bridge-nf-call-iptables)
        fwd.append(ifname_is(NFT_META_IIFNAME, bridge) + ifname_is(NFT_META_OIFNAME, bridge)
                   + verdict(NF_ACCEPT))
        if internal:
            continue
        post.append(addr_in(12, subnet) + ifname_is(NFT_META_OIFNAME, bridge, False)
                    + masquerade())
        if outbound_if:
            fwd.append(ifname_is(NFT_META_IIFNAME, bridge) +
                       ifname_is(NFT_META_OIFNAME, outbound_if) + verdict(NF_ACCEPT))
    return post, fwd


class Batch:
    def __init__(self) -> None:
        self.msgs: List[bytes] = []
        self.seq = int.from_bytes(os.urandom(2), "big") << 8

    def add(self, msg_type: int, body: bytes, flags: int = 0, family: int = NFPROTO_IPV4,
            subsys: bool = True) -> None:
        self.seq += 1
        kind = (NFNL_SUBSYS_NFTABLES << 8 | msg_type) if subsys else msg_type
        head = _NFGEN.pack(family, 0, 0 if subsys else socket.htons(NFNL_SUBSYS_NFTABLES))
        data = head + body
        self.msgs.append(_HDR.pack(_HDR.size + len(data), kind, NLM_F_REQUEST | flags,
                                   self.seq, 0) + data)

    def table(self, delete: bool = False) -> None:
        self.add(NFT_MSG_DELTABLE if delete else NFT_MSG_NEWTABLE, attr_str(1, TABLE),
                 NLM_F_ACK | (0 if delete else NLM_F_CREATE))

    def chain(self, name: str, kind: str, hook: int, priority: int, policy: int = -1) -> None:
        body = (attr_str(1, TABLE) + attr_str(3, name)
                + attr(4, attr(1, _be32(hook)) + attr(2, struct.pack(">i", priority)))
                + attr_str(7, kind))
        if policy >= 0:
            body += attr(5, _be32(policy))
        self.add(NFT_MSG_NEWCHAIN, body, NLM_F_CREATE | NLM_F_ACK)

    def rule(self, chain: str, exprs: bytes) -> None:
        body = attr_str(1, TABLE) + attr_str(2, chain) + attr(4, exprs)
        self.add(NFT_MSG_NEWRULE, body, NLM_F_CREATE | NLM_F_ACK | NLM_F_APPEND)

    def wire(self) -> bytes:
        begin, end = Batch(), Batch()
        begin.seq, end.seq = self.seq - len(self.msgs) - 1, self.seq
        begin.add(NFNL_MSG_BATCH_BEGIN, b"", family=0, subsys=False)
        end.add(NFNL_MSG_BATCH_END, b"", family=0, subsys=False)
        return b"".join(begin.msgs + self.msgs + end.msgs)


def apply(networks: Sequence[Tuple[str, str, bool]], outbound_if: str, host_gateway: str = "",
          gateway_allowed: Sequence[str] = ()) -> None:
    """Replace the table with the rules for `networks` (one atomic batch). OSError (with
    the kernel's errno) when the kernel refuses it."""
    post, fwd = rules(networks, outbound_if, host_gateway, gateway_allowed)
    batch = Batch()
    batch.table()                 # made if missing, so that the delete below can't fail
    batch.table(delete=True)
    batch.table()
    batch.chain("postrouting", "nat", NF_INET_POST_ROUTING, 100)
    batch.chain("forward", "filter", NF_INET_FORWARD, 0, NF_DROP)
    for exprs in post:
        batch.rule("postrouting", exprs)
    for exprs in fwd:
        batch.rule("forward", exprs)
    _send(batch)


def remove() -> None:
    batch = Batch()
    batch.table()
    batch.table(delete=True)
    _send(batch)


def _send(batch: Batch) -> None:
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                       NETLINK_NETFILTER) as s:
        s.bind((0, 0))
        s.send(batch.wire())
        want = len(batch.msgs)
        s.settimeout(5)
        while want:
            data = s.recv(1 << 16)
            offset = 0
            while offset + _HDR.size <= len(data):
                length, mtype, _f, _seq, _pid = _HDR.unpack_from(data, offset)
                if length < _HDR.size:
                    break
                if mtype == 2:               # NLMSG_ERROR: an ack (0) or the failure
                    code = -struct.unpack_from("=i", data, offset + _HDR.size)[0]
                    if code:
                        raise OSError(code, f"nf_tables rules refused: {os.strerror(code)}")
                    want -= 1
                offset += (length + 3) & ~3
