"""Attaching to a running container: the shim serves its stdio on a unix socket
(RuntimeLayout.attach_socket, in the 0700 run dir) to `attach` and the API's attach.

A client connects and sends one JSON line, then the shim answers one JSON line:

    {"stdin": true, "stdout": true, "stderr": true, "detach_keys": "ctrl-p,ctrl-q"}
        -> {"ok": true, "tty": false}        then the stream (below), until the container
                                             exits, the client detaches or goes away
    {"resize": [ROWS, COLS]}                 -> {"ok": true}    (a tty container's size)

The stream the shim sends is Docker's: raw bytes for a tty container, else frames with
Docker's 8-byte header (stream 1 stdout / 2 stderr, 0, 0, 0, big-endian length) — what the
Engine API sends an attached client, so the API copies it through. What the client sends
goes to the container's stdin (a container made with -i, or its pty); the detach keys end
the attachment, leaving the container running; the client's half-close (EOF) closes the
container's stdin when it was started with stdin-once (`run -i` attached), as Docker.

The listener is made after the container has started, by a thread of its own, with the
low-level _socket module the shim has loaded already (`socket` would cost ~5 ms of imports
in every shim); a connection costs a thread while it lasts.
"""
from __future__ import annotations

import json
import os
import struct
import threading

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import Callable, Optional

HEADER_LIMIT = 4096
SEND_TIMEOUT = 10.0           # a client that reads nothing for that long is dropped


def frame(stream: str, data: bytes) -> bytes:
    """Docker's multiplexed-stream frame."""
    return struct.pack(">BxxxI", 1 if stream == "stdout" else 2, len(data)) + data


def parse_detach_keys(text: str) -> bytes:
    """Docker's --detach-keys: comma-separated keys, each a single character or
    ctrl-<a-z, @, [, \\, ], ^, _>. "" -> b"" (no detaching)."""
    from pydocklite.errors import UsageError
    out = b""
    for key in (k for k in text.split(",") if k != ""):
        low = key.lower()
        if low.startswith("ctrl-") and len(key) == 6:
            c = low[5]
            if "a" <= c <= "z":
                out += bytes([ord(c) - ord("a") + 1])
                continue
            special = {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}
            if c in special:
                out += bytes([special[c]])
                continue
        elif len(key) == 1:
            out += key.encode()
            continue
        raise UsageError(f"invalid detach keys {text!r}: use a letter or ctrl-<a-z|@|[|\\\\|]|"
                         "^|_>, comma separated (default ctrl-p,ctrl-q)")
    return out


class Client:
    """One attached connection: what it asked for, and its socket."""

    def __init__(self, sock, stdout: bool, stderr: bool, tty: bool):
        self.sock, self.stdout, self.stderr, self.tty = sock, stdout, stderr, tty
        self.gone = False

    def send(self, stream: str, data: bytes) -> None:
        if self.gone or not (self.stdout if stream == "stdout" else self.stderr):
            return
        try:
            self.sock.sendall(data if self.tty else frame(stream, data))
        except OSError:
            self.close()

    def close(self) -> None:
        if not self.gone:
            self.gone = True
            try:
                self.sock.close()
            except OSError:
                pass


class AttachServer:
    def __init__(self, path: str, relay, tty: bool, stdin_fd: Callable[[], Optional[int]],
                 stdin_once: bool, pty_master: Callable[[], Optional[int]],
                 on_attach: Callable[[], None], log: Callable[[str], None]):
        """relay: the StdioRelay whose output goes to the clients; stdin_fd(): where a
        client's input goes now (None: the container's stdin is closed or absent)."""
        self.path, self.relay, self.tty = path, relay, tty
        self.stdin_fd, self.stdin_once, self.pty_master = stdin_fd, stdin_once, pty_master
        self.on_attach, self.log = on_attach, log
        self.listener = None
        self.closed = False

    def start(self) -> None:
        threading.Thread(target=self._serve, daemon=True, name="attach").start()

    def close(self) -> None:
        self.closed = True
        if self.listener is not None:
            try:
                self.listener.close()
            except OSError:
                pass
        try:
            os.unlink(self.path)
        except OSError:
            pass

    def _serve(self) -> None:
        import _socket
        try:
            os.unlink(self.path)
        except OSError:
            pass
        try:
            lst = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
            lst.bind(self.path)
            os.chmod(self.path, 0o600)
            lst.listen(16)
        except OSError as e:
            self.log(f"attach socket {self.path}: {e}")
            return
        self.listener = lst
        while not self.closed:
            try:
                fd, _ = lst._accept()
            except OSError:
                return                  # closed
            conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM, 0, fd)
            threading.Thread(target=self._handle, args=(conn,), daemon=True,
                             name="attach-client").start()

    def _handle(self, conn) -> None:
        try:
            conn.settimeout(5.0)
            request = _read_line(conn)
            if "resize" in request:
                self._resize(request["resize"])
                conn.sendall(b'{"ok": true}\n')
                conn.close()
                return
            keys = parse_detach_keys(str(request.get("detach_keys", "ctrl-p,ctrl-q")))
        except Exception as e:  # noqa: BLE001 - a bad request: told, connection closed
            try:
                conn.sendall((json.dumps({"ok": False, "error": str(e)}) + "\n").encode())
            except OSError:
                pass
            conn.close()
            return
        conn.sendall((json.dumps({"ok": True, "tty": self.tty}) + "\n").encode())
        conn.settimeout(SEND_TIMEOUT)
        client = Client(conn, bool(request.get("stdout", True)),
                        bool(request.get("stderr", True)), self.tty)
        self.on_attach()
        if not self.relay.add_client(client):       # the container's output has ended
            client.close()
            return
        if request.get("stdin"):
            self._feed(client, keys)

    def _feed(self, client: Client, keys: bytes) -> None:
        """The client's input to the container's stdin, until EOF or the detach keys."""
        conn = client.sock
        conn.settimeout(None)
        held = b""              # the start of the detach keys: not the container's yet
        while not client.gone:
            try:
                data = conn.recv(4096)
            except OSError:
                data = b""
            if not data:
                break
            if not keys:
                self._write_stdin(data)
                continue
            out = b""
            for b in data:
                if b == keys[len(held)]:
                    held += bytes([b])
                    if len(held) == len(keys):
                        self._write_stdin(out)
                        self.relay.remove_client(client)
                        client.close()          # detached: the container runs on
                        return
                    continue
                out += held
                held = b""
                if b == keys[0]:
                    held = bytes([b])
                else:
                    out += bytes([b])
            self._write_stdin(out)
        if not client.gone and self.stdin_once and not self.tty:
            self.relay.close_stdin()

    def _write_stdin(self, data: bytes) -> None:
        fd = self.stdin_fd()
        if fd is None or not data:
            return
        try:
            os.write(fd, data)
        except OSError:
            pass

    def _resize(self, size) -> None:
        import fcntl
        import termios
        master = self.pty_master()
        rows, cols = int(size[0]), int(size[1])
        if master is None or not (0 < rows < 65536 and 0 < cols < 65536):
            raise ValueError("resize: no terminal, or a size out of range")
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _read_line(conn) -> dict:
    """The request line, read a byte at a time: what follows it is the client's stdin."""
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = conn.recv(1)
        if not chunk:
            raise ValueError("the request ended before its line")
        buf += chunk
        if len(buf) >= HEADER_LIMIT:
            raise ValueError("request line too long")
    data = json.loads(buf)
    if not isinstance(data, dict):
        raise ValueError("the request is not a JSON object")
    return data
