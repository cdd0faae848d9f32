"""The merged, read-only lower view of a chain of layers, with overlay semantics.

A chain is a list of `LayerIndex` objects, bottom layer first. Applying them in order like an
extraction would (but without touching any file data) gives one in-memory tree:

- `DIR/.wh.NAME` deletes NAME (and everything below it) from the layers underneath;
- `DIR/.wh..wh..opq` hides every child the layers underneath gave DIR;
- a later entry replaces an earlier one; a directory over a directory keeps the children;
- a hardlink shares the `Inode` of its target, so link counts and inode numbers agree.

Whiteouts only act on lower layers: an entry in the same layer as the whiteout stays. A
whiteout for a path that does not exist is ignored. File data is not read here: an `Inode` of
a regular file records which layer blob holds it and at what offset (`LowerData.read`).
"""
from __future__ import annotations

import os
import stat
import threading
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from .errors import LayerCorruptError

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"

# type letters of layer_index.IndexEntry (kept here too so merge has no hard dependency on
# the indexer's module being importable in unit tests that build entries by hand)
REG, DIR, SYMLINK, HARDLINK, CHAR, BLOCK, FIFO = "f", "d", "l", "h", "c", "b", "p"

_IFMT = {REG: stat.S_IFREG, DIR: stat.S_IFDIR, SYMLINK: stat.S_IFLNK, CHAR: stat.S_IFCHR,
         BLOCK: stat.S_IFBLK, FIFO: stat.S_IFIFO}

# Lower inode numbers live high up so they never collide with an upper file system's numbers.
LOWER_INO_BASE = 1 << 48


class Inode:
    """One file of the merged lower tree (shared by all hardlinked names)."""

    __slots__ = ("type", "mode", "uid", "gid", "size", "mtime", "linkname", "rdev", "xattrs",
                 "layer", "offset", "ino", "nlink")

    def __init__(self, entry, layer: int, ino: int):
        self.type = entry.type
        self.mode = _IFMT[entry.type] | (entry.mode & 0o7777)
        self.uid = entry.uid
        self.gid = entry.gid
        self.size = entry.size if entry.type == REG else (
            len(entry.linkname.encode()) if entry.type == SYMLINK else 0)
        self.mtime = entry.mtime
        self.linkname = entry.linkname
        self.rdev = os.makedev(entry.devmajor, entry.devminor) if entry.type in (CHAR, BLOCK) else 0
        self.xattrs = dict(entry.xattrs)
        self.layer = layer
        self.offset = entry.offset
        self.ino = ino
        self.nlink = 0

    @property
    def is_dir(self) -> bool:
        return self.type == DIR


class _ImpliedDir:
    """Attributes of a directory a layer implies without an entry of its own."""
    type = DIR
    mode = 0o755
    uid = gid = size = devmajor = devminor = offset = 0
    mtime = 0.0
    linkname = ""
    xattrs = ()


def _looks_implied(e) -> bool:
    """A directory the indexer synthesised for a deeper path (0755, root, mtime 0, no xattrs).

    Such an entry must not overwrite the attributes a lower layer gave the same directory.
    """
    return (e.mode == 0o755 and e.mtime == 0 and e.uid == 0 and e.gid == 0
            and not e.xattrs)


def _parent_and_name(path: str):
    i = path.rfind("/")
    if i < 0:
        return "", path
    return path[:i], path[i + 1:]


def _join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


