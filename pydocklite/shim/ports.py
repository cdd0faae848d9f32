"""Rootless port publishing: the host side of the forwarder (the -p/-P syntax is in
port_spec.py, the in-namespace helper in port_helper.py; both re-exported here).

The host side (`PortForwarder`, in the shim) listens on each published host port. For
every TCP connection (or new UDP client address) it asks a helper living in the
container's network namespace, over a unix SOCK_SEQPACKET socketpair, for a socket
connected to 127.0.0.1:<container port> *inside* that namespace; the helper passes the
connected socket back with SCM_RIGHTS. TCP bytes are then copied by two threads per
connection (os.splice through a pipe, or large buffers), so one slow connection never
blocks another; UDP datagrams are relayed per client address by the control thread and
a session ends after `udp_idle_timeout` seconds without traffic.

The helper is `serve_helper(sock)`: run it in a process inside the namespaces (the shim
may fork its own child there), or use `start_netns_helper(pid)`, which forks a child
that joins /proc/PID/ns/user (if different from ours) and /proc/PID/ns/net.
"""
from __future__ import annotations

import array
import errno
import fcntl
import itertools
import os
import selectors
import socket
import threading
import time

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import Dict, Iterable, List, Optional, Tuple

from pydocklite.shim.port_helper import (REP, REQ, HelperError, NetnsHelper, serve_helper,
                                         start_netns_helper)
from pydocklite.shim.port_spec import (SYSCTL, PortError, PortMapping, inspect_ports,
                                       parse_publish, publish_all, unprivileged_port_start)

# --- the host side -------------------------------------------------------------------------------

_CHUNK = 1 << 20
F_SETPIPE_SZ = 1031


def _pump(src: socket.socket, dst: socket.socket, use_splice: bool) -> None:
    """Copy src -> dst until EOF (raises OSError on a reset). splice moves the bytes through
    a pipe inside the kernel; without it (Python < 3.10), 256 KiB buffers."""
    if use_splice:
        r, w = os.pipe2(os.O_CLOEXEC)
        try:
            try:
                fcntl.fcntl(w, F_SETPIPE_SZ, _CHUNK)
            except OSError:
                pass
            sfd, dfd, moved = src.fileno(), dst.fileno(), False
            while True:
                try:
                    n = os.splice(sfd, w, _CHUNK, flags=os.SPLICE_F_MOVE)
                except OSError as exc:
                    if exc.errno == errno.EINVAL and not moved:
                        break   # this socket type can't splice: copy through buffers
                    raise
                if n == 0:
                    return
                moved = True
                while n:
                    n -= os.splice(r, dfd, n, flags=os.SPLICE_F_MOVE)
        finally:
            os.close(r)
            os.close(w)
    buf = bytearray(256 * 1024)
    view = memoryview(buf)
    while True:
        n = src.recv_into(buf)
        if n == 0:
            return
        dst.sendall(view[:n])


