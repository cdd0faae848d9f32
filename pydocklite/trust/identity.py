"""`signedIdentity` rules: does the reference a signature claims fit the image being checked?

References are compared fully expanded (`busybox` = `docker.io/library/busybox`), as
containers-policy.json(5) describes:
    matchExact               both have a tag or digest, and they are equal
    matchRepoDigestOrExact   image by tag: equal; image by digest: same repository (the digest
                             itself is checked against the signed manifest digest)
    matchRepository          same repository, any tag
    exactReference           the signature names exactly the configured reference
    exactRepository          the signature names the configured repository (any tag)
    remapIdentity            the image's `prefix` is rewritten to `signedPrefix` first, then
                             matchRepoDigestOrExact
An image pulled by tag AND digest is identified by its digest (that is what was pulled).
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional


def _parse(text: str):
    from registry.reference import Reference
    try:
        ref = Reference.parse(text, default_tag=None)
    except Exception:  # noqa: BLE001 - an unparsable claim matches nothing
        return None
    return ref._replace(tag=None) if ref.digest else ref


def _exact(a, b) -> bool:
    return bool(a and b and (a.tag or a.digest) and (b.tag or b.digest) and str(a) == str(b))


def _repo_digest_or_exact(intended, signed) -> bool:
    if intended is None or signed is None or not (signed.tag or signed.digest):
        return False
    if intended.digest:
        return signed.repository == intended.repository
    if intended.tag:
        return str(signed) == str(intended)
    return False


def _remap(intended, prefix: str, signed_prefix: str):
    name = intended.repository
    if name != prefix and not name.startswith(prefix + "/"):
        return intended
    return _parse(str(intended).replace(prefix, signed_prefix, 1))


def matches(rule, image_reference: "Optional[str]", signed_reference: str) -> bool:
    """`rule`: policy.IdentityRule; `image_reference`: the image's identity (None when the
    transport has no Docker reference, e.g. an archive); `signed_reference`: the payload's."""
    signed = _parse(signed_reference)
    if signed is None:
        return False
    kind = rule.type
    if kind == "exactReference":
        return _exact(_parse(rule.reference), signed)
    if kind == "exactRepository":
        want = _parse(rule.reference)
        return want is not None and want.repository == signed.repository
    intended = _parse(image_reference) if image_reference else None
    if intended is None:
        return False
    if kind == "matchExact":
        return _exact(intended, signed)
    if kind == "matchRepository":
        return intended.repository == signed.repository
    if kind == "remapIdentity":
        return _repo_digest_or_exact(_remap(intended, rule.prefix, rule.signed_prefix), signed)
    return _repo_digest_or_exact(intended, signed)
