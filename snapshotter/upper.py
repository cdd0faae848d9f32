"""The writable upper directory of a snapshot, in kernel overlayfs's own `userxattr` format.

So that one upper dir works for both the FUSE backend and kernel overlayfs, and `diff.py`
reads one format:

- a deleted lower path is a whiteout: a character device 0/0 with the same name;
- a directory that hides everything below it is opaque: xattr `user.overlay.opaque=y`;
- when the server may not chown or mknod (an unprivileged mount on the host), the intended
  owner, mode/type and device number are kept in xattr `user.pydocklite.override`
  ("uid:gid:mode:rdev", mode with S_IFMT) — the same idea fuse-overlayfs uses.

`copy_up` brings a lower file (data from the mmap'd blob), directory, symlink, fifo or device
node into the upper dir with its mode, owner, xattrs and mtime. Nothing here knows FUSE.
"""
from __future__ import annotations

import errno
import os
import stat
import threading
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import Optional, Set, Tuple

from .merge import DIR, FIFO, REG, SYMLINK, CHAR, BLOCK, Inode, LowerData

OPAQUE_XATTR = "user.overlay.opaque"
OVERRIDE_XATTR = "user.pydocklite.override"
TEMP_PREFIX = ".pdl-tmp-"
_COPY_CHUNK = 1 << 20


def is_internal(xattr: str) -> bool:
    """One of the upper dir's own markers (user.overlay.*, user.pydocklite.*): never taken
    from a layer or a container. (layer_index holds the list; imported on first use: the
    start path of a container doesn't pay for it.)"""
    from .layer_index import INTERNAL_XATTR_PREFIXES
    return xattr.startswith(INTERNAL_XATTR_PREFIXES)


def _has_at(fd: int, name: str, xattr: str) -> bool:
    try:
        os.getxattr(_proc(fd, name), xattr, follow_symlinks=False)
        return True
    except OSError:
        return False


def is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def parent_of(path: str) -> str:
    i = path.rfind("/")
    return path[:i] if i >= 0 else ""


def check_rel(rel: str) -> str:
    """A relative path as the servers take them ("" = the root): plain names joined by "/";
    "", ".", "..", a NUL or an absolute path is EINVAL (the kernel never sends them: a request
    that does is not followed anywhere)."""
    if rel and (rel.startswith("/") or "\0" in rel or
                any(c in ("", ".", "..") for c in rel.split("/"))):
        raise OSError(errno.EINVAL, "not a plain relative path", rel)
    return rel


# openat2(2): resolve below a directory fd with no symlink, magic link or mount crossing
_SYS_OPENAT2 = 437
_RESOLVE = 0x01 | 0x02 | 0x04 | 0x08   # NO_XDEV | NO_MAGICLINKS | NO_SYMLINKS | BENEATH
_PATH_DIR = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_openat2 = None


def _load_openat2():
    """openat2 through libc's syscall(), or False where the kernel or libc lacks it."""
    global _openat2
    if _openat2 is None:
        try:
            import ctypes

            class OpenHow(ctypes.Structure):
                _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                            ("resolve", ctypes.c_uint64)]
            libc = ctypes.CDLL(None, use_errno=True)
            syscall = libc.syscall
            syscall.restype = ctypes.c_long
            syscall.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p,
                                ctypes.c_size_t]
            how = OpenHow(_PATH_DIR, 0, _RESOLVE)
            how_p, how_n = ctypes.addressof(how), ctypes.sizeof(how)
            get_errno = ctypes.get_errno

            def call(dirfd: int, path: str) -> int:
                fd = syscall(_SYS_OPENAT2, dirfd, path.encode("utf-8", "surrogateescape"),
                             how_p, how_n)
                if fd < 0:
                    e = get_errno()
                    raise OSError(e, os.strerror(e), path)
                return fd
            call.how = how                       # kept alive with the function
            probe = os.open("/", _PATH_DIR)
            try:
                os.close(call(probe, "."))
                _openat2 = call
            finally:
                os.close(probe)
        except (OSError, AttributeError):
            _openat2 = False
    return _openat2


def open_beneath(root_fd: int, rel: str) -> int:
    """An O_PATH fd of directory `rel` below root_fd, reached without following any link
    (openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS where the kernel has it, else one
    O_NOFOLLOW step per name). A link on the way is ELOOP/ENOTDIR, never followed."""
    if "/" not in rel:                  # one name: a single O_NOFOLLOW open is enough
        return os.open(rel, _PATH_DIR, dir_fd=root_fd)
    call = _load_openat2()
    if call:
        try:
            return call(root_fd, rel)
        except OSError as e:
            if e.errno != errno.ENOSYS:
                raise
    fd = os.dup(root_fd)
    try:
        for name in rel.split("/"):
            nfd = os.open(name, _PATH_DIR, dir_fd=fd)
            os.close(fd)
            fd = nfd
    except BaseException:
        os.close(fd)
        raise
    return fd


