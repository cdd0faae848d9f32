"""Pure parts of networking: addresses (IPAM), DNS messages and the name tables, the
nf_tables rule set, the networks service's checks. The real thing (namespaces, bridges,
DNS over the wire) is in test_networks.py."""
from __future__ import annotations

import socket
import struct

import pytest

from pydocklite.nshost import dns, ipam, nft
from pydocklite.nshost.ipam import IpamError


# --- IPAM --------------------------------------------------------------------------------

def test_default_pools_are_dockers():
    subnets = list(ipam.default_subnets())
    assert subnets[:3] == ["172.17.0.0/16", "172.18.0.0/16", "172.19.0.0/16"]
    assert subnets[14] == "172.31.0.0/16"
    assert subnets[15:17] == ["192.168.0.0/20", "192.168.16.0/20"]
    assert len(subnets) == 15 + 16


def test_pick_subnet_skips_taken_and_host_networks():
    assert ipam.pick_subnet([]) == "172.18.0.0/16"      # 172.17 is the default bridge's
    assert ipam.pick_subnet(["172.18.0.0/16"], ["172.19.5.0/24"]) == "172.20.0.0/16"
    taken = [f"172.{i}.0.0/16" for i in range(17, 32)] + ["192.168.0.0/17"]
    assert ipam.pick_subnet(taken) == "192.168.128.0/20"
    everything = taken + ["192.168.128.0/17"]
    with pytest.raises(IpamError, match="non-overlapping IPv4 address pool"):
        ipam.pick_subnet(everything)


@pytest.mark.parametrize("bad, msg", [
    ("10.1.2.3/24", "it should be 10.1.2.0/24"),
    ("10.1.2.0", "CIDR"),
    ("10.1.2.0/33", "CIDR"),
    ("10.1.2/24", "invalid IPv4 address"),
    ("fd00::/64", "only IPv4"),
    ("300.1.2.0/24", "invalid IPv4 address"),
])
def test_bad_subnets_are_clear_errors(bad, msg):
    with pytest.raises(IpamError, match=msg):
        ipam.parse_cidr(bad)


def test_overlap_check_names_the_other_network():
    with pytest.raises(IpamError, match="overlaps 10.0.0.0/8 of network big"):
        ipam.check_subnet("10.5.0.0/16", [("big", "10.0.0.0/8")])
    ipam.check_subnet("10.5.0.0/16", [("other", "10.6.0.0/16")])


def test_allocation_skips_gateway_taken_and_wraps():
    assert ipam.allocate("10.1.0.0/29", "", "10.1.0.1", set()) == "10.1.0.2"
    assert ipam.allocate("10.1.0.0/29", "", "10.1.0.1", {"10.1.0.2"}) == "10.1.0.3"
    # after the last one handed out, then wrapping to the start
    assert ipam.allocate("10.1.0.0/29", "", "10.1.0.1", set(), after="10.1.0.4") == "10.1.0.5"
    assert ipam.allocate("10.1.0.0/29", "", "10.1.0.1", set(), after="10.1.0.6") == "10.1.0.2"
    full = {f"10.1.0.{i}" for i in range(2, 7)}
    with pytest.raises(IpamError, match="no available IPv4 addresses.*net1 is full"):
        ipam.allocate("10.1.0.0/29", "", "10.1.0.1", full, network="net1")


def test_allocation_within_ip_range():
    got = ipam.allocate("10.5.0.0/24", "10.5.0.128/25", "10.5.0.1", set())
    assert got == "10.5.0.128"
    assert ipam.usable("10.5.0.0/24", "10.5.0.128/25") == (ipam.ip_to_int("10.5.0.128"),
                                                           ipam.ip_to_int("10.5.0.254"))


def test_static_addresses():
    ipam.check_static("10.1.0.0/24", "10.1.0.1", "10.1.0.9", set(), "n")
    for ip, msg in (("10.2.0.9", "not in network n's subnet"),
                    ("10.1.0.1", "gateway"), ("10.1.0.255", "broadcast"),
                    ("10.1.0.0", "network")):
        with pytest.raises(IpamError, match=msg):
            ipam.check_static("10.1.0.0/24", "10.1.0.1", ip, set(), "n")
    with pytest.raises(IpamError, match="Address already in use"):
        ipam.check_static("10.1.0.0/24", "10.1.0.1", "10.1.0.9", {"10.1.0.9"}, "n")


