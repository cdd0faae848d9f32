"""`exec`: run another process in a running container by joining its namespaces (setns)."""
from __future__ import annotations

import os

from . import state as st
from . import syscalls as sc
from .errors import StateError


def _process_plan(spec, args, env, cwd, uid, gid):
    from .plan import ProcessPlan
    p = spec.process
    base_env = list(p.env) if p else []
    for e in env or ():
        key = e.split("=", 1)[0]
        base_env = [x for x in base_env if x.split("=", 1)[0] != key] + [e]
    return ProcessPlan(args=tuple(args), env=tuple(base_env), cwd=cwd or (p.cwd if p else "/"),
                       uid=p.user.uid if uid is None else uid,
                       gid=(p.user.gid if gid is None else gid),
                       additional_gids=p.user.additional_gids if uid is None else (),
                       umask=p.user.umask, rlimits=(), caps=p.capabilities,
                       no_new_privileges=p.no_new_privileges, oom_score_adj=None,
                       seccomp=spec.linux.seccomp, terminal=False, console_size=None)


def exec_in(root: str, cid: str, spec, args, env=None, cwd=None, uid=None, gid=None,
            stdio=None, tty: bool = False, on_console=None, new_session: bool = False) -> int:
    """Run args inside container cid; returns its exit code (128+N if killed by signal N).

    tty: the process gets a new pty of the container's devpts as its controlling terminal;
    we relay our stdin/stdout to it (runc exec -t), or hand its master to on_console(fd)
    (a server relaying it elsewhere; the fd is then the callee's).
    The forked helper keeps only the fds it needs: a server's other clients' sockets must
    not live on in it for as long as the process runs. new_session: the helper (and so the
    process) leaves our session and process group (a server's Ctrl-C must not reach it)."""
    from . import security
    from .process import _attach_terminal, _exec
    pair = None
    if tty:
        import array  # noqa: F401  (imports must happen before setns into the mount ns)
        import fcntl  # noqa: F401
        import socket
        import termios  # noqa: F401
        from .console import recv_fd, relay
        pair = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    s = st.load(root, cid)
    if s.status != "running" and s.status != "created":
        raise StateError(f"container {cid!r} is {s.status}: exec needs a running container")
    proc = _process_plan(spec, args, env, cwd, uid, gid)
    ctx = security.preload(proc, os.path.join(root, ".seccomp-cache"))
    order = ["user"] + [n.type for n in spec.linux.namespaces if n.type not in ("user", "mount")]
    order.append("mount")
    fds = []
    for typ in order:
        if not any(n.type == typ for n in spec.linux.namespaces):
            continue
        path = f"/proc/{s.pid}/ns/{sc.NS_PROC_NAMES[typ]}"
        fds.append((typ, os.open(path, os.O_RDONLY | os.O_CLOEXEC)))
    root_fd = None
    if not any(n.type == "mount" for n in spec.linux.namespaces):
        # the container shares our mounts and is chrooted: enter the same root
        root_fd = os.open(f"/proc/{s.pid}/root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        fds.append(("root", root_fd))
    if st.proc_start_time(s.pid) != s.pid_start:
        raise StateError(f"container {cid!r} stopped")
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            if new_session:
                os.setsid()
            if stdio is not None:
                for i, fd in enumerate(stdio):
                    if fd is not None and fd != i:
                        os.dup2(fd, i)
            _close_all_but([fd for _, fd in fds] + ([pair[1].fileno()] if pair else []))
            for typ, fd in fds:
                if typ != "root":
                    sc.setns(fd, sc.NS_FLAGS[typ])
            if root_fd is not None:
                os.fchdir(root_fd)
                os.chroot(".")
            inner = os.fork()
            if inner == 0:
                try:
                    os.chdir("/")
                    if pair is not None:
                        # a pty of the container's (its /dev/ptmx), master sent to us
                        _attach_terminal(pair[1], None)
                    security.apply_credentials(proc, lambda m: None, ctx)
                    os.chdir(proc.cwd)
                    security.apply_final(proc, lambda m: None, ctx)
                    _exec(proc)
                except BaseException as e:  # noqa: BLE001 - child must not unwind
                    os.write(2, f"pydocklite runtime exec: {e}\n".encode())
                finally:
                    os._exit(126)
            from .api import wait_exit
            code = wait_exit(inner)
        except BaseException as e:  # noqa: BLE001
            os.write(2, f"pydocklite runtime exec: {e}\n".encode())
        finally:
            os._exit(code)
    for _, fd in fds:
        os.close(fd)
    from .api import wait_exit
    if pair is not None:
        pair[1].close()
        try:
            master = recv_fd(pair[0], 1)
        except OSError:
            master = None
        pair[0].close()
        if master is not None:
            if on_console is not None:
                on_console(master)
            else:
                relay(master)
    return wait_exit(pid)


def _close_all_but(keep) -> None:
    """Close every fd above 2 except `keep` (in a forked child)."""
    low = 3
    for fd in sorted(set(keep)) + [max(os.sysconf("SC_OPEN_MAX"), max(keep or [2]) + 1)]:
        if fd > low:
            os.closerange(low, fd)
        low = max(low, fd + 1)
