"""The merged, read-only lower view of a chain of layers, with overlay semantics.

A chain is a list of `LayerIndex` objects, bottom layer first. Applying them in order like an
extraction would (but without touching any file data) gives one in-memory tree:

- `DIR/.wh.NAME` deletes NAME (and everything below it) from the layers underneath;
- `DIR/.wh..wh..opq` hides every child the layers underneath gave DIR;
- a later entry replaces an earlier one; a directory over a directory keeps the children;
- a hardlink shares the inode of its target, so link counts and inode numbers agree.

Whiteouts only act on lower layers: an entry in the same layer as the whiteout stays. A
whiteout for a path that does not exist is ignored. File data is not read here: an `Inode` of
a regular file records which layer blob holds it and at what offset (`LowerData.read`).

The tree is kept as plain tuples (fast to build, and to save/load with marshal: a chain's
merged tree is cached on disk by `load_or_build`, so a mount costs a few ms, not a merge).
"""
from __future__ import annotations

import marshal
import os
import stat
import _thread    # (threading.py: ~0.5 ms more of every CLI run)
from array import array
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import Dict, List, Optional, Sequence

from .errors import LayerCorruptError
from .layout import sha256_hex

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"

# type letters of layer_index.IndexEntry
REG, DIR, SYMLINK, HARDLINK, CHAR, BLOCK, FIFO = "f", "d", "l", "h", "c", "b", "p"

_IFMT = {REG: stat.S_IFREG, DIR: stat.S_IFDIR, SYMLINK: stat.S_IFLNK, CHAR: stat.S_IFCHR,
         BLOCK: stat.S_IFBLK, FIFO: stat.S_IFIFO}

# Lower inode numbers live high up so they never collide with an upper file system's numbers.
LOWER_INO_BASE = 1 << 48
_CACHE_VERSION = 3

# node tuple fields
_T, _MODE, _UID, _GID, _SIZE, _MTIME, _LINK, _RDEV, _XATTRS, _LAYER, _OFF, _INO = range(12)
_NUM_FIELDS = ((_MODE, "q"), (_UID, "q"), (_GID, "q"), (_SIZE, "q"), (_MTIME, "d"),
               (_RDEV, "q"), (_LAYER, "q"), (_OFF, "q"), (_INO, "q"))
_IMPLIED_DIR = (DIR, stat.S_IFDIR | 0o755, 0, 0, 0, 0.0, "", 0, (), -1, 0)


class Inode:
    """One file of the merged lower tree (shared by all hardlinked names)."""

    __slots__ = ("attrs", "type", "mode", "uid", "gid", "size", "mtime", "linkname", "rdev",
                 "xattrs",
                 "layer", "offset", "ino", "nlink")

    def __init__(self, node: tuple, nlink: int) -> None:
        (self.type, self.mode, self.uid, self.gid, self.size, self.mtime, self.linkname,
         self.rdev, xattrs, self.layer, self.offset, self.ino) = node
        self.xattrs = dict(xattrs)
        if xattrs:
            # the upper dir's own markers never come from a layer (an index made before
            # the indexer dropped them may still hold some); imported here: the start path
            # of a container without xattrs doesn't pay for layer_index
            from .layer_index import INTERNAL_XATTR_PREFIXES as internal
            if any(k.startswith(internal) for k, _ in xattrs):
                self.xattrs = {k: v for k, v in xattrs if not k.startswith(internal)}
        self.nlink = nlink
        self.attrs = None   # stat tuple, filled in by the union view on first use

    @property
    def is_dir(self) -> bool:
        return self.type == DIR


def _rows(index):
    cols = getattr(index, "_cols", None)   # LayerIndex's column store: no per-entry objects
    if cols is not None:
        return zip(*cols)
    return ((e.path, e.type, e.mode, e.uid, e.gid, e.size, e.mtime, e.linkname, e.devmajor,
             e.devminor, e.xattrs, e.offset) for e in index.entries)


