"""The half of port forwarding that lives in the container's network namespace.

`serve_helper(sock)` answers requests from the host side (`ports.PortForwarder`) on a unix
SOCK_SEQPACKET socket: each request names a TCP or UDP container port; the helper opens a
socket connected to 127.0.0.1:<port> inside the namespace and passes it back with
SCM_RIGHTS (or an errno). `start_netns_helper(pid)` forks such a helper into the user and
network namespaces of a running process.
"""
from __future__ import annotations

import array
import ctypes
import errno
import os
import socket
import struct
import threading
from collections import namedtuple

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import Optional

REQ = struct.Struct("!cIH")      # kind (b"T" tcp / b"U" udp), request id, container port
REP = struct.Struct("!Ii")       # request id, errno (0 = a socket fd is attached)
CLONE_NEWUSER, CLONE_NEWNET = 0x10000000, 0x40000000


class HelperError(OSError):
    """The namespace helper could not be started."""


def _send_fd(sock: socket.socket, lock: threading.Lock, req_id: int, err: int,
             fd: Optional[int] = None) -> None:
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))] if fd is not None else []
    with lock:
        try:
            sock.sendmsg([REP.pack(req_id, err)], anc)
        except OSError:
            pass  # the host side is gone; serve_helper ends on EOF


def _open_inner(kind: bytes, port: int, connect_timeout: float) -> socket.socket:
    if kind == b"T":
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=connect_timeout)
        except ConnectionRefusedError:   # a server listening on [::1] only
            try:
                s = socket.create_connection(("::1", port), timeout=connect_timeout)
            except OSError:
                raise ConnectionRefusedError(errno.ECONNREFUSED, "connection refused") from None
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect(("127.0.0.1", port))
    s.setblocking(True)
    return s


def serve_helper(sock: socket.socket, connect_timeout: float = 10.0) -> None:
    """Serve connect requests until the host side closes `sock`. Run inside the netns."""
    lock = threading.Lock()

    def handle(kind: bytes, req_id: int, port: int) -> None:
        try:
            inner = _open_inner(kind, port, connect_timeout)
        except OSError as exc:
            _send_fd(sock, lock, req_id, exc.errno or errno.ECONNREFUSED)
            return
        with inner:
            _send_fd(sock, lock, req_id, 0, inner.fileno())

    while True:
        try:
            msg = sock.recv(64)
        except InterruptedError:
            continue
        except OSError:
            break
        if not msg:
            break
        if len(msg) == REQ.size:
            kind, req_id, port = REQ.unpack(msg)
            threading.Thread(target=handle, args=(kind, req_id, port), daemon=True).start()


def _setns(path: str, nstype: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, nstype) != 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e), path)
    finally:
        os.close(fd)


class NetnsHelper(namedtuple("NetnsHelper", "pid sock")):
    """A forked helper process inside a container's namespaces; `sock` (a socket) goes to
    PortForwarder."""
    __slots__ = ()

    def close(self) -> None:
        self.sock.close()   # the helper sees EOF and exits
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass


def start_netns_helper(pid: int) -> NetnsHelper:
    """Fork a helper that joins the user and network namespaces of `pid` and serves there."""
    return fork_netns_helper(pid).result()


class PendingHelper:
    """A helper forked, not yet heard from: result() waits for its word (the shim forks it
    as soon as the container's namespaces exist and does other work meanwhile)."""

    def __init__(self, pid: int, cpid: int, sock: socket.socket, ready_r: int):
        self.pid, self.cpid, self.sock, self.ready_r = pid, cpid, sock, ready_r

    def result(self) -> NetnsHelper:
        with os.fdopen(self.ready_r, "rb") as f:
            msg = f.read()
        if msg != b"ok":
            self.sock.close()
            os.waitpid(self.cpid, 0)
            raise HelperError(errno.EPERM, f"cannot enter the network namespace of pid "
                              f"{self.pid}: {msg.decode(errors='replace') or 'helper died'}")
        return NetnsHelper(self.cpid, self.sock)

    def cancel(self) -> None:
        try:
            self.result().close()
        except HelperError:
            pass


def fork_netns_helper(pid: int) -> PendingHelper:
    """Fork the helper of start_netns_helper(); its result() comes later."""
    ns_user, ns_net = f"/proc/{pid}/ns/user", f"/proc/{pid}/ns/net"
    try:
        join_user = os.stat(ns_user).st_ino != os.stat("/proc/self/ns/user").st_ino
        os.stat(ns_net)
    except OSError as exc:
        raise HelperError(exc.errno, f"cannot forward ports: no namespaces for pid {pid} ({exc.strerror})") from None
    from pydocklite.runtime.syscalls import close_fds_except
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    r, w = os.pipe()
    cpid = os.fork()
    if cpid == 0:  # pragma: no cover - runs in the child
        try:
            parent.close()
            os.close(r)
            # no listening socket, pipe or lock of the shim stays open in (and held by) it
            close_fds_except({0, 1, 2, child.fileno(), w})
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL: never outlive the shim
            if join_user:
                _setns(ns_user, CLONE_NEWUSER)
            _setns(ns_net, CLONE_NEWNET)
            os.write(w, b"ok")
            os.close(w)
            serve_helper(child)
            os._exit(0)
        except BaseException as exc:  # noqa: B902 - report anything to the parent
            try:
                os.write(w, str(exc).encode()[:4000])
            finally:
                os._exit(1)
    child.close()
    os.close(w)
    return PendingHelper(pid, cpid, parent, r)