class _At:
    """(dir fd, name) of a relative path's last name, its parent opened beneath the root.
    A thread keeps the parent it opened last (most requests work in one directory); the
    directory renames and removals of the upper dir retire those (a generation count). A
    kept fd is O_PATH beneath the root: even a stale one never leads outside it."""
    __slots__ = ("fd", "name", "own")

    def __init__(self, upper: "UpperDir", rel: str, keep: bool = True) -> None:
        parent, _, name = check_rel(rel).rpartition("/")
        self.name = name or "."
        self.own = False
        if not parent:
            self.fd = upper.root_fd
            return
        last = upper._last
        if keep and getattr(last, "parent", None) == parent and last.gen == upper._gen:
            self.fd = last.fd
            return
        fd = open_beneath(upper.root_fd, parent)
        if not keep:
            self.fd, self.own = fd, True
            return
        if getattr(last, "fd", -1) >= 0:
            os.close(last.fd)
        last.parent, last.fd, last.gen = parent, fd, upper._gen
        self.fd = fd

    def __enter__(self):
        return self.fd, self.name

    def __exit__(self, *exc) -> None:
        if self.own:
            os.close(self.fd)


def _proc(fd: int, name: str) -> str:
    """A path naming exactly (directory fd, name), for the calls that take no dir fd
    (xattrs): the magic link is the directory we hold, and the last name ("." for the
    directory itself) is never followed by the l*xattr callers below."""
    return f"/proc/self/fd/{fd}/{name}"