def _looks_implied(mode: int, uid: int, gid: int, mtime: float, xattrs) -> bool:
    """A directory the indexer synthesised for a deeper path (0755, root, mtime 0, no xattrs):
    it must not overwrite the attributes a lower layer gave the same directory."""
    return mode == 0o755 and mtime == 0 and uid == 0 and gid == 0 and not xattrs


def _join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


class MergedTree:
    """The merged lower tree: `get(path)` -> Inode | None, `children(path)` -> names.

    Paths are relative without a leading slash; the root is "". Built once, then read-only
    (safe to share between FUSE worker threads).
    """

    def __init__(self, indexes: Sequence = ()) -> None:
        self.layers = len(indexes)
        self._nodes: Dict[str, tuple] = {"": _IMPLIED_DIR + (LOWER_INO_BASE + 1,)}
        self._kids: Dict[str, Dict[str, None]] = {"": {}}
        self._next_ino = LOWER_INO_BASE + 2
        self._nlinks: Dict[int, int] = {}
        self._inodes: Dict[int, Inode] = {}
        for layer_no, index in enumerate(indexes):
            self._apply(layer_no, index)
        self._count_links()
        # rows in breadth-first order, each directory's children contiguous
        nodes, kids_b = self._nodes, self._kids
        rows = [nodes[""]]
        kids: Dict[str, tuple] = {}
        queue = [""]
        for d in queue:   # grows while iterating
            names = list(kids_b[d])
            kids[d] = (len(rows), "\0".join(names))
            for name in names:
                child = _join(d, name)
                node = nodes[child]
                rows.append(node)
                if node[_T] == DIR:
                    queue.append(child)
        del self._nodes
        self._freeze(rows, kids)

    def _freeze(self, rows: List[tuple], kids: Dict[str, tuple]) -> None:
        """Switch to the compact read-only form: typed arrays per field (loaded from the
        cache with a memcpy) and, per directory, (first row, NUL-joined child names); a
        directory's name -> row map is only built when it is first looked into."""
        self._types = "".join(r[_T] for r in rows)
        self._num = {f: array(code, [r[f] for r in rows]) for f, code in _NUM_FIELDS}
        self._links = {i: r[_LINK] for i, r in enumerate(rows) if r[_LINK]}
        self._xattrs = {i: r[_XATTRS] for i, r in enumerate(rows) if r[_XATTRS]}
        self._kids = kids
        self._dirmaps: Dict[str, Dict[str, int]] = {}

    def _node(self, i: int) -> tuple:
        n = self._num
        return (self._types[i], n[_MODE][i], n[_UID][i], n[_GID][i], n[_SIZE][i],
                n[_MTIME][i], self._links.get(i, ""), n[_RDEV][i], self._xattrs.get(i, ()),
                n[_LAYER][i], n[_OFF][i], n[_INO][i])

    def _row(self, path: str) -> Optional[int]:
        if not path:
            return 0
        parent, _, name = path.rpartition("/")
        m = self._dirmaps.get(parent)
        if m is None:
            k = self._kids.get(parent)
            if k is None:
                return None
            start, names = k
            m = dict(zip(names.split("\0"), range(start, start + names.count("\0") + 1))) \
                if names else {}
            m = self._dirmaps.setdefault(parent, m)
        return m.get(name)

    # --- queries -------------------------------------------------------------------------
    def get(self, path: str) -> Optional[Inode]:
        i = self._row(path)
        if i is None:
            return None
        ino = self._num[_INO][i]
        inode = self._inodes.get(ino)
        if inode is None:
            node = self._node(i)
            if node[_T] == DIR:
                start, names = self._kids.get(path, (0, ""))
                n = names.count("\0") + 1 if names else 0
                nlink = 2 + self._types.count(DIR, start, start + n)
            else:
                nlink = self._nlinks.get(ino, 1)
            inode = self._inodes.setdefault(ino, Inode(node, nlink))
        return inode

    @property
    def has_xattrs(self) -> bool:
        return bool(self._xattrs)

    def children(self, path: str) -> List[str]:
        k = self._kids.get(path)
        return k[1].split("\0") if k and k[1] else []

    def paths(self) -> List[str]:
        """Every path of the tree (parents before children)."""
        out: List[str] = []
        stack = [""]
        while stack:
            p = stack.pop()
            out.append(p)
            for name in reversed(self.children(p)):
                stack.append(_join(p, name))
        return out

    def __len__(self) -> int:
        return len(self._types)

    # --- building ------------------------------------------------------------------------
    def _remove(self, path: str) -> None:
        node = self._nodes.pop(path, None)
        if node is None:
            return
        parent, _, name = path.rpartition("/")
        pk = self._kids.get(parent)
        if pk is not None:
            pk.pop(name, None)
        if node[_T] == DIR:
            self._drop_children(path)
            del self._kids[path]

    def _drop_children(self, path: str) -> None:
        if not self._kids.get(path):
            return
        stack = [path]
        while stack:
            d = stack.pop()
            for name in self._kids.get(d, ()):
                child = _join(d, name)
                node = self._nodes.pop(child, None)
                if node is not None and node[_T] == DIR:
                    stack.append(child)
            if d != path:
                self._kids.pop(d, None)
        self._kids[path] = {}

    def _new_dir(self, path: str, node: tuple) -> None:
        self._nodes[path] = node
        self._kids[path] = {}
        parent, _, name = path.rpartition("/")
        self._kids[parent][name] = None

    def _ensure_dir(self, path: str) -> None:
        node = self._nodes.get(path)
        if node is not None and node[_T] == DIR:
            return
        if path:
            self._ensure_dir(path.rpartition("/")[0])
        if node is not None:
            self._remove(path)
        self._new_dir(path, _IMPLIED_DIR + (self._take_ino(),))

    def _take_ino(self) -> int:
        ino = self._next_ino
        self._next_ino += 1
        return ino

    def _apply(self, layer: int, index) -> None:
        rows = list(_rows(index))
        nodes, kids = self._nodes, self._kids
        # 1. whiteouts and opaque markers act on the layers underneath only
        for row in rows:
            path = row[0]
            parent, _, name = path.rpartition("/")
            if not name.startswith(WHITEOUT_PREFIX):
                continue
            if name == OPAQUE_MARKER:
                node = nodes.get(parent)
                if node is not None and node[_T] == DIR:
                    self._drop_children(parent)
            else:
                target = name[len(WHITEOUT_PREFIX):]
                if target and target not in (".", ".."):
                    self._remove(_join(parent, target))
        # 2. this layer's own entries, in tar order (a later duplicate wins)
        made: Dict[str, tuple] = {}   # this layer's own files, for its hardlinks
        for path, t, mode, uid, gid, size, mtime, link, major, minor, xattrs, off in rows:
            parent, _, name = path.rpartition("/")
            if name.startswith(WHITEOUT_PREFIX):
                continue
            old = nodes.get(path)
            if t == DIR:
                implied = _looks_implied(mode, uid, gid, mtime, xattrs)
                if old is not None and old[_T] == DIR:
                    if not implied:
                        nodes[path] = (DIR, stat.S_IFDIR | (mode & 0o7777), uid, gid, 0, mtime,
                                       "", 0, xattrs, layer, 0, old[_INO])
                    continue
                if path == "":
                    continue
                pnode = nodes.get(parent)
                if pnode is None or pnode[_T] != DIR:
                    self._ensure_dir(parent)
                if old is not None:
                    self._remove(path)
                self._new_dir(path, (DIR, stat.S_IFDIR | (mode & 0o7777), uid, gid, 0, mtime,
                                     "", 0, xattrs, layer, 0, self._take_ino()))
                continue
            if path == "":
                continue
            pnode = nodes.get(parent)
            if pnode is None or pnode[_T] != DIR:
                self._ensure_dir(parent)
            if t == HARDLINK:
                node = made.get(link) or nodes.get(link)
                if node is None or node[_T] == DIR:
                    continue  # a dangling hardlink can't be represented: drop the name
            else:
                fmt = _IFMT.get(t)
                if fmt is None:
                    continue
                if t == SYMLINK:
                    size = len(link.encode("utf-8", "surrogateescape"))
                elif t != REG:
                    size = 0
                rdev = os.makedev(major, minor) if t in (CHAR, BLOCK) else 0
                node = (t, fmt | (mode & 0o7777), uid, gid, size, mtime,
                        link if t == SYMLINK else "", rdev, xattrs, layer,
                        off if t == REG else 0, self._take_ino())
                made[path] = node
            if old is not None and (old[_T] == DIR or old[_INO] != node[_INO]):
                self._remove(path)
            nodes[path] = node
            kids[parent][name] = None

    def _count_links(self) -> None:
        counts: Dict[int, int] = {}
        for node in self._nodes.values():
            if node[_T] != DIR:
                ino = node[_INO]
                counts[ino] = counts.get(ino, 0) + 1
        self._nlinks = {ino: n for ino, n in counts.items() if n > 1}

    # --- cache ---------------------------------------------------------------------------
    def dumps(self) -> bytes:
        return marshal.dumps((_CACHE_VERSION, self.layers, self._types,
                              {f: a.tobytes() for f, a in self._num.items()}, self._links,
                              self._xattrs, self._kids, self._nlinks), 4)

    @classmethod
    def loads(cls, data: bytes) -> "MergedTree":
        version, layers, types, num, links, xattrs, kids, nlinks = marshal.loads(data)
        if version != _CACHE_VERSION:
            raise ValueError("merged tree cache version")
        self = cls.__new__(cls)
        self.layers = layers
        self._nlinks = nlinks
        self._inodes = {}
        self._next_ino = 0
        self._types = types
        self._num = {}
        for f, code in _NUM_FIELDS:
            a = array(code)
            a.frombytes(num[f])
            if len(a) != len(types):
                raise ValueError("merged tree cache shape")
            self._num[f] = a
        self._links, self._xattrs, self._kids = links, xattrs, kids
        self._dirmaps = {}
        return self


