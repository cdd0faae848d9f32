"""HTTP/1.1 on one connected socket, written for hostile clients.

Every read is bounded in size and time: a request head must arrive whole within
HEAD_TIMEOUT seconds of its first byte and fit in MAX_HEAD bytes (else 400 and the
connection closes), a JSON body must fit in the caller's limit (else 413) and arrive
within BODY_TIMEOUT; streamed bodies (build contexts, image archives) may be long but
must keep moving (IDLE_TIMEOUT between reads). Keep-alive is HTTP/1.1's default; a
response whose request body was not read to its end closes the connection.

Responses: `send()` (a whole body), `start_stream()` (chunked, flushed per write),
`hijack()` (101 UPGRADED, then the raw socket belongs to the handler: attach and exec).
"""
from __future__ import annotations

import json
import socket
import time
from urllib.parse import parse_qs, unquote

MAX_HEAD = 64 * 1024          # request line + headers
MAX_HEADERS = 100
HEAD_TIMEOUT = 10.0           # from the first byte of a request to the end of its head
KEEPALIVE_TIMEOUT = 120.0     # an idle kept-alive connection is closed after this
BODY_TIMEOUT = 30.0           # a bounded (JSON) body must arrive within this
IDLE_TIMEOUT = 60.0           # a streamed body may not stall longer than this
MAX_JSON_BODY = 4 * 1024 * 1024