class _TcpConn:
    """One forwarded connection: a thread per direction; closed when both are done."""

    def __init__(self, fwd: "PortForwarder", client: socket.socket, inner: socket.socket):
        self.fwd, self.socks = fwd, (client, inner)
        self.left = 2
        self.lock = threading.Lock()

    def start(self) -> None:
        client, inner = self.socks
        for src, dst in ((client, inner), (inner, client)):
            threading.Thread(target=self._run, args=(src, dst), daemon=True,
                             name="pdl-port-relay").start()

    def abort(self) -> None:
        for s in self.socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _run(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            _pump(src, dst, self.fwd.use_splice)
            try:
                dst.shutdown(socket.SHUT_WR)   # pass the half-close on
            except OSError:
                pass
        except OSError:
            self.abort()                        # a reset on one side resets the pair
        finally:
            with self.lock:
                self.left -= 1
                last = self.left == 0
            if last:
                for s in self.socks:
                    s.close()
                self.fwd._forget(self)


class _UdpSession:
    __slots__ = ("listener", "addr", "inner", "queue", "last")

    def __init__(self, listener: socket.socket, addr: tuple):
        self.listener, self.addr, self.inner = listener, addr, None
        self.queue: List[bytes] = []
        self.last = time.monotonic()


class PortForwarder:
    """Host listeners for `mappings`, fed by the helper at the other end of `helper_sock`.

    start() binds every port first (PortError names the problem and the fix) and returns
    the bound mappings (random ports resolved). close() stops listening and resets live
    connections; the helper socket stays the caller's to close."""

    def __init__(self, mappings: Iterable[PortMapping], helper_sock: socket.socket, *,
                 default_host_ip: str = "127.0.0.1", udp_idle_timeout: float = 60.0,
                 use_splice: Optional[bool] = None):
        self.mappings = list(mappings)
        self.default_host_ip = default_host_ip
        self.udp_idle_timeout = udp_idle_timeout
        self.use_splice = hasattr(os, "splice") if use_splice is None else use_splice
        self._helper: Optional[socket.socket] = helper_sock
        self._new_helper: Optional[socket.socket] = None
        self._listeners: List[Tuple[socket.socket, PortMapping]] = []
        self._pending: Dict[int, tuple] = {}
        self._udp: Dict[tuple, _UdpSession] = {}
        self._conns: set = set()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._closing = False
        self._thread: Optional[threading.Thread] = None
        self._sel: Optional[selectors.BaseSelector] = None
        self._wake_r = self._wake_w = -1
        self.counters = {"tcp_accepted": 0, "tcp_refused": 0, "udp_sessions": 0}

    @property
    def bound(self) -> List[PortMapping]:
        return [m for _, m in self._listeners]

    def start(self) -> List[PortMapping]:
        try:
            for m in self.mappings:
                self._listeners.append(self._bind(m))
        except BaseException:
            for s, _ in self._listeners:
                s.close()
            self._listeners.clear()
            raise
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._sel.register(self._wake_r, selectors.EVENT_READ, ("wake", None))
        for s, m in self._listeners:
            self._sel.register(s, selectors.EVENT_READ, (m.protocol, m))
        if self._helper is not None:
            self._sel.register(self._helper, selectors.EVENT_READ, ("helper", None))
        self._thread = threading.Thread(target=self._loop, daemon=True, name="pdl-ports")
        self._thread.start()
        return self.bound

    def replace_helper(self, helper_sock: socket.socket) -> None:
        """Point the listeners at a new helper (the container restarted in a new netns)."""
        with self._lock:
            self._new_helper = helper_sock
        os.write(self._wake_w, b"h")

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        if self._thread is not None:
            os.write(self._wake_w, b"x")
            self._thread.join()
            self._sel.close()
            os.close(self._wake_r)
            os.close(self._wake_w)
        for s, _ in self._listeners:
            s.close()
        self._drop_pending()
        for sess in list(self._udp.values()):
            if sess.inner is not None:
                sess.inner.close()
        self._udp.clear()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            c.abort()

    def __enter__(self) -> "PortForwarder":
        if self._thread is None:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def active_connections(self) -> int:
        with self._lock:
            return len(self._conns)

    def _forget(self, conn: _TcpConn) -> None:
        with self._lock:
            self._conns.discard(conn)

    def _bind(self, m: PortMapping) -> Tuple[socket.socket, PortMapping]:
        ip = m.host_ip or self.default_host_ip
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        kind = socket.SOCK_STREAM if m.protocol == "tcp" else socket.SOCK_DGRAM
        ports = range(m.host_port, (m.host_port_end or m.host_port) + 1) if m.host_port else [0]
        for port in ports:
            s = socket.socket(family, kind)
            try:
                if kind == socket.SOCK_STREAM:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((ip, port))
                if kind == socket.SOCK_STREAM:
                    s.listen(1024)
                s.setblocking(False)
            except PermissionError:
                s.close()
                start = unprivileged_port_start()
                raise PortError(
                    f"cannot publish {m.key} on {ip}:{port}: ports below {start} are privileged "
                    f"on this host. Allow them with `sudo sysctl -w {SYSCTL}={port}` (persist it "
                    f"in /etc/sysctl.d/), or publish a host port >= {start}") from None
            except OSError as exc:
                s.close()
                if exc.errno == errno.EADDRINUSE:
                    if port != ports[-1]:
                        continue
                    what = f"{ip}:{port}" if len(ports) == 1 else f"{ip}:{ports[0]}-{ports[-1]}"
                    raise PortError(f"Bind for {what} failed: port is already allocated") from None
                raise PortError(f"cannot publish {m.key} on {ip}:{port}: {exc.strerror}") from None
            return s, m._replace(host_ip=ip, host_port=s.getsockname()[1], host_port_end=0)
        raise AssertionError("unreachable")

    # the control thread
    def _loop(self) -> None:
        sel = self._sel
        while not self._closing:
            for key, _ in sel.select(timeout=1.0):
                kind, m = key.data
                try:
                    if kind == "tcp":
                        self._accept(key.fileobj, m)
                    elif kind == "udp":
                        self._udp_in(key.fileobj, m)
                    elif kind == "helper":
                        self._helper_reply()
                    elif kind == "session":
                        self._udp_out(m)
                    else:
                        os.read(self._wake_r, 512)
                        self._swap_helper()
                except OSError:
                    continue   # one bad socket never stops the loop
            if self._udp:
                self._expire_udp()

    def _request(self, kind: bytes, port: int, what: tuple) -> bool:
        if self._helper is None:
            return False
        rid = next(self._ids) & 0xFFFFFFFF
        self._pending[rid] = what
        try:
            self._helper.send(REQ.pack(kind, rid, port))
            return True
        except OSError:
            self._pending.pop(rid, None)
            self._helper_gone()
            return False

    def _accept(self, lsock: socket.socket, m: PortMapping) -> None:
        for _ in range(64):
            try:
                client, _ = lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            client.setblocking(True)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.counters["tcp_accepted"] += 1
            if not self._request(b"T", m.container_port, ("tcp", client)):
                client.close()

    def _helper_reply(self) -> None:
        try:
            msg, anc, _flags, _ = self._helper.recvmsg(REP.size, socket.CMSG_SPACE(16))
        except (BlockingIOError, InterruptedError):
            return
        fds: List[int] = []
        for level, typ, data in anc:
            if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                a = array.array("i")
                a.frombytes(data[:len(data) - len(data) % a.itemsize])
                fds.extend(a)
        if not msg:
            self._helper_gone()
            return
        rid, err = REP.unpack(msg)
        what = self._pending.pop(rid, None)
        if what is None or err or not fds:
            for fd in fds:
                os.close(fd)
            if what is not None:
                self._refused(what)
            return
        for fd in fds[1:]:
            os.close(fd)
        inner = socket.socket(fileno=fds[0])
        if what[0] == "tcp":
            inner.setblocking(True)
            conn = _TcpConn(self, what[1], inner)
            with self._lock:
                self._conns.add(conn)
            conn.start()
        else:
            sess: _UdpSession = what[1]
            inner.setblocking(False)
            sess.inner = inner
            self._sel.register(inner, selectors.EVENT_READ, ("session", sess))
            for data in sess.queue:
                self._send_inner(sess, data)
            sess.queue.clear()

    def _refused(self, what: tuple) -> None:
        if what[0] == "tcp":
            self.counters["tcp_refused"] += 1
            what[1].close()
        else:
            sess: _UdpSession = what[1]
            self._udp.pop((sess.listener.fileno(), sess.addr), None)

    def _helper_gone(self) -> None:
        if self._helper is not None:
            try:
                self._sel.unregister(self._helper)
            except (KeyError, ValueError):
                pass
        self._helper = None
        self._drop_pending()

    def _drop_pending(self) -> None:
        pending, self._pending = self._pending, {}
        for what in pending.values():
            self._refused(what)

    def _swap_helper(self) -> None:
        with self._lock:
            new, self._new_helper = self._new_helper, None
        if new is None:
            return
        self._helper_gone()
        self._helper = new
        self._sel.register(new, selectors.EVENT_READ, ("helper", None))

    # UDP
    def _udp_in(self, lsock: socket.socket, m: PortMapping) -> None:
        for _ in range(256):
            try:
                data, addr = lsock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            key = (lsock.fileno(), addr)
            sess = self._udp.get(key)
            if sess is None:
                sess = self._udp[key] = _UdpSession(lsock, addr)
                self.counters["udp_sessions"] += 1
                sess.queue.append(data)
                if not self._request(b"U", m.container_port, ("udp", sess)):
                    self._udp.pop(key, None)
            elif sess.inner is None:
                if len(sess.queue) < 128:
                    sess.queue.append(data)
            else:
                self._send_inner(sess, data)

    def _send_inner(self, sess: _UdpSession, data: bytes) -> None:
        sess.last = time.monotonic()
        try:
            sess.inner.send(data)
        except OSError:
            pass  # full buffer or ICMP unreachable: UDP may drop

    def _udp_out(self, sess: _UdpSession) -> None:
        for _ in range(256):
            try:
                data = sess.inner.recv(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue  # ECONNREFUSED from an earlier datagram: nobody listens yet
            sess.last = time.monotonic()
            try:
                sess.listener.sendto(data, sess.addr)
            except OSError:
                pass

    def _expire_udp(self) -> None:
        now = time.monotonic()
        for key, sess in list(self._udp.items()):
            if sess.inner is not None and now - sess.last > self.udp_idle_timeout:
                self._sel.unregister(sess.inner)
                sess.inner.close()
                del self._udp[key]


__all__ = ["PortError", "PortMapping", "PortForwarder", "parse_publish", "publish_all",
           "inspect_ports", "unprivileged_port_start", "serve_helper", "start_netns_helper",
           "NetnsHelper", "HelperError", "SYSCTL"]
