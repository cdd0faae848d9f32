"""Write a directory tree as a tar stream, walking it by directory fds (snapshotter.fd_walk):
what `cp` sends into a container, and what the confined helper sends out of one.

Symbolic links are stored as links, never followed; hard links within the tree stay hard
links; a file swapped while it is read is left out rather than read through a link; owners
are numeric (no name lookups); sockets are not stored.
"""
from __future__ import annotations

import os
import stat

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import Callable, Iterable

from snapshotter import fd_walk
from snapshotter.layer_index import BLOCK, CHAR, DIR, FIFO, HARDLINK, REG, SYMLINK
from snapshotter.tar_stream import TarWriter

_CHUNK = 1 << 20
TYPE_OF = {stat.S_IFREG: REG, stat.S_IFDIR: DIR, stat.S_IFLNK: SYMLINK, stat.S_IFCHR: CHAR,
           stat.S_IFBLK: BLOCK, stat.S_IFIFO: FIFO}


def fd_xattrs(fd: int) -> tuple:
    """(name, value) pairs of an open file's extended attributes, sorted."""
    try:
        names = os.listxattr(fd)
    except OSError:
        return ()
    out = []
    for k in sorted(names):
        try:
            out.append((k, os.getxattr(fd, k)))
        except OSError:
            pass
    return tuple(out)


class TreeWriter:
    def __init__(self, write: Callable[[bytes], object]) -> None:
        self.w = TarWriter(write)
        self.links = {}         # (dev, ino) -> first name, for hard links

    def entry(self, name: str, e: fd_walk.Entry, empty: bool = False) -> None:
        """One entry; `empty`: a mount point, stored without its contents."""
        st = e.st
        t = TYPE_OF.get(stat.S_IFMT(st.st_mode))
        if t is None:
            return                         # sockets
        common = dict(mode=st.st_mode & 0o7777, uid=st.st_uid, gid=st.st_gid,
                      mtime=st.st_mtime)
        if t == DIR:
            self.w.add(name, DIR, xattrs=fd_xattrs(e.fd) if e.fd >= 0 else (), **common)
        elif t == SYMLINK:
            self.w.add(name, SYMLINK, linkname=fd_walk.read_link(e), **common)
        elif t in (CHAR, BLOCK):
            self.w.add(name, t, devmajor=os.major(st.st_rdev), devminor=os.minor(st.st_rdev),
                       **common)
        elif t == FIFO or empty:
            self.w.add(name, t, **common)
        else:
            opened = fd_walk.open_regular(e)
            if opened is None:
                return                     # gone, or no longer a file, since the listing
            fd, fst = opened               # (what is there now, described by itself)
            try:
                key = (fst.st_dev, fst.st_ino)
                common.update(mode=fst.st_mode & 0o7777, uid=fst.st_uid, gid=fst.st_gid,
                              mtime=fst.st_mtime)
                if fst.st_nlink > 1 and key in self.links:
                    self.w.add(name, HARDLINK, linkname=self.links[key], **common)
                    return
                if fst.st_nlink > 1:
                    self.links[key] = name
                self.w.add(name, REG, size=fst.st_size, xattrs=fd_xattrs(fd),
                           data=iter(lambda: os.read(fd, _CHUNK), b""), **common)
            finally:
                os.close(fd)

    def add_tree(self, dir_fd: int, name: str, st: os.stat_result, tar_name: str,
                 prune: Iterable[str] = (), base: str = "") -> None:
        """Entry `name` of directory `dir_fd` ("." = dir_fd itself), lstat `st`, stored as
        `tar_name` with everything below it (tar_name "": no entry for the top, the ones
        below named by their paths alone, as `docker export` names them). prune: paths
        (relative to "/", as `base` + the entry's path) stored as empty mount points."""
        prune = set(prune)
        if name == ".":
            top = fd_walk.Entry(".", ".", dir_fd, st, dir_fd)
        else:
            top = fd_walk.Entry(name, name, dir_fd, st)
            if stat.S_ISDIR(st.st_mode):
                top.fd = fd_walk.open_dir(dir_fd, name)
                top.st = os.fstat(top.fd)
        try:
            if tar_name:
                self.entry(tar_name, top)
            if not stat.S_ISDIR(top.st.st_mode):
                return
            root = base.strip("/")

            def full(rel: str) -> str:
                return f"{root}/{rel}" if root else rel
            for e in fd_walk.walk(top.fd, descend=lambda e: full(e.rel) not in prune):
                self.entry(f"{tar_name}/{e.rel}" if tar_name else e.rel, e,
                           empty=full(e.rel) in prune)
        finally:
            if top.fd >= 0 and top.fd != dir_fd:
                os.close(top.fd)

    def close(self) -> None:
        self.w.close()
