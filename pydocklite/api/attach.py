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
import threading
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
                                tty)
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
            _attach_running(ctx, req, state, sock, want, resp.leftover)
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


def _attach_running(ctx, req, state, sock, want, leftover: bytes) -> None:
    """A running container: the engine's attach service (its shim's attach socket) gives
    Docker's stream, copied both ways; the client's half-close is passed on."""
    import socket
    import threading
    from pydocklite.containers.attach import connect
    kw = {"detach_keys": req.arg("detachKeys")} if req.arg("detachKeys") else {}
    attached = connect(ctx.settings, state.id, stdin=want["stdin"], stdout=want["stdout"],
                       stderr=want["stderr"], **kw)
    inner = attached.sock

    def client_to_container():
        data = leftover
        try:
            while True:
                if data:
                    inner.sendall(data)
                data = sock.recv(65536)
                if not data:
                    break
        except OSError:
            pass
        try:
            inner.shutdown(socket.SHUT_WR)
        except OSError:
            pass
    threading.Thread(target=client_to_container, daemon=True, name="attach-in").start()
    try:
        while True:
            data = inner.recv(65536)
            if not data:
                break
            sock.sendall(data)
    except OSError:
        pass
    finally:
        inner.close()
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


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


MAX_PENDING = 16             # shims forked ahead and waiting for their start
PENDING_TTL = 120.0          # seconds a shim forked ahead waits before it is let go


class PendingStart:
    """A shim forked at create (launch.fork_ahead): while the client attaches and waits,
    it makes the container's user namespace (id maps written) and loads libfuse3, as `run`
    has its shim do while it prepares; it holds the container's Stdio and exit pipe."""

    def __init__(self, shim, stdio, exit_r: int):
        self.shim, self.stdio, self.exit_r = shim, stdio, exit_r
        self.made = time.monotonic()

    def cancel(self) -> None:
        self.shim.cancel()                  # the waiting shim sees EOF and exits
        for fd in (self.shim.ready_r, self.exit_r):
            try:
                os.close(fd)
            except OSError:
                pass
        self.stdio.close()


def fork_ahead(ctx, state) -> None:
    """At create: have the shim zygote fork the container's shim (see PendingStart); when
    none runs, fork it here, once (the service's child, reaped by a thread:
    detach.fork_detached), and start a zygote for the next ones (start_zygote). Forked in
    a thread after the answer instead, it held the interpreter's lock against the client's
    next requests and the start waited for it longer than the create had. A failed fork
    is logged: the start forks a shim of its own then."""
    from pydocklite.api.streams import Stdio
    from pydocklite.detach import reap_in_thread
    from pydocklite.shim.launch import fork_ahead as fork
    expired = []
    with ctx.lock:
        now = time.monotonic()
        for cid, p in list(ctx.pending_starts.items()):
            if now - p.made > PENDING_TTL:
                expired.append(ctx.pending_starts.pop(cid))
        full = len(ctx.pending_starts) >= MAX_PENDING
    for p in expired:
        p.cancel()
    if full:
        return
    try:
        cfg = state.config.get("Config", {})
        stdio = Stdio(bool(cfg.get("Tty")), state.config.get("ApiConsoleSize"))
        exit_r, exit_w = os.pipe()
        try:
            shim = fork(ctx.settings, exit_w, stdio.shim_fds, preload=True,
                        reaper=reap_in_thread, zygote_absent=lambda: start_zygote(ctx))
        except BaseException:
            os.close(exit_r)
            stdio.close()
            raise
        finally:
            os.close(exit_w)
    except Exception as e:  # noqa: BLE001 - the start forks a shim of its own then
        if ctx.server is not None:
            ctx.server.log(f"forking the shim of {state.id[:12]} ahead failed: {e}")
        return
    stdio.shim_has_them()
    with ctx.lock:
        ctx.pending_starts[state.id] = PendingStart(shim, stdio, exit_r)


ZYGOTE_RETRY = 5.0           # seconds before another zygote is started after one was


def start_zygote(ctx) -> None:
    """Start a fresh shim zygote (shim/zygote.py, start_fresh) in a thread that reaps it,
    unless one was started in the last ZYGOTE_RETRY seconds (it may be getting ready, or
    unable to run: the shims are forked here meanwhile). It exits after its idle time
    without a request, as a CLI's does; the next create starts another."""
    from pydocklite.shim.zygote import start_fresh
    with ctx.lock:
        now = time.monotonic()
        if now - ctx.zygote_started < ZYGOTE_RETRY:
            return
        ctx.zygote_started = now

    def run() -> None:
        code = start_fresh(ctx.settings.runtime_dir)
        if code and ctx.server is not None:      # (0: it left idle; None: disabled)
            ctx.server.log(f"the shim zygote exited with status {code}: the service forks "
                           "the shims itself meanwhile")
    threading.Thread(target=run, daemon=True, name="shim-zygote").start()


def cancel_pending(ctx, cid: str) -> None:
    with ctx.lock:
        pending = ctx.pending_starts.pop(cid, None)
    if pending is not None:
        pending.cancel()


def start_container(ctx, state) -> None:
    """Start through a shim (the one forked at create, else a new one); a client attached
    and waiting gets the container's stdio."""
    from pydocklite.api.streams import Stdio
    with ctx.lock:
        waiting = ctx.pending_attach.pop(state.id, [])
        pending = ctx.pending_starts.pop(state.id, None)
    session = waiting[0] if waiting else None
    for extra in waiting[1:]:
        extra.fail("another client is attached to this container's start")
    if pending is not None:
        res = ctx.containers.start(state.id, pending=pending.shim)
        stdio, exit_r = pending.stdio, pending.exit_r
        if not res.ok and res.error.startswith("the shim died before"):
            os.close(exit_r)         # it was let go meanwhile: a new one, as below
            stdio.close()
            pending = None
    if pending is None:
        cfg = state.config.get("Config", {})
        stdio = Stdio(bool(cfg.get("Tty")), state.config.get("ApiConsoleSize")) \
            if session is not None else None
        exit_r, exit_w = os.pipe()
        try:
            res = ctx.containers.start(state.id, attach=stdio.shim_fds if stdio else None,
                                       exit_fd=exit_w)
        except BaseException:
            os.close(exit_r)
            if stdio is not None:
                stdio.close()
            if session is not None:
                session.fail("start failed")
            raise
        finally:
            os.close(exit_w)
            if stdio is not None:
                stdio.shim_has_them()
    if not res.ok:
        os.close(exit_r)
        if stdio is not None:
            stdio.close()
        if session is not None:
            session.fail(res.error)
        raise HttpError(_start_status(res), _start_message(res))
    kept = None
    if session is None and stdio is not None:
        # nobody attached: the shim just logs; with -i the container's stdin stays open
        kept = stdio.close(keep_stdin=bool(state.config.get("Config", {}).get("OpenStdin")))
    ctx.watch_exit(state, exit_r, close_at_exit=kept)
    if session is not None:
        session.begin(stdio)
        if session.master is not None:
            with ctx.lock:
                ctx.ttys[state.id] = session
    ctx.notify()


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
            session = None
        else:
            set_winsize(session.master, h, w)
    if session is None:
        # a client attached through the shim's attach socket: the shim sizes it
        from pydocklite.containers.attach import resize as shim_resize
        if state.status().running and h and w:
            shim_resize(ctx.settings, state.id, h, w)
        return
    if state.status().shim_alive:
        try:
            os.kill(state.shim_pid, signal.SIGWINCH)
        except ProcessLookupError:
            pass
