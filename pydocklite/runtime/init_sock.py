"""The created container's start signal: its init waits until a byte arrives on
ROOT/<id>/init.fifo (also written by ./pydocklite-runtime's sh prelude: start without Python;
the prelude, which can't unlink it, marks it used with ROOT/<id>/started), or, with poststart
hooks, until `start` connects to ROOT/<id>/init.sock (init.wait marks an init started through
a pipe by `run` instead). Apart from process.py so that `start` imports only this."""
from __future__ import annotations

import os

INIT_SOCK = "init.sock"
INIT_WAIT = "init.wait"     # marker while an init started by pipe (run) waits
INIT_FIFO = "init.fifo"     # start without Python: tools/runtime_prelude.sh writes b"s"
STARTED = "started"         # the prelude's mark that init.fifo was written
INIT_PID = "init.pid"       # "PID STARTTIME": the prelude checks the init is (not) alive
TEARDOWN = "teardown"       # what the prelude's delete removes (api._write_prelude_facts)


def unix_path(dirpath: str, name: str, keep: list) -> str:
    """A path for bind/connect that fits sun_path (108 bytes), via /proc/self/fd if long."""
    full = os.path.join(dirpath, name)
    if len(full.encode()) < 100:
        return full
    fd = os.open(dirpath, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    keep.append(fd)
    return f"/proc/self/fd/{fd}/{name}"


def waiting(cdir: str) -> bool:
    """Does the init of this container's state dir still wait for `start`?"""
    j = os.path.join
    return os.path.exists(j(cdir, INIT_SOCK)) or os.path.exists(j(cdir, INIT_WAIT)) or \
        (os.path.exists(j(cdir, INIT_FIFO)) and not os.path.exists(j(cdir, STARTED)))


def signal_start(cdir: str) -> None:
    """Tell a created container's init to exec (write its init.fifo, or connect to its
    init.sock and wait until the process is about to exec). OSError: it waits no more."""
    fifo = os.path.join(cdir, INIT_FIFO)
    if os.path.exists(fifo):
        # non-blocking: the init holds it open for reading; ENXIO when the init is gone
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            os.write(fd, b"s")
        finally:
            os.close(fd)
        os.unlink(fifo)
        return
    import _socket       # the C module: `socket` costs ~2 ms to import (its enums)
    keep = []
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        s.connect(unix_path(cdir, INIT_SOCK, keep))
        s.sendall(b"s")
        s.recv(1)
    finally:
        s.close()
        for fd in keep:
            os.close(fd)
    try:
        os.unlink(os.path.join(cdir, INIT_SOCK))
    except FileNotFoundError:
        pass
