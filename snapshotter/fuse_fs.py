"""A thin FUSE adapter over `Union` (merge.py + upper.py), and the functions that serve it.

    serve_fuse(mountpoint, lowers, upper=None, ...)   # blocks until unmounted
    spawn_fuse(mountpoint, lowers, upper=None, ...)   # forks a server, returns once mounted

`lowers` is a sequence of (index_path, blob_path) pairs, bottom layer first
(`lowers_for(layout, diff_ids)` builds it from the store). Read-only views (upper=None: the
overlay driver's lowerdir, `view` snapshots) are served by fuse_ll3.py (libfuse3 low-level)
when libfuse3 is there; writable mounts, and read-only ones without libfuse3, by fusepy
through the adapter below. Servers are multithreaded; the lower view is immutable, so
entries and attributes are cached by the kernel for a long time and file pages are kept
(`kernel_cache`); everything that changes goes through the server, which is how the
kernel's caches stay right.
"""
from __future__ import annotations

import errno
import os
import signal
import time
from collections import namedtuple
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import Optional, Sequence, Tuple

from .errors import LayerCorruptError, MountError

CACHE_TIMEOUT = 86400.0
# A writable mount can't keep attributes forever: libfuse's high-level API gives every name
# its own kernel inode, so after `link`/`unlink` the *other* names of a hardlinked file keep
# a stale st_nlink until their attributes time out (the kernel overlay backend has no such
# limit; it uses this server read-only).
RW_ATTR_TIMEOUT = 1.0


def lowers_for(layout, diff_ids: Sequence[str]) -> Tuple[Tuple[Path, Path], ...]:
    return tuple((layout.layer_index(d), layout.layer_blob(d)) for d in diff_ids)


def build_union(lowers: Sequence[Tuple[Path, Path]], upper: Optional[Path], tree=None,
                tree_cache: Optional[Path] = None):
    """Load the indexes and build the merged view (or reuse a prebuilt MergedTree; or load
    it from / save it to `tree_cache`)."""
    from .merge import LowerData, load_or_build
    from .union import Union
    from .upper import UpperDir
    if tree is None:
        tree = load_or_build([i for i, _ in lowers], tree_cache)
    data = LowerData([b for _, b in lowers])
    return Union(tree, data, UpperDir(Path(upper)) if upper is not None else None)


def _rel(path: Optional[str]) -> str:
    return path[1:] if path else ""


def make_operations(union, binding, ready_fd: Optional[int] = None):
    """The fusepy Operations object for `union` (a class built per binding module)."""
    import ctypes
    import threading
    fuse = binding.module
    local = threading.local()
    # A read-only view of layers without any xattr: answering ENOSYS once makes the kernel
    # stop asking (overlayfs asks for its user.overlay.* xattrs on every lower lookup)
    no_xattrs = union.upper is None and not union.tree.has_xattrs
    ensure = ctypes.pythonapi.PyGILState_Ensure

    class MergedFS(fuse.Operations):
        use_ns = True

        def __call__(self, op, *args):
            if not getattr(local, "pinned", False):
                # ctypes creates and destroys a Python thread state around every callback
                # from a libfuse worker thread; holding one extra reference keeps it for the
                # thread's life, which makes each request markedly cheaper
                ensure()
                local.pinned = True
            try:
                return getattr(self, op)(*args)
            except LayerCorruptError:
                raise fuse.FuseOSError(errno.EIO) from None

        def init(self, path):
            if ready_fd is not None:
                os.write(ready_fd, b"ok\n")
                os.close(ready_fd)

        def _owner(self):
            uid, gid, _pid = fuse.fuse_get_context()
            return uid, gid

        def getattr(self, path, fh=None):
            if path is None and fh is not None:
                if fh < (1 << 40):
                    st = os.fstat(fh)
                    return {k: getattr(st, k) for k in ("st_mode", "st_ino", "st_nlink",
                            "st_uid", "st_gid", "st_size", "st_rdev")}
            return union.getattr(_rel(path))

        def readdir(self, path, fh):
            return [".", ".."] + union.readdir(_rel(path))

        def readlink(self, path):
            return union.readlink(_rel(path))

        def access(self, path, amode):
            union.resolve(_rel(path))
            return 0

        def statfs(self, path):
            return union.statfs()

        def listxattr(self, path):
            if no_xattrs:
                raise fuse.FuseOSError(errno.ENOSYS)
            return union.listxattr(_rel(path))

        def getxattr(self, path, name, position=0):
            if no_xattrs:
                raise fuse.FuseOSError(errno.ENOSYS)
            return union.getxattr(_rel(path), name)

        def setxattr(self, path, name, value, options, position=0):
            union.setxattr(_rel(path), name, value, options)

        def removexattr(self, path, name):
            union.removexattr(_rel(path), name)

        def open(self, path, flags):
            return union.open(_rel(path), flags)

        def create(self, path, mode, fi=None):
            return union.create(_rel(path), mode, os.O_RDWR, self._owner())

        def read(self, path, size, offset, fh):
            return union.read(fh, size, offset)

        def write(self, path, data, offset, fh):
            return union.write(fh, data, offset)

        def truncate(self, path, length, fh=None):
            if fh is not None and fh < (1 << 40):
                union.ftruncate(fh, length)
            else:
                union.truncate(_rel(path), length)

        def flush(self, path, fh):
            return 0

        def fsync(self, path, datasync, fh):
            union.fsync(fh, bool(datasync))

        def release(self, path, fh):
            union.release(fh)

        def opendir(self, path):
            return 0

        def releasedir(self, path, fh):
            return 0

        def fsyncdir(self, path, datasync, fh):
            return 0

        def mkdir(self, path, mode):
            union.mkdir(_rel(path), mode, self._owner())

        def mknod(self, path, mode, dev):
            union.mknod(_rel(path), mode, dev, self._owner())

        def symlink(self, target, source):   # fusepy: (new path, link content)
            union.symlink(_rel(target), source, self._owner())

        def link(self, target, source):      # fusepy: (new path, existing path)
            union.link(_rel(target), _rel(source))

        def unlink(self, path):
            union.unlink(_rel(path))

        def rmdir(self, path):
            union.rmdir(_rel(path))

        def rename(self, old, new):
            union.rename(_rel(old), _rel(new))

        def chmod(self, path, mode):
            union.chmod(_rel(path), mode)

        def chown(self, path, uid, gid):
            union.chown(_rel(path), uid, gid)

        def utimens(self, path, times=None):
            union.utimens(_rel(path), None if times is None else (int(times[0]),
                                                                   int(times[1])))

        def destroy(self, path):
            union.data.close()

    return MergedFS()


