"""The OCI / Docker image data model: digests, descriptors, manifests, indexes.

Docker schema2 manifests and manifest lists, OCI manifests and indexes all parse into the same
frozen `Manifest` / `Index` types; `raw` keeps the exact bytes (their sha256 is `digest`).
Image configs live in image_config.py and are re-exported here.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Optional, Tuple, Union

from .errors import ManifestError, PlatformNotFound
from .image_config import (  # noqa: F401  (re-exported)
    ContainerConfig, Healthcheck, HistoryEntry, ImageConfig, parse_image_config,
    validate_config_for_manifest,
)
from .platform import Platform, host_platform  # noqa: F401  (re-exported)
from .reference import validate_digest

# Media types
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_NONDIST_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"

MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST)
ACCEPT_MANIFESTS = (OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST)
LAYER_TYPES = (OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD, DOCKER_LAYER_GZIP)
CONFIG_TYPES = (OCI_CONFIG, DOCKER_CONFIG)
# What a registry may make us hold in memory (it is not trusted; layers are streamed)
MAX_MANIFEST_BYTES = 4 << 20          # a manifest, an index, a tag list (containerd: 4 MiB)
MAX_CONFIG_BYTES = 8 << 20            # an image config (real ones: a few KiB to ~100 KiB)
MAX_TOKEN_BYTES = 1 << 20             # a token server's JSON answer
MAX_ERROR_BYTES = 64 << 10            # an error body we show a line of


@dataclass(frozen=True)
class Digest:
    """A content digest `algorithm:hex` (sha256 by default)."""

    algorithm: str
    hex: str

    @classmethod
    def parse(cls, s: str) -> "Digest":
        validate_digest(s)
        alg, _, hexpart = s.partition(":")
        return cls(alg, hexpart)

    @classmethod
    def of(cls, data: bytes) -> "Digest":
        return cls("sha256", hashlib.sha256(data).hexdigest())

    def hasher(self) -> "hashlib._Hash":
        return hashlib.new(self.algorithm)

    def matches(self, data: bytes) -> bool:
        return hashlib.new(self.algorithm, data).hexdigest() == self.hex

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


def sha256_digest(data: bytes) -> str:
    """`sha256:<hex>` of `data`."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Descriptor:
    """Points at a blob: what it is, its digest and its size (in bytes)."""

    media_type: str
    digest: str
    size: int
    platform: Optional[Platform] = None
    annotations: Tuple[Tuple[str, str], ...] = ()
    urls: Tuple[str, ...] = ()
    artifact_type: str = ""

    @classmethod
    def from_json(cls, d: object, where: str) -> "Descriptor":
        if not isinstance(d, dict):
            raise ManifestError(f"{where}: descriptor is not a JSON object")
        digest, size = d.get("digest"), d.get("size")
        if not isinstance(digest, str):
            raise ManifestError(f"{where}: descriptor has no digest")
        try:
            validate_digest(digest)
        except Exception as e:
            raise ManifestError(f"{where}: {e}") from None
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ManifestError(f"{where}: descriptor {digest} has an invalid size {size!r}")
        ann = d.get("annotations") or {}
        if not isinstance(ann, dict):
            raise ManifestError(f"{where}: annotations of {digest} are not an object")
        return cls(
            media_type=str(d.get("mediaType") or ""), digest=digest, size=size,
            platform=Platform.from_json(d.get("platform")),
            annotations=tuple(sorted((str(k), str(v)) for k, v in ann.items())),
            urls=tuple(str(u) for u in (d.get("urls") or ())),
            artifact_type=str(d.get("artifactType") or ""),
        )

    def annotation(self, key: str, default: str = "") -> str:
        return dict(self.annotations).get(key, default)

    def to_json(self) -> dict:
        out: dict = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.platform is not None:
            p = {"architecture": self.platform.architecture, "os": self.platform.os}
            if self.platform.variant:
                p["variant"] = self.platform.variant
            out["platform"] = p
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.urls:
            out["urls"] = list(self.urls)
        return out


@dataclass(frozen=True)
class Manifest:
    """An image manifest (OCI or Docker schema2)."""

    media_type: str
    config: Descriptor
    layers: Tuple[Descriptor, ...]
    annotations: Tuple[Tuple[str, str], ...] = ()
    raw: bytes = field(default=b"", repr=False)
    digest: str = ""
    subject: Optional[Descriptor] = None


@dataclass(frozen=True)
class Index:
    """An OCI image index or Docker manifest list."""

    media_type: str
    manifests: Tuple[Descriptor, ...]
    annotations: Tuple[Tuple[str, str], ...] = ()
    raw: bytes = field(default=b"", repr=False)
    digest: str = ""

    def platforms(self) -> "list[Platform]":
        return [d.platform for d in self.image_manifests() if d.platform is not None]

    def image_manifests(self) -> "list[Descriptor]":
        """Entries that are runnable images (attestations and unknown/unknown left out)."""
        out = []
        for d in self.manifests:
            if d.annotation("vnd.docker.reference.type") == "attestation-manifest":
                continue
            if d.platform is not None and d.platform.os == "unknown":
                continue
            out.append(d)
        return out

    def select(self, platform: "Optional[Platform]" = None, name: str = "image") -> Descriptor:
        """The best manifest for `platform` (default: this host); PlatformNotFound if none."""
        want = platform or host_platform()
        best: "Optional[Tuple[int, int]]" = None
        for i, d in enumerate(self.image_manifests()):
            rank = want.match_rank(d.platform)
            if rank is not None and (best is None or rank < best[0]):
                best = (rank, i)
        if best is None:
            have = ", ".join(str(p) for p in self.platforms()) or "none listed"
            raise PlatformNotFound(
                f"{name} has no manifest for platform {want} (available: {have}): "
                "pick one of those with --platform")
        return self.image_manifests()[best[1]]


