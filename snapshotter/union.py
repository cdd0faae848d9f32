"""The writable merged view: a `MergedTree` (lower, immutable) under an `UpperDir`.

Every operation takes relative paths ("" is the root; anything but plain names joined by "/"
is EINVAL) and raises OSError with an errno; the FUSE adapter (fuse_fs.py) only translates.
The upper dir is only ever reached through UpperDir's fd-relative calls: no path string is
resolved on the host, no link in it is followed. Lookup order for a path: the upper entry (a
whiteout there means "absent"), else the lower node unless an upper ancestor is opaque or is
not a directory. Writes copy the lower file up first.
"""
from __future__ import annotations

import errno
import os
import stat
import threading

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import Dict, List, Optional, Tuple

from .errors import LayerCorruptError
from .merge import DIR, REG, Inode, LowerData, MergedTree
from .upper import TEMP_PREFIX, UpperDir, check_rel, is_internal, is_whiteout, parent_of

LOWER_FH_BASE = 1 << 40
STAT_FIELDS = ("st_mode", "st_ino", "st_nlink", "st_uid", "st_gid", "st_size", "st_rdev",
               "st_blksize", "st_blocks", "st_atime", "st_mtime", "st_ctime")


def _enoent(rel: str) -> OSError:
    return OSError(errno.ENOENT, os.strerror(errno.ENOENT), rel)


