"""The layer indexer: builds a LayerIndex from a layer's uncompressed tar stream
(re-exported as layer_index.TarIndexer).

Fed the bytes in order, in chunks of any size, through the one bounded tar parser
(tar_stream.TarParser: it never holds more than one header or extended header in memory and
skips file data arithmetically, so indexing costs no more than hashing). Entries escaping the
layer raise UnsafeLayerEntryError naming layer and entry. Internal markers (`user.overlay.*`,
`user.pydocklite.*` xattrs: the upper dir's own bookkeeping, see upper.py) are dropped: a
layer can't forge them.
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import Dict, List, Optional

from snapshotter.errors import UnsafeLayerEntryError
from snapshotter.layer_index import (BLOCK, CHAR, DIR, HARDLINK, INTERNAL_XATTR_PREFIXES,
                                     SYMLINK, LayerIndex)
from snapshotter.tar_stream import TarParser, normal_name

_Row = tuple  # an IndexEntry as a plain tuple, in IndexEntry field order


class TarIndexer(TarParser):
    """Feed the uncompressed tar stream with feed(); finish() returns the LayerIndex.

    `name` is used in error messages (e.g. the layer's diff_id or the image/layer number).
    """

    def __init__(self, name: str = "layer") -> None:
        super().__init__(f"layer {name}")
        self.name = name
        self._rows: List[Optional[_Row]] = [("", DIR, 0o755, 0, 0, 0, 0.0, "", 0, 0, (), 0)]
        self._at: Dict[str, int] = {"": 0}

    def finish(self) -> LayerIndex:
        self.check_end()
        return LayerIndex._from_rows([r for r in self._rows if r is not None])

    def member(self, m) -> None:
        xattrs = m.xattrs
        if xattrs and any(k.startswith(INTERNAL_XATTR_PREFIXES) for k, _ in xattrs):
            xattrs = tuple(kv for kv in xattrs if not kv[0].startswith(INTERNAL_XATTR_PREFIXES))
        self._add(m.name, m.type, m.mode, m.uid, m.gid, m.size, m.mtime, m.linkname,
                  m.devmajor, m.devminor, xattrs, m.offset)

    # -- paths and entries --
    def _normalise(self, raw: str, entry: str) -> str:
        try:
            return normal_name(raw, "the layer")
        except ValueError as e:
            raise UnsafeLayerEntryError(self.name, entry, str(e)) from None

    def _ensure_parents(self, path: str, entry: str) -> None:
        missing = []
        parent = path.rpartition("/")[0] if path else None
        while parent is not None:
            i = self._at.get(parent)
            if i is not None:
                if self._rows[i][1] != DIR:
                    raise UnsafeLayerEntryError(
                        self.name, entry, f"its parent {parent!r} is not a directory in this layer "
                                          f"(writing through a {self._rows[i][1]!r} entry)")
                break
            missing.append(parent)
            parent = parent.rpartition("/")[0] if parent else None
        for p in reversed(missing):
            self._at[p] = len(self._rows)
            self._rows.append((p, DIR, 0o755, 0, 0, 0, 0.0, "", 0, 0, (), 0))

    def _add(self, raw, etype, mode, uid, gid, size, mtime, link, major, minor, xattrs, offset):
        path = self._normalise(raw, raw)
        if path == "" and etype != DIR:
            raise UnsafeLayerEntryError(self.name, raw, "the layer root must be a directory")
        self._ensure_parents(path, raw)
        if etype == HARDLINK:
            target = self._normalise(link, raw)
            i = self._at.get(target)
            if i is None or target == path:
                raise UnsafeLayerEntryError(
                    self.name, raw, f"hardlink target {link!r} is not an earlier entry of this layer")
            trow = self._rows[i]
            if trow[1] == DIR:
                raise UnsafeLayerEntryError(self.name, raw, f"hardlink to directory {link!r}")
            if trow[1] == HARDLINK:
                target = trow[7]
            link, size, offset = target, trow[5], trow[11]
        elif etype != SYMLINK:
            link = ""
        if etype not in (CHAR, BLOCK):
            major = minor = 0
        row = (path, etype, mode, uid, gid, size, mtime, link, major, minor, xattrs, offset)
        i = self._at.get(path)
        if i is None:
            self._at[path] = len(self._rows)
            self._rows.append(row)
            return
        if self._rows[i][1] == DIR and etype != DIR:  # a non-directory replaces a directory
            prefix = path + "/" if path else ""
            for p in [p for p in self._at if p.startswith(prefix) and p != path]:
                self._rows[self._at.pop(p)] = None
        self._rows[i] = row
