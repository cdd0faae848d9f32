"""The shim zygote: one small per-user process that forks shims, so that they share memory.

A shim forked from the CLI that ran it carries the CLI's heap alone once the CLI exits
(10-12 MiB PSS per idle container here). Forked from one long-lived process that has
imported what a shim needs and frozen it (gc.freeze: the children's collector never
writes to those objects), the shims share those pages with it and with each other (~7 MiB
per idle container, the zygote included; Android's zygote is the model). A CLI's run
takes as long as before (a request instead of a fork).

- It is made by a shim forked the old way (launch.py) once its container is to start (a
  run that fails before leaves none): a fork of it, detached, before any thread exists,
  that imports the rest of what a shim runs. The API service starts one as a new
  interpreter instead (start_fresh): a fork of the service would carry the service's
  heap, and so would every shim forked from it. One per user and code version (its
  socket and lock are named by the code's stamp). It exits after
  PYDOCKLITE_SHIM_ZYGOTE_IDLE seconds (default 30; 0: no zygote) without a request; the
  shims it forked stay (init or the user's subreaper takes them).
- ask() hands it the fds a shim needs (go and ready pipes, exit pipe, attached stdio) over
  a unix socket in the runtime directory (0700) with the caller's settings, environment,
  umask and directory; only a peer of our uid is served. A caller whose process context
  differs from the zygote's (cgroups, namespaces, limits, credentials, security state,
  CPU affinity: what a fork inherits and a request can't carry) is refused, and forks its
  shim itself, as is every caller when the zygote is absent or fails.
"""
from __future__ import annotations

import json
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import List, Optional

    from pydocklite.settings import Settings

IDLE = 30.0
MAX_FDS = 8


def idle_time() -> float:
    from pydocklite.settings import env_seconds
    return env_seconds("PYDOCKLITE_SHIM_ZYGOTE_IDLE", IDLE)


def _stamp() -> str:
    """The code's identity: a zygote serves only callers running the same code."""
    import zlib
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        mtime = os.stat(os.path.join(here, "shim.py")).st_mtime_ns
    except OSError:
        mtime = 0
    return f"{zlib.crc32(f'{os.path.realpath(sys.executable)}|{here}|{mtime}'.encode()):08x}"


def paths(runtime_dir) -> tuple:
    """(socket, lock) of this code's zygote."""
    base = os.path.join(str(runtime_dir), f"shim-zygote-{_stamp()}")
    return base + ".sock", base + ".lock"


def _read(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def context() -> str:
    """What a forked process inherits that a request doesn't carry."""
    parts = [f"{os.getuid()}:{os.getgid()}:{os.getgroups()}"]
    for ns in ("user", "mnt", "net", "pid", "uts", "ipc", "cgroup"):
        try:
            parts.append(os.readlink(f"/proc/self/ns/{ns}"))
        except OSError:
            parts.append("")
    parts.append(_read("/proc/self/cgroup"))
    parts.append(_read("/proc/self/limits"))
    parts.append(_read("/proc/self/oom_score_adj"))
    parts.append(_read("/proc/self/attr/current"))
    parts.extend(ln for ln in _read("/proc/self/status").splitlines()
                 if ln.startswith(("Cap", "NoNewPrivs", "Seccomp")))
    try:
        parts.append(str(sorted(os.sched_getaffinity(0))))
    except (AttributeError, OSError):
        pass
    return "\n".join(parts)


def _settings_out(settings: Settings) -> dict:
    d = settings._asdict()
    return {k: (str(v) if isinstance(v, os.PathLike) else v) for k, v in d.items()}


def _settings_in(d: dict) -> Settings:
    from pathlib import Path

    from pydocklite.settings import Settings
    for k in ("data_root", "config_dir", "runtime_dir"):
        d[k] = Path(d[k])
    if d.get("docker_config"):
        d["docker_config"] = Path(d["docker_config"])
    for k in ("insecure_registries", "cgroup_base"):
        d[k] = tuple(d.get(k) or ())
    return Settings(**d)


# --- the caller's side ----------------------------------------------------------------------
def ask(settings: Settings, fds: List[int], exit_fd: Optional[int], nattach: int,
        preload: bool) -> str:
    """Have the zygote fork a shim with these fds ([go_r, ready_w, exit_fd?, attach...]):
    "forked", "absent" (none runs: the caller's shim may make one), "refused" (another
    context) or "failed"."""
    if not idle_time():
        return "refused"
    sock_path, _ = paths(settings.runtime_dir)
    # _socket, not socket: the CLI has no other use for socket.py (and its selectors)
    import _socket
    import array
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET | _socket.SOCK_CLOEXEC)
    try:
        try:
            s.connect(sock_path)
        except OSError:
            return "absent"
        s.settimeout(10)
        req = {"settings": _settings_out(settings), "env": dict(os.environ),
               "cwd": _cwd(), "umask": _umask(), "ctx": context(),
               "exit": exit_fd is not None, "attach": nattach, "preload": preload}
        s.sendmsg([json.dumps(req).encode()],
                  [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, array.array("i", fds))])
        reply = s.recv(4096)
    except OSError:
        return "failed"
    finally:
        s.close()
    try:
        got = json.loads(reply or b"{}")
    except ValueError:
        return "failed"
    if got.get("ok"):
        return "forked"
    return "refused" if got.get("error") == "context" else "failed"


