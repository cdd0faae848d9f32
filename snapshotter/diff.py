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
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator, Optional, Sequence, Tuple

from .upper import (INTERNAL_XATTR_PREFIXES, OPAQUE_XATTR, OVERRIDE_XATTR, TEMP_PREFIX,
                    is_whiteout)

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
TAR_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar"


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


def _xattrs(path: str) -> dict:
    out = {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return out
    for name in sorted(names):
        if name.startswith(INTERNAL_XATTR_PREFIXES):
            continue
        try:
            out[name] = os.getxattr(path, name, follow_symlinks=False)
        except OSError:
            continue
    return out


def _override(path: str):
    try:
        raw = os.getxattr(path, OVERRIDE_XATTR, follow_symlinks=False)
    except OSError:
        return None
    return tuple(int(x) for x in raw.decode().split(":"))


def _walk(root: str) -> Iterator[Tuple[str, str]]:
    """(relative path, absolute path) of everything under root, parents first, sorted."""
    stack = [""]
    while stack:
        rel = stack.pop()
        absdir = os.path.join(root, rel) if rel else root
        with os.scandir(absdir) as it:
            names = sorted(de.name for de in it)
        subdirs = []
        for name in names:
            if name.startswith(TEMP_PREFIX):
                continue
            r = f"{rel}/{name}" if rel else name
            yield r, os.path.join(root, r)
            if os.path.isdir(os.path.join(root, r)) and not os.path.islink(os.path.join(root, r)):
                subdirs.append(r)
        stack.extend(reversed(subdirs))


class _TarOut:
    def __init__(self, fileobj: BinaryIO, idmap: IdMap) -> None:
        self.tf = tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT)
        self.idmap = idmap
        self.links = {}   # (dev, ino) -> first path

    def whiteout(self, rel: str) -> None:
        parent, _, name = rel.rpartition("/")
        self._empty(f"{parent}/{WHITEOUT_PREFIX}{name}" if parent else WHITEOUT_PREFIX + name)

    def opaque(self, rel: str) -> None:
        self._empty(f"{rel}/{OPAQUE_MARKER}" if rel else OPAQUE_MARKER)

    def _empty(self, name: str) -> None:
        ti = tarfile.TarInfo(name)
        ti.mode, ti.mtime = 0o644, 0
        self.tf.addfile(ti)

    def add(self, rel: str, path: str, st: os.stat_result) -> None:
        ti = tarfile.TarInfo(rel)
        ti.uid, ti.gid = self.idmap.uid(st.st_uid), self.idmap.gid(st.st_gid)
        mode, rdev = st.st_mode, st.st_rdev
        ov = _override(path) if not stat.S_ISLNK(mode) else None
        if ov is not None:
            ti.uid, ti.gid, mode, rdev = ov
        ti.mode = mode & 0o7777
        ti.mtime = st.st_mtime
        xattrs = _xattrs(path) if not stat.S_ISLNK(mode) else {}
        if xattrs:
            ti.pax_headers = {f"SCHILY.xattr.{k}": v.decode("utf-8", "surrogateescape")
                              for k, v in xattrs.items()}
        data = None
        if stat.S_ISREG(mode) and stat.S_ISREG(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in self.links:
                ti.type, ti.linkname = tarfile.LNKTYPE, self.links[key]
            else:
                if st.st_nlink > 1:
                    self.links[key] = rel
                ti.type, ti.size = tarfile.REGTYPE, st.st_size
                data = open(path, "rb")
        elif stat.S_ISDIR(mode):
            ti.type = tarfile.DIRTYPE
        elif stat.S_ISLNK(mode):
            ti.type, ti.linkname = tarfile.SYMTYPE, os.readlink(path)
        elif stat.S_ISFIFO(mode):
            ti.type = tarfile.FIFOTYPE
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            ti.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
            ti.devmajor, ti.devminor = os.major(rdev), os.minor(rdev)
        else:
            return  # sockets are not stored in layers
        try:
            self.tf.addfile(ti, data)
        finally:
            if data is not None:
                data.close()

    def close(self) -> None:
        self.tf.close()


def write_upper_diff(upper: Path, out: BinaryIO, idmap: IdMap = IdMap()) -> int:
    """Write the changes recorded in an overlay-format upper dir as a tar; returns #entries."""
    t = _TarOut(out, idmap)
    n = 0
    root = str(upper)
    for rel, path in _walk(root):
        st = os.lstat(path)
        if is_whiteout(st):
            t.whiteout(rel)
        else:
            t.add(rel, path, st)
            if stat.S_ISDIR(st.st_mode) and _has(path, OPAQUE_XATTR):
                t.opaque(rel)
                n += 1
        n += 1
    t.close()
    return n


def _has(path: str, name: str) -> bool:
    try:
        os.getxattr(path, name, follow_symlinks=False)
        return True
    except OSError:
        return False


def write_tree_diff(root: Path, tree, out: BinaryIO, idmap: IdMap = IdMap()) -> int:
    """Changes of a full copy `root` (vfs driver) against the MergedTree it was made from."""
    t = _TarOut(out, idmap)
    n = 0
    seen = set()
    for rel, path in _walk(str(root)):
        seen.add(rel)
        st = os.lstat(path)
        node = tree.get(rel)
        if node is not None and _same(node, path, st, idmap):
            continue
        t.add(rel, path, st)
        n += 1
    for rel in tree.paths():
        if rel and rel not in seen and tree.get(rel) is not None:
            parent = rel.rpartition("/")[0]
            if parent in seen or parent == "":
                t.whiteout(rel)
                n += 1
    t.close()
    return n


def _same(node, path: str, st: os.stat_result, idmap: IdMap) -> bool:
    mode, uid, gid, rdev = st.st_mode, idmap.uid(st.st_uid), idmap.gid(st.st_gid), st.st_rdev
    ov = _override(path) if not stat.S_ISLNK(mode) else None
    if ov is not None:   # owner/type that could not be set for real (see upper.py)
        uid, gid, mode, rdev = ov
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
        return node.linkname == os.readlink(path)
    return node.rdev == rdev


def diff_to_layer(layer_store, write, name: str):
    """Stream `write(fileobj)`'s tar straight into a new layer of `layer_store`; LayerInfo."""
    with layer_store.ingest(None, TAR_MEDIA_TYPE, name) as w:
        write(w)
        return w.commit()


def tar_members(data: bytes) -> Sequence[str]:
    """Names in a tar (for tests and diagnostics)."""
    import io
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return [m.name for m in tf.getmembers()]


def write_diff_for(upper: Optional[Path], root: Optional[Path], tree, idmap: IdMap):
    """A `write(fileobj)` for diff_to_layer from either an upper dir or a vfs copy."""
    if upper is not None:
        return lambda f: write_upper_diff(upper, f, idmap)
    return lambda f: write_tree_diff(root, tree, f, idmap)


# --- what changed (`docker diff`): "A" added, "C" changed, "D" deleted ---------------------

def upper_changes(upper_fd: int, tree) -> Iterator[Tuple[str, str, os.stat_result]]:
    """(kind, relative path, lstat) of each change an overlay-format upper dir (opened as
    upper_fd) records against its lower MergedTree, parents first. Walked by directory fds
    (fd_walk): the container may have put symlinks anywhere in it."""
    from .fd_walk import walk
    for e in walk(upper_fd, skip=lambda name: name.startswith(TEMP_PREFIX)):
        if is_whiteout(e.st):
            yield "D", e.rel, e.st
        else:
            yield ("C" if tree.get(e.rel) is not None else "A"), e.rel, e.st


def tree_changes(root_fd: int, tree, idmap: IdMap = IdMap()
                 ) -> Iterator[Tuple[str, str, Optional[os.stat_result]]]:
    """The same for a full copy (vfs driver) compared with the tree it was made from;
    deletions (no lstat) come after the walk."""
    from .fd_walk import read_link, walk
    seen = set()
    for e in walk(root_fd):
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
                same = node.linkname == read_link(e)
            else:
                same = node.rdev == st.st_rdev
        if not same:
            yield "C", e.rel, st
    for rel in tree.paths():
        if rel and rel not in seen and rel.rpartition("/")[0] in seen | {""}:
            yield "D", rel, None
