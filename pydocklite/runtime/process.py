"""The executor: carry out a Plan with a fork sequence and a sync pipe.

  parent P ──fork──► intermediate C: join/unshare user ns ─(sync)─► P writes the id maps
                                      (newuidmap from P's namespace) and joins the cgroup
                     C: other namespaces, prepare_rootfs hook, unshare pid ──fork──► init I
                     C sends I's pid and exits (I is reparented to P when P is a subreaper)
  init I: mounts, pivot_root, container steps, credentials ──"ready"──► P
          blocks until `start` writes "s" into ROOT/<id>/init.fifo (or, for a container with
          poststart hooks, connects to ROOT/<id>/init.sock and waits for its "k"), then execs.

Children talk to P with JSON lines on one pipe: warn / sync / pid / ready / error.
Nothing a child raises reaches P's code: every child ends in os._exit.
"""
from __future__ import annotations

import os
import sys

from . import minijson
from . import mounts
from . import security
from . import syscalls as sc
from .errors import SetupError

from .init_sock import INIT_FIFO, INIT_SOCK, INIT_WAIT, unix_path as _unix_path  # noqa: F401


def _send(w: int, msg: dict) -> None:
    os.write(w, (minijson.dumps(msg) + "\n").encode())


def _open_ns(join) -> list:
    out = []
    for typ, path in join:
        try:
            out.append((typ, os.open(path, os.O_RDONLY | os.O_CLOEXEC)))
        except OSError as e:
            raise OSError(e.errno, f"namespace {typ} path {path}: {e.strerror}") from None
    return out


def _intermediate(plan, cfg: dict, w: int, r: int) -> None:
    userns = plan.userns
    if userns is not None and userns.path:
        fd = _open_ns([("user", userns.path)])[0][1]
        sc.setns(fd, sc.CLONE_NEWUSER)
        os.close(fd)
    elif userns is not None:
        try:
            sc.unshare(sc.CLONE_NEWUSER)
        except OSError as e:
            raise OSError(e.errno, f"cannot create a user namespace ({e.strerror}): they are "
                          "disabled or restricted on this host; check the sysctls "
                          "user.max_user_namespaces (> 0), kernel.unprivileged_userns_clone (1) "
                          "and kernel.apparmor_restrict_unprivileged_userns (0)") from None
    _send(w, {"t": "sync"})
    if os.read(r, 1) != b"g":
        os._exit(1)
    if userns is not None and not userns.path:
        for fn in (lambda: os.setresgid(0, 0, 0), lambda: os.setresuid(0, 0, 0)):
            try:
                fn()
            except OSError:
                pass
        try:
            os.setgroups([])
        except OSError:
            pass
    fds = _open_ns(plan.join)
    for typ, fd in fds:
        sc.setns(fd, sc.NS_FLAGS[typ])
        os.close(fd)
    flags = plan.unshare_flags
    if flags & sc.CLONE_NEWNS:
        sc.unshare(sc.CLONE_NEWNS)
        flags &= ~sc.CLONE_NEWNS
    if flags & sc.CLONE_NEWNET:
        # early, so that the parent's on_namespaces can give it a network stack while
        # the hook below mounts the rootfs
        sc.unshare(sc.CLONE_NEWNET)
        flags &= ~sc.CLONE_NEWNET
    if cfg.get("ns_notify"):
        _send(w, {"t": "ns"})
        if os.read(r, 1) != b"g":
            os._exit(1)
    hook = cfg.get("prepare_rootfs")
    if hook is not None:
        hook(cfg["rootfs"])
        if plan.unshare_flags & sc.CLONE_NEWNS:
            # The hook's servers (a FUSE rootfs) stay in this mount namespace; the init gets
            # a copy of it, so its pivot_root never moves their root.
            sc.unshare(sc.CLONE_NEWNS)
    if flags:
        sc.unshare(flags)
    pid = os.fork()
    if pid == 0:
        _child_main(_init, plan, cfg, w, r)
    _send(w, {"t": "pid", "pid": pid})


