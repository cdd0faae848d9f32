"""The created container's start signal: its init waits on ROOT/<id>/init.sock until `start`
connects (init.wait marks an init started through a pipe by `run` instead), or until a byte
arrives on ROOT/<id>/init.fifo (./pydocklite-runtime's sh prelude: start without Python). Apart from
process.py so that `start`, which an engine runs once per container, imports only this."""
from __future__ import annotations

import os

INIT_SOCK = "init.sock"
INIT_WAIT = "init.wait"     # marker while an init started by pipe (run) waits
INIT_FIFO = "init.fifo"     # start without Python: tools/runtime_prelude.sh writes b"s"
INIT_PID = "init.pid"       # the init's pid, digits: the prelude checks it is alive


def unix_path(dirpath: str, name: str, keep: list) -> str:
    """A path for bind/connect that fits sun_path (108 bytes), via /proc/self/fd if long."""
    full = os.path.join(dirpath, name)
    if len(full.encode()) < 100:
        return full
    fd = os.open(dirpath, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    keep.append(fd)
    return f"/proc/self/fd/{fd}/{name}"


def signal_start(cdir: str) -> None:
    """Tell a created container's init to exec (connect to its init.sock)."""
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
    for name in (INIT_SOCK, INIT_FIFO):
        try:
            os.unlink(os.path.join(cdir, name))
        except FileNotFoundError:
            pass