def test_gateway_and_range_must_be_inside():
    with pytest.raises(IpamError, match="gateway 10.9.0.1"):
        ipam.check_in("10.1.0.0/16", "10.9.0.1", "gateway")
    with pytest.raises(IpamError, match="range 10.1.0.0/8"):
        ipam.check_range("10.1.0.0/16", "10.1.0.0/8")
    with pytest.raises(IpamError, match="too small"):
        ipam.default_gateway("10.1.0.0/31")


def test_macs():
    assert ipam.mac_for("172.17.0.2") == "02:42:ac:11:00:02"
    assert ipam.check_mac("02:42:AC:11:00:02") == "02:42:ac:11:00:02"
    for bad in ("01:42:ac:11:00:02", "02:42:ac:11:00", "zz:42:ac:11:00:02"):
        with pytest.raises(IpamError):
            ipam.check_mac(bad)


# --- DNS ---------------------------------------------------------------------------------

def query(name: str, qtype: int = dns.TYPE_A, qid: int = 0x1234) -> bytes:
    return struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + dns.encode_name(name) + \
        struct.pack(">HH", qtype, dns.CLASS_IN)


def parse_reply(data: bytes):
    qid, flags, qd, an, _ns, _ar = struct.unpack_from(">HHHHHH", data)
    q = dns.parse_query(data[:12].replace(data[2:4], b"\x01\x00", 1) + data[12:])
    offset, out = q.end, []
    for _ in range(an):
        _ptr, typ, _cls, ttl, size = struct.unpack_from(">HHHIH", data, offset)
        offset += 12
        rdata = data[offset:offset + size]
        offset += size
        out.append((typ, ttl, socket.inet_ntoa(rdata) if typ == dns.TYPE_A else rdata))
    return qid, flags & 0xF, out


def table():
    e = dns.Entry
    return dns.Names([
        e("c1", "n1", "10.1.0.2", ("web", "www", "c1c1c1c1c1c1"), False, True, ()),
        e("c2", "n1", "10.1.0.3", ("db",), False, True, ("192.0.2.53",)),
        e("c2", "n2", "10.2.0.3", ("db", "database"), True, True, ("192.0.2.53",)),
        e("c3", "n2", "10.2.0.4", ("other",), True, True, ()),
        e("c4", "bridge", "172.17.0.2", (), False, False, ()),
        e("c5", "bridge", "172.17.0.3", (), False, False, ()),
    ], {"n1": "front", "n2": "back"})


def test_names_of_the_askers_networks_only():
    names = table()
    reply, fwd = dns.answer(names, "10.1.0.3", query("WWW"))
    qid, rcode, answers = parse_reply(reply)
    assert (qid, rcode, fwd) == (0x1234, dns.NOERROR, None)
    assert answers == [(dns.TYPE_A, 0, "10.1.0.2")]       # TTL 0: never cached
    # c3 (only on n2) doesn't see web (on n1), but sees db through n2, by its alias too
    assert parse_reply(dns.answer(names, "10.2.0.4", query("web"))[0])[1] == dns.NXDOMAIN
    assert parse_reply(dns.answer(names, "10.2.0.4", query("database"))[0])[2] == \
        [(dns.TYPE_A, 0, "10.2.0.3")]
    # c2 is on both: db answers with its address on each network it shares with itself
    assert [a[2] for a in parse_reply(dns.answer(names, "10.1.0.2", query("db"))[0])[2]] == \
        ["10.1.0.3"]


def test_default_bridge_has_no_names_but_forwards():
    names = table()
    reply, fwd = dns.answer(names, "172.17.0.2", query("web"))
    assert reply is None and fwd[1] == ()        # forwarded to the host's resolvers
    reply, fwd = dns.answer(names, "172.17.0.2", query("c5"))
    assert reply is None


def test_internal_only_askers_are_not_forwarded_and_strangers_refused():
    names = table()
    assert parse_reply(dns.answer(names, "10.2.0.4", query("example.com"))[0])[1] == \
        dns.NXDOMAIN
    assert parse_reply(dns.answer(names, "10.9.9.9", query("web"))[0])[1] == dns.REFUSED
    # c2 is on one non-internal network: forwarded, to its own --dns servers
    reply, fwd = dns.answer(names, "10.2.0.3", query("example.com"))
    assert reply is None and fwd[1] == ("192.0.2.53",)