def chain_key(diff_ids: Sequence[str]) -> str:
    return sha256_hex("\n".join(diff_ids).encode())


def load_or_build(index_paths: Sequence[Path], cache_path: Optional[Path] = None) -> MergedTree:
    """The merged tree of the given layer indexes, from `cache_path` if it is there and valid,
    else built (and saved there atomically, best effort)."""
    if cache_path is not None:
        try:
            with open(cache_path, "rb") as f:
                return MergedTree.loads(f.read())
        except (OSError, ValueError, EOFError, TypeError):
            pass
    from .layer_index import LayerIndex
    tree = MergedTree([LayerIndex.load(Path(p)) for p in index_paths])
    if cache_path is not None:
        tmp = Path(f"{cache_path}.tmp-{os.getpid()}-{_thread.get_ident()}")
        try:
            Path(cache_path).parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(tree.dumps())
            os.replace(tmp, cache_path)
        except OSError:
            try:
                tmp.unlink()
            except OSError:
                pass
    return tree


class LowerData:
    """Reads regular-file data of a `MergedTree` from the mmap'd layer blobs (one per layer).

    Blobs are opened on first use and shared by all threads; `read` raises LayerCorruptError
    when an index points past the end of its blob.
    """

    def __init__(self, blob_paths: Sequence[Path]) -> None:
        self._paths = [Path(p) for p in blob_paths]
        self._blobs: List[object] = [None] * len(self._paths)
        self._lock = _thread.allocate_lock()

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
        """Up to `size` bytes of the file at `offset` (short at EOF)."""
        if offset >= inode.size or size <= 0:
            return b""
        size = min(size, inode.size - offset)
        return self._blob(inode.layer).read_at(inode.offset + offset, size)

    def locate(self, inode: Inode, offset: int, size: int):
        """(fd, position, length) of up to `size` bytes of the file at `offset` in its layer
        blob (length short at EOF, 0 past it), for a reply straight from the fd."""
        if offset >= inode.size or size <= 0:
            return -1, 0, 0
        size = min(size, inode.size - offset)
        blob = self._blob(inode.layer)
        return blob.fd_range(inode.offset + offset, size)

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
