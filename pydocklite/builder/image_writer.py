"""Storing what a build makes: layers (uncompressed in the layer store + a gzip blob for push),
image configs, the final manifest and its image-DB record, and the layer cache entries.

Reproducible: gzip with mtime 0 and no file name, configs as sorted compact JSON, so the same
inputs (and SOURCE_DATE_EPOCH for the history times) give the same digests.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Callable, List, Optional, Sequence

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
TAR = "application/vnd.oci.image.layer.v1.tar"
_DOCKER_TO_OCI = {
    "application/vnd.docker.image.rootfs.diff.tar.gzip": OCI_GZIP,
    "application/vnd.docker.image.rootfs.diff.tar": TAR,
}


@dataclass(frozen=True)
class LayerRef:
    diff_id: str
    digest: str         # the compressed blob's digest ("" when only the uncompressed one exists)
    size: int           # compressed size
    media_type: str


def canonical_json(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class ImageWriter:
    def __init__(self, service) -> None:
        self.service = service
        self.layout = service.layout
        self.content = service._content()
        self.layers = service._layers()
        self.lease = None          # the build's (snapshotter.leases.Lease), while it runs

    # --- what the build holds against garbage collection ------------------------------------
    def keep(self, layers=(), blobs=()) -> None:
        """Name layers/blobs in the build's lease (before they are written or relied on)."""
        if self.lease is not None:
            self.lease.add(layers=layers, blobs=blobs)

    def keep_image(self, record, name: str) -> None:
        """Hold an image the build stands on; BuildError if a collection took it first."""
        self.keep(layers=record.diff_ids, blobs=[record.id, record.manifest_digest])
        self.keep(blobs=[r.digest for r in self.base_layers(record)])
        if not self.content.has(record.id) or \
                any(not self.layers.has(d) for d in record.diff_ids):
            from pydocklite.builder.errors import BuildError
            raise BuildError(f"image {name} was removed while the build was using it "
                             "(rmi or image prune): build again")

    def _commit_kept(self, w) -> str:
        """Commit a layer writer and name the layer in the lease, with the gc lock held
        shared between the two, so no collection runs while the new layer is unnamed."""
        from snapshotter.leases import gc_lock
        with gc_lock(self.layout, shared=True):
            diff_id = w.commit().diff_id
            self.keep(layers=[diff_id])
        return diff_id

    # --- layers --------------------------------------------------------------------------
    def new_layer(self, write: Callable, name: str) -> LayerRef:
        """Ingest the tar `write(fileobj)` produces, then store its gzip blob."""
        with self.layers.ingest(None, TAR, name,
                                **self.service.settings.layer_bounds(expand=False)) as w:
            write(w)
            diff_id = self._commit_kept(w)
        return self.compress(diff_id)

    def compress(self, diff_id: str) -> LayerRef:
        """The layer as a gzip blob in blobs/ (deterministic: mtime 0, no name)."""
        tmp_fd, tmp = tempfile.mkstemp(prefix="gz-", dir=str(self.layout.ensure().ingest_dir))
        h = hashlib.sha256()
        size = 0
        try:
            with os.fdopen(tmp_fd, "wb") as raw:
                class _Hashing:
                    def write(self, b):
                        nonlocal size
                        h.update(b)
                        size += len(b)
                        return raw.write(b)

                    def flush(self):
                        raw.flush()
                with gzip.GzipFile(filename="", mode="wb", fileobj=_Hashing(), mtime=0,
                                   compresslevel=6) as gz:
                    with open(self.layers.blob_path(diff_id), "rb") as src:
                        for b in iter(lambda: src.read(1 << 20), b""):
                            gz.write(b)
                raw.flush()
                os.fsync(raw.fileno())
            digest = "sha256:" + h.hexdigest()
            self.keep(blobs=[digest])
            os.chmod(tmp, 0o644)
            dest = self.layout.blob_path(digest)
            if not dest.exists():
                os.replace(tmp, dest)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return LayerRef(diff_id, digest, size, OCI_GZIP)

    def clamp_mtimes(self, diff_id: str, epoch: int) -> str:
        """The same layer with every mtime after `epoch` set to it (SOURCE_DATE_EPOCH)."""
        import tarfile

        def write(out) -> None:
            with tarfile.open(self.layers.blob_path(diff_id), "r|") as src, \
                    tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as dst:
                for m in src:
                    m.mtime = min(int(m.mtime), epoch)
                    for k in ("mtime", "atime", "ctime"):
                        m.pax_headers.pop(k, None)
                    dst.addfile(m, src.extractfile(m) if m.isreg() else None)
        with self.layers.ingest(None, TAR, f"{diff_id} clamped") as w:
            write(w)
            return self._commit_kept(w)

    def base_layers(self, record) -> List[LayerRef]:
        """The layer descriptors of a stored image (from its manifest)."""
        try:
            manifest = json.loads(self.content.read(record.manifest_digest))
            descs = manifest.get("layers") or []
        except Exception:  # noqa: BLE001 - no manifest (e.g. a foreign store): uncompressed
            descs = []
        out = []
        for i, diff_id in enumerate(record.diff_ids):
            if i < len(descs):
                d = descs[i]
                mt = _DOCKER_TO_OCI.get(d.get("mediaType", ""), d.get("mediaType", OCI_GZIP))
                out.append(LayerRef(diff_id, d["digest"], int(d.get("size", 0)), mt))
            else:
                out.append(LayerRef(diff_id, "", 0, TAR))
        return out

    # --- configs and images ---------------------------------------------------------------
    def write_config(self, config: dict) -> str:
        raw = canonical_json(config)
        digest = sha256(raw)
        self.keep(blobs=[digest])
        self.content.write(digest, raw)
        return digest

    def read_config(self, digest: str) -> dict:
        return json.loads(self.content.read(digest))

    def commit(self, config_digest: str, layers: Sequence[LayerRef], tags: Sequence[str]):
        """Write the manifest, record the image and point `tags` at it; the ImageRecord."""
        from pydocklite.image_db import ImageRecord
        config_raw = self.content.read(config_digest)
        config = json.loads(config_raw)
        for ref in layers:     # a layer without a compressed blob (base image stored raw)
            if not ref.digest:
                from pydocklite.builder.errors import BuildError
                raise BuildError(f"layer {ref.diff_id} has no compressed blob")
        manifest = {
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest,
                       "size": len(config_raw)},
            "layers": [{"mediaType": r.media_type, "digest": r.digest, "size": r.size}
                       for r in layers],
        }
        raw = json.dumps(manifest, indent=2).encode()
        mdigest = sha256(raw)
        self.keep(blobs=[mdigest])
        self.content.write(mdigest, raw)
        diff_ids = tuple(r.diff_id for r in layers)
        record = ImageRecord(
            id=config_digest, manifest_digest=mdigest, manifest_media_type=OCI_MANIFEST,
            diff_ids=diff_ids, size=sum(self.layers.size(d) for d in diff_ids),
            created=config.get("created", ""), architecture=config.get("architecture", ""),
            os=config.get("os", ""), repo_digests=(), added_at=time.time())
        self.service.db.add(record, list(tags))
        return record

    def record_for(self, config_digest: str, diff_ids: Sequence[str]):
        """An unsaved ImageRecord for an intermediate state (what a RUN container starts from)."""
        from pydocklite.image_db import ImageRecord
        return ImageRecord(id=config_digest, manifest_digest="", manifest_media_type=OCI_MANIFEST,
                           diff_ids=tuple(diff_ids), size=0, created="")


