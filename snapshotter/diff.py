"""Turn a snapshot's changes into an uncompressed OCI tar layer (what `commit` and `build` need).

Two sources of changes:
- an upper dir in overlayfs format (`write_upper_diff`): whiteouts (char 0/0) become `.wh.NAME`
  entries, opaque dirs get a `.wh..wh..opq` marker, override xattrs (unprivileged mounts) give
  the intended owner/mode/device, hardlinks inside the upper stay hardlinks;
- a plain directory tree compared with its merged lower tree (`write_tree_diff`, vfs driver).

Owners on disk may be host ids of a user namespace (subuids): `IdMap` maps them back to the
ids seen inside the container. Output goes to a binary file object; helper
`diff_to_layer` streams it into `LayerStore` (which hashes and indexes it).
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator, Optional, Sequence, Tuple

from . import fd_walk
from .layer_index import (BLOCK, CHAR, DIR, FIFO, HARDLINK, INTERNAL_XATTR_PREFIXES, REG,
                          SYMLINK)
from .tar_stream import TarWriter
from .upper import OPAQUE_XATTR, OVERRIDE_XATTR, TEMP_PREFIX, is_whiteout

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
TAR_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar"
_CHUNK = 1 << 20

# Which `user.pydocklite.override` xattrs to believe (see upper.py): the FUSE upper server
# writes them and never lets a container set one; through kernel overlayfs (and in a vfs copy,
# which the container writes directly) a container can set any user.* xattr on its files.
TRUST_ALL, TRUST_NONE, TRUST_LOWER = "all", "none", "lower"


@dataclass(frozen=True)
class IdMap:
    """(container_id, host_id, count) ranges, like /proc/PID/uid_map; empty = identity."""
    uids: Tuple[Tuple[int, int, int], ...] = ()
    gids: Tuple[Tuple[int, int, int], ...] = ()

    @staticmethod
    def _to_container(ranges, host_id: int) -> int:
        if not ranges:
            return host_id
        for inside, outside, count in ranges:
            if outside <= host_id < outside + count:
                return inside + host_id - outside
        return 65534  # unmapped: nobody, as the kernel shows it

    def uid(self, host_uid: int) -> int:
        return self._to_container(self.uids, host_uid)

    def gid(self, host_gid: int) -> int:
        return self._to_container(self.gids, host_gid)


def _fd_xattrs(fd: int) -> dict:
    out = {}
    try:
        names = os.listxattr(fd)
    except OSError:
        return out
    for name in sorted(names):
        if name.startswith(INTERNAL_XATTR_PREFIXES):
            continue
        try:
            out[name] = os.getxattr(fd, name)
        except OSError:
            continue
    return out


def _fd_override(fd: int):
    try:
        raw = os.getxattr(fd, OVERRIDE_XATTR)
        uid, gid, mode, rdev = (int(x) for x in raw.decode().split(":"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return uid, gid, mode, rdev


def _fd_has(fd: int, name: str) -> bool:
    try:
        os.getxattr(fd, name)
        return True
    except OSError:
        return False


class _Opened:
    """An entry's fd when it carries one (a directory's, a regular file opened without
    following a link) and its override xattr."""

    def __init__(self, e: fd_walk.Entry) -> None:
        self.fd, self.own = e.fd, False
        self.st = e.st
        if stat.S_ISREG(e.st.st_mode):
            got = fd_walk.open_regular(e)
            if got is not None:
                self.fd, self.st = got
                self.own = True
        self.override = _fd_override(self.fd) if self.fd >= 0 else None

    def close(self) -> None:
        if self.own:
            os.close(self.fd)
            self.fd, self.own = -1, False


def _walk(root_fd: int):
    return fd_walk.walk(root_fd, skip=lambda name: name.startswith(TEMP_PREFIX))


def _open_root(root) -> int:
    return os.open(str(root), fd_walk.DIR_FLAGS)


class _TarOut:
    def __init__(self, fileobj: BinaryIO, idmap: IdMap) -> None:
        self.w = TarWriter(fileobj.write)
        self.idmap = idmap
        self.links = {}   # (dev, ino) -> first path

    def whiteout(self, rel: str) -> None:
        parent, _, name = rel.rpartition("/")
        self._empty(f"{parent}/{WHITEOUT_PREFIX}{name}" if parent else WHITEOUT_PREFIX + name)

    def opaque(self, rel: str) -> None:
        self._empty(f"{rel}/{OPAQUE_MARKER}" if rel else OPAQUE_MARKER)

    def _empty(self, name: str) -> None:
        self.w.add(name, REG, 0o644)

    def add(self, rel: str, e: fd_walk.Entry, o: _Opened, ov) -> None:
        """Entry e (its fd and xattrs in o); ov: the override to apply, or None."""
        st = o.st
        uid, gid = self.idmap.uid(st.st_uid), self.idmap.gid(st.st_gid)
        mode, rdev = st.st_mode, st.st_rdev
        if ov is not None:
            uid, gid, mode, rdev = ov
        common = dict(mode=mode & 0o7777, uid=uid, gid=gid, mtime=st.st_mtime)
        xattrs = tuple(_fd_xattrs(o.fd).items()) if o.fd >= 0 else ()
        if stat.S_ISREG(mode) and stat.S_ISREG(st.st_mode):
            if not o.own:
                return                  # gone, or no longer a file, since the listing
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in self.links:
                self.w.add(rel, HARDLINK, linkname=self.links[key], **common)
                return
            if st.st_nlink > 1:
                self.links[key] = rel
            fd = o.fd
            self.w.add(rel, REG, size=st.st_size, xattrs=xattrs,
                       data=iter(lambda: os.read(fd, _CHUNK), b""), **common)
        elif stat.S_ISDIR(mode):
            self.w.add(rel, DIR, xattrs=xattrs, **common)
        elif stat.S_ISLNK(mode) and stat.S_ISLNK(st.st_mode):
            self.w.add(rel, SYMLINK, linkname=fd_walk.read_link(e), **common)
        elif stat.S_ISFIFO(mode):
            self.w.add(rel, FIFO, **common)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            self.w.add(rel, CHAR if stat.S_ISCHR(mode) else BLOCK, devmajor=os.major(rdev),
                       devminor=os.minor(rdev), **common)
        # sockets (and a symlink an override calls something else) are not stored

    def close(self) -> None:
        self.w.close()


def write_upper_diff(upper: Path, out: BinaryIO, idmap: IdMap = IdMap(),
                     trust: str = TRUST_ALL) -> int:
    """Write the changes recorded in an overlay-format upper dir as a tar; returns #entries.
    The upper dir is walked by directory fds, never following a link (a container may swap
    one in while we walk); `trust` says which override xattrs to believe (TRUST_ALL for the
    FUSE upper, TRUST_NONE for kernel overlayfs)."""
    t = _TarOut(out, idmap)
    n = 0
    root = _open_root(upper)
    try:
        for e in _walk(root):
            if is_whiteout(e.st):
                t.whiteout(e.rel)
                n += 1
                continue
            o = _Opened(e)
            try:
                t.add(e.rel, e, o, o.override if trust == TRUST_ALL else None)
                if stat.S_ISDIR(o.st.st_mode) and _fd_has(o.fd, OPAQUE_XATTR):
                    t.opaque(e.rel)
                    n += 1
            finally:
                o.close()
            n += 1
    finally:
        os.close(root)
    t.close()
    return n


def write_tree_diff(root: Path, tree, out: BinaryIO, idmap: IdMap = IdMap()) -> int:
    """Changes of a full copy `root` (vfs driver) against the MergedTree it was made from.
    An override xattr counts only where it describes the image's own file unchanged: the
    container writes this copy directly and could set one."""
    t = _TarOut(out, idmap)
    n = 0
    seen = set()
    rfd = _open_root(root)
    try:
        for e in _walk(rfd):
            seen.add(e.rel)
            node = tree.get(e.rel)
            o = _Opened(e)
            try:
                if node is not None and _same(node, e, o, idmap):
                    continue
                t.add(e.rel, e, o, None)
                n += 1
            finally:
                o.close()
    finally:
        os.close(rfd)
    for rel in tree.paths():
        if rel and rel not in seen and tree.get(rel) is not None:
            parent = rel.rpartition("/")[0]
            if parent in seen or parent == "":
                t.whiteout(rel)
                n += 1
    t.close()
    return n


def _same(node, e: fd_walk.Entry, o: _Opened, idmap: IdMap) -> bool:
    st = o.st
    mode, uid, gid, rdev = st.st_mode, idmap.uid(st.st_uid), idmap.gid(st.st_gid), st.st_rdev
    if o.override is not None:   # owner/type that could not be set for real (see upper.py)
        uid, gid, mode, rdev = o.override
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            return stat.S_IFMT(node.mode) == stat.S_IFMT(mode) and node.rdev == rdev and \
                (node.uid, node.gid, node.mode & 0o7777) == (uid, gid, mode & 0o7777)
    if stat.S_IFMT(node.mode) != stat.S_IFMT(mode):
        return False
    if (node.mode & 0o7777) != (mode & 0o7777) and not stat.S_ISLNK(mode):
        return False
    if (node.uid, node.gid) != (uid, gid):
        return False
    if stat.S_ISDIR(st.st_mode):
        return True   # children are compared one by one
    if int(node.mtime) != int(st.st_mtime):
        return False
    if stat.S_ISREG(st.st_mode):
        return node.size == st.st_size
    if stat.S_ISLNK(st.st_mode):
        return node.linkname == fd_walk.read_link(e)
    return node.rdev == rdev


def diff_to_layer(layer_store, write, name: str):
    """Stream `write(fileobj)`'s tar straight into a new layer of `layer_store`; LayerInfo."""
    with layer_store.ingest(None, TAR_MEDIA_TYPE, name) as w:
        write(w)
        return w.commit()