REASONS = {200: "OK", 201: "Created", 204: "No Content", 101: "UPGRADED",
           304: "Not Modified", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
           404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
           409: "Conflict", 411: "Length Required", 413: "Request Entity Too Large",
           500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable"}


class HttpError(Exception):
    """An answer other than success: status and Docker's {"message"} text."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class ClientGone(Exception):
    """The peer closed or broke the connection (nothing more can be said to it)."""


class Connection:
    """A client's socket with an input buffer."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = bytearray()
        self.closed = False

    def _recv(self, deadline: float) -> bytes:
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout()
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except (ConnectionError, OSError) as e:
            if isinstance(e, socket.timeout):
                raise
            raise ClientGone(str(e)) from None
        return data

    def read_head(self):
        """The next request's head as (request line, [(name, value)]), or None when the
        client closed (or stayed idle past KEEPALIVE_TIMEOUT) between requests."""
        deadline = None
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            if len(self.buf) > MAX_HEAD:
                raise HttpError(400, f"request header too large (the limit is {MAX_HEAD} bytes)")
            if deadline is None and self.buf.strip():
                deadline = time.monotonic() + HEAD_TIMEOUT
            try:
                data = self._recv(deadline if deadline is not None
                                  else time.monotonic() + KEEPALIVE_TIMEOUT)
            except socket.timeout:
                if deadline is None:
                    return None
                raise HttpError(408, f"request header not received within {HEAD_TIMEOUT:g} s")
            except ClientGone:
                return None
            if not data:
                if self.buf.strip():
                    raise ClientGone("the client closed in the middle of a request")
                return None
            self.buf += data
            if deadline is None and not self.buf.strip():
                self.buf.clear()        # stray CRLFs between requests are allowed
        if end > MAX_HEAD:
            raise HttpError(400, f"request header too large (the limit is {MAX_HEAD} bytes)")
        head = bytes(self.buf[:end])
        del self.buf[:end + 4]
        lines = head.lstrip(b"\r\n").split(b"\r\n")
        if len(lines) - 1 > MAX_HEADERS:
            raise HttpError(400, f"too many request headers (the limit is {MAX_HEADERS})")
        try:
            request_line = lines[0].decode("ascii")
            headers = []
            for raw in lines[1:]:
                name, sep, value = raw.decode("latin-1").partition(":")
                if not sep or not name or name != name.strip():
                    raise HttpError(400, "malformed request header line")
                headers.append((name.lower(), value.strip()))
        except UnicodeDecodeError:
            raise HttpError(400, "malformed request line") from None
        return request_line, headers

    def read_some(self, limit: int, timeout: float = IDLE_TIMEOUT) -> bytes:
        """Up to `limit` bytes (buffered first); b"" at EOF."""
        if self.buf:
            data = bytes(self.buf[:limit])
            del self.buf[:limit]
            return data
        try:
            return self._recv(time.monotonic() + timeout)[:limit] if limit else b""
        except socket.timeout:
            raise HttpError(408, f"the request body stalled for {timeout:g} s") from None

    def read_line(self, deadline: float, limit: int = 1024) -> bytes:
        while b"\r\n" not in self.buf:
            if len(self.buf) > limit:
                raise HttpError(400, "malformed chunked request body")
            try:
                data = self._recv(deadline)
            except socket.timeout:
                raise HttpError(408, "the request body stalled") from None
            if not data:
                raise ClientGone("the client closed in the middle of a request body")
            self.buf += data
        i = self.buf.index(b"\r\n")
        line = bytes(self.buf[:i])
        del self.buf[:i + 2]
        return line

    def sendall(self, data: bytes) -> None:
        try:
            self.sock.settimeout(IDLE_TIMEOUT)
            self.sock.sendall(data)
        except OSError as e:
            raise ClientGone(str(e)) from None


class Request:
    """One parsed request; its body is read on demand (read_json, read_all, chunks)."""

    def __init__(self, conn: Connection, request_line: str, headers: list):
        parts = request_line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise HttpError(400, f"malformed request line {request_line[:80]!r}")
        self.conn = conn
        self.method, self.target, self.version = parts
        self.headers = {}
        for name, value in headers:
            self.headers[name] = value if name not in self.headers \
                else self.headers[name] + ", " + value
        raw_path, _, raw_query = self.target.partition("?")
        self.raw_path = raw_path
        self.path = unquote(raw_path)
        self.query = parse_qs(raw_query, keep_blank_values=True)
        self.api_version = ""
        te = self.headers.get("transfer-encoding", "").lower()
        self.chunked = "chunked" in te
        if te and not self.chunked:
            raise HttpError(400, f"unsupported Transfer-Encoding {te!r}")
        length = self.headers.get("content-length")
        if length is not None and not self.chunked:
            if not length.isdigit():
                raise HttpError(400, f"invalid Content-Length {length[:40]!r}")
            self.remaining = int(length)
        else:
            self.remaining = None if self.chunked else 0
        self._chunk_left = 0
        self.body_done = not self.chunked and self.remaining == 0
        keep = self.headers.get("connection", "").lower()
        self.keep_alive = ("close" not in keep) if self.version == "HTTP/1.1" \
            else ("keep-alive" in keep)
        self.responded = False
        self.hijacked = False

    # --- query parameters ---------------------------------------------------------------
    def arg(self, name: str, default=None):
        values = self.query.get(name)
        return values[-1] if values else default

    def flag(self, name: str, default: bool = False) -> bool:
        value = self.arg(name)
        if value is None:
            return default
        return value.lower() not in ("0", "false", "no", "")

    def int_arg(self, name: str, default=None):
        value = self.arg(name)
        if value is None or value == "":
            return default
        try:
            return int(value)
        except ValueError:
            raise HttpError(400, f"invalid value for query parameter {name!r}: "
                                 f"{value[:40]!r} is not an integer") from None

    def json_arg(self, name: str, default=None):
        value = self.arg(name)
        if not value:
            return default
        try:
            return json.loads(value)
        except ValueError:
            raise HttpError(400, f"invalid JSON in query parameter {name!r}") from None

    # --- body ---------------------------------------------------------------------------
    def chunks(self, timeout: float = IDLE_TIMEOUT):
        """The body as it arrives (for streamed uploads)."""
        while not self.body_done:
            if not self.chunked:
                data = self.conn.read_some(min(self.remaining, 1 << 20), timeout)
                if not data:
                    raise ClientGone("the client closed in the middle of a request body")
                self.remaining -= len(data)
                if self.remaining == 0:
                    self.body_done = True
                yield data
                continue
            if self._chunk_left == 0:
                line = self.conn.read_line(time.monotonic() + timeout)
                size_text = line.split(b";", 1)[0].strip()
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise HttpError(400, "malformed chunked request body") from None
                if size == 0:
                    while self.conn.read_line(time.monotonic() + timeout):
                        pass                                  # trailers
                    self.body_done = True
                    return
                self._chunk_left = size
            data = self.conn.read_some(min(self._chunk_left, 1 << 20), timeout)
            if not data:
                raise ClientGone("the client closed in the middle of a request body")
            self._chunk_left -= len(data)
            if self._chunk_left == 0:
                self.conn.read_line(time.monotonic() + timeout)  # the chunk's CRLF
            yield data

    def read_all(self, limit: int = MAX_JSON_BODY, what: str = "request body") -> bytes:
        if self.remaining is not None and self.remaining > limit:
            raise HttpError(413, f"{what} too large: {self.remaining} bytes (the limit is "
                                 f"{limit})")
        deadline = time.monotonic() + BODY_TIMEOUT
        out = bytearray()
        for data in self.chunks():
            out += data
            if len(out) > limit:
                raise HttpError(413, f"{what} too large (the limit is {limit} bytes)")
            if time.monotonic() > deadline:
                raise HttpError(408, f"{what} not received within {BODY_TIMEOUT:g} s")
        return bytes(out)

    def read_json(self, limit: int = MAX_JSON_BODY, default=None, kind=dict):
        """The body as JSON of the given type; an empty body gives `default`."""
        data = self.read_all(limit)
        if not data.strip():
            return default
        try:
            value = json.loads(data)
        except ValueError as e:
            raise HttpError(400, f"invalid JSON in the request body: {e}") from None
        if kind is not None and not isinstance(value, kind):
            raise HttpError(400, f"the request body must be a JSON "
                                 f"{'object' if kind is dict else kind.__name__}")
        return value

    def discard_body(self, limit: int = 1 << 20) -> bool:
        """Read and drop what is left of a small body; False when it is too big to bother."""
        if self.body_done:
            return True
        if self.remaining is not None and self.remaining > limit:
            return False
        try:
            self.read_all(limit)
        except (HttpError, ClientGone):
            return False
        return True


def _head(status: int, headers: list) -> bytes:
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}"]
    lines += [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class Responder:
    """Writes the one response to a request (headers every response carries included)."""

    def __init__(self, req: Request, common: list):
        self.req = req
        self.common = common
        self.leftover = b""

    def send(self, status: int, body: bytes = b"", content_type: str = "application/json",
             headers: list = ()) -> None:
        req = self.req
        req.responded = True
        hs = list(self.common) + list(headers)
        if status not in (204, 304) or body:
            hs.append(("Content-Type", content_type))
            hs.append(("Content-Length", str(len(body))))
        if not req.keep_alive or not req.body_done:
            req.keep_alive = False
            hs.append(("Connection", "close"))
        data = _head(status, hs)
        if req.method != "HEAD":
            data += body
        req.conn.sendall(data)

    def json(self, value, status: int = 200, headers: list = ()) -> None:
        self.send(status, (json.dumps(value) + "\n").encode(), headers=headers)

    def error(self, status: int, message: str) -> None:
        self.send(status, (json.dumps({"message": message}) + "\n").encode())

    def start_stream(self, status: int = 200, content_type: str = "application/json",
                     headers: list = (), defer_head: bool = False) -> "ChunkedStream":
        """A chunked response. defer_head: the head goes out with the first write (or the
        close), in one send: for a body made at once (`logs` without follow), not for a
        stream whose client waits for the head (`wait`, `events`)."""
        req = self.req
        req.responded = True
        hs = list(self.common) + list(headers) + [("Content-Type", content_type),
                                                  ("Transfer-Encoding", "chunked")]
        if not req.body_done:
            req.keep_alive = False
        if not req.keep_alive:
            hs.append(("Connection", "close"))
        if defer_head:
            return ChunkedStream(req.conn, _head(status, hs))
        req.conn.sendall(_head(status, hs))
        return ChunkedStream(req.conn)

    def hijack(self, content_type: str = "application/vnd.docker.raw-stream") -> socket.socket:
        """Take over the connection: 101 UPGRADED when the client asked to upgrade (Docker's
        clients do), else 200 with the stream following (older clients). The handler owns the
        returned socket; the server closes it when the handler returns."""
        req = self.req
        req.responded = True
        req.hijacked = True
        req.keep_alive = False
        hs = [("Content-Type", content_type)]
        if "upgrade" in req.headers.get("connection", "").lower() or "upgrade" in req.headers:
            head = _head(101, hs + [("Connection", "Upgrade"), ("Upgrade", "tcp")] +
                         list(self.common))
        else:
            head = _head(200, list(self.common) + hs)
        req.conn.sendall(head)
        req.conn.sock.settimeout(None)
        # what the client sent after the request (its first stdin bytes) is the stream's
        self.leftover = bytes(req.conn.buf)
        req.conn.buf.clear()
        return req.conn.sock


class ChunkedStream:
    """A chunked response body, each write sent at once (with the response's head when
    that was deferred: Responder.start_stream)."""

    def __init__(self, conn: Connection, head: bytes = b""):
        self.conn = conn
        self.head = head
        self.closed = False

    def write(self, data: bytes) -> None:
        if data:
            head, self.head = self.head, b""
            self.conn.sendall(b"%s%x\r\n%s\r\n" % (head, len(data), data))

    def json(self, value) -> None:
        self.write((json.dumps(value) + "\r\n").encode())

    def close(self, last: bytes = b"") -> None:
        """The end of the body, after `last` (one send for both)."""
        if not self.closed:
            self.closed = True
            head, self.head = self.head, b""
            chunk = b"%x\r\n%s\r\n" % (len(last), last) if last else b""
            self.conn.sendall(head + chunk + b"0\r\n\r\n")