class BuildCache:
    """step key -> (image id, layers) after that step, one small JSON file per key."""

    def __init__(self, writer: ImageWriter) -> None:
        self.writer = writer
        self.dir = writer.layout.root / "build-cache"

    def get(self, key: str) -> Optional[tuple]:
        path = self.dir / (key.split(":")[-1] + ".json")
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        layers = [LayerRef(**d) for d in data.get("layers", [])]
        image_id = data.get("image_id", "")
        built = set(data.get("built", ()))
        # held first, then checked: once named, a collection can't take them any more
        self.writer.keep(layers=[r.diff_id for r in layers],
                         blobs=[image_id] + [r.digest for r in layers])
        if not self.writer.content.has(image_id):
            return None
        for ref in layers:
            if not self.writer.layers.has(ref.diff_id):
                return None
            if ref.diff_id in built and not self.writer.content.has(ref.digest):
                return None      # a layer a build made lost its gzip blob (image gc)
        return image_id, layers, built

    def put(self, key: str, image_id: str, layers: Sequence[LayerRef],
            built: Sequence[str] = ()) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        data = {"image_id": image_id, "layers": [asdict(r) for r in layers],
                "built": sorted(built)}
        fd, tmp = tempfile.mkstemp(prefix=".cache-", dir=str(self.dir))
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
        os.replace(tmp, self.dir / (key.split(":")[-1] + ".json"))
