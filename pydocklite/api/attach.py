"""POST /containers/{id}/attach (hijacked), the start that hands an attached client's
pipes to the container's shim, and resize.

`docker run` attaches before it starts: the attach waits here (AttachSession) and the
start gives the shim the session's pipes (or the slave of a pty of ours, with a tty) as
the stdio of a foreground client, plus an exit pipe, as `pydocklite run` does. The shim
owns the container: if this service dies, the shim keeps logging and the container runs
on; the client sees its stream end.

A client attaching to a container that already runs gets its output as the log grows
(stdin is not connected) until the engine's attach service gives the shim's streams.
"""
from __future__ import annotations

import os
import time

from pydocklite.api.http import HttpError
from pydocklite.api.streams import STDERR, STDOUT, AttachSession, frame
from pydocklite.api.util import client_closed


def attach(ctx, req, resp, id):
    state = ctx.containers.store.get(id)
    tty = bool(state.config.get("Config", {}).get("Tty"))
    want = {k: req.flag(k) for k in ("stdin", "stdout", "stderr")}
    stream, logs = req.flag("stream"), req.flag("logs")
    if not stream and not logs:
        raise HttpError(400, "attach needs stream=1 or logs=1")
    session = None
    if stream and not state.status().running:
        # registered before the 101 goes out: the client starts the container as soon as
        # it has the answer, and the start must find this session
        session = AttachSession(req.conn.sock, want["stdin"], want["stdout"], want["stderr"],
                                tty, state.config.get("ApiConsoleSize"))
        with ctx.lock:
            ctx.pending_attach.setdefault(state.id, []).append(session)
    try:
        sock = resp.hijack("application/vnd.docker.raw-stream" if tty
                           else "application/vnd.docker.multiplexed-stream")
    except BaseException:
        _unregister(ctx, state.id, session)
        raise
    if session is not None:
        session.leftover = resp.leftover
    ctx.server.busy(+1)
    try:
        if logs:
            _send_logs(ctx, state, sock, tty, want, follow=False)
        if not stream:
            return None
        if session is None:
            _send_logs(ctx, state, sock, tty, want, follow=True, since=time.time())
            return None
        try:
            while not session.started.wait(0.2):
                if client_closed(sock, half_close_ok=True):
                    return None
        finally:
            _unregister(ctx, state.id, session)
        if session.pumps is not None:
            session.pumps.wait()
        with ctx.lock:
            if ctx.ttys.get(state.id) is session:
                del ctx.ttys[state.id]
            session.close()
    finally:
        ctx.server.busy(-1)
    return None


def _unregister(ctx, cid: str, session) -> None:
    if session is None:
        return
    with ctx.lock:
        waiting = ctx.pending_attach.get(cid, [])
        if session in waiting:
            waiting.remove(session)
        if not waiting:
            ctx.pending_attach.pop(cid, None)


def _send_logs(ctx, state, sock, tty, want, follow: bool, since=None) -> None:
    from pydocklite.shim.logs import read_logs
    if not os.path.exists(state.log_path):
        return
    store = ctx.containers.store

    def stopped() -> bool:
        if client_closed(sock, half_close_ok=True):
            return True
        try:
            return not store.load(state.id).status().running
        except Exception:  # noqa: BLE001 - removed
            return True
    for name, data in read_logs(state.log_path, follow=follow, since=since,
                                stop_when=stopped):
        if not want["stderr" if name == "stderr" else "stdout"]:
            continue
        try:
            sock.sendall(data if tty else frame(STDERR if name == "stderr" else STDOUT, data))
        except OSError:
            return


def start_container(ctx, state) -> None:
    """Start through a shim; a client attached and waiting gets the container's stdio."""
    with ctx.lock:
        waiting = ctx.pending_attach.pop(state.id, [])
    session = waiting[0] if waiting else None
    for extra in waiting[1:]:
        extra.fail("another client is attached to this container's start")
    shim_fds, ours = session.shim_fds() if session is not None else (None, None)
    exit_r, exit_w = os.pipe()
    try:
        res = ctx.containers.start(state.id, attach=shim_fds, exit_fd=exit_w)
    except BaseException:
        os.close(exit_r)
        _close_ours(ours)
        if session is not None:
            session.close()
            session.fail("start failed")
        raise
    finally:
        os.close(exit_w)
        for fd in set(shim_fds or ()):
            os.close(fd)
    if not res.ok:
        os.close(exit_r)
        _close_ours(ours)
        if session is not None:
            session.close()
            session.fail(res.error)
        raise HttpError(_start_status(res), _start_message(res))
    ctx.watch_exit(state, exit_r)
    from pydocklite.api.events import emit_container
    emit_container(ctx, "start", state)
    if session is not None:
        if session.master is not None:
            with ctx.lock:
                ctx.ttys[state.id] = session
        session.begin(ours)
    ctx.notify()


def _close_ours(ours) -> None:
    if not ours:
        return
    in_w, outputs = ours
    for fd in ([in_w] if in_w is not None else []) + [fd for fd, _ in outputs]:
        try:
            os.close(fd)
        except OSError:
            pass


def _start_status(res) -> int:
    return 400 if res.exit_code in (126, 127) else 500


def _start_message(res) -> str:
    """The docker CLI picks `run`'s exit code from these words of dockerd's message."""
    text = res.error
    if res.exit_code == 127 and "executable file not found" not in text:
        text += ": executable file not found in $PATH"
    elif res.exit_code == 126 and "permission denied" not in text:
        text += ": permission denied"
    return text


def resize(ctx, state, h: int, w: int) -> None:
    """Size the terminal of a container attached through this service: our pty's size,
    then SIGWINCH to the shim, which copies it onto the container's pty."""
    import signal
    from pydocklite.api.streams import set_winsize
    if h < 0 or w < 0 or h > 0xFFFF or w > 0xFFFF:
        raise HttpError(400, "invalid terminal size")
    if not state.config.get("Config", {}).get("Tty"):
        raise HttpError(400, f"container {state.id[:12]} has no terminal (created without -t)")
    with ctx.lock:
        session = ctx.ttys.get(state.id)
        if session is None or session.master is None:
            return              # no client of ours holds its terminal: nothing to size
        set_winsize(session.master, h, w)
    if state.status().shim_alive:
        try:
            os.kill(state.shim_pid, signal.SIGWINCH)
        except ProcessLookupError:
            pass
