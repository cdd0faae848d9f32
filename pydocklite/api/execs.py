"""/containers/{id}/exec and /exec/{id}/...: an exec is created (its config kept here),
then started: hijacked (its stdio over the client's socket, framed unless tty) or
detached. The process runs through the container service's exec, in a thread of ours
that waits for it and records its exit code for inspect."""
from __future__ import annotations

import os
import threading

from pydocklite.api.create import _console_size, _field, _strings
from pydocklite.api.http import HttpError
from pydocklite.api.streams import STDERR, STDOUT, Pumps, set_winsize

MAX_EXECS = 1000


class ExecSession:
    def __init__(self, eid: str, cid: str, config: dict):
        self.id, self.cid, self.config = eid, cid, config
        self.running = False
        self.started = False
        self.exit_code = None
        self.master = None           # the pty's master (tty), for resize
        self.lock = threading.Lock()

    def inspect(self) -> dict:
        c = self.config
        cmd = list(c["Cmd"])
        return {"ID": self.id, "Running": self.running, "ExitCode": self.exit_code,
                "ProcessConfig": {"tty": c["Tty"], "entrypoint": cmd[0] if cmd else "",
                                  "arguments": cmd[1:], "privileged": c["Privileged"],
                                  "user": c["User"] or ""},
                "OpenStdin": c["AttachStdin"], "OpenStderr": c["AttachStderr"],
                "OpenStdout": c["AttachStdout"], "CanRemove": not self.running,
                "ContainerID": self.cid, "DetachKeys": c["DetachKeys"], "Pid": 0}


def create(ctx, req, resp, id):
    body = req.read_json(default=None)
    if body is None:
        raise HttpError(400, "the request body is empty: send the exec's config as JSON")
    state = ctx.containers.store.get(id)
    if not state.status().running:
        raise HttpError(409, f"container {state.id} is not running")
    cmd = _strings(body, "Cmd")
    if not cmd:
        raise HttpError(400, "No exec command specified")
    config = {
        "Cmd": cmd, "Env": _strings(body, "Env"), "User": _field(body, "User", str) or None,
        "WorkingDir": _field(body, "WorkingDir", str) or None,
        "Tty": bool(_field(body, "Tty", bool, default=False)),
        "AttachStdin": bool(_field(body, "AttachStdin", bool, default=False)),
        "AttachStdout": bool(_field(body, "AttachStdout", bool, default=False)),
        "AttachStderr": bool(_field(body, "AttachStderr", bool, default=False)),
        "Privileged": bool(_field(body, "Privileged", bool, default=False)),
        "DetachKeys": _field(body, "DetachKeys", str) or "",
    }
    eid = os.urandom(32).hex()
    with ctx.lock:
        if len(ctx.execs) >= MAX_EXECS:
            for old in [k for k, v in ctx.execs.items() if v.started and not v.running]:
                del ctx.execs[old]
        ctx.execs[eid] = ExecSession(eid, state.id, config)
    resp.json({"Id": eid}, status=201)
    return None


def _session(ctx, eid: str) -> ExecSession:
    with ctx.lock:
        s = ctx.execs.get(eid)
    if s is None:
        raise HttpError(404, f"No such exec instance: {eid}")
    return s


def inspect(ctx, req, resp, id):
    return _session(ctx, id).inspect()


def start(ctx, req, resp, id):
    session = _session(ctx, id)
    body = req.read_json(default={})
    detach = bool(_field(body, "Detach", bool, default=False))
    with session.lock:
        if session.started:
            raise HttpError(409, f"exec {id[:12]} has already run")
        session.started = True
    c = session.config
    state = ctx.containers.store.get(session.cid)
    if not state.status().running:
        raise HttpError(409, f"container {state.id} is not running")
    if detach:
        devnull = os.open(os.devnull, os.O_RDWR)
        session.running = True
        threading.Thread(target=_run, args=(ctx, session, (devnull, devnull, devnull), None,
                                            [devnull]), daemon=True).start()
        resp.send(200)
        return None
    tty = c["Tty"]
    sock = resp.hijack("application/vnd.docker.raw-stream" if tty
                       else "application/vnd.docker.multiplexed-stream")
    ctx.server.busy(+1)
    try:
        if tty:
            _start_tty(ctx, session, sock, resp.leftover, _console_size(body.get("ConsoleSize")))
        else:
            _start_pipes(ctx, session, sock, resp.leftover)
    finally:
        ctx.server.busy(-1)
    return None


def _start_pipes(ctx, session, sock, resp_leftover: bytes) -> None:
    c = session.config
    in_r, in_w = os.pipe() if c["AttachStdin"] else (os.open(os.devnull, os.O_RDONLY), None)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    outputs = [(out_r, STDOUT), (err_r, STDERR)]
    pumps = Pumps(sock, outputs, in_w, raw=False, initial=resp_leftover)
    session.running = True
    pumps.start()
    # our copies of the process's ends are closed when it exits: its output ends then
    _run(ctx, session, (in_r, out_w, err_w), None, [in_r, out_w, err_w])
    pumps.wait()


def _start_tty(ctx, session, sock, resp_leftover: bytes, size) -> None:
    got = threading.Event()
    holder = {}

    def on_console(master: int) -> None:
        if size:
            set_winsize(master, *size)
        session.master = os.dup(master)
        pumps = Pumps(sock, [(master, STDOUT)], os.dup(master)
                      if session.config["AttachStdin"] else None, raw=True,
                      initial=resp_leftover)
        pumps.start()
        holder["pumps"] = pumps
        got.set()
    devnull = os.open(os.devnull, os.O_RDWR)
    session.running = True
    _run(ctx, session, (devnull, devnull, devnull), on_console, [devnull])
    if got.is_set():
        holder["pumps"].wait()
    with session.lock:
        if session.master is not None:
            os.close(session.master)
            session.master = None


def _run(ctx, session, stdio, on_console, close_after) -> None:
    c = session.config
    code = 126
    try:
        code = ctx.containers.exec(session.cid, list(c["Cmd"]), list(c["Env"]), c["User"],
                                   c["WorkingDir"], c["Tty"], c["AttachStdin"], stdio=stdio,
                                   on_console=on_console, new_session=True)
    except Exception as e:  # noqa: BLE001 - the client sees it on stderr, inspect the code
        try:
            os.write(stdio[2], f"exec failed: {e}\n".encode())
        except OSError:
            pass
        code = 126 if "permission" in str(e).lower() else 127 \
            if "not found" in str(e).lower() or "no such file" in str(e).lower() else 126
    finally:
        _close(close_after)
        session.exit_code = code
        session.running = False
        from pydocklite.api.events import emit_container
        try:
            emit_container(ctx, "exec_die", ctx.containers.store.load(session.cid),
                           execID=session.id, exitCode=code)
        except Exception:  # noqa: BLE001 - the container went meanwhile
            pass


def _close(fds: list) -> None:
    while fds:
        try:
            os.close(fds.pop())
        except OSError:
            pass


def resize(ctx, req, resp, id):
    session = _session(ctx, id)
    h, w = req.int_arg("h", 0), req.int_arg("w", 0)
    if h < 0 or w < 0 or h > 0xFFFF or w > 0xFFFF:
        raise HttpError(400, "invalid terminal size")
    with session.lock:
        if session.master is not None:
            set_winsize(session.master, h, w)
    return None
