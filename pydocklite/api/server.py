"""The API server: listeners, a thread per connection, the idle timer, routing.

A thread per connection (not a selector loop): handlers call the engine services, which
block (a container start, a pull, a `logs -f` that follows a file), and 50 `docker ps` at
once must not wait behind one of them. Threads are cheap here; MAX_CONNECTIONS bounds them.
A thread whose connection ended waits a while (IDLE_WORKER_TIME, at most IDLE_WORKERS of
them) for the next one: handing a socket to a waiting thread is one wake-up, where
starting a thread is two context switches before the first byte is read (every docker
command opens a new connection).

Idle: the service exits after `idle` seconds with no request in progress and no open
stream (attach, exec, logs -f, events, wait); a kept-alive connection doing nothing does
not count. 0 = never.
"""
from __future__ import annotations

import os
import re
import socket
import sys
import threading
import time

from pydocklite.api import http
from pydocklite.api.status import is_ours, message_of, status_of

MAX_CONNECTIONS = 512
IDLE_WORKERS = 8
IDLE_WORKER_TIME = 30.0
API_VERSION = "1.44"
MIN_API_VERSION = "1.24"
_VERSIONED = re.compile(r"^/v(\d+)\.(\d+)(/.*)$")


def version_tuple(text: str) -> tuple:
    major, _, minor = text.partition(".")
    return int(major), int(minor or 0)


class ApiServer:
    def __init__(self, ctx, listeners: list, idle: float, log=None):
        from pydocklite.api.routes import Router
        self.ctx = ctx
        self.listeners = listeners
        self.idle = idle
        self.router = Router()
        self.lock = threading.Lock()
        self.active = 0                  # requests in progress + open streams
        self.connections = 0
        import queue
        self.handoff = queue.SimpleQueue()   # accepted sockets for the idle workers
        self.idle_workers = 0
        self.last_activity = time.monotonic()
        self.stopping = threading.Event()
        self.log = log or (lambda msg: sys.stderr.write(msg + "\n"))
        self.debug = bool(os.environ.get("PYDOCKLITE_API_DEBUG"))
        from pydocklite import __version__
        self.common_headers = [("Api-Version", API_VERSION), ("Docker-Experimental", "false"),
                               ("Ostype", "linux"),
                               ("Server", f"pydocklite/{__version__} (linux)")]
        ctx.server = self

    # --- activity -------------------------------------------------------------------------
    def busy(self, delta: int) -> None:
        with self.lock:
            self.active += delta
            self.last_activity = time.monotonic()

    def idle_for(self) -> float:
        with self.lock:
            if self.active:
                return 0.0
            return time.monotonic() - self.last_activity

    # --- the accept loop --------------------------------------------------------------------
    def serve(self) -> None:
        import selectors
        sel = selectors.DefaultSelector()
        for ls in self.listeners:
            ls.setblocking(False)
            sel.register(ls, selectors.EVENT_READ)
        try:
            while not self.stopping.is_set():
                timeout = 1.0
                if self.idle > 0:
                    left = self.idle - self.idle_for()
                    if left <= 0:
                        self.log("idle: no request or stream for "
                                 f"{self.idle:g} s, exiting")
                        return
                    timeout = min(timeout, left)
                for key, _ in sel.select(timeout):
                    try:
                        conn, _addr = key.fileobj.accept()
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError as e:          # EMFILE and the like: keep serving
                        self.log(f"accept: {e}")
                        time.sleep(0.05)
                        continue
                    with self.lock:
                        if self.connections >= MAX_CONNECTIONS:
                            conn.close()
                            continue
                        self.connections += 1
                        self.last_activity = time.monotonic()
                        waiting = self.idle_workers > 0
                        if waiting:
                            self.idle_workers -= 1
                    conn.setblocking(True)
                    if waiting:
                        self.handoff.put(conn)
                    else:
                        threading.Thread(target=self._worker, args=(conn,), daemon=True,
                                         name="api-conn").start()
        finally:
            sel.close()

    def stop(self) -> None:
        self.stopping.set()

    # --- one connection ---------------------------------------------------------------------
    def _worker(self, sock: socket.socket) -> None:
        """Serve connections: this one, then those handed over while it waits idle."""
        import queue
        while sock is not None:
            self._connection(sock)
            sock = None
            with self.lock:
                if self.idle_workers >= IDLE_WORKERS or self.stopping.is_set():
                    return
                self.idle_workers += 1
            try:
                sock = self.handoff.get(timeout=IDLE_WORKER_TIME)
            except queue.Empty:
                with self.lock:
                    # a socket may have been promised to this worker just now
                    if self.idle_workers > 0:
                        self.idle_workers -= 1
                        return
                sock = self.handoff.get()

    def _connection(self, sock: socket.socket) -> None:
        conn = http.Connection(sock)
        try:
            while True:
                try:
                    head = conn.read_head()
                except http.HttpError as e:
                    self._early_error(conn, e)
                    return
                except http.ClientGone:
                    return
                if head is None:
                    return
                self.busy(+1)
                try:
                    keep = self._request(conn, *head)
                finally:
                    self.busy(-1)
                if not keep:
                    return
        finally:
            with self.lock:
                self.connections -= 1
            _lingering_close(sock)

    def _early_error(self, conn, e) -> None:
        body = ('{"message": %s}\n' % _json_str(e.message)).encode()
        head = (f"HTTP/1.1 {e.status} {http.REASONS.get(e.status, 'Error')}\r\n"
                "Content-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
        try:
            conn.sendall(head + body)
        except http.ClientGone:
            pass

    def _request(self, conn, request_line: str, headers: list) -> bool:
        """Serve one request; True to keep the connection for another."""
        try:
            req = http.Request(conn, request_line, headers)
        except http.HttpError as e:
            self._early_error(conn, e)
            return False
        resp = http.Responder(req, self.common_headers)
        started = time.monotonic()
        try:
            self._dispatch(req, resp)
        except http.ClientGone:
            return False
        except Exception as e:  # noqa: BLE001 - every failure becomes Docker's {"message"}
            status = status_of(e)
            if status == 500 and not is_ours(e):
                import traceback
                self.log(f"{req.method} {req.path}: {traceback.format_exc()}")
            if req.responded:
                # the response had begun (a stream): the connection can only be closed
                return False
            try:
                resp.error(status, message_of(e))
            except http.ClientGone:
                return False
        finally:
            if self.debug:
                self.log(f"{req.method} {req.target} "
                         f"{(time.monotonic() - started) * 1000:.1f} ms")
        if req.hijacked or not req.keep_alive:
            return False
        if not req.body_done and not req.discard_body():
            return False
        return True

    def _dispatch(self, req, resp) -> None:
        path = req.path
        m = _VERSIONED.match(path)
        if m:
            version = (int(m.group(1)), int(m.group(2)))
            if version < version_tuple(MIN_API_VERSION):
                raise http.HttpError(400, f"client version {m.group(1)}.{m.group(2)} is too "
                                          f"old. Minimum supported API version is "
                                          f"{MIN_API_VERSION}, please upgrade your client to a "
                                          "newer version")
            if version > version_tuple(API_VERSION):
                raise http.HttpError(400, f"client version {m.group(1)}.{m.group(2)} is too "
                                          f"new. Maximum supported API version is "
                                          f"{API_VERSION}")
            req.api_version = f"{m.group(1)}.{m.group(2)}"
            path = m.group(3)
        else:
            req.api_version = API_VERSION
        handler, params = self.router.match(req.method, path)
        result = handler(self.ctx, req, resp, **params)
        if not req.responded:
            if result is None:
                resp.send(204)
            else:
                resp.json(result)


def _lingering_close(sock: socket.socket) -> None:
    """Close so that a response already sent reaches a client that is still sending: our
    side shut, then what it sends drained for a bounded time (closing with unread input
    would reset the connection and could destroy the response in flight)."""
    try:
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(1.0)
        deadline = time.monotonic() + 2.0
        drained = 0
        while drained < (4 << 20) and time.monotonic() < deadline:
            data = sock.recv(65536)
            if not data:
                break
            drained += len(data)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def _json_str(text: str) -> str:
    import json
    return json.dumps(text)


# --- listeners --------------------------------------------------------------------------------

SD_LISTEN_FDS_START = 3


def systemd_listeners() -> list:
    """The sockets systemd passed (socket activation: LISTEN_PID is us, LISTEN_FDS of them
    from fd 3); the variables are removed so children don't see them."""
    pid = os.environ.pop("LISTEN_PID", "")
    count = os.environ.pop("LISTEN_FDS", "")
    os.environ.pop("LISTEN_FDNAMES", None)
    if not pid.isdigit() or int(pid) != os.getpid() or not count.isdigit():
        return []
    out = []
    for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + int(count)):
        os.set_inheritable(fd, False)
        out.append(socket.socket(fileno=fd))
    return out


