#!/usr/bin/env python3
"""bench/floor_server: the least an Engine API server can do for `docker ps`.

    floor_server.py SOCKET PING_REPLY CONTAINERS_REPLY

Answers `/_ping` (GET and HEAD) and `/containers/json` (any API version prefix, any query)
on a unix socket with replies recorded beforehand from a real server, byte for byte, doing
no other work: one thread, replies written as they were recorded. The time `docker ps`
takes against it is the client's own (its start, its TLS-less HTTP, its JSON and
formatting): what no server can take away. bench/api.py measures it beside the real
servers. Anything else gets a 404.
"""
from __future__ import annotations

import os
import selectors
import socket
import sys

NOT_FOUND = (b'HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n'
             b'Content-Length: 26\r\n\r\n{"message":"not recorded"}')


def reply_for(request: bytes, ping: bytes, containers: bytes) -> bytes:
    line = request.split(b"\r\n", 1)[0]
    method, _, rest = line.partition(b" ")
    target = rest.split(b" ", 1)[0].split(b"?", 1)[0]
    if target.endswith(b"/_ping"):
        return ping.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n" if method == b"HEAD" else ping
    if target.endswith(b"/containers/json"):
        return containers
    return NOT_FOUND


def serve(path: str, ping: bytes, containers: bytes) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if os.path.exists(path):
        os.unlink(path)
    listener.bind(path)
    os.chmod(path, 0o666)
    listener.listen(128)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ, None)
    buffers: dict = {}
    while True:
        for key, _ in sel.select():
            if key.data is None:
                conn, _ = listener.accept()
                buffers[conn] = b""
                sel.register(conn, selectors.EVENT_READ, True)
                continue
            conn = key.fileobj
            data = conn.recv(65536)
            if not data:
                sel.unregister(conn)
                del buffers[conn]
                conn.close()
                continue
            buf = buffers[conn] + data
            while b"\r\n\r\n" in buf:      # the client's GET/HEAD requests have no body
                request, buf = buf.split(b"\r\n\r\n", 1)
                conn.sendall(reply_for(request, ping, containers))
            buffers[conn] = buf


def main() -> int:
    path, ping_file, containers_file = sys.argv[1:4]
    with open(ping_file, "rb") as f:
        ping = f.read()
    with open(containers_file, "rb") as f:
        containers = f.read()
    serve(path, ping, containers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
