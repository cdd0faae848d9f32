"""What we know about a layer's compressed blobs: digest, media type, size, and the
repositories (registry/path) known to hold them. Docker keeps the same facts ("v2
metadata") so that a push can HEAD or cross-mount a blob instead of uploading it.

Facts come from two places:
- a pulled image's own manifest (stored at pull) + the repositories in its repo_digests;
- what earlier pushes uploaded or found, kept in `<store root>/distribution/<diffid hex>.json`
  (one small JSON file per layer, replaced atomically).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import List, Tuple

from pydocklite.atomic import atomic_write_json

MAX_REPOS = 16


@dataclass(frozen=True)
class KnownBlob:
    digest: str
    media_type: str
    size: int
    repos: Tuple[str, ...]      # "host:port/path" (Reference.repository)


def compression_of(media_type: str) -> str:
    if media_type.endswith("+zstd") or media_type.endswith(".zstd"):
        return "zstd"
    if media_type.endswith("gzip"):
        return "gzip"
    return "none"


class BlobInfoStore:
    def __init__(self, root: Path) -> None:
        self.dir = Path(root) / "distribution"

    def _path(self, diff_id: str) -> Path:
        from snapshotter.layout import digest_hex
        return self.dir / (digest_hex(diff_id) + ".json")

    def get(self, diff_id: str) -> List[KnownBlob]:
        try:
            with open(self._path(diff_id)) as f:
                doc = json.load(f)
        except (OSError, ValueError):
            return []
        out = []
        for e in doc if isinstance(doc, list) else []:
            try:
                out.append(KnownBlob(str(e["digest"]), str(e["mediaType"]), int(e["size"]),
                                     tuple(str(r) for r in e.get("repos", ()))))
            except (KeyError, TypeError, ValueError):
                continue
        return out

    def add(self, diff_id: str, blob: KnownBlob) -> None:
        """Record that `blob` (a compressed form of `diff_id`) is in blob.repos."""
        known = self.get(diff_id)
        merged, found = [], False
        for k in known:
            if k.digest == blob.digest:
                repos = tuple(dict.fromkeys(blob.repos + k.repos))[:MAX_REPOS]
                merged.append(KnownBlob(k.digest, k.media_type, k.size, repos))
                found = True
            else:
                merged.append(k)
        if not found:
            merged.insert(0, blob)
        doc = [{"digest": k.digest, "mediaType": k.media_type, "size": k.size,
                "repos": list(k.repos)} for k in merged]
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self._path(diff_id), doc)


def candidates(service, record, diff_ids) -> List[List[KnownBlob]]:
    """Per layer, the compressed blobs known for it: the image's own manifest first."""
    from registry.model import parse_manifest
    store = BlobInfoStore(service.layout.root)
    from_manifest: List[List[KnownBlob]] = [[] for _ in diff_ids]
    try:
        manifest = parse_manifest(service._content().read(record.manifest_digest), "",
                                  record.manifest_digest)
    except Exception:  # noqa: BLE001 - no usable stored manifest: rely on the other facts
        manifest = None
    repos = tuple(dict.fromkeys(d.rsplit("@", 1)[0] for d in record.repo_digests))
    if manifest is not None and len(manifest.layers) == len(diff_ids):
        for i, desc in enumerate(manifest.layers):
            if compression_of(desc.media_type) != "none":
                from_manifest[i].append(KnownBlob(desc.digest, desc.media_type, desc.size,
                                                  repos))
    out = []
    for i, diff_id in enumerate(diff_ids):
        stored = store.get(diff_id)
        merged = []
        for k in from_manifest[i]:     # same blob known both ways: every repo that has it
            extra = [r for s in stored if s.digest == k.digest for r in s.repos]
            merged.append(replace(k, repos=tuple(dict.fromkeys(k.repos + tuple(extra)))))
        seen = {k.digest for k in merged}
        out.append(merged + [k for k in stored if k.digest not in seen])
    return out