def unix_listener(path: str) -> socket.socket:
    """A listening unix socket at `path`, 0600 in a 0700 directory we own. A socket left by
    a killed service is replaced; one a live service answers on is not."""
    from pydocklite.errors import UsageError
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o700, exist_ok=True)
    st = os.stat(directory)
    if st.st_uid != os.getuid():
        raise UsageError(f"the socket's directory {directory} belongs to uid {st.st_uid}: "
                         "use a directory of your own")
    if st.st_mode & 0o077 and directory.rstrip("/").endswith("pydocklite"):
        os.chmod(directory, 0o700)
    if os.path.lexists(path):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)              # stale: nobody listens there any more
        else:
            raise UsageError(f"another service is listening on {path}: stop it first, or "
                             "give another address")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(path)
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(128)
    return sock


def tcp_listener(host: str, port: int) -> socket.socket:
    import ipaddress
    from pydocklite.errors import UsageError
    try:
        addr = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        raise UsageError(f"tcp://{host}:{port}: give a loopback address (127.0.0.1 or [::1]); "
                         "the API gives full control of your containers") from None
    if not addr.is_loopback:
        raise UsageError(f"refusing to listen on {host}: only loopback addresses are allowed "
                         "(the API gives whoever reaches it full control of your containers)")
    family = socket.AF_INET6 if addr.version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((str(addr), port))
    sock.listen(128)
    return sock