def tar_members(data: bytes) -> Sequence[str]:
    """Names in a tar (for tests and diagnostics)."""
    import io
    import tarfile
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return [m.name for m in tf.getmembers()]


def write_diff_for(upper: Optional[Path], root: Optional[Path], tree, idmap: IdMap,
                   trust: str = TRUST_ALL):
    """A `write(fileobj)` for diff_to_layer from either an upper dir or a vfs copy."""
    if upper is not None:
        return lambda f: write_upper_diff(upper, f, idmap, trust)
    return lambda f: write_tree_diff(root, tree, f, idmap)


# --- what changed (`docker diff`): "A" added, "C" changed, "D" deleted ---------------------

def upper_changes(upper_fd: int, tree) -> Iterator[Tuple[str, str, os.stat_result]]:
    """(kind, relative path, lstat) of each change an overlay-format upper dir (opened as
    upper_fd) records against its lower MergedTree, parents first. Walked by directory fds
    (fd_walk): the container may have put symlinks anywhere in it."""
    for e in _walk(upper_fd):
        if is_whiteout(e.st):
            yield "D", e.rel, e.st
        else:
            yield ("C" if tree.get(e.rel) is not None else "A"), e.rel, e.st


def tree_changes(root_fd: int, tree, idmap: IdMap = IdMap()
                 ) -> Iterator[Tuple[str, str, Optional[os.stat_result]]]:
    """The same for a full copy (vfs driver) compared with the tree it was made from;
    deletions (no lstat) come after the walk."""
    seen = set()
    for e in fd_walk.walk(root_fd):
        seen.add(e.rel)
        node = tree.get(e.rel)
        if node is None:
            yield "A", e.rel, e.st
            continue
        st = e.st
        same = stat.S_IFMT(node.mode) == stat.S_IFMT(st.st_mode) and \
            (node.uid, node.gid) == (idmap.uid(st.st_uid), idmap.gid(st.st_gid)) and \
            (stat.S_ISLNK(st.st_mode) or (node.mode & 0o7777) == (st.st_mode & 0o7777))
        if same and not stat.S_ISDIR(st.st_mode):
            if stat.S_ISREG(st.st_mode):
                same = node.size == st.st_size and int(node.mtime) == int(st.st_mtime)
            elif stat.S_ISLNK(st.st_mode):
                same = node.linkname == fd_walk.read_link(e)
            else:
                same = node.rdev == st.st_rdev
        if not same:
            yield "C", e.rel, st
    for rel in tree.paths():
        if rel and rel not in seen and rel.rpartition("/")[0] in seen | {""}:
            yield "D", rel, None