def _setup_console(sock_path: str, keep: list):
    import socket
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(_unix_path(os.path.dirname(sock_path) or ".", os.path.basename(sock_path), keep))
    return s


def _attach_terminal(console, size) -> None:
    import array
    import fcntl
    import socket
    import termios
    master, slave = os.openpty()
    if size and size[0] and size[1]:
        import struct
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))
    console.sendmsg([b"/dev/console"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                         array.array("i", [master]))])
    console.close()
    os.close(master)
    os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)


def _exec(proc) -> None:
    """execve the process, searching the container's PATH for a bare name ourselves:
    os.execvpe imports `warnings`, which can't be loaded once the host's library is out of
    reach (after pivot_root, or with the runtime started with `python3 -S`)."""
    env = dict(e.split("=", 1) for e in proc.env if "=" in e)
    env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    name, argv = proc.args[0], list(proc.args)
    candidates = [name] if "/" in name else \
        [os.path.join(d or ".", name) for d in env["PATH"].split(":")]
    err = None
    for path in candidates:
        try:
            os.execve(path, argv, env)
        except OSError as e:
            if err is None or e.errno not in (2, 20):   # keep EACCES over a later ENOENT
                err = e
    os.write(2, f"pydocklite runtime: exec {name}: {err.strerror}\n".encode())
    os._exit(127 if err.errno in (2, 20) else 126)


def _init(plan, cfg: dict, w: int, r: int) -> None:
    def warn(msg: str) -> None:
        _send(w, {"t": "warn", "m": msg})

    by_pipe = cfg.get("start_by_pipe")
    if not by_pipe:
        os.close(r)
    # everything imported lazily later must be loaded before pivot_root
    ctx = security.preload(plan.proc,
                           os.path.join(os.path.dirname(cfg["cdir"]), ".seccomp-cache"))
    start = None
    proc = plan.proc
    if cfg.get("console_fd") is not None:
        import array  # noqa: F401
        import fcntl  # noqa: F401
        import socket
        import struct  # noqa: F401
        import termios  # noqa: F401
    # the fifo and the sockets were opened by the parent: the container's root may have no
    # access to the state dir or to the console socket's directory (a uid map without host
    # root)
    if cfg.get("start_fd") is not None:
        import _socket
        start = _socket.socket(fileno=cfg["start_fd"])
    console = None
    if cfg.get("console_fd") is not None:
        console = socket.socket(fileno=cfg["console_fd"])
    hooks = cfg.get("hooks")
    state = None
    if hooks is not None and (hooks.create_container or hooks.start_container):
        state = dict(cfg["state"], pid=int(os.readlink("/proc/self")), status="creating")
    if state is not None and hooks.create_container:
        steps = plan.rootfs_steps
        mounts.run_rootfs_steps(steps[:-1], cfg["bundle"], warn)     # all but pivot_root
        _run_hooks_here(hooks.create_container, state, "createContainer")
        mounts.run_rootfs_steps(steps[-1:], cfg["bundle"], warn)
    else:
        mounts.run_rootfs_steps(plan.rootfs_steps, cfg["bundle"], warn)
    mounts.run_container_steps(plan.container_steps, warn)
    if console is not None:
        _attach_terminal(console, proc.console_size)
    try:
        os.chdir(proc.cwd)
        cwd_done = True
    except OSError:
        cwd_done = False
    if proc.umask is not None:
        os.umask(proc.umask)
    security.apply_credentials(proc, warn, ctx)
    if not cwd_done:
        try:
            os.chdir(proc.cwd)
        except OSError as e:
            raise OSError(e.errno, f"process.cwd {proc.cwd}: {e.strerror}") from None
    _send(w, {"t": "ready"})
    os.close(w)
    final_warn = (lambda m: os.write(2, f"pydocklite runtime: {m}\n".encode()))
    if by_pipe:
        if os.read(r, 1) != b"s":
            os._exit(0)             # the parent gave up: never run the process
        os.close(r)
    elif start is None:
        fifo = cfg["fifo_fd"]
        if os.read(fifo, 1) != b"s":     # `start`: init_sock.signal_start or the sh prelude
            os._exit(0)
        os.close(fifo)
    else:
        fd, _ = start._accept()
        conn = _socket.socket(fileno=fd)
        conn.recv(1)
    if state is not None and hooks.start_container:
        _run_hooks_here(hooks.start_container, dict(state, status="created"), "startContainer")
    security.apply_final(proc, final_warn, ctx)
    if start is not None:
        conn.send(b"k")
        conn.close()
        start.close()
    close_extra_fds(3 + cfg.get("preserve_fds", 0))
    _exec(proc)


