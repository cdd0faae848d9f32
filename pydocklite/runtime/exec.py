"""`exec`: run another process in a running container by joining its namespaces (setns).

    P (runtime) ──fork──► C: joins the container's cgroup, setns into its namespaces
                          C ──fork──► I: the process (pty, credentials, LSM label, exec)
    foreground: C waits for I and exits with its status; P waits for C.
    detach (runc exec -d): C sends I's pid to P and exits at once, so I is reparented to the
    nearest subreaper (an engine's shim), which reaps it; P writes --pid-file and returns.

The process comes from the container's spec with overrides (args, env, cwd, user), or whole
from a runtime-spec process object (`exec --process process.json`, what engines pass).
Terminal: `relay` (our stdin/stdout relay a new pty of the container's devpts, runc exec -t)
or a console socket (the pty master is sent there, runc exec -t --console-socket S).
"""
from __future__ import annotations

import os

from . import state as st
from . import syscalls as sc
from .errors import RuntimeErr, StateError


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
                       seccomp=spec.linux.seccomp, terminal=False, console_size=None,
                       apparmor_profile=p.apparmor_profile, selinux_label=p.selinux_label,
                       personality=spec.linux.personality)


def plan_from_process_json(spec, obj: dict):
    """(ProcessPlan, warnings) for a runtime-spec process object (exec --process FILE): the
    whole process as given (env not merged), the container's seccomp and personality."""
    from . import spec_fields
    from .errors import SpecError
    from .plan import ProcessPlan
    from .spec import _parse_process
    if not isinstance(obj, dict):
        raise SpecError("exec --process: the file must hold a JSON object (a runtime-spec "
                        "process)")
    warnings = spec_fields.check(obj, "process")
    p = _parse_process({"process": obj})
    if not p.args:
        raise SpecError("exec --process: process.args must name the program to run")
    if p.apparmor_profile or p.selinux_label:
        from . import lsm
        lsm.check(p.apparmor_profile, p.selinux_label, "", lsm.detect())
    return ProcessPlan(args=p.args, env=p.env, cwd=p.cwd, uid=p.user.uid, gid=p.user.gid,
                       additional_gids=p.user.additional_gids, umask=p.user.umask,
                       rlimits=p.rlimits, caps=p.capabilities,
                       no_new_privileges=p.no_new_privileges, oom_score_adj=p.oom_score_adj,
                       seccomp=spec.linux.seccomp, terminal=p.terminal,
                       console_size=p.console_size, apparmor_profile=p.apparmor_profile,
                       selinux_label=p.selinux_label,
                       personality=spec.linux.personality), warnings


def exec_in(root: str, cid: str, spec, args, env=None, cwd=None, uid=None, gid=None,
            stdio=None, tty: bool = False, on_console=None, new_session: bool = False) -> int:
    """Run args inside container cid; returns its exit code (128+N if killed by signal N).
    tty: the process gets a new pty of the container's devpts as its controlling terminal;
    we relay our stdin/stdout to it (runc exec -t), or hand its master to on_console(fd)
    (a server relaying it elsewhere; the fd is then the callee's).
    The forked helper keeps only the fds it needs: a server's other clients' sockets must
    not live on in it for as long as the process runs. new_session: the helper (and so the
    process) leaves our session and process group (a server's Ctrl-C must not reach it)."""
    proc = _process_plan(spec, args, env, cwd, uid, gid)
    return run_process(root, cid, spec, proc, stdio=stdio, terminal="relay" if tty else None,
                       on_console=on_console, new_session=new_session)


