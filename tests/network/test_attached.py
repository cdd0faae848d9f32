"""Containers on networks, end to end: the built tool as the unprivileged test user, the
real namespace host (user + mount + network namespaces, bridges, veths, nf_tables, DNS,
slirp4netns), busybox from the test registry. What the issue asks: names and aliases
across a user network, isolation between networks, --internal, connect/disconnect of a
running container, container:NAME, published ports from a user network, the host killed
mid-run, 30 containers at once without leaks, ten containers sharing one image mount, the
CI runner's service-container sequence."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests import unpriv
from tests.fixtures.cli_runner import ok
from tests.fixtures.nshost import holdings, host_links, host_state, is_host_process

SERVE = "mkdir -p /www && echo hello-from-$(hostname) > /www/index.html && exec httpd -f -p 80 -h /www"


def wait_for(check, timeout: float = 10.0, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got or time.monotonic() >= deadline:
            return got
        time.sleep(step)


def net_leftovers(home: Path) -> dict:
    """What removed containers could leak: endpoints, veths, held image mounts, processes
    (other than the namespace host's own two), mounts on the host (a few seconds to settle:
    a dying network namespace takes its veths along asynchronously)."""
    def look():
        return dict(holdings(home), processes=[
            cmd for _pid, cmd in unpriv.user_processes()
            if str(home) in cmd and not is_host_process(cmd)],
            mounts=[ln for ln in Path("/proc/mounts").read_text().splitlines()
                    if str(home) in ln])
    return wait_for(lambda: None if any(look().values()) else look(), timeout=5) or look()


NOTHING = {"endpoints": [], "veths": [], "lowers": [], "processes": [], "mounts": []}


def get(url: str) -> str:
    """A shell command printing the body of `url` (http://HOST[:PORT]/PATH), failing unless
    the answer is a 200. busybox's nc, not its wget: the static wget of Debian's
    busybox-static crashes in glibc's resolver without the image's NSS libraries."""
    rest = url.split("://", 1)[1]
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.partition(":")
    return (f"printf 'GET /{path} HTTP/1.0\\r\\nHost: {host}\\r\\n\\r\\n' | "
            f"nc -w 3 {host} {port or 80} > /tmp/r && grep -q '^HTTP/1.[01] 200' /tmp/r && "
            "sed '1,/^\\r*$/d' /tmp/r")


def fetch(cli, busybox, network: str, url: str, *extra) -> subprocess.CompletedProcess:
    return cli("run", "--rm", "--network", network, *extra, busybox, "sh", "-c", get(url))


def exec_get(cli, name: str, url: str) -> subprocess.CompletedProcess:
    return cli("exec", name, "sh", "-c", get(url))


def inspect(cli, name: str) -> dict:
    return json.loads(ok(cli("inspect", name)).stdout)[0]


def test_names_aliases_and_isolation(cli, busybox):
    ok(cli("network", "create", "appnet"))
    ok(cli("network", "create", "othernet"))
    cid = ok(cli("run", "-d", "--name", "web", "--network", "appnet", "--network-alias", "www",
                 "--hostname", "web", busybox, "sh", "-c", SERVE)).stdout.strip()
    web = inspect(cli, "web")
    ep = web["NetworkSettings"]["Networks"]["appnet"]
    assert ep["IPAddress"].startswith("172.18.") and ep["Gateway"] == "172.18.0.1"
    assert ep["IPPrefixLen"] == 16 and "www" in ep["Aliases"] and ep["EndpointID"]
    assert ep["MacAddress"] == "02:42:" + ":".join(f"{int(x):02x}" for x in
                                                   ep["IPAddress"].split("."))
    for name in ("web", "www", cid[:12]):
        r = wait_for(lambda: ok_or_none(fetch(cli, busybox, "appnet", f"http://{name}/")))
        assert r is not None and r.stdout == "hello-from-web\n", name
    # another network: no name, no route to its address
    r = fetch(cli, busybox, "othernet", "http://web/")
    assert r.returncode != 0 and "bad address" in r.stderr + r.stdout
    r = fetch(cli, busybox, "othernet", f"http://{ep['IPAddress']}/")
    assert r.returncode != 0
    # the default bridge: reachable by address only (Docker's), not by name
    r = fetch(cli, busybox, "bridge", "http://web/")
    assert r.returncode != 0
    # a container on both networks reaches web; its resolv.conf names both gateways
    r = ok(cli("run", "--rm", "--network", "othernet", "--network", "appnet", busybox, "sh",
               "-c", get("http://www/") + " && cat /etc/resolv.conf && ip -o addr"))
    assert "hello-from-web" in r.stdout and "nameserver 172.19.0.1" in r.stdout
    assert "nameserver 172.18.0.1" in r.stdout and "options ndots:0" in r.stdout
    assert "eth0" in r.stdout and "eth1" in r.stdout
    ok(cli("rm", "-f", "web"))
    r = cli("network", "rm", "appnet", "othernet")
    assert r.returncode == 0, r.stderr
    assert net_leftovers(cli.home) == NOTHING
    assert [n for n in host_links(cli.home) if n.startswith("br-")] == []


def ok_or_none(r):
    return r if r.returncode == 0 else None


def test_etc_files_and_inspect(cli, busybox):
    ok(cli("network", "create", "--subnet", "10.91.0.0/24", "fixed"))
    ok(cli("run", "-d", "--name", "c1", "--network", "fixed", "--ip", "10.91.0.50",
           "--hostname", "box", "--domainname", "example.test",
           "--add-host", "db.local:10.1.2.3", "--dns-search", "corp.test",
           "--dns-option", "attempts:2", busybox, "sleep", "300"))
    hosts = ok(cli("exec", "c1", "cat", "/etc/hosts")).stdout
    assert hosts.splitlines()[0] == "127.0.0.1\tlocalhost"
    assert "10.1.2.3\tdb.local\n" in hosts
    assert hosts.endswith("10.91.0.50\tbox.example.test box\n")
    resolv = ok(cli("exec", "c1", "cat", "/etc/resolv.conf")).stdout
    assert "nameserver 10.91.0.1\n" in resolv and "search corp.test\n" in resolv
    assert "options ndots:0 attempts:2\n" in resolv
    assert ok(cli("exec", "c1", "hostname")).stdout == "box\n"
    assert ok(cli("exec", "c1", "cat", "/etc/hostname")).stdout == "box\n"
    st = inspect(cli, "c1")
    assert st["NetworkSettings"]["Networks"]["fixed"]["IPAddress"] == "10.91.0.50"
    assert st["NetworkSettings"]["Networks"]["fixed"]["IPAMConfig"] == \
        {"IPv4Address": "10.91.0.50"}
    assert st["HostConfig"]["NetworkMode"] == "fixed"
    assert st["HostConfig"]["ExtraHosts"] == ["db.local:10.1.2.3"]
    assert st["Config"]["Domainname"] == "example.test"
    net = json.loads(ok(cli("network", "inspect", "fixed")).stdout)[0]
    assert [(c["Name"], c["IPv4Address"]) for c in net["Containers"].values()] == \
        [("c1", "10.91.0.50/24")]
    # the same address again: refused with Docker's words, nothing left half made
    r = cli("run", "-d", "--name", "c2", "--network", "fixed", "--ip", "10.91.0.50", busybox,
            "sleep", "300")
    assert r.returncode == 125 and "Address already in use" in r.stderr
    assert len(host_state(cli.home)["endpoints"]) == 1
    ok(cli("stop", "-t", "0", "c1"))
    stopped = inspect(cli, "c1")["NetworkSettings"]["Networks"]["fixed"]
    assert stopped["IPAddress"] == "" and stopped["NetworkID"] == net["Id"]
    ok(cli("rm", "-f", "c1", "c2"))
    assert net_leftovers(cli.home) == NOTHING


def test_exhausted_range_is_a_clear_error(cli, busybox):
    ok(cli("network", "create", "--subnet", "10.92.0.0/29", "tiny"))   # 5 addresses
    for i in range(5):
        ok(cli("run", "-d", "--name", f"t{i}", "--network", "tiny", busybox, "sleep", "300"))
    r = cli("run", "-d", "--name", "t5", "--network", "tiny", busybox, "sleep", "300")
    assert r.returncode == 125 and "no available IPv4 addresses" in r.stderr
    assert len(host_state(cli.home)["endpoints"]) == 5
    ok(cli("rm", "-f", *[f"t{i}" for i in range(6)]))
    assert net_leftovers(cli.home) == NOTHING


def test_internal_network_and_host_gateway(cli, busybox, registry):
    """The test registry listens on the host's loopback: reachable through host-gateway
    from a normal network, not from an internal one, and not without asking."""
    port = registry.host.rpartition(":")[2]
    url = f"http://reg:{port}/v2/"
    ok(cli("network", "create", "open"))
    ok(cli("network", "create", "--internal", "closed"))
    r = fetch(cli, busybox, "open", url, "--add-host", "reg:host-gateway")
    assert r.returncode == 0, r.stderr
    r = fetch(cli, busybox, "closed", url, "--add-host", "reg:host-gateway")
    assert r.returncode != 0
    gw = host_state(cli.home)["host_gateway"]
    r = fetch(cli, busybox, "open", f"http://{gw}:{port}/v2/")       # not asked for
    assert r.returncode != 0
    r = ok(cli("run", "--rm", "--network", "closed", busybox, "ip", "route"))
    assert "default" not in r.stdout
    assert net_leftovers(cli.home) == NOTHING


def test_connect_disconnect_running(cli, busybox):
    ok(cli("network", "create", "n1"))
    ok(cli("network", "create", "n2"))
    ok(cli("run", "-d", "--name", "svc", "--network", "n2", "--hostname", "svc", busybox,
           "sh", "-c", SERVE))
    ok(cli("run", "-d", "--name", "app", "--network", "n1", busybox, "sleep", "300"))
    r = exec_get(cli, "app", "http://svc/")
    assert r.returncode != 0
    ok(cli("network", "connect", "--alias", "backend", "n2", "app"))
    nets = inspect(cli, "app")["NetworkSettings"]["Networks"]
    assert sorted(nets) == ["n1", "n2"] and nets["n2"]["IPAddress"]
    assert "backend" in nets["n2"]["Aliases"]
    r = ok(exec_get(cli, "app", "http://svc/"))
    assert r.stdout == "hello-from-svc\n"
    # svc sees app by its new alias on n2
    gateway = inspect(cli, "svc")["NetworkSettings"]["Networks"]["n2"]["Gateway"]
    r = ok(cli("exec", "svc", "nslookup", "backend", gateway))
    assert nets["n2"]["IPAddress"] in r.stdout
    r = cli("network", "connect", "n2", "app")
    assert r.returncode != 0 and "already" in r.stderr
    ok(cli("network", "disconnect", "n2", "app"))
    assert sorted(inspect(cli, "app")["NetworkSettings"]["Networks"]) == ["n1"]
    r = exec_get(cli, "app", "http://svc/")
    assert r.returncode != 0
    r = cli("network", "disconnect", "n2", "app")
    assert r.returncode != 0 and "is not connected" in r.stderr
    # a stopped container: recorded, attached when it starts
    ok(cli("stop", "-t", "0", "app"))
    ok(cli("network", "connect", "n2", "app"))
    ok(cli("start", "app"))
    assert sorted(inspect(cli, "app")["NetworkSettings"]["Networks"]) == ["n1", "n2"]
    ok(exec_get(cli, "app", "http://svc/"))
    r = cli("network", "rm", "n2")
    assert r.returncode != 0 and "active endpoints" in r.stderr
    ok(cli("rm", "-f", "svc", "app"))
    ok(cli("network", "rm", "n1", "n2"))
    assert net_leftovers(cli.home) == NOTHING


def test_container_network_mode_and_ports(cli, busybox):
    ok(cli("network", "create", "pnet"))
    port = free_port()
    ok(cli("run", "-d", "--name", "app", "--network", "pnet", "-p", f"{port}:80",
           "--hostname", "app", busybox, "sh", "-c", SERVE))
    body = wait_for(lambda: http_get(port), timeout=15)
    assert body == b"hello-from-app\n"
    # a sidecar in app's network namespace: same loopback, same addresses
    r = ok(cli("run", "--rm", "--network", "container:app", busybox, "sh", "-c",
               get("http://127.0.0.1/") + " && ip -o addr"))
    assert "hello-from-app" in r.stdout
    app_ip = inspect(cli, "app")["NetworkSettings"]["Networks"]["pnet"]["IPAddress"]
    assert app_ip in r.stdout
    r = cli("run", "--rm", "--network", "container:app", "-p", "9999:80", busybox, "true")
    assert r.returncode == 125 and "conflicting options" in r.stderr
    r = cli("run", "--rm", "--network", "container:nope", busybox, "true")
    assert r.returncode == 125 and "nope" in r.stderr
    # none and host modes
    assert ok(cli("run", "--rm", "--network", "none", busybox, "ls",
                  "/sys/class/net")).stdout.split() == ["lo"]
    ok(cli("rm", "-f", "app"))
    assert net_leftovers(cli.home) == NOTHING


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port: int):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=3) as r:
            return r.read()
    except OSError:
        return None


def test_ci_runner_service_container_sequence(cli, busybox):
    """What a CI runner does for a job with service containers."""
    label = "com.example.ci.job=42"
    net = ok(cli("network", "create", "--label", label, "job42")).stdout.strip()
    ok(cli("create", "--name", "svc", "--network", "job42", "--network-alias", "db",
           "--hostname", "db", busybox, "sh", "-c", SERVE))
    ok(cli("start", "svc"))
    r = wait_for(lambda: ok_or_none(fetch(cli, busybox, net, "http://db/")))
    assert r is not None and r.stdout == "hello-from-db\n"
    ok(cli("rm", "-f", "svc"))
    ok(cli("network", "rm", "job42"))
    ok(cli("network", "create", "--label", label, "job43"))
    ok(cli("network", "create", "--label", "other=1", "keepme"))
    r = ok(cli("network", "prune", "--force", "--filter", f"label={label}"))
    assert r.stdout == "Deleted Networks:\njob43\n"
    assert "keepme" in ok(cli("network", "ls")).stdout
    assert net_leftovers(cli.home) == NOTHING


def test_thirty_containers_at_once_leave_nothing(cli, busybox):
    ok(cli("network", "create", "crowd"))
    procs = [cli.popen("run", "-d", "--name", f"m{i}", "--network", "crowd", busybox,
                       "sleep", "300", stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True) for i in range(30)]
    for p in procs:
        _out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    st = host_state(cli.home)
    ips = sorted(ep["ip"] for ep in st["endpoints"].values())
    assert len(ips) == 30 == len(set(ips))
    assert len([n for n in host_links(cli.home) if n.startswith("veth")]) == 30
    # they see each other by name
    r = ok(cli("exec", "m0", "nslookup", "m29", st["networks"][next(iter(st["networks"]))]
               ["gateway"]))
    assert inspect(cli, "m29")["NetworkSettings"]["Networks"]["crowd"]["IPAddress"] in r.stdout
    ok(cli("rm", "-f", *[f"m{i}" for i in range(30)], timeout=300))
    ok(cli("network", "rm", "crowd"))
    assert net_leftovers(cli.home) == NOTHING


def test_ten_containers_share_one_image_mount(cli, busybox):
    linger = {"PYDOCKLITE_LOWER_LINGER": "2"}      # the host takes it from its first client
    for i in range(10):
        ok(cli("run", "-d", "--name", f"s{i}", busybox, "sleep", "300", env=linger))
    st = host_state(cli.home)
    assert len(st["lowers"]) == 1
    [lower] = st["lowers"].values()
    assert sorted(lower["holders"]) == sorted(inspect(cli, f"s{i}")["Id"] for i in range(10))
    pause = st["pause_pid"]
    mounts = Path(f"/proc/{pause}/mountinfo").read_text()
    assert mounts.count("pydocklite-lower") == 1
    # one FUSE server for the ten: no per-container server
    fuse = [cmd for _pid, cmd in unpriv.user_processes() if str(cli.home) in cmd
            and "__shim" not in cmd and "__nshost" not in cmd and "nshost-pause" not in cmd
            and "slirp4netns" not in cmd]
    assert fuse == [], fuse
    ok(cli("rm", "-f", "s0", "s1", "s2", "s3", "s4"))
    assert len(host_state(cli.home)["lowers"]) == 1        # still held by five
    ok(cli("rm", "-f", "s5", "s6", "s7", "s8", "s9"))
    assert net_leftovers(cli.home) == NOTHING
    # unused, the lower lingers for the image's next container, then goes
    assert wait_for(lambda: "pydocklite-lower" not in
                    Path(f"/proc/{pause}/mountinfo").read_text(), timeout=10)
    assert wait_for(lambda: host_state(cli.home)["lowers"] == {})   # (saved after the unmount)
    assert wait_for(lambda: not Path(f"/proc/{lower['pid']}").exists())    # killed, reaped


def test_lower_lingers_then_goes(cli, busybox):
    """The `run --rm` of a loop: the image's lower outlives its last container for
    PYDOCKLITE_LOWER_LINGER seconds, the next container takes it over (same server, page
    cache warm), and the linger ended, the server and its mount go."""
    linger = {"PYDOCKLITE_LOWER_LINGER": "3"}
    ok(cli("run", "--rm", busybox, "true", env=linger))
    st = host_state(cli.home)
    [lower] = st["lowers"].values()
    assert lower["holders"] == {} and lower["unused_since"] > 0
    pause = st["pause_pid"]
    assert Path(f"/proc/{lower['pid']}").exists()
    assert Path(f"/proc/{pause}/mountinfo").read_text().count("pydocklite-lower") == 1
    ok(cli("run", "-d", "--name", "again", busybox, "sleep", "300"))
    [again] = host_state(cli.home)["lowers"].values()
    assert again["pid"] == lower["pid"] and list(again["holders"]) == \
        [inspect(cli, "again")["Id"]] and again["unused_since"] == 0
    time.sleep(4)                      # held: the linger doesn't run under a container
    assert "root" in ok(cli("exec", "again", "cat", "/etc/passwd")).stdout
    ok(cli("rm", "-f", "again"))
    t0 = time.monotonic()
    assert wait_for(lambda: host_state(cli.home)["lowers"] == {}, timeout=10)
    assert time.monotonic() - t0 >= 1.5          # it lingered (3 s, swept once a second)
    assert wait_for(lambda: not Path(f"/proc/{lower['pid']}").exists())    # killed, reaped
    assert "pydocklite-lower" not in Path(f"/proc/{pause}/mountinfo").read_text()
    assert net_leftovers(cli.home) == NOTHING


def test_host_killed_mid_run(cli, busybox):
    ok(cli("network", "create", "hk"))
    port = free_port()
    ok(cli("run", "-d", "--name", "svc", "--network", "hk", "-p", f"{port}:80",
           "--hostname", "svc", busybox, "sh", "-c", SERVE))
    ok(cli("run", "-d", "--name", "client", "--network", "hk", busybox, "sleep", "600"))
    assert wait_for(lambda: http_get(port), timeout=15) == b"hello-from-svc\n"
    old = host_state(cli.home)
    os.kill(old["pid"], signal.SIGKILL)
    # the containers keep running: their files, their published port, each other by address
    assert http_get(port) == b"hello-from-svc\n"
    svc_ip = inspect(cli, "svc")["NetworkSettings"]["Networks"]["hk"]["IPAddress"]
    ok(exec_get(cli, "client", f"http://{svc_ip}/"))
    # the next command restores: a new host in the same namespaces, names answered again
    r = ok(cli("ps"))
    new = host_state(cli.home)
    assert new["pid"] != old["pid"] and new["pause_pid"] == old["pause_pid"]
    assert "lost their network" not in r.stderr
    r = ok(exec_get(cli, "client", "http://svc/"))
    assert r.stdout == "hello-from-svc\n"
    # now the host AND its pause: the network namespace goes (nothing else holds it: the
    # image mount's server is killed too), the containers run on without their network
    st = host_state(cli.home)
    for pid in [st["pid"], st["pause_pid"]] + [lw["pid"] for lw in st["lowers"].values()]:
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)
    r = ok(cli("ps"))
    assert "lost their network" in r.stderr and "svc" in r.stderr and "client" in r.stderr
    assert "restart" in r.stderr
    assert "lost their network" not in ok(cli("ps")).stderr        # said once
    ok(cli("restart", "-t", "0", "svc", "client"))
    r = wait_for(lambda: ok_or_none(exec_get(cli, "client", "http://svc/")))
    assert r is not None and r.stdout == "hello-from-svc\n"
    ok(cli("rm", "-f", "svc", "client"))
    assert net_leftovers(cli.home) == NOTHING


@pytest.mark.parametrize("tool", ["slirp4netns", "pasta"])
def test_outbound_through_the_host(cli, busybox, tool):
    """One outbound helper for every container, of the tool asked for; a container reaches
    the host's loopback through host-gateway (a server started here)."""
    import shutil
    if not shutil.which(tool):
        pytest.skip(f"{tool} is not installed here")
    env = {"PYDOCKLITE_OUTBOUND": tool, "PYDOCKLITE_NSHOST_IDLE": "1"}
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(4)
        port = srv.getsockname()[1]
        p = cli.popen("run", "--rm", "--add-host", "thehost:host-gateway", busybox, "sh", "-c",
                      f"echo ping | nc -w 3 thehost {port}; ip route", env=env,
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        srv.settimeout(20)
        conn, _ = srv.accept()
        assert conn.recv(16) == b"ping\n"
        conn.close()
        out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert "default via 172.17.0.1" in out
    st = host_state(cli.home)
    assert st["outbound"] == tool
    pause = st["pause_pid"]
    helpers = [pid for pid, cmd in unpriv.user_processes()
               if cmd.startswith(tool) and f"/proc/{pause}/" in cmd
               or cmd.startswith(tool) and pid == st["outbound_pid"]]
    assert helpers == [st["outbound_pid"]]
    # the host goes when idle (here after 1 s), and its outbound helper with it
    assert wait_for(lambda: not host_state(cli.home), timeout=15)
    assert wait_for(lambda: not any(pid == st["outbound_pid"]
                                    for pid, _cmd in unpriv.user_processes()), timeout=5)


def test_no_outbound_when_turned_off(cli, busybox):
    """PYDOCKLITE_OUTBOUND=none: no helper; containers still reach each other."""
    env = {"PYDOCKLITE_OUTBOUND": "none"}
    ok(cli("run", "-d", "--name", "peer", "--hostname", "peer", busybox, "sh", "-c", SERVE,
           env=env))
    ip = inspect(cli, "peer")["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
    r = wait_for(lambda: ok_or_none(fetch(cli, busybox, "bridge", f"http://{ip}/")))
    assert r is not None and r.stdout == "hello-from-peer\n"
    st = host_state(cli.home)
    assert st["outbound"] == "" and "PYDOCKLITE_OUTBOUND=none" in st["outbound_why"]
    assert "tap0" not in host_links(cli.home)
    ok(cli("rm", "-f", "peer"))
    assert net_leftovers(cli.home) == NOTHING


def test_rename_is_answered_at_once(cli, busybox):
    ok(cli("network", "create", "rn"))
    ok(cli("run", "-d", "--name", "old", "--network", "rn", "--hostname", "web", busybox,
           "sh", "-c", SERVE))
    assert wait_for(lambda: ok_or_none(fetch(cli, busybox, "rn", "http://old/")))
    ok(cli("rename", "old", "new"))
    r = fetch(cli, busybox, "rn", "http://new/")
    assert r.returncode == 0 and r.stdout == "hello-from-web\n", r.stderr
    assert fetch(cli, busybox, "rn", "http://old/").returncode != 0
    ok(cli("rm", "-f", "new"))
    assert net_leftovers(cli.home) == NOTHING


def test_hostile_dns_clients_do_not_take_the_host_down(cli, busybox):
    """A container that floods the DNS server with junk and holds TCP connections open: the
    host keeps answering the others."""
    ok(cli("network", "create", "dnsnet"))
    ok(cli("run", "-d", "--name", "target", "--network", "dnsnet", busybox, "sleep", "300"))
    gw = json.loads(ok(cli("network", "inspect", "dnsnet")).stdout)[0]["IPAM"]["Config"][0][
        "Gateway"]
    ok(cli("run", "-d", "--name", "flood", "--network", "dnsnet", busybox, "sh", "-c",
           f"for i in $(seq 60); do (sleep 30 | nc {gw} 53 &) ; done; "
           f"while :; do head -c 600 /dev/urandom | nc -u -w 1 {gw} 53; done"))
    time.sleep(2)
    r = ok(cli("run", "--rm", "--network", "dnsnet", busybox, "nslookup", "target", gw))
    assert inspect(cli, "target")["NetworkSettings"]["Networks"]["dnsnet"]["IPAddress"] in \
        r.stdout
    st = host_state(cli.home)
    fds = len(list(Path(f"/proc/{st['pid']}/fd").iterdir()))
    assert fds < 80, f"the host holds {fds} descriptors"
    ok(cli("rm", "-f", "target", "flood"))
    assert net_leftovers(cli.home) == NOTHING
