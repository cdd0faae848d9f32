"""Sigstore signature attachments: the `sha256-<hex>.sig` manifests cosign, skopeo and Podman
keep next to an image in its repository.

An attachment is an OCI manifest tagged `sha256-<hex of the signed manifest digest>.sig`;
each layer is one signature: its blob is the signed payload, its annotations carry the
signature (`dev.cosignproject.cosign/signature`, base64). Its config is an OCI image config
whose rootfs.diff_ids list the payloads (what containers/image writes).

    found = fetch_attachments(client, ref, "sha256:...")   # None: the image has none
    for item in found.items:                               # lazy: blobs fetched on demand
        item.media_type, item.annotations, item.payload()
    put_signatures(client, ref, "sha256:...", [(media_type, payload, annotations)])

Everything here is hostile input: the manifest is capped (MAX_ATTACHMENT_BYTES), so are the
number of signatures and each payload (checked from the descriptor before any download, then
on the stream); a payload's bytes must match its descriptor's digest. No cryptography here:
pydocklite/trust/ judges the signatures.
"""
from __future__ import annotations

import json
from typing import Iterable, List, Optional, Tuple

from .errors import ManifestError, NotFoundError
from .model import (ACCEPT_MANIFESTS, OCI_CONFIG, OCI_MANIFEST, Descriptor, Manifest,
                    build_manifest, parse_manifest, sha256_digest)
from .reference import Reference, validate_digest

MAX_ATTACHMENT_BYTES = 1 << 20
MAX_SIGNATURES = 256
MAX_PAYLOAD_BYTES = 256 << 10
MAX_CONFIG_BYTES = 4 << 20


class AttachmentError(ManifestError):
    """A signature attachment is malformed or larger than the limits (the message says)."""


def attachment_tag(digest: str) -> str:
    """`sha256:<hex>` -> `sha256-<hex>.sig`."""
    validate_digest(digest)
    return digest.replace(":", "-", 1) + ".sig"


class AttachmentItem:
    """One signature of an attachment: media type, annotations, and its payload on demand."""

    __slots__ = ("client", "ref", "desc", "index", "_payload")

    def __init__(self, client, ref: Reference, desc: Descriptor, index: int) -> None:
        self.client, self.ref, self.desc, self.index = client, ref, desc, index
        self._payload: Optional[bytes] = None

    @property
    def media_type(self) -> str:
        return self.desc.media_type

    @property
    def annotations(self) -> dict:
        return dict(self.desc.annotations)

    def payload(self) -> bytes:
        """The payload blob, verified against its descriptor (AttachmentError if too big)."""
        if self._payload is None:
            if self.desc.size > MAX_PAYLOAD_BYTES:
                raise AttachmentError(f"signature {self.index + 1}'s payload is "
                                      f"{self.desc.size} bytes, more than the "
                                      f"{MAX_PAYLOAD_BYTES} allowed: refused unread")
            self._payload = self.client.get_blob_bytes(self.ref, self.desc)
        return self._payload


class Attachments:
    """A fetched attachment manifest: `manifest`, `tag`, `items` (AttachmentItem, lazy)."""

    def __init__(self, client, ref: Reference, tag: str, manifest: Manifest) -> None:
        self.ref, self.tag, self.manifest = ref, tag, manifest
        self.items = [AttachmentItem(client, ref, d, i) for i, d in enumerate(manifest.layers)]


def fetch_attachments(client, ref: Reference, digest: str) -> Optional[Attachments]:
    """The signature attachment of the manifest `digest` in `ref`'s repository, or None."""
    tag = attachment_tag(digest)
    what = f"signature attachment {ref.repository}:{tag}"
    try:
        resp, raw = client._get_small(ref.domain, f"/v2/{ref.path}/manifests/{tag}", what,
                                      {"Accept": ", ".join(ACCEPT_MANIFESTS)},
                                      limit=MAX_ATTACHMENT_BYTES)
    except NotFoundError:
        return None
    if len(raw) > MAX_ATTACHMENT_BYTES:
        raise AttachmentError(f"{what} is larger than {MAX_ATTACHMENT_BYTES} bytes: refused "
                              "(a signature attachment is a few KB)")
    try:
        parsed = parse_manifest(raw, resp.headers.get("Content-Type", ""), name=what)
    except ManifestError as e:
        raise AttachmentError(f"{e}") from None
    if not isinstance(parsed, Manifest) or parsed.media_type != OCI_MANIFEST:
        raise AttachmentError(f"{what} is not an OCI image manifest: not a signature "
                              "attachment")
    if len(parsed.layers) > MAX_SIGNATURES:
        raise AttachmentError(f"{what} lists {len(parsed.layers)} signatures, more than the "
                              f"{MAX_SIGNATURES} allowed: refused")
    return Attachments(client, ref.with_tag(tag)._replace(digest=None), tag, parsed)


def _same(desc: Descriptor, media_type: str, digest: str, annotations: dict) -> bool:
    return (desc.media_type == media_type and desc.digest == digest
            and dict(desc.annotations) == annotations)


def put_signatures(client, ref: Reference, digest: str,
                   signatures: Iterable[Tuple[str, bytes, dict]]) -> str:
    """Add signatures to the attachment of manifest `digest` (creating it when absent),
    keeping the ones already there; returns the attachment manifest's digest."""
    tag = attachment_tag(digest)
    repo = ref._replace(tag=None, digest=None)
    existing = fetch_attachments(client, ref, digest)
    layers: List[Descriptor] = list(existing.manifest.layers) if existing else []
    config = {"architecture": "", "os": "", "config": {},
              "rootfs": {"type": "layers", "diff_ids": []}}
    if existing is not None:
        cdesc = existing.manifest.config
        if cdesc.size > MAX_CONFIG_BYTES:
            raise AttachmentError(f"the config of {ref.repository}:{tag} is too large")
        try:
            config = json.loads(client.get_blob_bytes(ref, cdesc))
            config.setdefault("rootfs", {"type": "layers", "diff_ids": []})
            config["rootfs"].setdefault("diff_ids", [])
        except (ValueError, AttributeError, TypeError):
            raise AttachmentError(f"the config of {ref.repository}:{tag} is not a JSON "
                                  "image config: delete the attachment and sign again") from None
    for media_type, payload, notes in signatures:
        pdigest = sha256_digest(payload)
        if any(_same(d, media_type, pdigest, notes) for d in layers):
            continue
        if not client.blob_exists(repo, pdigest):
            client.upload_blob(repo, payload, digest=pdigest)
        layers.append(Descriptor(media_type, pdigest, len(payload),
                                 annotations=tuple(sorted(notes.items()))))
        config["rootfs"]["diff_ids"].append(pdigest)
    if len(layers) > MAX_SIGNATURES:
        raise AttachmentError(f"{ref.repository}:{tag} would hold {len(layers)} signatures, "
                              f"more than the {MAX_SIGNATURES} readers accept")
    config_raw = json.dumps(config, separators=(",", ":")).encode()
    config_digest = sha256_digest(config_raw)
    if not client.blob_exists(repo, config_digest):
        client.upload_blob(repo, config_raw, digest=config_digest)
    raw = build_manifest(Descriptor(OCI_CONFIG, config_digest, len(config_raw)), layers,
                         OCI_MANIFEST)
    return client.put_manifest(repo.with_tag(tag), raw, OCI_MANIFEST)
