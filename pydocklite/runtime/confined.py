"""Run a Python function inside a container, confined as the container's own processes are.

Whatever works on a container's files from the host (`cp`, the Engine API's archive
endpoints, `export`) does it through here, never by joining fewer namespaces and trusting
the rest. The helper process:
- joins ALL the container's namespaces (user first, mount last, then forks so that the child
  is in its pid namespace: it shows in the container's `ps` and can't signal host processes);
- has no controlling terminal (own session), stdin /dev/null, and no inherited file
  descriptor but the two pipes given (data on fd 0 or 1, status on fd 2);
- is not dumpable (a container process can't ptrace it or read its memory or fds through
  /proc), dies with its caller (PR_SET_PDEATHSIG);
- runs as the container's root with the container's capability bounding set as its
  capabilities, its rlimits, no_new_privs and the container's seccomp filter;
- loads NO code once it entered the mount namespace: everything it needs is imported before,
  and the import system is emptied (sys.meta_path, path hooks, sys.path) so an import that
  was missed fails instead of reading a module from the container's filesystem (the zipapp's
  extraction path and the stdlib's resolve THERE after setns). It makes no name lookups
  (numeric ids only: glibc's NSS would load the container's libnss_*.so), and nothing it
  reads after entering (/proc included: the container can mount over it) decides how it is
  confined: that is computed on the host first.
What it sends back is untrusted: the caller parses it with bounds (tar_extract, `status`).
"""
from __future__ import annotations

import fcntl
import os
import signal
import sys

from . import seccomp_load
from . import syscalls as sc
from .security import _set_rlimits, cap_mask, last_cap
from .errors import RuntimeErr, StateError
from .record import Record

PR_SET_DUMPABLE = 4
STATUS_MAX = 4096             # bytes of error text read back from a helper


class ConfinedError(RuntimeErr):
    """The function failed inside the container; errno of its OSError (0 if none)."""

    def __init__(self, errno_: int, message: str) -> None:
        super().__init__(message)
        self.errno = errno_


class Confinement(Record):
    """How a helper is confined, all computed on the host before it enters."""
    __slots__ = ("bounding", "last_cap", "setgroups", "bpf", "bpf_flags", "rlimits")


def confinement_of(spec, cache_dir: str, setgroups: bool) -> Confinement:
    """From the container's OCI spec: its bounding set, rlimits and compiled seccomp filter.
    setgroups: whether its user namespace allows setgroups (read from the host's /proc)."""
    proc = spec.process
    caps = proc.capabilities if proc is not None else None
    bounding = cap_mask(caps.bounding) if caps is not None else 0
    bpf, flags = None, 0
    if spec.linux.seccomp:
        bpf, flags = seccomp_load.compiled(spec.linux.seccomp, cache_dir)
    rlimits = tuple(proc.rlimits) if proc is not None and proc.rlimits else ()
    return Confinement(bounding, last_cap(), setgroups, bpf, flags, rlimits)


def lock_imports() -> None:
    """No module can be loaded from now on; those already imported keep working."""
    sys.meta_path[:] = []
    sys.path_hooks[:] = []
    sys.path[:] = []
    sys.path_importer_cache.clear()


def confine(c: Confinement, name: bytes = b"pdl-helper") -> None:
    """Become the container's root with its capabilities, rlimits, no_new_privs and seccomp
    filter. Reads no file: everything was decided by confinement_of(). The process takes
    its name (`ps`, /proc/PID/comm) last: anything found by that name is fully confined."""
    sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)
    if c.rlimits:
        _set_rlimits(c.rlimits, lambda m: None)
    for i in range(c.last_cap + 1):
        if not c.bounding & (1 << i):
            sc.prctl(sc.PR_CAPBSET_DROP, i)
    if c.setgroups:
        os.setgroups([])
    sc.prctl(sc.PR_SET_KEEPCAPS, 1)
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)
    sc.capset(c.bounding, c.bounding, 0)
    sc.prctl(sc.PR_SET_KEEPCAPS, 0)
    sc.prctl(PR_SET_DUMPABLE, 0)
    sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1)
    if c.bpf is not None:
        seccomp_load.install(c.bpf, c.bpf_flags, no_new_privs=False)
    os.umask(0o022)
    try:
        sc.prctl(sc.PR_SET_NAME, _name_buf(name))
    except OSError:
        pass                            # a profile that denies prctl: keep the old name


_NAME_BUFS = []


def _name_buf(name: bytes) -> int:
    buf = sc.char_array(name[:15] + b"\0")
    _NAME_BUFS.append(buf)          # kept alive: prctl copies it, but be sure
    return sc.address_of(buf)


def run_child(fn, stdio, conf: Confinement, enter, name: bytes) -> None:
    """In a freshly forked child: own session, not dumpable, stdio = (in, out, status), the
    rest closed; then the `enter` object's steps (see JoinRunning), a fork so that the
    function runs in the container's pid namespace, then confine() and fn(). Never returns.

    enter.prepare()  here, with the host's files still ours: set up what needs them;
    enter.fds()      descriptors to keep through the clean-up of the inherited ones;
    enter.join()     here: switch into the container (imports locked first if the switch
                     makes the container's files ours);
    enter.inside()   in the child that runs fn, before confine();
    enter.after()    here, once that child is gone."""
    code = 1
    try:
        os.setsid()
        sc.prctl(PR_SET_DUMPABLE, 0)
        sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 64) for fd in stdio]
        for target, fd in enumerate(high):
            os.dup2(fd, target)         # the copies above 64 are closed just below
        enter.prepare()
        sc.close_fds_except(enter.fds() | {0, 1, 2})
        enter.join()
        inner = os.fork()
        if inner == 0:
            icode = 1
            try:
                enter.inside()
                confine(conf, name)
                fn()
                icode = 0
            except BaseException as e:  # noqa: BLE001 - reported through the status pipe
                _report(e)
            finally:
                os._exit(icode)
        _, status = os.waitpid(inner, 0)
        code = os.waitstatus_to_exitcode(status)
        if code < 0:
            os.write(2, b"0 the helper was killed by signal %d" % -code)
            code = 1
        enter.after()
    except BaseException as e:  # noqa: BLE001
        _report(e)
        code = code or 1
    finally:
        os._exit(code)