def _lowlevel_wanted() -> bool:
    """Read-only views use libfuse3's low-level server unless PYDOCKLITE_FUSE_LOWLEVEL=0."""
    return os.environ.get("PYDOCKLITE_FUSE_LOWLEVEL", "1") != "0"


def fuse_options(readonly: bool, allow_other: bool, fsname: str) -> dict:
    opts = dict(foreground=True, fsname=fsname, subtype="pydocklite", use_ino=True,
                default_permissions=True, kernel_cache=True, hard_remove=True,
                entry_timeout=CACHE_TIMEOUT,
                attr_timeout=CACHE_TIMEOUT if readonly else RW_ATTR_TIMEOUT,
                big_writes=True, max_write=131072)
    if readonly:
        opts["ro"] = True
    if allow_other:
        opts["allow_other"] = True
    return opts


def serve_fuse(mountpoint, lowers: Sequence[Tuple[Path, Path]], upper: Optional[Path] = None,
               *, allow_other: bool = False, fsname: str = "pydocklite", tree=None,
               ready_fd: Optional[int] = None, single_thread: bool = False,
               tree_cache: Optional[Path] = None) -> None:
    """Mount the merged view at `mountpoint` and serve it until it is unmounted.

    Call it in the process that should own the mount: inside the container's user+mount
    namespace libfuse mounts directly; on the host it uses fusermount. `upper=None` gives a
    read-only view (the lowerdir of the kernel-overlay backend). `ready_fd`, if given, gets
    "ok\\n" once the kernel has the mount (then it is closed).
    """
    if upper is None and _lowlevel_wanted():
        from .fuse_ll3 import ReadOnlyServer, load_libfuse3
        lib = load_libfuse3()
        if lib is not None:   # read-only views: libfuse3's low-level API (READDIRPLUS)
            union = build_union(lowers, None, tree, tree_cache)
            opts = ",".join(["ro", "default_permissions", f"fsname={fsname}",
                             "subtype=pydocklite3"] + (["allow_other"] if allow_other else []))
            # one thread: every request needs the GIL, so libfuse's worker threads only add
            # wake-ups and GIL hand-offs (a program's start through it: ~5 ms faster)
            ReadOnlyServer(lib, union.tree, union.data, ready_fd).serve(
                str(mountpoint), opts, single_thread=True)
            return
    from .fuse_binding import load
    binding = load()
    union = build_union(lowers, upper, tree, tree_cache)
    ops = make_operations(union, binding, ready_fd)
    opts = fuse_options(upper is None, allow_other, fsname)
    try:
        binding.module.FUSE(ops, str(mountpoint), nothreads=single_thread, **opts)
    except RuntimeError as exc:
        raise MountError(f"FUSE mount of {mountpoint} failed ({exc}): check that /dev/fuse is "
                         f"usable and the mount point exists and is empty") from None


