"""The read-only merged view served through libfuse3's low-level API (ctypes, no extra package).

Why a second binding: the read-only lower of the `overlay` driver (and `view` snapshots) is
immutable, which is exactly what the low-level API is good at:
- node ids are the merged tree's inode numbers, so hardlinks are one kernel inode;
- READDIRPLUS hands the kernel every entry's attributes with the listing, so walking a
  tree costs one request per directory instead of one LOOKUP per name;
- negative lookups, entries and attributes are all cached for a day (nothing changes);
- it works on hosts that only ship libfuse3.
Used by fuse_fs.serve_fuse for read-only mounts when libfuse.so.3 loads; fusepy serves the
writable mounts. Struct layouts are those of x86_64/aarch64 Linux (LP64).
"""
from __future__ import annotations

import ctypes
import errno
import os
import threading

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import Dict, Optional

from .errors import LayerCorruptError, MountError

TIMEOUT = 86400.0
ROOT_ID = 1
_KEEP_CACHE = 1 << 2          # fuse_file_info bit: keep_cache (after writepage, direct_io)


class Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class Stat(ctypes.Structure):   # struct stat, LP64 glibc
    _fields_ = [("st_dev", ctypes.c_uint64), ("st_ino", ctypes.c_uint64),
                ("st_nlink", ctypes.c_uint64), ("st_mode", ctypes.c_uint32),
                ("st_uid", ctypes.c_uint32), ("st_gid", ctypes.c_uint32),
                ("pad0", ctypes.c_int32), ("st_rdev", ctypes.c_uint64),
                ("st_size", ctypes.c_int64), ("st_blksize", ctypes.c_int64),
                ("st_blocks", ctypes.c_int64), ("st_atim", Timespec), ("st_mtim", Timespec),
                ("st_ctim", Timespec), ("reserved", ctypes.c_int64 * 3)]


class EntryParam(ctypes.Structure):
    _fields_ = [("ino", ctypes.c_uint64), ("generation", ctypes.c_uint64), ("attr", Stat),
                ("attr_timeout", ctypes.c_double), ("entry_timeout", ctypes.c_double)]


class FileInfo(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_int32), ("bits", ctypes.c_uint32),
                ("padding2", ctypes.c_uint32), ("fh", ctypes.c_uint64),
                ("lock_owner", ctypes.c_uint64), ("poll_events", ctypes.c_uint32)]


class StatVfs(ctypes.Structure):
    _fields_ = [("f_bsize", ctypes.c_ulong), ("f_frsize", ctypes.c_ulong),
                ("f_blocks", ctypes.c_uint64), ("f_bfree", ctypes.c_uint64),
                ("f_bavail", ctypes.c_uint64), ("f_files", ctypes.c_uint64),
                ("f_ffree", ctypes.c_uint64), ("f_favail", ctypes.c_uint64),
                ("f_fsid", ctypes.c_ulong), ("f_flag", ctypes.c_ulong),
                ("f_namemax", ctypes.c_ulong), ("spare", ctypes.c_int * 6)]


class FuseBuf(ctypes.Structure):      # struct fuse_buf
    _fields_ = [("size", ctypes.c_size_t), ("flags", ctypes.c_int), ("mem", ctypes.c_void_p),
                ("fd", ctypes.c_int), ("pos", ctypes.c_int64)]


class FuseBufvec(ctypes.Structure):   # struct fuse_bufvec with one buffer
    _fields_ = [("count", ctypes.c_size_t), ("idx", ctypes.c_size_t), ("off", ctypes.c_size_t),
                ("buf", FuseBuf * 1)]


_BUF_IS_FD, _BUF_FD_SEEK = 1 << 1, 1 << 2            # enum fuse_buf_flags
_CAP_SPLICE_WRITE, _CAP_SPLICE_MOVE = 1 << 7, 1 << 8  # FUSE_CAP_*
_CAP_CACHE_SYMLINKS = 1 << 23
_CAP_NO_OPEN_SUPPORT = 1 << 17
_CONN_CAPABLE, _CONN_WANT = 5, 6                     # fuse_conn_info: unsigned fields 5 and 6


class Args(ctypes.Structure):
    _fields_ = [("argc", ctypes.c_int), ("argv", ctypes.POINTER(ctypes.c_char_p)),
                ("allocated", ctypes.c_int)]


# struct fuse_lowlevel_ops: 44 function pointers in this order (libfuse 3.x ABI)
_OPS = ("init destroy lookup forget getattr setattr readlink mknod mkdir unlink rmdir symlink "
        "rename link open read write flush release fsync opendir readdir releasedir fsyncdir "
        "statfs setxattr getxattr listxattr removexattr access create getlk setlk bmap ioctl "
        "poll write_buf retrieve_reply forget_multi flock fallocate readdirplus "
        "copy_file_range lseek").split()


