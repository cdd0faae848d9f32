"""An image's (or a build stage's) merged layers as a read-only file system, without mounting.

Same interface as context.ContextFS, over the snapshotter's MergedTree + the mmap'd layer blobs:
what COPY --from reads, what WORKDIR/COPY look at to know whether a directory exists, and where
USER/--chown names are looked up (/etc/passwd, /etc/group).
"""
from __future__ import annotations

import stat as st
from typing import Iterator, List, Optional, Sequence

from pydocklite.builder.context import DIR, REG, SYMLINK, FileEntry

CHUNK = 1 << 20
_TYPES = {"f": REG, "d": DIR, "l": SYMLINK, "h": REG}


class ImageFS:
    def __init__(self, layout, diff_ids: Sequence[str], name: str = "image") -> None:
        from snapshotter.merge import LowerData, MergedTree
        from snapshotter.layer_index import LayerIndex
        self.name = name
        self.diff_ids = tuple(diff_ids)
        self.tree = MergedTree([LayerIndex.load(layout.layer_index(d)) for d in self.diff_ids])
        self.data = LowerData([layout.layer_blob(d) for d in self.diff_ids])

    def close(self) -> None:
        self.data.close()

    def stat(self, rel: str) -> Optional[FileEntry]:
        node = self.tree.get(rel.strip("/"))
        if node is None:
            return None
        kind = _TYPES.get(node.type)
        if kind is None:
            return None
        return FileEntry(kind, st.S_IMODE(node.mode), node.size if kind == REG else 0,
                         node.mtime, node.linkname if kind == SYMLINK else "", node.uid,
                         node.gid)

    def resolve(self, rel: str, depth: int = 0) -> str:
        """The path a symlink chain at `rel` ends at (links resolved inside the image)."""
        import posixpath
        rel = rel.strip("/")
        e = self.stat(rel)
        if e is None or e.type != SYMLINK or depth > 16:
            return rel
        target = e.linkname if e.linkname.startswith("/") else \
            posixpath.join(posixpath.dirname("/" + rel), e.linkname)
        return self.resolve(posixpath.normpath(target), depth + 1)

    def follow(self, rel: str) -> Optional[FileEntry]:
        return self.stat(self.resolve(rel))

    def listdir(self, rel: str) -> List[str]:
        return sorted(self.tree.children(rel.strip("/")))

    def chunks(self, rel: str) -> Iterator[bytes]:
        node = self.tree.get(rel.strip("/"))
        off = 0
        while node is not None and off < node.size:
            b = bytes(self.data.read(node, off, CHUNK))
            if not b:
                return
            off += len(b)
            yield b

    def read_text(self, path: str, limit: int = 1 << 20) -> str:
        rel = self.resolve(path)
        e = self.stat(rel)
        if e is None or e.type != REG:
            return ""
        out = b""
        for b in self.chunks(rel):
            out += b
            if len(out) >= limit:
                break
        return out.decode("utf-8", "replace")