def close_extra_fds(first: int) -> None:
    """Mark every fd from `first` up close-on-exec (runc's --preserve-fds keeps 3..first-1):
    descriptors an engine's process left open must not reach the container."""
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:             # no /proc in the container: close them instead
        os.closerange(first, 1 << 16)
        return
    for name in names:
        fd = int(name)
        if fd >= first:
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass


def _run_hooks_here(hooks, state: dict, phase: str) -> None:
    """Run OCI hooks from inside the container's namespaces (os only: after pivot_root the
    host's Python library is gone). The state JSON goes to each hook's stdin."""
    data = minijson.dumps(state).encode()
    for h in hooks:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.dup2(r, 0)
                env = dict(e.split("=", 1) for e in h.env if "=" in e)
                os.execve(h.path, list(h.args) or [h.path], env)
            finally:
                os._exit(127)
        os.close(r)
        try:
            os.write(w, data)
        except BrokenPipeError:
            pass
        os.close(w)
        code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        if code != 0:
            raise OSError(f"{phase} hook {h.path} failed with exit {code}")


def _child_main(fn, plan, cfg: dict, w: int, r: int) -> None:
    """Run fn in a forked child; report any exception to the parent; never return."""
    code = 0
    try:
        fn(plan, cfg, w, r)
    except BaseException as e:  # noqa: BLE001 - a child must never unwind into the parent
        msg = str(e) or type(e).__name__
        try:
            _send(w, {"t": "error", "m": msg})
        except OSError:
            try:
                os.write(2, f"pydocklite runtime: {msg}\n".encode())
            except OSError:
                pass
        code = 1
    finally:
        os._exit(code)


def launch(plan, *, bundle: str, cdir: str, rootfs: str, stdio=None, console_socket=None,
           prepare_rootfs=None, on_sync=None, start_by_pipe: bool = False, hooks=None,
           state: dict = None, on_namespaces=None, preserve_fds: int = 0,
           start_fifo: bool = False) -> tuple:
    """Fork the container; returns (init pid, warnings, start_fd) once the init waits.

    The init waits for `start` (start_fd None): a byte b"s" in ROOT/<id>/init.fifo with
    start_fifo (containers without poststart hooks: ./pydocklite-runtime's sh prelude can
    write it without starting Python), else a connection to ROOT/<id>/init.sock, answered
    once the process is about to exec (poststart hooks run after that); with start_by_pipe,
    a byte b"s" on start_fd (one-shot run: nothing to set up).
    hooks/state: the spec's Hooks and the OCI state base, for the createContainer and
    startContainer hooks, which run inside the container's namespaces.

    on_sync(intermediate_pid): called in the parent when the child's user namespace exists
    (write id maps, join cgroups). Raises SetupError with the child's message on failure.
    on_namespaces(intermediate_pid): called in the parent once the child's user and network
    namespaces are set up, before prepare_rootfs; the child waits until it returns, so
    /proc/PID/ns/* may be opened in it (e.g. to start a user-mode network stack).
    """
    if plan.proc.terminal and not console_socket:
        raise SetupError("process.terminal is true: pass --console-socket (a unix socket "
                         "that receives the pty master), or set terminal to false")
    cfg = {"bundle": bundle, "cdir": cdir, "rootfs": rootfs, "console_socket": console_socket,
           "prepare_rootfs": prepare_rootfs, "start_by_pipe": start_by_pipe, "hooks": hooks,
           "state": state, "ns_notify": on_namespaces is not None,
           "preserve_fds": preserve_fds, "start_fifo": start_fifo}
    socks = _parent_sockets(cfg, cdir, start_by_pipe, console_socket if plan.proc.terminal
                            else None)
    try:
        return _launch(plan, cfg, stdio, on_sync, start_by_pipe, on_namespaces)
    finally:
        for s in socks:
            s.close()       # the init has its own copies