class MergedTree:
    """The merged lower tree: `get(path)` -> Inode | None, `children(path)` -> names.

    Paths are relative without a leading slash; the root is "". Built once, then read-only
    (safe to share between FUSE worker threads).
    """

    def __init__(self, indexes: Sequence) -> None:
        self.layers = len(indexes)
        self._nodes: Dict[str, Inode] = {}
        self._kids: Dict[str, Dict[str, None]] = {}
        self._next_ino = LOWER_INO_BASE + 1
        root = self._new_inode(_ImpliedDir, -1)
        self._nodes[""] = root
        self._kids[""] = {}
        for layer_no, index in enumerate(indexes):
            self._apply(layer_no, index.entries)
        self._count_links()

    # --- queries -------------------------------------------------------------------------
    def get(self, path: str) -> Optional[Inode]:
        return self._nodes.get(path)

    def children(self, path: str) -> List[str]:
        kids = self._kids.get(path)
        return list(kids) if kids is not None else []

    def has_children(self, path: str) -> bool:
        return bool(self._kids.get(path))

    def paths(self) -> List[str]:
        """Every path of the tree (parents before children)."""
        out: List[str] = []
        stack = [""]
        while stack:
            p = stack.pop()
            out.append(p)
            for name in reversed(list(self._kids.get(p, ()))):
                stack.append(_join(p, name))
        return out

    def __len__(self) -> int:
        return len(self._nodes)

    # --- building ------------------------------------------------------------------------
    def _new_inode(self, entry, layer: int) -> Inode:
        node = Inode(entry, layer, self._next_ino)
        self._next_ino += 1
        return node

    def _remove(self, path: str) -> None:
        node = self._nodes.pop(path, None)
        if node is None:
            return
        parent, name = _parent_and_name(path)
        pk = self._kids.get(parent)
        if pk is not None:
            pk.pop(name, None)
        if node.type == DIR:
            self._drop_children(path)
            del self._kids[path]

    def _drop_children(self, path: str) -> None:
        kids = self._kids.get(path)
        if not kids:
            return
        stack = [path]
        while stack:
            d = stack.pop()
            for name in self._kids.get(d, ()):
                child = _join(d, name)
                node = self._nodes.pop(child, None)
                if node is not None and node.type == DIR:
                    stack.append(child)
            if d != path:
                self._kids.pop(d, None)
        self._kids[path] = {}

    def _ensure_dir(self, path: str, layer: int) -> None:
        node = self._nodes.get(path)
        if node is not None and node.type == DIR:
            return
        parent, name = _parent_and_name(path)
        if path:
            self._ensure_dir(parent, layer)
        if node is not None:
            self._remove(path)
        self._nodes[path] = self._new_inode(_ImpliedDir, layer)
        self._kids[path] = {}
        if path:
            self._kids[parent][name] = None

    def _apply(self, layer: int, entries) -> None:
        # 1. whiteouts and opaque markers act on the layers underneath only
        for e in entries:
            parent, name = _parent_and_name(e.path)
            if not name.startswith(WHITEOUT_PREFIX):
                continue
            if name == OPAQUE_MARKER:
                node = self._nodes.get(parent)
                if node is not None and node.type == DIR:
                    self._drop_children(parent)
            else:
                target = name[len(WHITEOUT_PREFIX):]
                if target and target not in (".", ".."):
                    self._remove(_join(parent, target))
        # 2. this layer's own entries, in tar order (a later duplicate wins)
        nodes = self._nodes
        made: Dict[str, Inode] = {}   # this layer's own files, for its hardlinks
        for e in entries:
            path = e.path
            parent, name = _parent_and_name(path)
            if name.startswith(WHITEOUT_PREFIX):
                continue
            if path == "":
                if e.type == DIR and not _looks_implied(e):
                    self._replace_dir_attrs("", e, layer)
                continue
            pnode = nodes.get(parent)
            if pnode is None or pnode.type != DIR:
                self._ensure_dir(parent, layer)
            old = nodes.get(path)
            if e.type == DIR:
                if old is not None and old.type == DIR:
                    if not _looks_implied(e):
                        self._replace_dir_attrs(path, e, layer)
                    continue
                if old is not None:
                    self._remove(path)
                nodes[path] = self._new_inode(e, layer)
                self._kids[path] = {}
                self._kids[parent][name] = None
                continue
            if e.type == HARDLINK:
                target = made.get(e.linkname) or nodes.get(e.linkname)
                if target is None or target.type == DIR:
                    continue  # a dangling hardlink can't be represented: drop the name
                if old is not None and old is not target:
                    self._remove(path)
                nodes[path] = target
                self._kids[parent][name] = None
                continue
            if e.type not in _IFMT:
                continue
            if old is not None:
                self._remove(path)
            nodes[path] = made[path] = self._new_inode(e, layer)
            self._kids[parent][name] = None

    def _replace_dir_attrs(self, path: str, e, layer: int) -> None:
        old = self._nodes[path]
        node = self._new_inode(e, layer)
        node.ino = old.ino
        self._nodes[path] = node

    def _count_links(self) -> None:
        for path, node in self._nodes.items():
            if node.type != DIR:
                node.nlink += 1
        kids = self._kids
        nodes = self._nodes
        for path, names in kids.items():
            sub = 0
            for name in names:
                child = nodes.get(_join(path, name))
                if child is not None and child.type == DIR:
                    sub += 1
            nodes[path].nlink = 2 + sub


class LowerData:
    """Reads regular-file data of a `MergedTree` from the mmap'd layer blobs (one per layer).

    Blobs are opened on first use and shared by all threads; `read` raises LayerCorruptError
    when an index points past the end of its blob.
    """

    def __init__(self, blob_paths: Sequence[Path]) -> None:
        self._paths = [Path(p) for p in blob_paths]
        self._blobs: List[object] = [None] * len(self._paths)
        self._lock = threading.Lock()

    def _blob(self, layer: int):
        blob = self._blobs[layer]
        if blob is None:
            with self._lock:
                blob = self._blobs[layer]
                if blob is None:
                    from .mmap_blob import MmapBlob
                    blob = MmapBlob(self._paths[layer])
                    self._blobs[layer] = blob
        return blob

    def read(self, inode: Inode, offset: int, size: int):
        """Up to `size` bytes of the file at `offset` (short at EOF); bytes or memoryview."""
        if offset >= inode.size or size <= 0:
            return b""
        size = min(size, inode.size - offset)
        return self._blob(inode.layer).read_at(inode.offset + offset, size)

    def close(self) -> None:
        with self._lock:
            for i, blob in enumerate(self._blobs):
                if blob is not None:
                    blob.close()
                    self._blobs[i] = None


def check_blob_bounds(inode: Inode, blob_size: int, path: str) -> None:
    """Raise LayerCorruptError if a file's data lies beyond its blob (used by diagnostics)."""
    if inode.offset + inode.size > blob_size:
        raise LayerCorruptError(
            f"layer index entry {path!r} points past the end of its layer blob "
            f"({inode.offset}+{inode.size} > {blob_size}): remove and pull the image again")