def _annotations(doc: dict, where: str) -> "Tuple[Tuple[str, str], ...]":
    ann = doc.get("annotations") or {}
    if not isinstance(ann, dict):
        raise ManifestError(f"{where}: annotations are not an object")
    return tuple(sorted((str(k), str(v)) for k, v in ann.items()))


def parse_manifest(raw: bytes, media_type: str = "", digest: str = "",
                   name: str = "manifest") -> "Union[Manifest, Index]":
    """Parse manifest/index bytes. `media_type` is the Content-Type served (may be empty).

    `digest` is recorded as-is when given (the caller verifies it); otherwise computed.
    """
    where = name
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"{where}: manifest is larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise ManifestError(f"{where}: manifest is not valid JSON ({e})") from None
    if not isinstance(doc, dict):
        raise ManifestError(f"{where}: manifest is not a JSON object")
    body_type = doc.get("mediaType") or ""
    served = (media_type or "").split(";")[0].strip()
    mt = body_type or served
    if served in (DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED) or doc.get("schemaVersion") == 1:
        raise ManifestError(f"{where}: Docker schema1 manifests are not supported; "
                            "push the image again with a current Docker or skopeo")
    if doc.get("schemaVersion") != 2:
        raise ManifestError(f"{where}: unsupported schemaVersion {doc.get('schemaVersion')!r}")
    if not mt:  # OCI allows mediaType to be absent; infer from the shape
        mt = OCI_INDEX if "manifests" in doc else OCI_MANIFEST
    digest = digest or sha256_digest(raw)
    if mt in INDEX_TYPES:
        entries = doc.get("manifests")
        if not isinstance(entries, list):
            raise ManifestError(f"{where}: index has no 'manifests' list")
        return Index(mt, tuple(Descriptor.from_json(e, where) for e in entries),
                     _annotations(doc, where), raw, digest)
    if mt in MANIFEST_TYPES:
        layers = doc.get("layers")
        if not isinstance(layers, list):
            raise ManifestError(f"{where}: manifest has no 'layers' list")
        if "config" not in doc:
            raise ManifestError(f"{where}: manifest has no config descriptor")
        subject = doc.get("subject")
        return Manifest(
            mt, Descriptor.from_json(doc["config"], where),
            tuple(Descriptor.from_json(layer, where) for layer in layers),
            _annotations(doc, where), raw, digest,
            Descriptor.from_json(subject, where) if subject else None)
    raise ManifestError(f"{where}: unsupported manifest media type {mt!r}")


def build_manifest(config: Descriptor, layers: "list[Descriptor]",
                   media_type: str = OCI_MANIFEST, annotations: "Optional[dict]" = None) -> bytes:
    """Serialise a manifest (for push). The bytes returned are what gets digested."""
    doc: dict = {"schemaVersion": 2, "mediaType": media_type, "config": config.to_json(),
                 "layers": [d.to_json() for d in layers]}
    if annotations:
        doc["annotations"] = dict(annotations)
    return json.dumps(doc, separators=(",", ":"), sort_keys=False).encode()


def build_index(manifests: "list[Descriptor]", media_type: str = OCI_INDEX) -> bytes:
    """Serialise an index / manifest list (for push)."""
    doc = {"schemaVersion": 2, "mediaType": media_type,
           "manifests": [d.to_json() for d in manifests]}
    return json.dumps(doc, separators=(",", ":")).encode()


__all__ = [
    "ACCEPT_MANIFESTS", "CONFIG_TYPES", "INDEX_TYPES", "LAYER_TYPES", "MANIFEST_TYPES",
    "DOCKER_MANIFEST", "DOCKER_MANIFEST_LIST", "DOCKER_CONFIG", "DOCKER_LAYER_GZIP",
    "DOCKER_FOREIGN_LAYER", "OCI_MANIFEST", "OCI_INDEX", "OCI_CONFIG", "OCI_LAYER",
    "OCI_LAYER_GZIP", "OCI_LAYER_ZSTD", "OCI_LAYER_NONDIST_GZIP", "MAX_MANIFEST_BYTES",
    "MAX_CONFIG_BYTES", "MAX_TOKEN_BYTES", "MAX_ERROR_BYTES",
    "Digest", "Descriptor", "Manifest", "Index", "Platform", "host_platform",
    "ImageConfig", "ContainerConfig", "Healthcheck", "HistoryEntry",
    "parse_manifest", "parse_image_config", "validate_config_for_manifest",
    "build_manifest", "build_index", "sha256_digest",
]