class _FdCloser:
    __slots__ = ("fd",)

    def __init__(self, fd: int):
        self.fd = fd

    def close(self) -> None:
        os.close(self.fd)


def _parent_sockets(cfg: dict, cdir: str, start_by_pipe: bool, console_socket) -> list:
    """Open the init's start fifo (ROOT/<id>/init.fifo) or socket (listening on
    ROOT/<id>/init.sock) and connect to the console socket here, with the caller's access
    rights; the init inherits the fds."""
    if start_by_pipe and not console_socket:
        return []
    keep = []
    socks = []
    try:
        if not start_by_pipe and cfg.get("start_fifo"):
            # held open read-write (here and by the init) so that it never reports
            # end-of-file, and a writer's open never blocks while the init lives
            path = os.path.join(cdir, INIT_FIFO)
            os.mkfifo(path, 0o600)
            fifo = os.open(path, os.O_RDWR | os.O_CLOEXEC)
            socks.append(_FdCloser(fifo))
            cfg["fifo_fd"] = fifo
        elif not start_by_pipe:
            import _socket       # the C module: `socket` costs ~2 ms to import (its enums)
            s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
            socks.append(s)
            s.bind(_unix_path(cdir, INIT_SOCK, keep))
            s.listen(1)
            cfg["start_fd"] = s.fileno()
        if console_socket:
            try:
                c = _setup_console(console_socket, keep)
            except OSError as e:
                raise SetupError(f"console socket {console_socket}: {e.strerror or e}") \
                    from None
            socks.append(c)
            cfg["console_fd"] = c.fileno()
    except BaseException:
        for s in socks:
            s.close()
        raise
    finally:
        for fd in keep:
            os.close(fd)
    return socks


def _launch(plan, cfg: dict, stdio, on_sync, start_by_pipe: bool, on_namespaces=None
            ) -> tuple:
    r_up, w_up = os.pipe()
    r_down, w_down = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        os.close(r_up)
        os.close(w_down)
        if stdio is not None:
            for i, fd in enumerate(stdio):
                if fd is not None and fd != i:
                    os.dup2(fd, i)
        _child_main(_intermediate, plan, cfg, w_up, r_down)
    os.close(w_up)
    os.close(r_down)
    warnings = []
    init_pid = 0
    ready = False
    error = None
    with os.fdopen(r_up, "rb") as up:
        try:
            for line in up:
                msg = minijson.loads(line)
                t = msg["t"]
                if t in ("sync", "ns"):
                    try:
                        callback = on_sync if t == "sync" else on_namespaces
                        if callback is not None:
                            callback(pid)
                    except BaseException:
                        os.close(w_down)
                        w_down = -1
                        raise
                    os.write(w_down, b"g")
                elif t == "pid":
                    init_pid = msg["pid"]
                    if ready:
                        break
                elif t == "warn":
                    warnings.append(msg["m"])
                elif t == "error":
                    error = msg["m"]
                    break
                elif t == "ready":
                    # the intermediate's "pid" may come after the init's "ready"
                    ready = True
                    if init_pid:
                        break
        finally:
            if w_down >= 0 and not (start_by_pipe and ready and init_pid and error is None):
                os.close(w_down)
                w_down = -1
            os.waitpid(pid, 0)
            if not ready and init_pid:
                _kill_quietly(init_pid)
    if error is not None:
        raise SetupError(f"container setup failed: {error}")
    if not ready or not init_pid:
        raise SetupError("container init exited during setup without a message")
    return init_pid, warnings, (w_down if start_by_pipe else None)


def _kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, 9)
    except OSError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
