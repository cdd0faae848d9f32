"""Read a small file (e.g. /etc/passwd) out of an image's layers without mounting them."""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import Sequence


def read_image_file(layout, diff_ids: Sequence[str], path: str, limit: int = 1 << 20) -> str:
    """Text of `path` as the merged layers show it, "" when absent (or not a regular file)."""
    from snapshotter.layer_index import LayerIndex
    from snapshotter.mmap_blob import MmapBlob
    rel = path.strip("/")
    parent, _, name = rel.rpartition("/")
    for diff_id in reversed(list(diff_ids)):
        index = LayerIndex.load(layout.layer_index(diff_id))
        entry = index.get(rel)
        if entry is not None:
            if not entry.has_data():
                return ""
            blob = MmapBlob(layout.layer_blob(diff_id))
            try:
                data = bytes(blob.read_at(entry.offset, min(entry.size, limit)))
            finally:
                blob.close()
            return data.decode("utf-8", "replace")
        whiteout = f"{parent}/.wh.{name}" if parent else f".wh.{name}"
        opaque = f"{parent}/.wh..wh..opq" if parent else ".wh..wh..opq"
        if index.get(whiteout) is not None or (parent and index.get(opaque) is not None):
            return ""
    return ""
