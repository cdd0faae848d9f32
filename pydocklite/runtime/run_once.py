"""`run`: create + start + wait (foreground) + delete of one container, as runc's `run`.

The init is started through a pipe (no start socket to set up, see init_sock.py) and waits
for our byte; signals we receive meanwhile are forwarded to it. Apart from api.py, which
keeps the facade (api.run calls this).
"""
from __future__ import annotations

import os

from . import state as st
from .api import _root, become_subreaper, create, delete, wait_exit
from .errors import RuntimeErr, StateError


def run(bundle: str, cid: str, root: str = None, stdio=None, console_socket: str = None,
        prepare_rootfs=None, on_warning=None, detach: bool = False, pid_file: str = None,
        preserve_fds: int = 0) -> int:
    """create + start + wait (foreground) + delete; returns the container's exit code.

    detach=True returns 0 once started (the container keeps running, delete it later).
    Signals INT/TERM/HUP/QUIT/USR1/USR2 received meanwhile are forwarded to the init.
    process.terminal without console_socket: the pty is relayed to our stdin/stdout (runc's
    foreground mode); with detach it needs a console socket.
    """
    if not detach:
        become_subreaper()
    created = create(bundle, cid, root, stdio=stdio, console_socket=console_socket,
                     prepare_rootfs=prepare_rootfs, pid_file=pid_file, _start_by_pipe=True,
                     _own_console=not detach, preserve_fds=preserve_fds)
    if on_warning:
        for w in created.warnings:
            on_warning(w)
    try:
        # _signal: the C module under `signal`, whose IntEnums cost ms to import
        import _signal
        forwarded = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP, _signal.SIGQUIT,
                     _signal.SIGUSR1, _signal.SIGUSR2, _signal.SIGWINCH)
        old = {}
        if not detach:
            for sig in forwarded:
                old[sig] = _signal.signal(sig, lambda n, f: _forward(created.pid, n))
        for w in _start_by_pipe(cid, _root(root), created.start_fd, created.hooks):
            if on_warning:
                on_warning(w)
        if detach:
            return 0
        if created.console_master is not None:
            from .console import relay
            relay(created.console_master)
        code = wait_exit(created.pid)
        for sig, h in old.items():
            _signal.signal(sig, h)
    except BaseException:
        try:
            delete(cid, root, force=True, _hooks=created.hooks)
        except RuntimeErr:
            pass
        raise
    for w in delete(cid, root, force=True, _hooks=created.hooks):
        if on_warning:
            on_warning(w)
    return code


def _start_by_pipe(cid: str, root: str, fd: int, hooks) -> list:
    from . import init_sock
    from .hooks import run_hooks_warning
    cdir = st.container_dir(root, cid)
    try:
        os.write(fd, b"s")
    except BrokenPipeError:
        raise StateError(f"container {cid!r}: its init died before start") from None
    finally:
        os.close(fd)
        try:
            os.unlink(os.path.join(cdir, init_sock.INIT_WAIT))
        except FileNotFoundError:
            pass
    if hooks.poststart:
        return run_hooks_warning(hooks.poststart, st.oci_state(st.load(root, cid)),
                                 "poststart")
    return []


def _forward(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


