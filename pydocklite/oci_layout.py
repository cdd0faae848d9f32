"""Import an OCI image layout directory into the store (the embedded `hello` image; `load`)."""
from __future__ import annotations

import json
import time
from pathlib import Path
from pydocklite.errors import ImageError


def _blob(layout_dir: Path, digest: str) -> Path:
    algo, _, hexd = digest.partition(":")
    return layout_dir / "blobs" / algo / hexd


def import_layout(service, layout_dir: Path, name):
    """Store the first image of `layout_dir`'s index.json and tag it `name` (a string or a
    Reference)."""
    from registry.model import parse_image_config, parse_manifest, sha256_digest
    from registry.reference import Reference
    from pydocklite.image_db import ImageRecord
    index = json.loads((layout_dir / "index.json").read_text())
    if not index.get("manifests"):
        raise ImageError(f"OCI layout {layout_dir} has no images")
    desc = index["manifests"][0]
    raw = _blob(layout_dir, desc["digest"]).read_bytes()
    if sha256_digest(raw) != desc["digest"]:
        raise ImageError(f"OCI layout {layout_dir}: manifest {desc['digest']} is corrupt")
    manifest = parse_manifest(raw, desc.get("mediaType", ""), desc["digest"])
    config_raw = _blob(layout_dir, manifest.config.digest).read_bytes()
    config = parse_image_config(config_raw, manifest.config.digest)
    content, layers = service._content(), service._layers()
    for ldesc, diff_id in zip(manifest.layers, config.diff_ids):
        if layers.has(diff_id):
            continue
        with layers.ingest(diff_id, ldesc.media_type, name=f"{ldesc.digest} of {layout_dir}",
                           **service.settings.layer_bounds(ldesc.size)) as writer:
            with open(_blob(layout_dir, ldesc.digest), "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    writer.write(chunk)
            writer.commit()
    content.write(manifest.config.digest, config_raw)
    content.write(desc["digest"], raw)
    ref = name if isinstance(name, Reference) else Reference.parse(name)
    record = ImageRecord(
        id=manifest.config.digest, manifest_digest=desc["digest"],
        manifest_media_type=manifest.media_type, diff_ids=tuple(config.diff_ids),
        size=sum(layers.size(d) for d in config.diff_ids), created=config.created or "",
        architecture=config.architecture, os=config.os, repo_digests=(), added_at=time.time())
    service.db.add(record, [str(ref)])
    return record


def load_embedded(settings, ref):
    """The embedded hello image when Reference `ref` names it (and it isn't in the store
    yet); None otherwise (also for None: a name that is not a reference)."""
    from pydocklite.embedded import HELLO_CANONICAL, hello_layout
    from pydocklite.images import ImageService
    if ref is None or str(ref) != HELLO_CANONICAL:
        return None
    try:
        layout_dir = hello_layout()
    except FileNotFoundError:
        return None
    return import_layout(ImageService(settings), layout_dir, ref)
