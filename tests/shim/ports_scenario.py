"""Port forwarding end to end, run AS THE TEST USER by tests/shim/test_ports.py.

A child `unshare -Urn` (new user + network namespace, loopback up) runs echo servers on
127.0.0.1:80 (TCP and UDP) and a greeter on :81 inside it. The forwarder publishes them on
free host ports of 127.0.0.1 and the checks go through it. Mode "pid": the helper enters
the namespaces of the server's pid; mode "fork": the process inside the namespace runs
serve_helper itself on an inherited socket. Prints "OK {json}" when every check passed.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

from pydocklite.shim.ports import (PortError, PortForwarder, parse_publish,
                                   start_netns_helper, unprivileged_port_start)

SERVER = r'''
import os, socket, sys, threading
def echo(c):
    with c:
        while True:
            d = c.recv(1 << 16)
            if not d:
                break
            c.sendall(d)
def tcp(port, handler):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port)); s.listen(128)
    def loop():
        while True:
            c, _ = s.accept()
            threading.Thread(target=handler, args=(c,), daemon=True).start()
    threading.Thread(target=loop, daemon=True).start()
def greet(c):
    with c:
        c.sendall(b"hello from the netns\n")
tcp(80, echo)
tcp(81, greet)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 80))
def uloop():
    while True:
        d, a = u.recvfrom(65535)
        u.sendto(b"echo:" + d, a)
threading.Thread(target=uloop, daemon=True).start()
print("ready", flush=True)
if len(sys.argv) > 1:
    from pydocklite.shim.port_helper import serve_helper
    serve_helper(socket.socket(fileno=int(sys.argv[1])))
else:
    sys.stdin.read()
'''


def start_netns(helper_fd=None):
    argv = ["unshare", "-Urn", "sh", "-c", 'ip link set lo up && exec "$0" "$@"',
            sys.executable, "-c", SERVER]
    if helper_fd is not None:
        argv.append(str(helper_fd))
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         pass_fds=() if helper_fd is None else (helper_fd,))
    assert p.stdout.readline() == b"ready\n", "server in the namespace did not start"
    return p


def echo_check(port, size, results, idx):
    data = os.urandom(size)
    with socket.create_connection(("127.0.0.1", port), timeout=20) as c:
        got = bytearray()

        def send():
            c.sendall(data)
            c.shutdown(socket.SHUT_WR)           # half-close must reach the server
        t = threading.Thread(target=send)
        t.start()
        while True:
            chunk = c.recv(1 << 16)
            if not chunk:
                break
            got += chunk
        t.join()
    results[idx] = bytes(got) == data


def main(mode, use_splice=None):
    stats = {}
    if mode == "pid":
        server = start_netns()
        helper = start_netns_helper(server.pid)
        helper_sock = helper.sock
    else:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        server = start_netns(child.fileno())
        child.close()
        helper, helper_sock = None, parent
    mappings = parse_publish("80") + parse_publish("81") + parse_publish("80/udp") \
        + parse_publish("127.0.0.1::82")
    fwd = PortForwarder(mappings, helper_sock, udp_idle_timeout=0.5, use_splice=use_splice)
    bound = fwd.start()
    ports = {(m.container_port, m.protocol): m.host_port for m in bound}
    assert all(m.host_ip == "127.0.0.1" and m.host_port > 0 for m in bound), bound

    # greeting (server speaks first, then closes)
    with socket.create_connection(("127.0.0.1", ports[81, "tcp"]), timeout=10) as c:
        assert c.makefile("rb").read() == b"hello from the netns\n"

    # one connection that stalls (never reads its echo) must not block the others
    stalled = socket.create_connection(("127.0.0.1", ports[80, "tcp"]), timeout=10)
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.setblocking(False)
    try:
        for _ in range(200):
            stalled.send(b"x" * 65536)
    except BlockingIOError:
        pass  # all buffers along the path are full now
    t0 = time.monotonic()
    results = [False] * 24
    threads = [threading.Thread(target=echo_check, args=(ports[80, "tcp"], 256 * 1024 + i, results, i))
               for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(results), results
    stats["concurrent_24x256k_s"] = round(time.monotonic() - t0, 3)
    stalled.close()

    # a big transfer, both directions at once
    res = [False]
    t0 = time.monotonic()
    echo_check(ports[80, "tcp"], 32 << 20, res, 0)
    assert res[0]
    stats["echo_32MiB_MBps"] = round(64 / (time.monotonic() - t0), 1)

    # nothing listens on 82 inside: the client's connection is closed, promptly
    with socket.create_connection(("127.0.0.1", ports[82, "tcp"]), timeout=10) as c:
        try:
            assert c.recv(10) == b""
        except ConnectionResetError:
            pass
    assert fwd.counters["tcp_refused"] >= 1

    # UDP: two clients, each gets its own replies
    clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    for k, u in enumerate(clients):
        u.settimeout(5)
        for i in range(5):
            u.sendto(b"c%d-%d" % (k, i), ("127.0.0.1", ports[80, "udp"]))
    for k, u in enumerate(clients):
        got = sorted(u.recvfrom(100)[0] for _ in range(5))
        assert got == sorted(b"echo:c%d-%d" % (k, i) for i in range(5)), got
    assert len(fwd._udp) == 2
    deadline = time.monotonic() + 5
    while fwd._udp and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not fwd._udp, "idle UDP sessions were not expired"
    clients[0].sendto(b"again", ("127.0.0.1", ports[80, "udp"]))
    assert clients[0].recvfrom(100)[0] == b"echo:again"   # a new session after expiry
    for u in clients:
        u.close()

    # a privileged host port: a clear error naming the sysctl
    start = unprivileged_port_start()
    if os.geteuid() != 0 and start > 80:
        try:
            PortForwarder(parse_publish("127.0.0.1:80:80"), helper_sock).start()
            raise AssertionError("binding port 80 unprivileged should fail")
        except PortError as exc:
            assert "net.ipv4.ip_unprivileged_port_start" in str(exc), exc
            stats["privileged_error"] = str(exc)

    # an allocated port: Docker's message
    try:
        PortForwarder(parse_publish(f"127.0.0.1:{ports[80, 'tcp']}:80"), helper_sock).start()
        raise AssertionError("double bind should fail")
    except PortError as exc:
        assert "port is already allocated" in str(exc), exc

    # the container restarts in a new namespace: same listeners, new helper
    server.kill()
    server.wait()
    if helper is not None:
        helper.close()
        server = start_netns()
        helper = start_netns_helper(server.pid)
        new_sock = helper.sock
    else:
        helper_sock.close()
        new_sock, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        server = start_netns(child.fileno())
        child.close()
        helper_sock = new_sock
    with socket.create_connection(("127.0.0.1", ports[81, "tcp"]), timeout=10) as c:
        assert c.recv(100) == b""          # helper gone: connections are closed at once
    fwd.replace_helper(new_sock)
    res = [False]
    echo_check(ports[80, "tcp"], 100000, res, 0)
    assert res[0], "no forwarding after replace_helper"

    fwd.close()
    try:
        socket.create_connection(("127.0.0.1", ports[80, "tcp"]), timeout=2).close()
        raise AssertionError("listener still open after close()")
    except ConnectionRefusedError:
        pass
    if helper is not None:
        helper.close()
    else:
        helper_sock.close()
    server.kill()
    server.wait()
    stats["counters"] = fwd.counters
    print("OK " + json.dumps(stats), flush=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "pid",
         False if sys.argv[2:] == ["nosplice"] else None)