class LowLevelOps(ctypes.Structure):
    _fields_ = [(name, ctypes.c_void_p) for name in _OPS]


_req = ctypes.c_void_p
_ino = ctypes.c_uint64
_fi = ctypes.POINTER(FileInfo)
_PROTOS = {
    "init": ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p),
    "lookup": ctypes.CFUNCTYPE(None, _req, _ino, ctypes.c_char_p),
    "forget": ctypes.CFUNCTYPE(None, _req, _ino, ctypes.c_uint64),
    "forget_multi": ctypes.CFUNCTYPE(None, _req, ctypes.c_size_t, ctypes.c_void_p),
    "getattr": ctypes.CFUNCTYPE(None, _req, _ino, _fi),
    "readlink": ctypes.CFUNCTYPE(None, _req, _ino),
    "open": ctypes.CFUNCTYPE(None, _req, _ino, _fi),
    "read": ctypes.CFUNCTYPE(None, _req, _ino, ctypes.c_size_t, ctypes.c_int64, _fi),
    "release": ctypes.CFUNCTYPE(None, _req, _ino, _fi),
    "readdir": ctypes.CFUNCTYPE(None, _req, _ino, ctypes.c_size_t, ctypes.c_int64, _fi),
    "readdirplus": ctypes.CFUNCTYPE(None, _req, _ino, ctypes.c_size_t, ctypes.c_int64, _fi),
    "statfs": ctypes.CFUNCTYPE(None, _req, _ino),
    "getxattr": ctypes.CFUNCTYPE(None, _req, _ino, ctypes.c_char_p, ctypes.c_size_t),
    "listxattr": ctypes.CFUNCTYPE(None, _req, _ino, ctypes.c_size_t),
}


def load_libfuse3():
    """The libfuse3 library with the prototypes used here, or None if it isn't there."""
    try:     # the soname first: find_library runs ldconfig (a process, ~3 ms)
        lib = ctypes.CDLL("libfuse3.so.3", use_errno=True)
    except OSError:
        from ctypes.util import find_library
        name = find_library("fuse3")
        if not name:
            return None
        try:
            lib = ctypes.CDLL(name, use_errno=True)
        except OSError:
            return None
    size_t, req, cp = ctypes.c_size_t, _req, ctypes.c_char_p
    lib.fuse_session_new.restype = ctypes.c_void_p
    lib.fuse_session_new.argtypes = [ctypes.POINTER(Args), ctypes.POINTER(LowLevelOps), size_t,
                                     ctypes.c_void_p]
    lib.fuse_session_mount.argtypes = [ctypes.c_void_p, cp]
    lib.fuse_session_unmount.argtypes = [ctypes.c_void_p]
    lib.fuse_session_destroy.argtypes = [ctypes.c_void_p]
    lib.fuse_session_loop.argtypes = [ctypes.c_void_p]
    lib.fuse_session_loop_mt_31.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.fuse_reply_err.argtypes = [req, ctypes.c_int]
    lib.fuse_reply_none.argtypes = [req]
    lib.fuse_reply_entry.argtypes = [req, ctypes.POINTER(EntryParam)]
    lib.fuse_reply_attr.argtypes = [req, ctypes.POINTER(Stat), ctypes.c_double]
    lib.fuse_reply_readlink.argtypes = [req, cp]
    lib.fuse_reply_open.argtypes = [req, _fi]
    lib.fuse_reply_buf.argtypes = [req, ctypes.c_char_p, size_t]
    lib.fuse_reply_data.argtypes = [req, ctypes.POINTER(FuseBufvec), ctypes.c_int]
    lib.fuse_reply_statfs.argtypes = [req, ctypes.POINTER(StatVfs)]
    lib.fuse_reply_xattr.argtypes = [req, size_t]
    lib.fuse_add_direntry_plus.restype = size_t
    lib.fuse_add_direntry_plus.argtypes = [req, ctypes.c_void_p, size_t, cp,
                                           ctypes.POINTER(EntryParam), ctypes.c_int64]
    lib.fuse_add_direntry.restype = size_t
    lib.fuse_add_direntry.argtypes = [req, ctypes.c_void_p, size_t, cp, ctypes.POINTER(Stat),
                                      ctypes.c_int64]
    return lib


def _fill(st: Stat, node) -> None:
    t = node.mtime
    sec = int(t)
    nsec = int((t - sec) * 1e9)
    st.st_ino, st.st_mode, st.st_nlink = node.ino, node.mode, node.nlink
    st.st_uid, st.st_gid, st.st_rdev, st.st_size = node.uid, node.gid, node.rdev, node.size
    st.st_blksize, st.st_blocks = 4096, (node.size + 511) // 512
    for ts in (st.st_atim, st.st_mtim, st.st_ctim):
        ts.tv_sec, ts.tv_nsec = sec, nsec


