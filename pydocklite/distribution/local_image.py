"""Images made on this machine (import, commit, load): stored the way a pulled image is.

Layers live uncompressed in the LayerStore, so the manifest recorded for a local image
lists those uncompressed tars (OCI `layer.v1.tar`, digest = diff_id); `push` compresses
them when it uploads. The config bytes are kept as given: the image id is their digest.
"""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Iterable, List, Optional

from pydocklite.image_db import ImageRecord


def now_rfc3339() -> str:
    """UTC now with nanosecond digits and a Z, as Docker writes `created`."""
    ns = time.time_ns()
    sec, frac = divmod(ns, 1_000_000_000)
    return (datetime.fromtimestamp(sec, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
            + f".{frac:09d}Z")


def config_bytes(doc: dict) -> bytes:
    """Canonical JSON for a config we write (compact, sorted keys: reproducible ids)."""
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def uncompressed_manifest(service, config_raw: bytes, diff_ids: Iterable[str]) -> bytes:
    """An OCI manifest whose layers are the stored uncompressed tars."""
    from registry.model import OCI_CONFIG, OCI_LAYER, Descriptor, build_manifest, sha256_digest
    layers = service._layers()
    descs = [Descriptor(OCI_LAYER, d, layers.size(d)) for d in diff_ids]
    config = Descriptor(OCI_CONFIG, sha256_digest(config_raw), len(config_raw))
    return build_manifest(config, descs)


def register(service, config_raw: bytes, names: List[str],
             manifest_raw: Optional[bytes] = None, repo_digests: tuple = ()) -> ImageRecord:
    """Store config (+ manifest) blobs and the image record; point `names` at it.
    Every layer of the config must already be in the LayerStore."""
    from registry.model import OCI_MANIFEST, parse_image_config, parse_manifest, sha256_digest
    from registry.reference import Reference
    image_id = sha256_digest(config_raw)
    config = parse_image_config(config_raw, image_id)
    layers = service._layers()
    for d in config.diff_ids:
        if not layers.has(d):
            from pydocklite.errors import ImageError
            raise ImageError(f"image {image_id[7:19]}: layer {d} is not in the store")
    if manifest_raw is None:
        manifest_raw = uncompressed_manifest(service, config_raw, config.diff_ids)
    manifest_digest = sha256_digest(manifest_raw)
    manifest = parse_manifest(manifest_raw, "", manifest_digest)
    content = service._content()
    content.write(image_id, config_raw)
    content.write(manifest_digest, manifest_raw)
    record = ImageRecord(
        id=image_id, manifest_digest=manifest_digest,
        manifest_media_type=manifest.media_type or OCI_MANIFEST,
        diff_ids=tuple(config.diff_ids), size=sum(layers.size(d) for d in config.diff_ids),
        created=config.created or "", architecture=config.architecture or "",
        os=config.os or "", repo_digests=tuple(repo_digests), added_at=time.time())
    service.db.add(record, [str(Reference.parse(n)) for n in names])
    return record
