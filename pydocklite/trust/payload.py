"""The sigstore "simple signing" payload: what a signature says about an image.

    {"critical": {"identity": {"docker-reference": "registry.example/app:1.0"},
                  "image": {"docker-manifest-digest": "sha256:<hex>"},
                  "type": "cosign container image signature"},
     "optional": {"creator": "...", "timestamp": 1733560000}}

It is the blob of a layer (media type application/vnd.dev.cosign.simplesigning.v1+json) in
the image's signature attachment; the signature over these exact bytes is in the layer's
annotation. Parsing is strict, as containers/image's is: exactly these fields in `critical`
(no duplicates, no extras), a known `type`, a well-formed digest; `optional` may be null or
an object whose unknown members are ignored.
"""
from __future__ import annotations

import json
import time

from pydocklite.runtime.record import record

SIGNATURE_TYPE = "cosign container image signature"
MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
CREATOR = "pydocklite"


class PayloadError(ValueError):
    """The payload is not a valid simple-signing document (the message says why)."""


@record
class Payload:
    docker_reference: str       # the identity the signer claims, as written
    manifest_digest: str        # the manifest the signature is for
    creator: str = ""
    timestamp: int = 0


def make_payload(docker_reference: str, manifest_digest: str,
                 timestamp: "int | None" = None) -> bytes:
    """The payload bytes to sign (compact JSON, keys sorted, as Go writes maps)."""
    doc = {"critical": {"identity": {"docker-reference": docker_reference},
                        "image": {"docker-manifest-digest": manifest_digest},
                        "type": SIGNATURE_TYPE},
           "optional": {"creator": CREATOR,
                        "timestamp": int(time.time() if timestamp is None else timestamp)}}
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def strict_json(data: bytes, duplicate_error):
    """json.loads refusing an object with a repeated field (`duplicate_error(name)` is
    raised): Go's decoder keeps the last value, ours would too, and a document meaning two
    things is refused by containers/image for payloads and policies alike."""
    def pairs_hook(pairs):
        out = {}
        for k, v in pairs:
            if k in out:
                raise duplicate_error(k)
            out[k] = v
        return out
    return json.loads(data, object_pairs_hook=pairs_hook)


def _exact(obj, fields, where: str) -> dict:
    if not isinstance(obj, dict):
        raise PayloadError(f"{where} is not a JSON object")
    extra = sorted(set(obj) - set(fields))
    missing = [f for f in fields if f not in obj]
    if extra:
        raise PayloadError(f"{where} has unknown field(s) {', '.join(extra)}")
    if missing:
        raise PayloadError(f"{where} lacks field(s) {', '.join(missing)}")
    return obj


def parse_payload(data: bytes) -> Payload:
    from registry.reference import validate_digest
    try:
        doc = strict_json(data, lambda k: PayloadError(f"duplicate field {k!r}"))
    except PayloadError:
        raise
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise PayloadError(f"not valid JSON ({e})") from None
    _exact(doc, ("critical", "optional"), "the payload")
    critical = _exact(doc["critical"], ("type", "image", "identity"), "critical")
    if critical["type"] != SIGNATURE_TYPE:
        raise PayloadError(f"unknown signature type {critical['type']!r}")
    image = _exact(critical["image"], ("docker-manifest-digest",), "critical.image")
    identity = _exact(critical["identity"], ("docker-reference",), "critical.identity")
    digest, reference = image["docker-manifest-digest"], identity["docker-reference"]
    if not isinstance(digest, str) or not isinstance(reference, str):
        raise PayloadError("the digest and the reference must be strings")
    try:
        validate_digest(digest)
    except Exception as e:  # noqa: BLE001 - registry's InvalidReferenceError
        raise PayloadError(f"invalid docker-manifest-digest: {e}") from None
    optional = doc["optional"]
    creator, timestamp = "", 0
    if optional is not None:
        if not isinstance(optional, dict):
            raise PayloadError("optional is neither null nor an object")
        creator = optional.get("creator", "")
        timestamp = optional.get("timestamp", 0)
        if not isinstance(creator, str):
            raise PayloadError("optional.creator is not a string")
        if isinstance(timestamp, float) and timestamp.is_integer():
            timestamp = int(timestamp)
        if not isinstance(timestamp, int) or isinstance(timestamp, bool):
            raise PayloadError("optional.timestamp is not an integer")
    return Payload(reference, digest, creator, timestamp)