class FuseServer(namedtuple("FuseServer", "pid mountpoint")):
    """A forked FUSE server process serving one mount (a named tuple: defining a dataclass
    costs a container start ~0.5 ms, importing dataclasses ~5 ms)."""
    __slots__ = ()

    def alive(self) -> bool:
        try:
            pid, _ = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            return False
        return pid == 0

    def unmount(self, timeout: float = 10.0) -> None:
        """Unmount (lazily if busy) and reap the server."""
        unmount_path(self.mountpoint)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                return
            if pid:
                return
            time.sleep(0.01)
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)


def unmount_path(mountpoint: str) -> None:
    """Unmount a FUSE mount: umount2 if we may (inside our namespace), else fusermount -u -z."""
    import ctypes
    import subprocess
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.umount2(str(mountpoint).encode(), 2) == 0:   # MNT_DETACH
        return
    err = ctypes.get_errno()
    if err == errno.EINVAL:   # not a mount point (any more)
        return
    proc = subprocess.run(["fusermount", "-u", "-z", str(mountpoint)], capture_output=True,
                          text=True)
    if proc.returncode != 0 and "not found" not in proc.stderr and \
            "not mounted" not in proc.stderr:
        raise MountError(f"cannot unmount {mountpoint}: {proc.stderr.strip()}")


def spawn_fuse(mountpoint, lowers: Sequence[Tuple[Path, Path]], upper: Optional[Path] = None,
               *, allow_other: bool = False, fsname: str = "pydocklite", tree=None,
               timeout: float = 30.0, log_path: Optional[Path] = None,
               tree_cache: Optional[Path] = None, die_with_caller: bool = False) -> FuseServer:
    """Fork a server for `serve_fuse` and return once the mount is live (MountError if not).

    Forking (not exec'ing a new interpreter) keeps this fast; call it from a process that
    has no other threads running (the shim, a CLI command). die_with_caller: the server is
    killed when the caller dies (a mount in a private namespace nobody else would unmount).
    """
    # import what the child needs before forking: a shim mounting several times pays once
    import importlib
    for mod in ("merge", "union", "upper", "mmap_blob", "fuse_ll3"):
        importlib.import_module(f"{__package__}.{mod}")
    from .fuse_ll3 import load_libfuse3
    if upper is None and _lowlevel_wanted() and load_libfuse3() is not None:
        pass   # the low-level server needs no Python binding (a libfuse3-only host is fine)
    else:
        from .fuse_binding import load
        load()
    rfd, wfd = os.pipe()
    caller = os.getpid()
    pid = os.fork()
    if pid == 0:  # child: never returns
        code = 0
        try:
            os.close(rfd)
            if die_with_caller:
                import ctypes
                ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)   # PR_SET_PDEATHSIG
                if os.getppid() != caller:
                    raise MountError("the caller is gone")
            os.setsid()
            # hold no descriptor of the caller's (a CLI waiting for EOF on a pipe, a shim's
            # sockets): only the ready pipe stays
            os.closerange(3, wfd)
            os.closerange(wfd + 1, _max_fd())
            fd = os.open(str(log_path) if log_path else os.devnull,
                         os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            # drop every fd inherited from the caller (a container's stdio pipes among them:
            # held open here they would never reach EOF)
            os.closerange(3, wfd)
            os.closerange(wfd + 1, 65536)
            serve_fuse(mountpoint, lowers, upper, allow_other=allow_other, fsname=fsname,
                       tree=tree, ready_fd=wfd, tree_cache=tree_cache)
        except BaseException as exc:  # report to the parent through the pipe
            code = 1
            try:
                os.write(wfd, f"error: {exc}\n".encode())
            except OSError:
                pass
        finally:
            os._exit(code)
    os.close(wfd)
    msg = _read_ready(rfd, timeout)
    if msg != "ok":
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)
        raise MountError(f"FUSE server for {mountpoint} did not start: "
                         f"{msg or 'it exited without a word'}")
    return FuseServer(pid, str(mountpoint))


def _max_fd() -> int:
    import resource
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return min(soft if soft > 0 else 4096, 1 << 16)


def _read_ready(fd: int, timeout: float) -> str:
    import select
    buf = b""
    deadline = time.monotonic() + timeout
    try:
        while True:   # until EOF: the server closes its end right after "ok"
            left = deadline - time.monotonic()
            if left <= 0:
                return "timed out waiting for the mount"
            r, _, _ = select.select([fd], [], [], left)
            if not r:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buf += chunk
    finally:
        os.close(fd)
    return buf.decode(errors="replace").strip()


def is_mounted(mountpoint) -> bool:
    """True if `mountpoint` is a mount point in this process's mount namespace."""
    target = os.path.realpath(str(mountpoint))
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4].replace("\\040", " ") == target:
                return True
    return False