def _report(e: BaseException) -> None:
    err = getattr(e, "errno", None) or 0
    try:
        os.write(2, (b"%d " % err) + str(e).encode("utf-8", "replace")[:STATUS_MAX - 16])
    except OSError:
        pass


class JoinRunning:
    """The `enter` steps (run_child) for a running container: join its namespaces, opened on
    the host beforehand (user first, mount last; the fork after them enters its pid one)."""

    def __init__(self, root: str, cid: str, spec) -> None:
        from . import state as st
        s = st.load(root, cid)
        if s.status not in ("running", "created", "paused"):
            raise StateError(f"container {cid!r} is {s.status}: it has no processes to join")
        types = [n.type for n in spec.linux.namespaces]
        order = (["user"] if "user" in types else []) + \
            [t for t in types if t not in ("user", "mount")] + \
            (["mount"] if "mount" in types else [])
        self.ns = []
        self.root_fd = None
        try:
            for typ in order:
                path = f"/proc/{s.pid}/ns/{sc.NS_PROC_NAMES[typ]}"
                self.ns.append((typ, os.open(path, os.O_RDONLY | os.O_CLOEXEC)))
            if "mount" not in types:     # shares our mounts, chrooted (runtime's no-mount case)
                self.root_fd = os.open(f"/proc/{s.pid}/root",
                                       os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            if st.proc_start_time(s.pid) != s.pid_start:
                raise StateError(f"container {cid!r} stopped")
            self.setgroups = _setgroups_allowed(s.pid)
        except BaseException:
            self.close()
            raise

    def fds(self) -> set:
        return {fd for _, fd in self.ns} | ({self.root_fd} if self.root_fd is not None else set())

    def prepare(self) -> None:
        pass

    def inside(self) -> None:
        pass

    def after(self) -> None:
        pass

    def join(self) -> None:
        lock_imports()                  # the container's files are about to be ours
        for typ, fd in self.ns:
            sc.setns(fd, sc.NS_FLAGS[typ])
            os.close(fd)
        if self.root_fd is not None:
            os.fchdir(self.root_fd)
            os.chroot(".")
            os.close(self.root_fd)
        os.chdir("/")

    def close(self) -> None:
        for _, fd in self.ns:
            try:
                os.close(fd)
            except OSError:
                pass
        self.ns = []
        if self.root_fd is not None:
            os.close(self.root_fd)
            self.root_fd = None


def _setgroups_allowed(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/setgroups") as f:
            return f.read().strip() != "deny"
    except OSError:
        return False


class Helper:
    """A started helper: wait() for it; raises ConfinedError with what it reported.
    `cleanups`: callables run once it is gone (whatever happened)."""

    def __init__(self, pid: int, status_r: int) -> None:
        self.pid, self.status_r = pid, status_r
        self.cleanups = []

    def wait(self) -> None:
        if self.status_r < 0:
            return                      # waited for already
        data = b""
        try:
            while len(data) < STATUS_MAX:
                chunk = os.read(self.status_r, STATUS_MAX - len(data))
                if not chunk:
                    break
                data += chunk
        finally:
            os.close(self.status_r)
            self.status_r = -1
            _, status = os.waitpid(self.pid, 0)
            while self.cleanups:
                self.cleanups.pop()()
        if status == 0 and not data:
            return
        err, _, msg = data.partition(b" ")
        try:
            errno_ = int(err)
        except ValueError:
            errno_, msg = 0, data
        text = msg.decode("utf-8", "replace")
        text = "".join(ch if ch.isprintable() else "?" for ch in text) or \
            f"the helper failed (status {status})"
        raise ConfinedError(errno_, text)

    def kill(self) -> None:
        """Stop it now (its sandbox, if any, goes with it) and reap it; no error."""
        if self.status_r < 0:
            return
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.wait()
        except ConfinedError:
            pass


def start(fn, enter, conf: Confinement, stdin=None, stdout=None,
          name: bytes = b"pdl-helper") -> Helper:
    """Fork a helper that runs fn() confined (see the module's doc). stdin/stdout: the
    fds it gets as 0 and 1 (else /dev/null); the caller closes its copies after start."""
    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    status_r, status_w = os.pipe()
    try:
        pid = os.fork()
        if pid == 0:
            os.close(status_r)
            run_child(fn, (null if stdin is None else stdin, null if stdout is None else stdout,
                           status_w), conf, enter, name)
    finally:
        os.close(null)
        os.close(status_w)
    return Helper(pid, status_r)


def start_in_running(root: str, cid: str, fn, stdin=None, stdout=None,
                     name: bytes = b"pdl-helper") -> Helper:
    """start() inside running container `cid` of runtime root `root`."""
    from .api import _root, _saved_spec
    from . import state as st
    root = _root(root)
    spec = _saved_spec(st.container_dir(root, cid))
    if spec is None:
        st.load(root, cid)
        raise RuntimeErr(f"container {cid!r}: its saved config.json is unreadable")
    enter = JoinRunning(root, cid, spec)
    try:
        conf = confinement_of(spec, os.path.join(root, ".seccomp-cache"), enter.setgroups)
        return start(fn, enter, conf, stdin, stdout, name)
    finally:
        enter.close()