def run_process(root: str, cid: str, spec, proc, stdio=None, terminal=None,
                console_socket: str = None, detach: bool = False, pid_file: str = None,
                preserve_fds: int = 0, on_console=None, new_session: bool = False) -> int:
    """Carry out an exec of `proc` (a ProcessPlan) in container cid. terminal: None, "relay"
    (to our stdin/stdout, or to on_console(master fd)) or "socket" (console_socket).
    Returns the exit code, or 0 once started with detach. The helper keeps only the fds it
    needs, fds 3..3+preserve_fds-1 included (runc's --preserve-fds)."""
    from . import security
    from .api import wait_exit
    from .process import _attach_terminal, _exec, _send, close_extra_fds
    pair = console = None
    if terminal is not None:
        import array  # noqa: F401  (imports must happen before setns into the mount ns)
        import fcntl  # noqa: F401
        import socket
        import struct  # noqa: F401
        import termios  # noqa: F401
        from .console import recv_fd, relay
        if terminal == "socket":
            if not console_socket:
                raise RuntimeErr("exec with a terminal needs --console-socket (or run it in "
                                 "the foreground without --detach)")
            from .process import _setup_console
            keep = []
            try:
                console = _setup_console(console_socket, keep)
            except OSError as e:
                raise RuntimeErr(f"console socket {console_socket}: {e.strerror or e}") from None
            finally:
                for fd in keep:
                    os.close(fd)
        else:
            pair = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    s = st.load(root, cid)
    if s.status not in ("running", "created"):
        raise StateError(f"cannot exec in container {cid!r}: container not running "
                         f"({s.status})")
    from . import minijson      # noqa: F401  (the child reports through it after setns)
    ctx = security.preload(proc, os.path.join(root, ".seccomp-cache"))
    fds = _namespace_fds(spec, s.pid)
    if st.proc_start_time(s.pid) != s.pid_start:
        raise StateError(f"container {cid!r} stopped")
    cgroup_procs = [os.path.join(d, "cgroup.procs") for d in _cgroup_dirs(s.cgroup)]
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        code = 1
        try:
            if new_session:
                os.setsid()
            if stdio is not None:
                for i, fd in enumerate(stdio):
                    if fd is not None and fd != i:
                        os.dup2(fd, i)
            _close_all_but([fd for _, fd in fds] + [w] + list(range(3, 3 + preserve_fds))
                           + ([pair[1].fileno()] if pair else [])
                           + ([console.fileno()] if console is not None else []))
            for f in cgroup_procs:
                try:
                    with open(f, "w") as fh:
                        fh.write("0")       # 0: the writer itself; I inherits it
                except OSError:
                    pass                    # rootless without delegation: stays in ours
            for typ, fd in fds:
                if typ != "root":
                    sc.setns(fd, sc.NS_FLAGS[typ])
                else:
                    os.fchdir(fd)
                    os.chroot(".")
            inner = os.fork()
            if inner == 0:
                try:
                    os.close(w)
                    os.chdir("/")
                    if pair is not None:
                        _attach_terminal(pair[1], proc.console_size)
                    elif console is not None:
                        _attach_terminal(console, proc.console_size)
                    if proc.umask is not None:
                        os.umask(proc.umask)
                    security.apply_credentials(proc, lambda m: None, ctx)
                    os.chdir(proc.cwd)
                    security.apply_final(proc, lambda m: None, ctx)
                    close_extra_fds(3 + preserve_fds)
                    _exec(proc)
                except BaseException as e:  # noqa: BLE001 - child must not unwind
                    os.write(2, f"pydocklite runtime exec: {e}\n".encode())
                finally:
                    os._exit(126)
            _send(w, {"t": "pid", "pid": inner})
            os.close(w)
            code = 0 if detach else wait_exit(inner)
        except BaseException as e:  # noqa: BLE001
            os.write(2, f"pydocklite runtime exec: {e}\n".encode())
        finally:
            os._exit(code)
    os.close(w)
    for _, fd in fds:
        os.close(fd)
    if console is not None:
        console.close()
    with os.fdopen(r, "rb") as up:
        line = up.readline()
    from .minijson import loads
    inner_pid = loads(line)["pid"] if line else 0
    if pid_file and inner_pid:
        tmp = pid_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(inner_pid))
        os.replace(tmp, pid_file)
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
    code = wait_exit(pid)
    if not inner_pid:
        raise RuntimeErr(f"exec in container {cid!r} failed before the process started")
    return code


def _namespace_fds(spec, pid: int) -> list:
    """fds of the container's namespaces to join, user first and mount last; ("root", fd)
    for a container without a mount namespace of its own (it is chrooted)."""
    order = ["user"] + [n.type for n in spec.linux.namespaces if n.type not in ("user", "mount")]
    order.append("mount")
    fds = []
    for typ in order:
        if not any(n.type == typ for n in spec.linux.namespaces):
            continue
        path = f"/proc/{pid}/ns/{sc.NS_PROC_NAMES[typ]}"
        fds.append((typ, os.open(path, os.O_RDONLY | os.O_CLOEXEC)))
    if not any(n.type == "mount" for n in spec.linux.namespaces):
        fds.append(("root", os.open(f"/proc/{pid}/root",
                                    os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)))
    return fds


def _cgroup_dirs(paths) -> list:
    out = []
    for _c, d in paths or ():
        if d not in out:
            out.append(d)
    return out


def _close_all_but(keep) -> None:
    """Close every fd above 2 except `keep` (in a forked child)."""
    low = 3
    for fd in sorted(set(keep)) + [max(os.sysconf("SC_OPEN_MAX"), max(keep or [2]) + 1)]:
        if fd > low:
            os.closerange(low, fd)
        low = max(low, fd + 1)