def _cwd() -> str:
    try:
        return os.getcwd()
    except OSError:
        return "/"


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# --- the zygote -----------------------------------------------------------------------------
def start_fresh(runtime_dir) -> Optional[int]:
    """Run a zygote in a new interpreter on this code (`python3 -I -S`, this process's
    sys.path), in a session of its own; wait for it to exit (call this in a thread: it is
    the zygote's reaper) and return its exit status (0: it left idle, or another zygote
    was running); None when zygotes are disabled or it could not be started.

    For the API service (RSS ~30 MiB here, a CLI's zygote ~17): its shims, forked from it,
    took 5-6 ms longer to start a container (the runtime's forks copy the page tables of a
    bigger process, and the writes after them copy its pages), and held ~1.3 MiB PSS more
    per container; a zygote forked off the service carries the same heap (and gained ~1.9
    ms). Only absolute entries of sys.path are passed on (the new process runs in /)."""
    idle = idle_time()
    if not idle:
        return None
    import subprocess
    path = [p for p in sys.path if os.path.isabs(p)]
    code = ("import sys; sys.path[:] = %r; from pydocklite.shim.zygote import _zygote; "
            "sys.exit(_zygote(%r, %r))" % (path, str(runtime_dir), idle))
    try:
        proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", code],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, cwd="/", start_new_session=True)
    except OSError:
        return None
    return proc.wait()


def become(runtime_dir: str) -> None:
    """Fork the zygote off this process (a shim waiting for its container, before it has
    a thread) unless the idle time is 0; returns at once in the caller."""
    idle = idle_time()
    if not idle:
        return
    from pydocklite.detach import fork_detached
    fork_detached(lambda: _zygote(str(runtime_dir), idle))


def _zygote(runtime_dir: str, idle: float) -> int:
    import fcntl
    import gc
    import signal
    import socket
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.closerange(3, max(os.sysconf("SC_OPEN_MAX"), 4))   # the caller's fds are not ours
    os.chdir("/")                      # (the first caller's directory is not held)
    from pydocklite.layout import RuntimeLayout
    RuntimeLayout(runtime_dir).ensure()
    sock_path, lock_path = paths(runtime_dir)
    lock = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.fstat(lock).st_ino != os.stat(lock_path).st_ino:
            return 0                 # the lock file of one exiting: the next caller starts one
    except OSError:
        return 0                     # another zygote runs
    from pydocklite.shim.launch import _PRELOAD, _ZYGOTE_PRELOAD, _preload
    _preload(_PRELOAD[0] + _PRELOAD[1] + _ZYGOTE_PRELOAD)     # what a shim runs
    from snapshotter.fuse_ll3 import load_libfuse3
    load_libfuse3()
    try:
        os.unlink(sock_path)         # a killed zygote's
    except FileNotFoundError:
        pass
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    srv.bind(sock_path)
    srv.listen(64)
    bound = os.stat(sock_path).st_ino
    from pydocklite.proctitle import set_title
    set_title(f"pydocklite __shim-zygote --runtime-dir {runtime_dir}", comm="pdl-zygote")
    ctx = context()

    from pydocklite.detach import reap_exited
    signal.signal(signal.SIGCHLD, lambda _n, _f: reap_exited())
    for sig in (signal.SIGPIPE, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_IGN)
    gc.collect()
    gc.freeze()          # the children's collections never touch (copy) what is here now
    import select
    try:
        while True:
            if not select.select([srv], [], [], idle)[0]:
                break
            try:
                _serve_one(srv, ctx, lock)
            except OSError:
                pass                 # (a caller gone before its accept)
    finally:
        # no new caller finds it, then those already queued are served
        try:
            if os.stat(sock_path).st_ino == bound:
                os.unlink(sock_path)
        except OSError:
            pass
        srv.setblocking(False)
        while True:
            try:
                _serve_one(srv, ctx, lock)
            except BlockingIOError:
                break
        try:
            os.unlink(lock_path)
        except OSError:
            pass
    return 0


def _serve_one(srv, ctx: str, lock: int) -> None:
    import socket
    import struct
    conn, _ = srv.accept()
    fds: List[int] = []
    try:
        conn.setblocking(True)
        conn.settimeout(5)
        uid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                  struct.calcsize("3i")))[1]
        msg, fds, _flags, _addr = socket.recv_fds(conn, 1 << 20, MAX_FDS)
        if uid != os.getuid():
            return
        req = json.loads(msg)
        if not isinstance(req, dict) or req.get("ctx") != ctx:
            conn.send(b'{"error": "context"}')
            return
        want = 2 + bool(req.get("exit")) + int(req.get("attach") or 0)
        if len(fds) != want:
            conn.send(b'{"error": "fds"}')
            return
        # the answer before the fork: the caller goes on while it is made (a fork that
        # fails closes the fds: the caller's shim is gone as if it had died)
        conn.send(b'{"ok": true}')
        if os.fork() == 0:
            code = 1
            try:
                os.close(srv.detach())
                os.close(conn.detach())
                os.close(lock)
                code = _child(req, fds)
            finally:
                os._exit(code)
    except Exception:  # noqa: BLE001 - a bad request or a caller gone: the next one is served
        pass
    finally:
        for fd in fds:
            os.close(fd)
        conn.close()


def _child(req: dict, fds: List[int]) -> int:
    """A shim, as launch.fork_ahead's forked one, with the caller's surroundings."""
    import signal
    os.setsid()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.environ.clear()
    os.environ.update(req["env"])
    os.umask(int(req["umask"]))
    try:
        os.chdir(req["cwd"])
    except OSError:
        os.chdir("/")
    go_r, ready_w = fds[0], fds[1]
    rest = fds[2:]
    exit_fd = rest.pop(0) if req.get("exit") else None
    from pydocklite.shim.launch import _shim_process
    return _shim_process(_settings_in(req["settings"]), go_r, ready_w, exit_fd,
                         rest or None, bool(req.get("preload")))