class Union:
    def __init__(self, tree: MergedTree, data: LowerData, upper: Optional[UpperDir]) -> None:
        self.tree = tree
        self.data = data
        self.upper = upper
        self._lower_fh: Dict[int, Inode] = {}
        self._next_fh = LOWER_FH_BASE
        self._lock = threading.RLock()   # serialises mutations of the upper dir

    # --- lookup ---------------------------------------------------------------------------
    def _lower_hidden(self, rel: str) -> bool:
        opaque = self.upper.opaque if self.upper is not None else ()
        if not opaque or not rel:
            return False
        p = rel
        while p:
            p = parent_of(p)
            if p in opaque:
                return True
        return False

    def lower(self, rel: str) -> Optional[Inode]:
        """The visible lower node at rel (ignoring an upper entry at rel itself)."""
        if self.upper is not None:
            parent = parent_of(rel)
            if rel:
                pst = self.upper.lstat(parent)
                if pst is not None and not stat.S_ISDIR(pst.st_mode):
                    return None
            if self._lower_hidden(rel):
                return None
        return self.tree.get(rel)

    def resolve(self, rel: str) -> Tuple[str, object]:
        """("upper", stat_result) or ("lower", Inode); raises ENOENT."""
        check_rel(rel)
        if self.upper is not None:
            try:
                with self.upper.at(rel) as (fd, name):
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                st = None
            except NotADirectoryError:
                raise _enoent(rel) from None
            except OSError as e:
                if e.errno == errno.ELOOP:   # through a link: the kernel follows links, not us
                    raise _enoent(rel) from None
                raise
            if st is not None:
                if is_whiteout(st):
                    raise _enoent(rel)
                return "upper", st
            if self._lower_hidden(rel):
                raise _enoent(rel)
        node = self.tree.get(rel)
        if node is None:
            raise _enoent(rel)
        return "lower", node

    def stat_tuple(self, rel: str) -> tuple:
        """(mode, ino, nlink, uid, gid, size, rdev, blksize, blocks, atime_ns, mtime_ns,
        ctime_ns) — see STAT_FIELDS; a lower node's tuple is computed once."""
        kind, obj = self.resolve(rel)
        if kind == "lower":
            t = obj.attrs
            if t is None:
                ns = int(obj.mtime * 1e9)
                t = obj.attrs = (obj.mode, obj.ino, obj.nlink, obj.uid, obj.gid, obj.size,
                                 obj.rdev, 4096, (obj.size + 511) // 512, ns, ns, ns)
            return t
        st = obj
        mode, uid, gid, rdev, size, nlink = (st.st_mode, st.st_uid, st.st_gid, st.st_rdev,
                                             st.st_size, st.st_nlink)
        ov = self.upper.override(rel)
        if ov is not None:
            uid, gid, mode, rdev = ov
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                size = 0
        if stat.S_ISDIR(st.st_mode) and rel not in self.upper.opaque:
            low = self.lower(rel)
            if low is not None and low.type == DIR:
                nlink = 1   # merged dir: count unknown (as overlayfs says)
        return (mode, st.st_ino, nlink, uid, gid, size, rdev, st.st_blksize, st.st_blocks,
                st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns)

    def getattr(self, rel: str) -> dict:
        return dict(zip(STAT_FIELDS, self.stat_tuple(rel)))

    def readdir(self, rel: str) -> List[str]:
        kind, obj = self.resolve(rel)
        if kind == "lower":
            if obj.type != DIR:
                raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), rel)
            return self.tree.children(rel)
        if not stat.S_ISDIR(obj.st_mode):
            raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), rel)
        names: Dict[str, None] = {}
        hidden = set()
        for name, st in self.upper.listdir(rel):
            if name.startswith(TEMP_PREFIX):
                continue
            if is_whiteout(st):
                hidden.add(name)
                continue
            names[name] = None
        if rel not in self.upper.opaque:
            low = self.lower(rel)
            if low is not None and low.type == DIR:
                for name in self.tree.children(rel):
                    if name not in hidden:
                        names[name] = None
        return list(names)

    def readlink(self, rel: str) -> str:
        kind, obj = self.resolve(rel)
        if kind == "lower":
            if not stat.S_ISLNK(obj.mode):
                raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), rel)
            return obj.linkname
        return self.upper.readlink(rel)

    # --- xattrs ---------------------------------------------------------------------------
    def listxattr(self, rel: str) -> List[str]:
        kind, obj = self.resolve(rel)
        names = list(obj.xattrs) if kind == "lower" else self.upper.listxattr(rel)
        return [n for n in names if not is_internal(n)]

    def getxattr(self, rel: str, name: str) -> bytes:
        kind, obj = self.resolve(rel)
        if is_internal(name):          # ours (or a layer's forgery): hidden
            raise OSError(errno.ENODATA, os.strerror(errno.ENODATA), rel)
        if kind == "lower":
            try:
                return obj.xattrs[name]
            except KeyError:
                raise OSError(errno.ENODATA, os.strerror(errno.ENODATA), rel) from None
        return self.upper.getxattr(rel, name)

    def setxattr(self, rel: str, name: str, value: bytes, flags: int) -> None:
        if is_internal(name):
            raise OSError(errno.EPERM, "reserved xattr name", rel)
        self.copy_up(rel)
        self.upper.setxattr(rel, name, value, flags)

    def removexattr(self, rel: str, name: str) -> None:
        if is_internal(name):
            raise OSError(errno.ENODATA, os.strerror(errno.ENODATA), rel)
        self.copy_up(rel)
        self.upper.removexattr(rel, name)

    # --- copy-up --------------------------------------------------------------------------
    def _writable(self) -> UpperDir:
        if self.upper is None:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return self.upper

    def copy_up(self, rel: str, with_data: bool = True) -> None:
        """Make sure rel (which must exist in the merged view) has an upper entry."""
        upper = self._writable()
        with self._lock:
            kind, obj = self.resolve(rel)
            if kind == "upper":
                return
            if rel:
                self.copy_up(parent_of(rel))
            upper.copy_up(rel, obj, self.data, with_data=with_data)

    def _prepare_new(self, rel: str) -> None:
        """Before creating rel: parent copied up, rel absent, a whiteout there removed."""
        upper = self._writable()
        parent = parent_of(rel)
        if not self.is_dir(*self.resolve(parent)):
            raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), parent)
        try:
            self.resolve(rel)
        except FileNotFoundError:
            pass
        else:
            raise OSError(errno.EEXIST, os.strerror(errno.EEXIST), rel)
        self.copy_up(parent)
        upper.remove_whiteout(rel)

    def _lower_exists(self, rel: str) -> bool:
        return self.lower(rel) is not None

    def _owner_for(self, rel: str, owner: Tuple[int, int], mode: int):
        """(uid, gid, mode) of a new entry: in a setgid directory it takes the directory's
        group, and a new subdirectory stays setgid (what the kernel does on a local fs)."""
        pattrs = self.getattr(parent_of(rel))
        if pattrs["st_mode"] & stat.S_ISGID:
            owner = (owner[0], pattrs["st_gid"])
            if stat.S_ISDIR(mode):
                mode |= stat.S_ISGID
        return owner[0], owner[1], mode

    def _finish_new(self, rel: str, owner: Tuple[int, int], mode: int,
                    was_lower: bool, is_dir: bool = False) -> None:
        upper = self.upper
        uid, gid, mode = self._owner_for(rel, owner, mode)
        upper.apply_owner(rel, uid, gid, mode)
        if upper.override(rel) is not None and not stat.S_ISLNK(mode):
            upper.chmod(rel, (mode & 0o7777) | (0o700 if is_dir else 0o600))
        elif is_dir:
            upper.chmod(rel, mode & 0o7777)
        if is_dir and was_lower:
            upper.set_opaque(rel)

    # --- creating -------------------------------------------------------------------------
    def create(self, rel: str, mode: int, flags: int, owner: Tuple[int, int]) -> int:
        with self._lock:
            was_lower = self._lower_exists(rel)
            self._prepare_new(rel)
            fd = self.upper.open(rel, flags | os.O_CREAT | os.O_EXCL, mode & 0o7777)
            try:
                self._finish_new(rel, owner, stat.S_IFREG | (mode & 0o7777), was_lower)
            except BaseException:
                os.close(fd)
                raise
            return fd

    def mkdir(self, rel: str, mode: int, owner: Tuple[int, int]) -> None:
        with self._lock:
            was_lower = self._lower_hidden_by_whiteout(rel)
            self._prepare_new(rel)
            self.upper.mkdir(rel, mode & 0o7777)
            self._finish_new(rel, owner, stat.S_IFDIR | (mode & 0o7777), was_lower, True)

    def _lower_hidden_by_whiteout(self, rel: str) -> bool:
        st = self.upper.lstat(rel) if self.upper is not None else None
        return st is not None and is_whiteout(st) and self.tree.get(rel) is not None

    def symlink(self, rel: str, target: str, owner: Tuple[int, int]) -> None:
        with self._lock:
            self._prepare_new(rel)
            self.upper.symlink(target, rel)
            self._finish_new(rel, owner, stat.S_IFLNK | 0o777, False)

    def mknod(self, rel: str, mode: int, dev: int, owner: Tuple[int, int]) -> None:
        with self._lock:
            self._prepare_new(rel)
            fmt = stat.S_IFMT(mode)
            if (fmt in (stat.S_IFCHR, stat.S_IFBLK)) and dev == 0:
                raise OSError(errno.EPERM, "device 0/0 is reserved for whiteouts", rel)
            try:
                self.upper.mknod(rel, mode, dev)
            except PermissionError:
                if fmt not in (stat.S_IFCHR, stat.S_IFBLK):
                    raise
                os.close(self.upper.open(rel, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
                self.upper.set_override(rel, owner[0], owner[1], mode, dev)
            uid, gid, mode = self._owner_for(rel, owner, mode)
            self.upper.apply_owner(rel, uid, gid, mode, dev)

    def link(self, rel: str, existing: str) -> None:
        with self._lock:
            kind, obj = self.resolve(existing)
            if self.is_dir(kind, obj):
                raise OSError(errno.EPERM, os.strerror(errno.EPERM), existing)
            self.copy_up(existing)
            self._prepare_new(rel)
            self.upper.link(existing, rel)     # a symlink is linked as itself

    # --- removing -------------------------------------------------------------------------
    def unlink(self, rel: str) -> None:
        with self._lock:
            kind, obj = self.resolve(rel)
            if self.is_dir(kind, obj):
                raise OSError(errno.EISDIR, os.strerror(errno.EISDIR), rel)
            self._remove_entry(rel, kind, False)

    def rmdir(self, rel: str) -> None:
        with self._lock:
            kind, obj = self.resolve(rel)
            if not self.is_dir(kind, obj):
                raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), rel)
            if not rel:
                raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), rel)
            if self.readdir(rel):
                raise OSError(errno.ENOTEMPTY, os.strerror(errno.ENOTEMPTY), rel)
            self._remove_entry(rel, kind, True)

    def _remove_entry(self, rel: str, kind: str, is_dir: bool) -> None:
        upper = self._writable()
        lower_there = self._lower_exists(rel)
        if kind == "upper":
            if is_dir:
                self._clear_upper_dir(rel)
                upper.rmdir(rel)
                upper.forget_subtree(rel)
            else:
                upper.unlink(rel)
        if lower_there:
            self.copy_up(parent_of(rel))
            upper.add_whiteout(rel)

    def _clear_upper_dir(self, rel: str) -> None:
        """Remove what is left in an upper dir whose merged view is empty (whiteouts)."""
        for name, _st in self.upper.listdir(rel):
            self.upper.unlink(f"{rel}/{name}" if rel else name)

    # --- renaming -------------------------------------------------------------------------
    def rename(self, old: str, new: str) -> None:
        from .rename import rename
        with self._lock:
            rename(self, old, new)

    def is_dir(self, kind: str, obj) -> bool:
        return obj.type == DIR if kind == "lower" else stat.S_ISDIR(obj.st_mode)

    # --- attributes -----------------------------------------------------------------------
    def chmod(self, rel: str, mode: int) -> None:
        with self._lock:
            self.copy_up(rel)
            upper = self.upper
            ov = upper.override(rel)
            if ov is not None:
                uid, gid, old_mode, rdev = ov
                new_mode = stat.S_IFMT(old_mode) | (mode & 0o7777)
                upper.set_override(rel, uid, gid, new_mode, rdev)
                upper.chmod(rel, (mode & 0o7777) | (0o700 if stat.S_ISDIR(old_mode) else 0o600))
            else:
                upper.chmod(rel, mode & 0o7777)

    def chown(self, rel: str, uid: int, gid: int) -> None:
        with self._lock:
            self.copy_up(rel)
            attrs = self.getattr(rel)
            uid = attrs["st_uid"] if uid in (-1, 0xFFFFFFFF) else uid
            gid = attrs["st_gid"] if gid in (-1, 0xFFFFFFFF) else gid
            self.upper.apply_owner(rel, uid, gid, attrs["st_mode"], attrs["st_rdev"])

    def utimens(self, rel: str, ns: Optional[Tuple[int, int]]) -> None:
        with self._lock:
            self.copy_up(rel)
            self.upper.utime(rel, ns)

    def truncate(self, rel: str, length: int) -> None:
        with self._lock:
            self.copy_up(rel, with_data=length != 0)
            self.upper.truncate(rel, length)

    # --- file data ------------------------------------------------------------------------
    def open(self, rel: str, flags: int) -> int:
        """A file handle: an upper fd, or a number >= LOWER_FH_BASE for lower data."""
        writing = flags & (os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_TRUNC)
        kind, obj = self.resolve(rel)
        if kind == "lower" and not writing:
            if obj.type != REG:
                raise OSError(errno.EINVAL, "not a regular file", rel)
            with self._lock:
                fh = self._next_fh
                self._next_fh += 1
                self._lower_fh[fh] = obj
            return fh
        if writing:
            with self._lock:
                self.copy_up(rel, with_data=not flags & os.O_TRUNC)
        flags &= ~(os.O_CREAT | os.O_EXCL | os.O_NOCTTY)
        return self.upper.open(rel, flags)

    def read(self, fh: int, size: int, offset: int) -> bytes:
        if fh >= LOWER_FH_BASE:
            node = self._lower_fh.get(fh)
            if node is None:
                raise OSError(errno.EBADF, os.strerror(errno.EBADF))
            try:
                return bytes(self.data.read(node, offset, size))
            except LayerCorruptError:
                raise OSError(errno.EIO, os.strerror(errno.EIO)) from None
        return os.pread(fh, size, offset)

    def write(self, fh: int, data: bytes, offset: int) -> int:
        if fh >= LOWER_FH_BASE:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        return os.pwrite(fh, data, offset)

    def ftruncate(self, fh: int, length: int) -> None:
        os.ftruncate(fh, length)

    def fsync(self, fh: int, datasync: bool) -> None:
        if fh >= LOWER_FH_BASE:
            return
        (os.fdatasync if datasync else os.fsync)(fh)

    def release(self, fh: int) -> None:
        if fh >= LOWER_FH_BASE:
            with self._lock:
                self._lower_fh.pop(fh, None)
        else:
            os.close(fh)

    def statfs(self) -> dict:
        sv = self.upper.statvfs() if self.upper is not None else os.statvfs("/")
        out = {k: getattr(sv, k) for k in ("f_bsize", "f_frsize", "f_blocks", "f_bfree",
                                           "f_bavail", "f_files", "f_ffree", "f_favail",
                                           "f_namemax")}
        if self.upper is None:
            out.update(f_bfree=0, f_bavail=0, f_ffree=0, f_favail=0)
        return out