class UpperDir:
    """On-disk upper dir + the in-memory set of its opaque directories (relative paths).

    Every operation is relative to the upper dir's own fd: a path's directories are opened
    beneath it without following links (open_beneath), and the last name is acted on with
    the *at() calls, never followed (O_NOFOLLOW, AT_SYMLINK_NOFOLLOW). A link a container
    made -- or swapped in behind our back -- is an entry like any other, never a way out."""

    def __init__(self, root: Path) -> None:
        self.root = str(root)
        self.root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._last = threading.local()   # each thread's last parent directory (see _At)
        self._gen = 0
        self.opaque: Set[str] = set()
        self.uses_overrides = False
        self._lock = threading.RLock()
        self._tmp_counter = 0
        self._scan()

    def close(self) -> None:
        if getattr(self._last, "fd", -1) >= 0:      # (this thread's: others' go with them)
            os.close(self._last.fd)
            self._last.fd = -1
        if self.root_fd >= 0:
            os.close(self.root_fd)
            self.root_fd = -1

    # --- paths and state -------------------------------------------------------------------
    def at(self, rel: str, keep: bool = True) -> _At:
        """with upper.at(rel) as (dir_fd, name): ... (keep=False: a fresh parent fd, for the
        operations that hold two at once)."""
        return _At(self, rel, keep)

    def _moved(self) -> None:
        """A directory was renamed or removed: the parents threads kept are retired."""
        self._gen += 1

    def _scan(self) -> None:
        from .fd_walk import walk
        if self._has_xattr("", OPAQUE_XATTR):
            self.opaque.add("")
        for e in walk(self.root_fd):
            if e.name.startswith(TEMP_PREFIX):    # left over by a crash mid copy-up
                try:
                    if stat.S_ISDIR(e.st.st_mode):
                        os.rmdir(e.name, dir_fd=e.dir_fd)   # (a copy-up's dir is empty)
                    else:
                        os.unlink(e.name, dir_fd=e.dir_fd)
                except OSError:
                    pass
                continue
            if stat.S_ISDIR(e.st.st_mode) and _has_at(e.dir_fd, e.name, OPAQUE_XATTR):
                self.opaque.add(e.rel)
            if not self.uses_overrides and _has_at(e.dir_fd, e.name, OVERRIDE_XATTR):
                self.uses_overrides = True

    def _has_xattr(self, rel: str, name: str) -> bool:
        with self.at(rel) as (fd, n):
            return _has_at(fd, n, name)

    def lstat(self, rel: str) -> Optional[os.stat_result]:
        """The upper entry, or None; raises nothing for ENOENT/ENOTDIR (nor for a link where
        a directory was: ELOOP)."""
        try:
            with self.at(rel) as (fd, name):
                return os.stat(name, dir_fd=fd, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as e:
            if e.errno == errno.ELOOP:
                return None
            raise

    def override(self, rel: str) -> Optional[Tuple[int, int, int, int]]:
        if not self.uses_overrides:
            return None
        try:
            raw = self.getxattr(rel, OVERRIDE_XATTR)
        except OSError:
            return None
        uid, gid, mode, rdev = (int(x) for x in raw.decode().split(":"))
        return uid, gid, mode, rdev

    def set_override(self, rel: str, uid: int, gid: int, mode: int, rdev: int = 0) -> None:
        self.setxattr(rel, OVERRIDE_XATTR, f"{uid}:{gid}:{mode}:{rdev}".encode())
        self.uses_overrides = True

    def temp_name(self, parent: str) -> str:
        with self._lock:
            self._tmp_counter += 1
            n = self._tmp_counter
        name = f"{TEMP_PREFIX}{os.getpid()}-{threading.get_ident()}-{n}"
        return f"{parent}/{name}" if parent else name

    # --- file operations, all by dir fd ----------------------------------------------------
    def open(self, rel: str, flags: int, mode: int = 0o600) -> int:
        with self.at(rel) as (fd, name):
            return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=fd)

    def listdir(self, rel: str) -> list:
        """(name, lstat) of the entries of directory rel."""
        with self.at(rel) as (fd, name):
            dfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                          dir_fd=fd)
        try:
            out = []
            for n in os.listdir(dfd):
                try:
                    out.append((n, os.stat(n, dir_fd=dfd, follow_symlinks=False)))
                except FileNotFoundError:
                    pass
            return out
        finally:
            os.close(dfd)

    def readlink(self, rel: str) -> str:
        with self.at(rel) as (fd, name):
            return os.readlink(name, dir_fd=fd)

    def mkdir(self, rel: str, mode: int) -> None:
        with self.at(rel) as (fd, name):
            os.mkdir(name, mode, dir_fd=fd)

    def mknod(self, rel: str, mode: int, dev: int = 0) -> None:
        with self.at(rel) as (fd, name):
            os.mknod(name, mode, dev, dir_fd=fd)

    def symlink(self, target: str, rel: str) -> None:
        with self.at(rel) as (fd, name):
            os.symlink(target, name, dir_fd=fd)

    def link(self, existing: str, rel: str) -> None:
        """A hard link to the entry itself (a link to a symlink is to the symlink)."""
        with self.at(existing, False) as (sfd, sname), self.at(rel, False) as (dfd, dname):
            os.link(sname, dname, src_dir_fd=sfd, dst_dir_fd=dfd, follow_symlinks=False)

    def unlink(self, rel: str) -> None:
        with self.at(rel) as (fd, name):
            os.unlink(name, dir_fd=fd)

    def rmdir(self, rel: str) -> None:
        with self.at(rel) as (fd, name):
            os.rmdir(name, dir_fd=fd)
        self._moved()

    def rename(self, old: str, new: str) -> None:
        with self.at(old, False) as (sfd, sname), self.at(new, False) as (dfd, dname):
            os.rename(sname, dname, src_dir_fd=sfd, dst_dir_fd=dfd)
        self._moved()

    def chmod(self, rel: str, mode: int) -> None:
        """chmod of the entry itself (a symlink's mode means nothing: left alone)."""
        with self.at(rel) as (fd, name):
            pfd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
        try:
            if not stat.S_ISLNK(os.fstat(pfd).st_mode):
                os.chmod(f"/proc/self/fd/{pfd}", mode)     # exactly that inode
        finally:
            os.close(pfd)

    def chown(self, rel: str, uid: int, gid: int) -> None:
        with self.at(rel) as (fd, name):
            os.chown(name, uid, gid, dir_fd=fd, follow_symlinks=False)

    def utime(self, rel: str, ns: Optional[Tuple[int, int]]) -> None:
        with self.at(rel) as (fd, name):
            if ns is None:
                os.utime(name, dir_fd=fd, follow_symlinks=False)
            else:
                os.utime(name, ns=ns, dir_fd=fd, follow_symlinks=False)

    def truncate(self, rel: str, length: int) -> None:
        fd = self.open(rel, os.O_WRONLY)
        try:
            os.ftruncate(fd, length)
        finally:
            os.close(fd)

    def statvfs(self) -> os.statvfs_result:
        return os.fstatvfs(self.root_fd)

    def getxattr(self, rel: str, name: str) -> bytes:
        with self.at(rel) as (fd, n):
            return os.getxattr(_proc(fd, n), name, follow_symlinks=False)

    def listxattr(self, rel: str) -> list:
        with self.at(rel) as (fd, n):
            return os.listxattr(_proc(fd, n), follow_symlinks=False)

    def setxattr(self, rel: str, name: str, value: bytes, flags: int = 0) -> None:
        with self.at(rel) as (fd, n):
            os.setxattr(_proc(fd, n), name, value, flags, follow_symlinks=False)

    def removexattr(self, rel: str, name: str) -> None:
        with self.at(rel) as (fd, n):
            os.removexattr(_proc(fd, n), name, follow_symlinks=False)

    # --- whiteouts and opaque dirs ---------------------------------------------------------
    def add_whiteout(self, rel: str) -> None:
        try:
            self.mknod(rel, stat.S_IFCHR | 0o000, os.makedev(0, 0))
        except FileExistsError:
            st = self.lstat(rel)
            if st is None or not is_whiteout(st):
                raise

    def remove_whiteout(self, rel: str) -> bool:
        st = self.lstat(rel)
        if st is not None and is_whiteout(st):
            self.unlink(rel)
            return True
        return False

    def set_opaque(self, rel: str) -> None:
        self.setxattr(rel, OPAQUE_XATTR, b"y")
        with self._lock:
            self.opaque.add(rel)

    def move_state(self, old: str, new: str) -> None:
        """Keep the opaque set right after a rename of old -> new in the upper dir."""
        with self._lock:
            prefix = old + "/"
            moved = {p for p in self.opaque if p == old or p.startswith(prefix)}
            self.opaque -= moved
            self.opaque |= {new + p[len(old):] for p in moved}

    def forget_subtree(self, rel: str) -> None:
        with self._lock:
            prefix = rel + "/"
            self.opaque = {p for p in self.opaque if p != rel and not p.startswith(prefix)}

    # --- metadata --------------------------------------------------------------------------
    def apply_owner(self, rel: str, uid: int, gid: int, mode: int, rdev: int = 0) -> None:
        """chown to uid:gid; where not permitted, record it (and mode/type) as an override."""
        try:
            st = self.lstat(rel)
            if st is None:
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), rel)
            if (st.st_uid, st.st_gid) != (uid, gid):
                self.chown(rel, uid, gid)
            if stat.S_IFMT(st.st_mode) != stat.S_IFMT(mode):
                raise PermissionError(errno.EPERM, "type differs")
            if self.override(rel) is not None:
                self.removexattr(rel, OVERRIDE_XATTR)
        except PermissionError:
            st = self.lstat(rel)
            if st is not None and stat.S_ISLNK(st.st_mode):
                return  # user.* xattrs can't live on symlinks: keep the server's owner
            self.set_override(rel, uid, gid, mode, rdev)

    def set_xattrs(self, rel: str, xattrs: dict) -> None:
        for name, value in xattrs.items():
            if is_internal(name):
                continue        # our own markers come from us, never from a layer
            try:
                self.setxattr(rel, name, value)
            except OSError as exc:
                # trusted.* / security.* need privileges this server may not have
                if exc.errno not in (errno.EPERM, errno.EACCES, errno.ENOTSUP):
                    raise

    # --- copy-up ---------------------------------------------------------------------------
    def copy_up(self, rel: str, node: Inode, data: LowerData, with_data: bool = True) -> None:
        """Create `rel` in the upper dir from the lower `node`; parents must exist already."""
        parent = parent_of(rel)
        tmp = self.temp_name(parent)
        if node.type == REG:
            fd = self.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                if with_data:
                    pos = 0
                    while pos < node.size:
                        chunk = data.read(node, pos, min(_COPY_CHUNK, node.size - pos))
                        if not chunk:
                            raise OSError(errno.EIO, f"short read copying up {rel!r}")
                        os.write(fd, chunk)
                        pos += len(chunk)
            finally:
                os.close(fd)
        elif node.type == DIR:
            self.mkdir(tmp, 0o700)
        elif node.type == SYMLINK:
            self.symlink(node.linkname, tmp)
        elif node.type == FIFO:
            self.mknod(tmp, stat.S_IFIFO | 0o600)
        elif node.type in (CHAR, BLOCK):
            try:
                self.mknod(tmp, node.mode & ~0o7777 | 0o600, node.rdev)
            except PermissionError:
                os.close(self.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        else:
            raise OSError(errno.EINVAL, f"cannot copy up {rel!r}: unknown type {node.type!r}")
        try:
            self.finish_meta(tmp, node.mode, node.uid, node.gid, node.rdev, node.xattrs,
                             node.mtime)
            self.rename(tmp, rel)
        except BaseException:
            if node.type == DIR:
                self.rmdir(tmp)
            else:
                self.unlink(tmp)
            raise

    def finish_meta(self, rel: str, mode: int, uid: int, gid: int, rdev: int, xattrs: dict,
                    mtime: Optional[float]) -> None:
        self.set_xattrs(rel, xattrs)
        self.apply_owner(rel, uid, gid, mode, rdev)
        if not stat.S_ISLNK(mode):
            real = mode & 0o7777
            if self.override(rel) is not None:
                real |= 0o700 if stat.S_ISDIR(mode) else 0o600
            self.chmod(rel, real)
        if mtime is not None:
            ns = int(mtime * 1e9)
            self.utime(rel, (ns, ns))
