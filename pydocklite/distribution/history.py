"""The rows of `history IMAGE`: one per history entry, newest first, layer sizes attached
to the entries that made a layer (those without empty_layer)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List


@dataclass(frozen=True)
class HistoryRow:
    id: str             # the image id for the newest row, "<missing>" for the others
    created: str        # RFC 3339 ("" when unknown)
    created_by: str
    size: int           # bytes of the uncompressed layer (0 for empty layers)
    comment: str
    author: str = ""


def image_history(service, name: str) -> List[HistoryRow]:
    record = service.lookup(name)
    doc = service.config_json(record)
    layers = service._layers()
    sizes = []
    for d in record.diff_ids:
        try:
            sizes.append(layers.size(d))
        except Exception:  # noqa: BLE001 - a missing layer shows as 0 bytes
            sizes.append(0)
    history = doc.get("history")
    entries = [e for e in history if isinstance(e, dict)] if isinstance(history, list) else []
    if not entries:
        entries = [{"created": doc.get("created", "")} for _ in record.diff_ids]
    rows, layer_i = [], 0
    for e in entries:
        size = 0
        if not e.get("empty_layer"):
            size = sizes[layer_i] if layer_i < len(sizes) else 0
            layer_i += 1
        rows.append(HistoryRow("<missing>", str(e.get("created", "")),
                               str(e.get("created_by", "")), size, str(e.get("comment", "")),
                               str(e.get("author", ""))))
    rows.reverse()
    if rows:
        top = rows[0]
        rows[0] = HistoryRow(record.id, top.created, top.created_by, top.size, top.comment,
                             top.author)
    return rows
