"""Push a local image to a registry, layer by layer, the way `docker push` does.

For each layer, cheapest first:
1. a compressed blob of it that we know (the pulled manifest, or an earlier push — see
   blobinfo.py) is already in the target repository (HEAD)  -> "Layer already exists";
2. such a blob is in another repository of the same registry -> cross-repository mount
   -> "Mounted from <repo>";
3. otherwise compress the stored uncompressed layer (deterministic gzip, or zstd) and upload
   it, in chunks when it is bigger than `chunk_size` -> "Pushed".
The config blob is uploaded unchanged (the image id stays the same). If every layer kept the
digest of the image's stored manifest, that manifest is pushed byte for byte (same manifest
digest as where it was pulled from); otherwise a new manifest lists the blobs actually used.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Callable, List, Optional

from pydocklite.distribution.blobinfo import (BlobInfoStore, KnownBlob, candidates,
                                              compression_of)
from pydocklite.distribution.errors import PushError

CHUNK_SIZE = 16 << 20
MAX_PARALLEL = 3


@dataclass(frozen=True)
class PushEvent:
    layer: str           # 12 hex of the diff_id ("" for image-wide events)
    status: str          # Preparing, Pushing, Pushed, Layer already exists, Mounted from X
    current: int = 0
    total: int = 0


@dataclass(frozen=True)
class PushResult:
    reference: str       # canonical name:tag pushed
    tag: str
    digest: str          # manifest digest
    size: int            # manifest bytes


def _short(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


def _layer_type(compression: str, docker: bool) -> str:
    from registry.model import DOCKER_LAYER_GZIP, OCI_LAYER_GZIP, OCI_LAYER_ZSTD
    if compression == "zstd":
        return OCI_LAYER_ZSTD
    return DOCKER_LAYER_GZIP if docker else OCI_LAYER_GZIP


class Pusher:
    def __init__(self, service, client, ref, *, compression: str = "gzip",
                 chunk_size: int = CHUNK_SIZE, progress: Optional[Callable] = None,
                 force_compress: bool = False):
        self.service, self.client, self.ref = service, client, ref
        self.compression = compression
        self.chunk_size = chunk_size
        self.emit = progress or (lambda ev: None)
        self.force = force_compress
        self.lock = threading.Lock()
        self.info = BlobInfoStore(service.layout.root)

    def _event(self, *a) -> None:
        with self.lock:
            self.emit(PushEvent(*a))

    def _usable(self, known: KnownBlob) -> bool:
        comp = compression_of(known.media_type)
        if self.force:
            return comp == self.compression
        return comp in ("gzip", "zstd") and (self.compression == "gzip" or comp == "zstd")

    def push_layer(self, diff_id: str, known: List[KnownBlob]) -> KnownBlob:
        sid = _short(diff_id)
        ref = self.ref
        usable = [k for k in known if self._usable(k)]
        for k in usable:
            if ref.repository in k.repos and self.client.blob_exists(ref, k.digest):
                self._event(sid, "Layer already exists")
                return self._remember(diff_id, k)
        for k in usable:
            if self.client.blob_exists(ref, k.digest):
                self._event(sid, "Layer already exists")
                return self._remember(diff_id, k)
            for repo in k.repos:
                domain, _, path = repo.partition("/")
                if domain != ref.domain or path == ref.path:
                    continue
                if self.client.mount_blob(ref, k.digest, path):
                    self._event(sid, f"Mounted from {path}")
                    return self._remember(diff_id, k)
        return self._upload(diff_id, sid)

    def _upload(self, diff_id: str, sid: str) -> KnownBlob:
        from pydocklite.distribution.compress import compress_layer
        layers = self.service._layers()
        total = layers.size(diff_id)
        self._event(sid, "Preparing", 0, total)
        blob = compress_layer(layers.blob_path(diff_id), self.service.layout.ingest_dir,
                              self.compression)
        try:
            k = KnownBlob(blob.digest, _layer_type(blob.compression, False), blob.size, ())
            if self.client.blob_exists(self.ref, blob.digest):
                self._event(sid, "Layer already exists")
                return self._remember(diff_id, k)
            with open(blob.path, "rb") as f:
                reader = _ProgressReader(f, blob.size,
                                         lambda n: self._event(sid, "Pushing", n, blob.size))
                self.client.upload_blob(self.ref, reader, digest=blob.digest, size=blob.size,
                                        chunk_size=self.chunk_size)
        finally:
            try:
                os.unlink(blob.path)
            except OSError:
                pass
        self._event(sid, "Pushed", blob.size, blob.size)
        return self._remember(diff_id, k)

    def _remember(self, diff_id: str, k: KnownBlob) -> KnownBlob:
        k = replace(k, repos=(self.ref.repository,))
        try:
            self.info.add(diff_id, k)
        except OSError:
            pass   # only a hint for later pushes
        return k


class _ProgressReader:
    """A file for upload_blob that reports how many bytes were read (at most 10 times/s)."""

    def __init__(self, f, size: int, report: Callable[[int], None]) -> None:
        self.f, self.size, self.report = f, size, report
        self.done = 0
        self.last = 0.0

    def read(self, n: int = -1) -> bytes:
        import time
        data = self.f.read(n)
        self.done += len(data)
        now = time.monotonic()
        if now - self.last > 0.1 or self.done == self.size:
            self.last = now
            self.report(self.done)
        return data

    def __len__(self) -> int:
        return self.size - self.done


def push_image(service, name: str, *, compression: str = "gzip", chunk_size: int = CHUNK_SIZE,
               progress: Optional[Callable] = None, tls_verify: Optional[bool] = None,
               force_compress: bool = False, auth=None) -> PushResult:
    from registry.model import (DOCKER_CONFIG, DOCKER_MANIFEST, OCI_CONFIG, OCI_MANIFEST,
                                Descriptor, build_manifest, parse_manifest, sha256_digest)
    from registry.reference import Reference
    ref = Reference.parse(name)
    if ref.digest and not ref.tag:
        raise PushError(f"cannot push {name}: push a tag (NAME[:TAG]), not a digest")
    from pydocklite.errors import ImageNotFoundError
    try:
        record = service.lookup(str(ref))
    except ImageNotFoundError:
        raise ImageNotFoundError(f"An image does not exist locally with the tag: "
                                 f"{ref.familiar}") from None
    content = service._content()
    config_raw = content.read(record.id)
    diff_ids = list(record.diff_ids)
    known = candidates(service, record, diff_ids)
    try:
        stored = parse_manifest(content.read(record.manifest_digest), "", record.manifest_digest)
    except Exception:  # noqa: BLE001 - a new manifest is built below
        stored = None
    emit = progress or (lambda ev: None)
    for d in diff_ids:
        emit(PushEvent(_short(d), "Preparing"))
    with service.client(tls_verify=tls_verify, host=ref.domain, auth=auth) as client:
        pusher = Pusher(service, client, ref, compression=compression, chunk_size=chunk_size,
                        progress=emit, force_compress=force_compress)
        chosen = _push_layers(pusher, diff_ids, known)
        config_digest = record.id
        if not client.blob_exists(ref, config_digest):
            client.upload_blob(ref, config_raw, digest=config_digest)
        if stored is not None and [str(x.digest) for x in stored.layers] == \
                [k.digest for k in chosen] and str(stored.config.digest) == config_digest:
            raw, media_type = stored.raw, stored.media_type
        else:
            docker = (stored is not None and stored.media_type == DOCKER_MANIFEST
                      and all(compression_of(k.media_type) == "gzip" for k in chosen))
            media_type = DOCKER_MANIFEST if docker else OCI_MANIFEST
            layers = [Descriptor(_layer_type(compression_of(k.media_type), docker), k.digest,
                                 k.size) for k in chosen]
            config = Descriptor(DOCKER_CONFIG if docker else OCI_CONFIG, config_digest,
                                len(config_raw))
            raw = build_manifest(config, layers, media_type)
        digest = client.put_manifest(ref, raw, media_type)
    if digest != sha256_digest(raw):
        raise PushError(f"push of {ref}: registry stored the manifest as {digest}")
    service.db.add(record._replace(repo_digests=(f"{ref.repository}@{digest}",)), [])
    return PushResult(str(ref), ref.tag or "latest", digest, len(raw))


def _push_layers(pusher: Pusher, diff_ids: List[str], known: List[List[KnownBlob]]
                 ) -> List[KnownBlob]:
    if not diff_ids:
        return []
    workers = min(MAX_PARALLEL, len(diff_ids))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(pusher.push_layer, d, k) for d, k in zip(diff_ids, known)]
        results, errors = [], []
        for fut in futures:
            try:
                results.append(fut.result())
            except Exception as e:  # noqa: BLE001 - the first, after every worker stopped
                errors.append(e)
        if errors:
            raise errors[0]
    return results
