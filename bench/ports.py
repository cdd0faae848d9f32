#!/usr/bin/env python3
"""Quick benchmark of the rootless port forwarder (prints numbers, asserts nothing).

    python3 bench/ports.py [--mib 2048] [--conns 2000]

Runs a source/sink server inside `unshare -Urn` (a fresh user + network namespace) and
measures through PortForwarder on 127.0.0.1: download and upload throughput of one
connection (splice and plain-buffer relays), and sequential connection setup rate.
Run it as an unprivileged user to measure the rootless path, e.g. with
`setpriv --reuid=1001 --regid=1001 --init-groups env PYTHONPATH=$PWD python3 bench/ports.py`.
"""
from __future__ import annotations

import argparse
import os
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pydocklite.shim.ports import PortForwarder, parse_publish, start_netns_helper  # noqa: E402

SERVER = r'''
import socket, struct, threading
BUF = bytes(1 << 20)
def source(c):          # client sends 8-byte size, we send that many bytes
    with c:
        n = struct.unpack("!Q", c.recv(8, socket.MSG_WAITALL))[0]
        view = memoryview(BUF)
        while n > 0:
            k = min(n, len(BUF)); c.sendall(view[:k]); n -= k
def sink(c):            # we read to EOF, then reply with the count
    with c:
        buf = bytearray(1 << 20); total = 0
        while True:
            k = c.recv_into(buf)
            if not k: break
            total += k
        c.sendall(struct.pack("!Q", total))
def ping(c):
    with c:
        d = c.recv(16)
        c.sendall(d)
def serve(port, fn):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port)); s.listen(512)
    ports.append(s.getsockname()[1])
    def loop():
        while True:
            c, _ = s.accept()
            threading.Thread(target=fn, args=(c,), daemon=True).start()
    threading.Thread(target=loop, daemon=True).start()
import sys
base = int(sys.argv[1]); ports = []
for i, fn in enumerate((source, sink, ping)):
    serve(base + i if base else 0, fn)
print("ready", *ports, flush=True)
import sys; sys.stdin.read()
'''


def download(port: int, size: int) -> float:
    with socket.create_connection(("127.0.0.1", port)) as c:
        t0 = time.perf_counter()
        c.sendall(struct.pack("!Q", size))
        buf = bytearray(1 << 20)
        got = 0
        while got < size:
            k = c.recv_into(buf)
            if not k:
                break
            got += k
        dt = time.perf_counter() - t0
    return got / dt / 1e9


def upload(port: int, size: int) -> float:
    data = memoryview(bytes(1 << 20))
    with socket.create_connection(("127.0.0.1", port)) as c:
        t0 = time.perf_counter()
        left = size
        while left > 0:
            k = min(left, len(data))
            c.sendall(data[:k])
            left -= k
        c.shutdown(socket.SHUT_WR)
        total = struct.unpack("!Q", c.recv(8, socket.MSG_WAITALL))[0]
        dt = time.perf_counter() - t0
    return total / dt / 1e9


def conn_rate(port: int, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        with socket.create_connection(("127.0.0.1", port)) as c:
            c.sendall(b"ping")
            c.recv(16)
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=2048, help="bytes per throughput run (MiB)")
    ap.add_argument("--conns", type=int, default=2000, help="connections for the rate test")
    args = ap.parse_args()
    server = subprocess.Popen(["unshare", "-Urn", "sh", "-c", 'ip link set lo up && exec "$0" "$@"',
                               sys.executable, "-c", SERVER, "80"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert server.stdout.readline().startswith(b"ready")
    direct = subprocess.Popen([sys.executable, "-c", SERVER, "0"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE)
    d = [int(x) for x in direct.stdout.readline().split()[1:]]
    helper = start_netns_helper(server.pid)
    size = args.mib << 20
    print(f"uid {os.getuid()}, {args.mib} MiB per run, python {sys.version.split()[0]}")
    try:
        print(f"[direct ] download {download(d[0], size):6.2f} GB/s   "
              f"upload {upload(d[1], size):6.2f} GB/s   (same client/server, no forwarder)")
        print(f"[direct ] connect+ping+close: {conn_rate(d[2], args.conns):7.0f} conn/s")
        for splice in ([True, False] if hasattr(os, "splice") else [False]):
            maps = parse_publish("80") + parse_publish("81") + parse_publish("82")
            with PortForwarder(maps, helper.sock, use_splice=splice) as fwd:
                p = {m.container_port: m.host_port for m in fwd.bound}
                name = "splice " if splice else "buffers"
                print(f"[{name}] download {download(p[80], size):6.2f} GB/s   "
                      f"upload {upload(p[81], size):6.2f} GB/s")
                if splice:
                    print(f"[{name}] connect+ping+close: {conn_rate(p[82], args.conns):7.0f} conn/s")
    finally:
        helper.close()
        for p in (server, direct):
            p.kill()
            p.wait()


if __name__ == "__main__":
    main()