class ReadOnlyServer:
    """Serves a MergedTree + LowerData read-only at a mount point (one per process)."""

    def __init__(self, lib, tree, data, ready_fd: Optional[int] = None) -> None:
        self.lib, self.tree, self.data, self.ready_fd = lib, tree, data, ready_fd
        self.paths: Dict[int, str] = {ROOT_ID: ""}
        self.no_xattrs = not tree.has_xattrs
        self.no_open = False
        self.local = threading.local()
        self._keep = []   # CFUNCTYPE objects must outlive the session

    # --- helpers -------------------------------------------------------------------------
    def _node(self, ino: int):
        path = self.paths.get(ino)
        node = self.tree.get(path) if path is not None else None
        return path, node

    def _entry(self, path: str, node) -> EntryParam:
        e = EntryParam()
        e.ino = node.ino
        _fill(e.attr, node)
        e.attr_timeout = e.entry_timeout = TIMEOUT
        self.paths[node.ino] = path
        return e

    def _wrap(self, name, fn):
        lib, local = self.lib, self.local
        ensure = ctypes.pythonapi.PyGILState_Ensure

        def call(req, *args):
            if not getattr(local, "pinned", False):
                ensure()   # keep this libfuse thread's Python state (see fuse_fs.py)
                local.pinned = True
            try:
                fn(req, *args)
            except OSError as exc:
                lib.fuse_reply_err(req, exc.errno or errno.EIO)
            except LayerCorruptError:
                lib.fuse_reply_err(req, errno.EIO)
            except Exception:   # never leave the kernel waiting for a reply
                lib.fuse_reply_err(req, errno.EIO)

        def call_init(userdata, conn):
            # file data goes from the layer blob to the kernel by splice when it can
            # (fuse_reply_data with an fd buffer: no copy through Python), and the kernel
            # caches symlink targets (they never change here)
            info = ctypes.cast(conn, ctypes.POINTER(ctypes.c_uint))
            info[_CONN_WANT] |= info[_CONN_CAPABLE] & (_CAP_SPLICE_WRITE | _CAP_SPLICE_MOVE |
                                                      _CAP_CACHE_SYMLINKS |
                                                      _CAP_NO_OPEN_SUPPORT)
            self.no_open = bool(info[_CONN_WANT] & _CAP_NO_OPEN_SUPPORT)
            if self.ready_fd is not None:
                os.write(self.ready_fd, b"ok\n")
                os.close(self.ready_fd)
                self.ready_fd = None
        cb = _PROTOS[name](call_init if name == "init" else call)
        self._keep.append(cb)
        return ctypes.cast(cb, ctypes.c_void_p)

    # --- operations ----------------------------------------------------------------------
    def op_lookup(self, req, parent, name):
        ppath = self.paths.get(parent)
        if ppath is None:
            raise OSError(errno.ESTALE, "unknown node")
        name = name.decode("utf-8", "surrogateescape")
        path = f"{ppath}/{name}" if ppath else name
        node = self.tree.get(path)
        if node is None:   # negative entry, cached as long as the positive ones
            e = EntryParam()
            e.entry_timeout = TIMEOUT
            self.lib.fuse_reply_entry(req, ctypes.byref(e))
            return
        self.lib.fuse_reply_entry(req, ctypes.byref(self._entry(path, node)))

    def op_forget(self, req, ino, nlookup):
        self.lib.fuse_reply_none(req)

    def op_forget_multi(self, req, count, forgets):
        self.lib.fuse_reply_none(req)

    def op_getattr(self, req, ino, fi):
        _, node = self._node(ino)
        if node is None:
            raise OSError(errno.ENOENT, "no such node")
        st = Stat()
        _fill(st, node)
        self.lib.fuse_reply_attr(req, ctypes.byref(st), TIMEOUT)

    def op_readlink(self, req, ino):
        _, node = self._node(ino)
        if node is None or not node.linkname or node.type != "l":
            raise OSError(errno.EINVAL, "not a symlink")
        self.lib.fuse_reply_readlink(req, node.linkname.encode("utf-8", "surrogateescape"))

    def op_open(self, req, ino, fi):
        if fi.contents.flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND):
            raise OSError(errno.EROFS, "read-only")
        if self.no_open:
            # zero-message opens: the kernel opens every later file itself (a shared lower
            # is opened once per request by a web server; each was a round trip here)
            raise OSError(errno.ENOSYS, "opens are the kernel's")
        fi.contents.bits |= _KEEP_CACHE
        fi.contents.fh = ino
        self.lib.fuse_reply_open(req, fi)

    def op_read(self, req, ino, size, off, fi):
        _, node = self._node(ino)
        if node is None:
            raise OSError(errno.EBADF, "no such node")
        fd, pos, n = self.data.locate(node, off, size)
        if n == 0:
            self.lib.fuse_reply_buf(req, None, 0)
            return
        bv = FuseBufvec(1, 0, 0)
        b = bv.buf[0]
        b.size, b.flags, b.fd, b.pos = n, _BUF_IS_FD | _BUF_FD_SEEK, fd, pos
        self.lib.fuse_reply_data(req, ctypes.byref(bv), 0)

    def op_release(self, req, ino, fi):
        self.lib.fuse_reply_err(req, 0)

    def _dir_entries(self, ino):
        path, node = self._node(ino)
        if node is None:
            raise OSError(errno.ENOENT, "no such node")
        if node.type != "d":
            raise OSError(errno.ENOTDIR, "not a directory")
        return path, node, self.tree.children(path)

    def op_readdirplus(self, req, ino, size, off, fi):
        self._readdir(req, ino, size, off, plus=True)

    def op_readdir(self, req, ino, size, off, fi):
        self._readdir(req, ino, size, off, plus=False)

    def _readdir(self, req, ino, size, off, plus):
        path, node, names = self._dir_entries(ino)
        buf = ctypes.create_string_buffer(size)
        base = ctypes.addressof(buf)
        pos = 0
        entries = [".", ".."] + names
        for i in range(off, len(entries)):
            name = entries[i]
            if i < 2:
                child, cnode = None, node
            else:
                child = f"{path}/{name}" if path else name
                cnode = self.tree.get(child)
            bname = name.encode("utf-8", "surrogateescape")
            if plus:
                if child is None:
                    e = EntryParam()     # "." and "..": not linked by the kernel
                    e.attr.st_ino, e.attr.st_mode = cnode.ino, cnode.mode
                else:
                    e = self._entry(child, cnode)
                n = self.lib.fuse_add_direntry_plus(req, base + pos, size - pos, bname,
                                                    ctypes.byref(e), i + 1)
            else:
                st = Stat()
                st.st_ino, st.st_mode = cnode.ino, cnode.mode
                n = self.lib.fuse_add_direntry(req, base + pos, size - pos, bname,
                                               ctypes.byref(st), i + 1)
            if n > size - pos:
                break
            pos += n
        self.lib.fuse_reply_buf(req, buf.raw[:pos], pos)

    def op_statfs(self, req, ino):
        sv = StatVfs()
        sv.f_bsize = sv.f_frsize = 4096
        sv.f_files = len(self.tree)
        sv.f_namemax = 255
        self.lib.fuse_reply_statfs(req, ctypes.byref(sv))

    def op_getxattr(self, req, ino, name, size):
        if self.no_xattrs:
            raise OSError(errno.ENOSYS, "no xattrs in these layers")
        _, node = self._node(ino)
        value = node.xattrs.get(name.decode("utf-8", "surrogateescape")) if node else None
        if value is None:
            raise OSError(errno.ENODATA, "no such attribute")
        self._reply_sized(req, value, size)

    def op_listxattr(self, req, ino, size):
        if self.no_xattrs:
            raise OSError(errno.ENOSYS, "no xattrs in these layers")
        _, node = self._node(ino)
        names = b"".join(n.encode() + b"\0" for n in (node.xattrs if node else ()))
        self._reply_sized(req, names, size)

    def _reply_sized(self, req, value: bytes, size: int) -> None:
        if size == 0:
            self.lib.fuse_reply_xattr(req, len(value))
        elif len(value) > size:
            raise OSError(errno.ERANGE, "buffer too small")
        else:
            self.lib.fuse_reply_buf(req, value, len(value))

    # --- running -------------------------------------------------------------------------
    def serve(self, mountpoint: str, options: str, single_thread: bool = False) -> None:
        ops = LowLevelOps()
        ops.init = self._wrap("init", None)
        for name in _PROTOS:
            if name != "init":
                setattr(ops, name, self._wrap(name, getattr(self, "op_" + name)))
        argv = [b"pydocklite", b"-o", options.encode()]
        arr = (ctypes.c_char_p * (len(argv) + 1))(*argv, None)
        args = Args(len(argv), arr, 0)
        lib = self.lib
        se = lib.fuse_session_new(ctypes.byref(args), ctypes.byref(ops), ctypes.sizeof(ops),
                                  None)
        if not se:
            raise MountError(f"libfuse3 refused the options {options!r} for {mountpoint}")
        try:
            if lib.fuse_session_mount(se, str(mountpoint).encode()) != 0:
                raise MountError(f"FUSE mount of {mountpoint} failed: check that /dev/fuse is "
                                 f"usable and the mount point exists")
            try:
                if single_thread:
                    lib.fuse_session_loop(se)
                else:
                    lib.fuse_session_loop_mt_31(se, 0)
            finally:
                lib.fuse_session_unmount(se)
        finally:
            lib.fuse_session_destroy(se)
            self.data.close()