def test_aaaa_of_a_known_name_is_empty_not_forwarded():
    reply, fwd = dns.answer(table(), "10.1.0.3", query("web", dns.TYPE_AAAA))
    assert fwd is None and parse_reply(reply)[1:] == (dns.NOERROR, [])


def test_ptr_of_a_neighbour():
    reply, _ = dns.answer(table(), "10.1.0.3", query("2.0.1.10.in-addr.arpa", dns.TYPE_PTR))
    _qid, rcode, answers = parse_reply(reply)
    assert rcode == dns.NOERROR and answers[0][0] == dns.TYPE_PTR
    assert dns.encode_name("web.front") == answers[0][2]


@pytest.mark.parametrize("junk", [b"", b"\x00" * 5, b"\x12\x34\x81\x00" + b"\x00" * 8,
                                  query("a")[:-3], b"\x12\x34\x01\x00\x00\x02" + b"\x00" * 6,
                                  b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x40a"])
def test_hostile_queries_never_raise(junk):
    reply, fwd = dns.answer(table(), "10.1.0.3", junk)
    assert fwd is None
    if len(junk) >= 12:
        assert reply and reply[:2] == junk[:2] and reply[3] & 0xF == dns.FORMERR


def test_forwarder_matches_ids_and_servers_and_times_out():
    class Sock:
        def __init__(self):
            self.sent, self.inbox = [], []

        def sendto(self, data, addr):
            self.sent.append((data, addr))

        def recvfrom(self, n):
            return self.inbox.pop(0)

    sock = Sock()
    fwd = dns.Forwarder(sock, ("192.0.2.1", "192.0.2.2"))
    got = []
    q = query("example.com", qid=0x4242)
    fwd.forward(q, (), got.append)
    data, addr = sock.sent[0]
    assert addr == ("192.0.2.1", 53) and data[2:] == q[2:]
    upstream_id = data[:2]
    # a reply from the wrong server is ignored; the right one goes back with our id
    sock.inbox = [(upstream_id + b"\x81\x80junk", ("192.0.2.9", 53)),
                  (upstream_id + b"\x81\x80real", ("192.0.2.1", 53))]
    fwd.on_reply()
    assert got == []
    fwd.on_reply()
    assert got == [b"\x42\x42\x81\x80real"]
    # no answer: the next server, then SERVFAIL
    fwd.forward(q, (), got.append)
    fwd.tick(1e12)
    assert sock.sent[-1][1] == ("192.0.2.2", 53)
    fwd.tick(1e13)
    assert parse_reply(got[-1])[1] == dns.SERVFAIL and not fwd.pending


def test_host_resolvers(tmp_path):
    f = tmp_path / "resolv.conf"
    f.write_text("# c\nnameserver 10.0.0.1\nnameserver fe80::1\nsearch a.example b\n"
                 "options ndots:2 rotate\nnameserver 127.0.0.53\n")
    assert dns.host_resolvers(str(f)) == (["10.0.0.1", "127.0.0.53"], ["a.example", "b"],
                                          ["ndots:2", "rotate"])


# --- nf_tables rules -----------------------------------------------------------------------

def test_rules_isolate_networks_and_gate_the_host():
    post, fwd = nft.rules([("br-a", "10.1.0.0/16", False), ("br-b", "10.2.0.0/16", True)],
                          "tap0", "10.0.2.2", ["10.1.0.5"])
    assert len(post) == 1                           # only the non-internal one masquerades
    assert b"br-a" in post[0] and b"masq" in post[0]
    # established, host-gateway allow + drop, same-bridge accept x2, outbound for a only
    assert len(fwd) == 1 + 2 + 2 + 1
    outbound = [r for r in fwd if b"tap0" in r]
    assert len(outbound) == 1 and b"br-a" in outbound[0]
    assert not any(b"br-b" in r and b"tap0" in r for r in fwd)


def test_prefix_match_encoding():
    expr = nft.addr_in(12, "10.1.0.0/16")
    assert b"bitwise" in expr and struct.pack(">I", 0xFFFF0000) in expr
    assert b"bitwise" not in nft.addr_in(16, "10.0.2.2")


# --- the networks service's checks -----------------------------------------------------------

@pytest.fixture
def service(tmp_path):
    from pydocklite.networks import NetworkService
    from pydocklite.settings import Settings
    settings = Settings(data_root=tmp_path / "data", config_dir=tmp_path / "conf",
                        runtime_dir=tmp_path / "run")
    return NetworkService(settings)


def test_predefined_networks_and_create(service):
    names = [n.name for n in service.list()]
    assert names == ["bridge", "host", "none"]
    a = service.create("front", labels={"x": "1"})
    b = service.create("back", internal=True)
    assert (a.subnet, a.gateway, a.bridge) == ("172.18.0.0/16", "172.18.0.1",
                                              f"br-{a.id[:12]}")
    assert b.subnet == "172.19.0.0/16" and b.internal
    assert service.inspect(a.id[:5]).name == "front"
    assert [n.name for n in service.list({"label": ["x=1"]})] == ["front"]
    assert [n.name for n in service.list({"type": ["builtin"]})] == ["bridge", "host", "none"]


def test_create_refusals_leave_nothing(service):
    from pydocklite.errors import UsageError
    from pydocklite.networks import NetworkConflictError
    service.create("one", subnet="10.10.0.0/16")
    before = service.list()
    for kw, err, msg in (
            ({"name": "one"}, NetworkConflictError, "already exists"),
            ({"name": "two", "subnet": "10.10.5.0/24"}, IpamError, "overlaps"),
            ({"name": "two", "gateway": "10.0.0.1"}, UsageError, "needs --subnet"),
            ({"name": "two", "subnet": "10.11.0.0/16", "gateway": "10.12.0.1"}, IpamError,
             "gateway"),
            ({"name": "two", "driver": "overlay"}, UsageError, "not supported"),
            ({"name": "two", "options": {"com.docker.network.driver.mtu": "9"}}, UsageError,
             "mtu"),
            ({"name": "../x"}, UsageError, "invalid network name")):
        with pytest.raises(err, match=msg):
            service.create(**kw)
    assert service.list() == before


def test_remove_and_prune(service):
    from pydocklite.networks import NetworkConflictError, NetworkNotFoundError
    service.create("keep", labels={"ci": "1"})
    service.create("drop", labels={"ci": "1"})
    with pytest.raises(NetworkConflictError, match="pre-defined"):
        service.remove("bridge")
    with pytest.raises(NetworkNotFoundError):
        service.remove("nope")
    assert service.remove("keep") == "keep"
    assert service.prune({"label": ["ci=2"]}) == []
    assert service.prune({"label": ["ci=1"]}) == ["drop"]
    assert [n.name for n in service.list()] == ["bridge", "host", "none"]


# --- run/create flags ------------------------------------------------------------------------

def test_network_flags():
    from pydocklite.containers.netopts import NetworkChoice, parse
    o = parse()
    assert (o.mode, o.networks) == ("bridge", (NetworkChoice("bridge"),))
    o = parse(["front", "back"], aliases=["db"], ip="172.20.0.5")
    assert o.networks == (NetworkChoice("front", ("db",), "172.20.0.5"), NetworkChoice("back"))
    o = parse(["name=front,alias=a,alias=b,ip=10.1.0.9,mac-address=02:42:0a:01:00:09"])
    assert o.networks == (NetworkChoice("front", ("a", "b"), "10.1.0.9", "02:42:0a:01:00:09"),)
    o = parse(["container:web"])
    assert (o.mode, o.container, o.networks) == ("container", "web", ())
    assert parse(["host"]).mode == "host" and parse(["none"]).mode == "none"
    o = parse(add_hosts=["db:10.0.0.5", "h.internal:host-gateway"], dns=["1.1.1.1"],
              hostname="web", domainname="example.com")
    assert o.extra_hosts == (("db", "10.0.0.5"), ("h.internal", "host-gateway"))
    assert o.host_gateway and o.hostname == "web" and o.domainname == "example.com"


@pytest.mark.parametrize("kw, msg", [
    ({"networks": ["host", "front"]}, "can't be combined"),
    ({"networks": ["container:web"], "dns": ["1.1.1.1"]}, "container:NAME"),
    ({"networks": ["none"], "ip": "10.0.0.2"}, "need a bridge network"),
    ({"networks": ["a", "a"]}, "twice"),
    ({"ip": "10.0.0"}, "invalid --ip"),
    ({"mac": "01:00:00:00:00:01"}, "multicast"),
    ({"add_hosts": ["nohost"]}, "NAME:IP"),
    ({"add_hosts": ["x:fe80::1"]}, "IPv6"),
    ({"add_hosts": ["bad name:10.0.0.1"]}, "--add-host name"),
    ({"dns": ["dns.example"]}, "invalid --dns"),
    ({"hostname": "-bad"}, "invalid --hostname"),
    ({"networks": ["name=x,color=red"]}, "invalid --network"),
])
def test_network_flag_errors(kw, msg):
    from pydocklite.containers.netopts import parse
    with pytest.raises(Exception, match=msg):
        parse(**kw)


# --- /etc files --------------------------------------------------------------------------------

def test_hosts_file():
    from pydocklite.nshost.etcfiles import hosts_file
    text = hosts_file("web", "", ["172.18.0.2"], [("db", "10.0.0.5")])
    lines = text.splitlines()
    assert lines[0] == "127.0.0.1\tlocalhost" and "ff02::2\tip6-allrouters" in lines
    assert lines[-2:] == ["10.0.0.5\tdb", "172.18.0.2\tweb"]
    assert hosts_file("web", "example.com", ["10.1.0.2"]).endswith(
        "10.1.0.2\tweb.example.com web\n")
    assert hosts_file("h", "", [], host_hosts="1.2.3.4 x").startswith("1.2.3.4 x\n")


def test_resolv_conf():
    from pydocklite.nshost.etcfiles import resolv_conf
    host = (["127.0.0.53", "10.255.255.53"], ["corp.example"], ["edns0"])
    user = resolv_conf("user", host, gateways=["172.18.0.1", "172.19.0.1"])
    assert "nameserver 172.18.0.1\nnameserver 172.19.0.1\n" in user
    assert "search corp.example\n" in user and "options ndots:0 edns0\n" in user
    bridge = resolv_conf("bridge", host, gateways=["172.17.0.1"])
    assert "nameserver 10.255.255.53\n" in bridge and "127.0.0.53" not in bridge
    # only loopback resolvers on the host: the bridge's gateway forwards to them
    assert "nameserver 172.17.0.1\n" in resolv_conf("bridge", (["127.0.0.53"], [], []),
                                                   gateways=["172.17.0.1"])
    mine = resolv_conf("bridge", host, dns=["9.9.9.9"], search=["a.example"],
                       options=["ndots:2"], gateways=["172.17.0.1"])
    assert "nameserver 9.9.9.9\nsearch a.example\noptions ndots:2\n" in mine
    assert "options ndots:3\n" in resolv_conf("user", host, options=["ndots:3"],
                                              gateways=["172.18.0.1"])
    assert resolv_conf("host", host, host_text="nameserver 127.0.0.53\n") == \
        "nameserver 127.0.0.53\n"


def test_network_options_from_the_engine_api():
    from pydocklite.containers.netopts import NetworkChoice, from_api
    # what Compose sends: the project's network as NetworkMode, the service's aliases
    o = from_api({"NetworkMode": "proj_default", "Dns": ["9.9.9.9"],
                  "ExtraHosts": ["h:host-gateway"]},
                 {"EndpointsConfig": {"proj_default": {"Aliases": ["db", "proj-db-1"]},
                                      "other": {"IPAMConfig": {"IPv4Address": "10.5.0.9"}}}},
                 {"Hostname": "abc", "Domainname": ""})
    assert o.mode == "bridge" and o.dns == ("9.9.9.9",) and o.host_gateway
    assert o.networks == (NetworkChoice("proj_default", ("db", "proj-db-1")),
                          NetworkChoice("other", (), "10.5.0.9"))
    assert o.hostname == "abc"
    assert from_api({}, None, {}).networks == (NetworkChoice("bridge"),)
    assert from_api({"NetworkMode": "host"}, {}, {}).mode == "host"
    assert from_api({"NetworkMode": "container:abc"}, {}, {}).container == "abc"
    with pytest.raises(Exception, match="ExtraHosts"):
        from_api({"ExtraHosts": "x:1.2.3.4"}, {}, {})
