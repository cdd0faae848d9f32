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

from .layer_index import INTERNAL_XATTR_PREFIXES
from .merge import DIR, FIFO, REG, SYMLINK, CHAR, BLOCK, Inode, LowerData

OPAQUE_XATTR = "user.overlay.opaque"
OVERRIDE_XATTR = "user.pydocklite.override"
TEMP_PREFIX = ".pdl-tmp-"
_COPY_CHUNK = 1 << 20


def is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def dirent_is_whiteout(de: os.DirEntry) -> bool:
    if de.is_dir(follow_symlinks=False) or de.is_file(follow_symlinks=False) or de.is_symlink():
        return False
    return is_whiteout(de.stat(follow_symlinks=False))


def parent_of(path: str) -> str:
    i = path.rfind("/")
    return path[:i] if i >= 0 else ""


class UpperDir:
    """On-disk upper dir + the in-memory set of its opaque directories (relative paths)."""

    def __init__(self, root: Path) -> None:
        self.root = str(root)
        self.opaque: Set[str] = set()
        self.uses_overrides = False
        self._lock = threading.RLock()
        self._tmp_counter = 0
        self._scan()

    # --- paths and state -------------------------------------------------------------------
    def path(self, rel: str) -> str:
        return f"{self.root}/{rel}" if rel else self.root

    def _scan(self) -> None:
        for dirpath, dirnames, filenames in os.walk(self.root):
            rel_dir = os.path.relpath(dirpath, self.root)
            rel_dir = "" if rel_dir == "." else rel_dir
            if self._has_xattr(dirpath, OPAQUE_XATTR):
                self.opaque.add(rel_dir)
            if not self.uses_overrides:
                for name in dirnames + filenames:
                    if self._has_xattr(os.path.join(dirpath, name), OVERRIDE_XATTR):
                        self.uses_overrides = True
                        break
            for name in filenames:
                if name.startswith(TEMP_PREFIX):  # left over by a crash mid copy-up
                    try:
                        os.unlink(os.path.join(dirpath, name))
                    except OSError:
                        pass

    @staticmethod
    def _has_xattr(p: str, name: str) -> bool:
        try:
            os.getxattr(p, name, follow_symlinks=False)
            return True
        except OSError:
            return False

    def lstat(self, rel: str) -> Optional[os.stat_result]:
        """The upper entry, or None; raises nothing for ENOENT/ENOTDIR."""
        try:
            return os.lstat(self.path(rel))
        except (FileNotFoundError, NotADirectoryError):
            return None

    def override(self, rel: str) -> Optional[Tuple[int, int, int, int]]:
        if not self.uses_overrides:
            return None
        try:
            raw = os.getxattr(self.path(rel), OVERRIDE_XATTR, follow_symlinks=False)
        except OSError:
            return None
        uid, gid, mode, rdev = (int(x) for x in raw.decode().split(":"))
        return uid, gid, mode, rdev

    def set_override(self, rel: str, uid: int, gid: int, mode: int, rdev: int = 0) -> None:
        os.setxattr(self.path(rel), OVERRIDE_XATTR, f"{uid}:{gid}:{mode}:{rdev}".encode(),
                    follow_symlinks=False)
        self.uses_overrides = True

    def temp_name(self, parent: str) -> str:
        with self._lock:
            self._tmp_counter += 1
            n = self._tmp_counter
        name = f"{TEMP_PREFIX}{os.getpid()}-{threading.get_ident()}-{n}"
        return f"{parent}/{name}" if parent else name

    # --- whiteouts and opaque dirs ---------------------------------------------------------
    def add_whiteout(self, rel: str) -> None:
        p = self.path(rel)
        try:
            os.mknod(p, stat.S_IFCHR | 0o000, os.makedev(0, 0))
        except FileExistsError:
            st = os.lstat(p)
            if not is_whiteout(st):
                raise

    def remove_whiteout(self, rel: str) -> bool:
        st = self.lstat(rel)
        if st is not None and is_whiteout(st):
            os.unlink(self.path(rel))
            return True
        return False

    def set_opaque(self, rel: str) -> None:
        os.setxattr(self.path(rel), OPAQUE_XATTR, b"y", follow_symlinks=False)
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
        p = self.path(rel)
        try:
            st = os.lstat(p)
            if (st.st_uid, st.st_gid) != (uid, gid):
                os.chown(p, uid, gid, follow_symlinks=False)
            if stat.S_IFMT(st.st_mode) != stat.S_IFMT(mode):
                raise PermissionError(errno.EPERM, "type differs")
            if self.override(rel) is not None:
                os.removexattr(p, OVERRIDE_XATTR, follow_symlinks=False)
        except PermissionError:
            if stat.S_ISLNK(os.lstat(p).st_mode):
                return  # user.* xattrs can't live on symlinks: keep the server's owner
            self.set_override(rel, uid, gid, mode, rdev)

    def set_xattrs(self, rel: str, xattrs: dict) -> None:
        p = self.path(rel)
        for name, value in xattrs.items():
            try:
                os.setxattr(p, name, value, follow_symlinks=False)
            except OSError as exc:
                # trusted.* / security.* need privileges this server may not have
                if exc.errno not in (errno.EPERM, errno.EACCES, errno.ENOTSUP):
                    raise

    # --- copy-up ---------------------------------------------------------------------------
    def copy_up(self, rel: str, node: Inode, data: LowerData, with_data: bool = True) -> None:
        """Create `rel` in the upper dir from the lower `node`; parents must exist already."""
        parent = parent_of(rel)
        tmp = self.temp_name(parent)
        tp = self.path(tmp)
        perm = node.mode & 0o7777
        if node.type == REG:
            fd = os.open(tp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
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
            os.mkdir(tp, 0o700)
        elif node.type == SYMLINK:
            os.symlink(node.linkname, tp)
        elif node.type == FIFO:
            os.mkfifo(tp, 0o600)
        elif node.type in (CHAR, BLOCK):
            try:
                os.mknod(tp, node.mode & ~0o7777 | 0o600, node.rdev)
            except PermissionError:
                os.close(os.open(tp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        else:
            raise OSError(errno.EINVAL, f"cannot copy up {rel!r}: unknown type {node.type!r}")
        try:
            self.finish_meta(tmp, node.mode, node.uid, node.gid, node.rdev, node.xattrs,
                             node.mtime)
            os.rename(tp, self.path(rel))
        except BaseException:
            if node.type == DIR:
                os.rmdir(tp)
            else:
                os.unlink(tp)
            raise

    def finish_meta(self, rel: str, mode: int, uid: int, gid: int, rdev: int, xattrs: dict,
                    mtime: Optional[float]) -> None:
        p = self.path(rel)
        self.set_xattrs(rel, xattrs)
        self.apply_owner(rel, uid, gid, mode, rdev)
        if not stat.S_ISLNK(mode):
            real = mode & 0o7777
            if self.override(rel) is not None:
                real |= 0o700 if stat.S_ISDIR(mode) else 0o600
            os.chmod(p, real)
        if mtime is not None:
            ns = int(mtime * 1e9)
            os.utime(p, ns=(ns, ns), follow_symlinks=False)
