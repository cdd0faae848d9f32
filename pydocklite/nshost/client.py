"""Talking to the namespace host: find it, start it when asked and it isn't running, send
requests (one JSON line each, one line back).

    host = connect(runtime_dir)              # started if needed; host.info = its hello
    host.call("attach", cid=..., ...)        # NsHostError carries the host's message
    connect(runtime_dir, start=False)        # None when no host runs (status, inspect)

The host is forked from the caller (a CLI or a shim), detached into a session of its own
and renamed "pydocklite __nshost --runtime-dir DIR" for `ps`; it belongs to no CLI. One
starter at a time (a lock file); a starter that finds a dead host's state makes the new
host adopt what survived, and the reply to the first `hello` lists the containers that
lost their network (`lost`).
"""
from __future__ import annotations

import json
import os
import socket

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import Optional

from pydocklite.errors import PydockliteError
from pydocklite.nshost.state import HostFiles

START_TIMEOUT = 60.0
CALL_TIMEOUT = 120.0


class NsHostError(PydockliteError):
    """The namespace host refused a request or could not be started."""


class HostClient:
    def __init__(self, sock: socket.socket, files: HostFiles):
        self.sock, self.files = sock, files
        self.rfile = sock.makefile("rb")
        self.info: dict = {}

    def call(self, op: str, fds=(), **args):
        """One request, its reply's result. fds: file descriptors passed along."""
        self.send_request(op, fds, **args)
        return self.reply(op)

    def send_request(self, op: str, fds=(), **args) -> None:
        """The first half of call(): the reply is read by reply() (requests are answered
        in order), so the caller can do something else meanwhile."""
        args["op"] = op
        if fds:
            args["fds"] = len(fds)
        data = json.dumps(args).encode() + b"\n"
        try:
            if fds:
                import array
                sent = self.sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                                   array.array("i", fds))])
                if sent < len(data):
                    self.sock.sendall(data[sent:])
            else:
                self.sock.sendall(data)
        except OSError as e:
            raise NsHostError(f"the namespace host went away during {op!r} ({e.strerror}): "
                              f"see {self.files.log}") from None

    def reply(self, op: str):
        try:
            line = self.rfile.readline()
        except OSError as e:
            raise NsHostError(f"the namespace host went away during {op!r} ({e.strerror}): "
                              f"see {self.files.log}") from None
        if not line:
            raise NsHostError(f"the namespace host went away during {op!r}: see "
                              f"{self.files.log}")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise NsHostError(reply.get("error") or f"namespace host: {op} failed")
        return reply.get("result")

    def send(self, op: str, **args) -> None:
        """A request without a reply (its failure is only logged by the host)."""
        args["op"] = op
        args["noreply"] = True
        try:
            self.sock.sendall(json.dumps(args).encode() + b"\n")
        except OSError:
            pass

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.rfile.close()
        self.sock.close()

    def __enter__(self) -> "HostClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _try_connect(files: HostFiles) -> Optional[socket.socket]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        s.connect(str(files.socket))
    except OSError:
        s.close()
        return None
    s.settimeout(CALL_TIMEOUT)
    return s


def connect(runtime_dir, start: bool = True) -> Optional[HostClient]:
    files = HostFiles(runtime_dir)
    sock = _try_connect(files)
    if sock is None:
        if not start:
            return None
        files.ensure()
        import fcntl
        with open(files.start_lock, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            sock = _try_connect(files)
            if sock is None:
                _spawn(files)
                sock = _try_connect(files)
        if sock is None:
            raise NsHostError(f"the namespace host started but does not answer: see "
                              f"{files.log}")
    client = HostClient(sock, files)
    client.info = client.call("hello")
    return client


def restarted(runtime_dir) -> list:
    """When a host had been running and is dead now (killed), start its successor, which
    adopts what survived; the containers that lost their network ([{id, name, networks}],
    told once), else []. Cheap when nothing happened: a small file read and a /proc look."""
    from pydocklite.nshost.state import read_state
    from pydocklite.runtime.state import proc_start_time
    files = HostFiles(runtime_dir)
    if not files.state.exists():
        return []
    st = read_state(files)
    if st is None or (st.pid and proc_start_time(st.pid) == st.start_time):
        if st is None or not st.lost:
            return []
    with connect(runtime_dir) as host:
        lost = host.info.get("lost") or []
        if lost:
            host.call("ack_lost")
    return lost


def running(runtime_dir) -> bool:
    """Is a host serving (without starting one)?"""
    s = _try_connect(HostFiles(runtime_dir))
    if s is None:
        return False
    s.close()
    return True


def _spawn(files: HostFiles) -> None:
    """Fork the host (detached: a grandchild in a session of its own) and wait until it
    serves, or raise NsHostError with its reason."""
    from pydocklite.detach import fork_detached
    ready_r, ready_w = os.pipe()
    fork_detached(lambda: _host_process(files, ready_w))
    os.close(ready_w)
    import select
    with os.fdopen(ready_r, "rb") as f:
        ready = select.select([f], [], [], START_TIMEOUT)[0]
        line = f.readline().decode(errors="replace").strip() if ready else ""
    if line != "ok":
        why = line[len("error: "):] if line.startswith("error: ") else \
            (line or "it did not start in time")
        raise NsHostError(f"cannot start the namespace host: {why} (see {files.log})")


def _host_process(files: HostFiles, ready_w: int) -> int:
    import signal
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    keep = os.dup(ready_w) if ready_w < 3 else ready_w
    os.closerange(3, keep)
    os.closerange(keep + 1, 65536)
    for sig in (signal.SIGPIPE, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_IGN)
    for sig in (signal.SIGTERM, signal.SIGCHLD, signal.SIGWINCH):
        signal.signal(sig, signal.SIG_DFL)
    from pydocklite.proctitle import set_title
    set_title(f"pydocklite __nshost --runtime-dir {files.dir.parent}", comm="pydocklite-nshost")
    from pydocklite.nshost.serve import run
    try:
        return run(files, keep)
    except BaseException:  # noqa: BLE001 - the log says why; the starter saw the pipe close
        return 1
