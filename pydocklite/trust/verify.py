"""Check an image against the requirements a policy selected for it.

    verdict = check(selection, image_identity, candidates, fetch)
        selection       policy.Selection (requirements + where they came from)
        image_identity  the image's reference as pulled ("registry/app:1.0"), or None for
                        transports without one (archives)
        candidates      manifest digests a signature may be for, in order: the index's,
                        then the platform manifest's (an image is accepted when either is
                        signed); () for archives, which carry no signatures
        fetch(digest)   the signatures attached to that manifest: a list of items with
                        .media_type, .annotations (dict), .payload() (bytes), or None
    -> trust.verdict.Verdict, or SignatureRefused naming the policy entry and the reason.

Every requirement must hold. A `sigstoreSigned` requirement holds when one signature
(an attachment layer of the simple-signing media type) verifies with one of its keys, its
payload names the very manifest digest it is attached to, and the identity it claims fits
`signedIdentity`. Keys are read, and `cryptography` imported, only when such a requirement
is evaluated. Signatures are fetched lazily, and fetching stops at the first accepted one.
"""
from __future__ import annotations

import base64
import binascii
import time

from pydocklite.trust.errors import PolicyError, SignatureRefused, TrustError
from pydocklite.trust.payload import MEDIA_TYPE, SIGNATURE_ANNOTATION, PayloadError, \
    parse_payload
from pydocklite.trust.policy import ACCEPT, REJECT, SIGSTORE
from pydocklite.trust.verdict import SignatureCheck, Verdict

MAX_REASONS = 4


def check(selection, image_identity, candidates, fetch, what: str = "") -> Verdict:
    what = what or image_identity or "the image"
    found: dict = {}

    def refuse(reason: str) -> SignatureRefused:
        return SignatureRefused(f"image {what} refused by signature policy "
                                f"{selection.policy_path}, {selection.entry}: {reason}")

    def attached(digest):
        if digest not in found:
            try:
                found[digest] = fetch(digest) or []
            except TrustError:
                raise
            except Exception as e:  # noqa: BLE001 - registry errors: hostile or broken input
                if type(e).__module__.split(".")[0] not in ("registry", "snapshotter"):
                    raise
                raise refuse(f"sigstoreSigned: its signatures cannot be read: {e}") from None
        return found[digest]

    checks = []
    for i, req in enumerate(selection.requirements):
        if req.unsupported:
            raise PolicyError(f"signature policy {selection.policy_path}, {selection.entry}"
                              f"[{i}]: {req.unsupported}")
        if req.type == ACCEPT:
            continue
        if req.type == REJECT:
            raise refuse("the policy rejects every image here (\"reject\")")
        if req.type == SIGSTORE:
            checks.append(_sigstore(req, i, selection, image_identity, candidates, attached,
                                    refuse))
    return Verdict(selection.policy_path, selection.entry,
                   tuple(r.type for r in selection.requirements), tuple(checks),
                   time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))


def load_keys(req, index: int, selection) -> list:
    """The requirement's public keys; PolicyError naming the entry when one is unusable."""
    from pydocklite.trust.keys import load_public_key
    where = f"signature policy {selection.policy_path}, {selection.entry}[{index}]"
    out = []
    for n, (kind, value) in enumerate(req.keys):
        if kind == "path":
            try:
                with open(value, "rb") as f:
                    data = f.read(1 << 20)
            except OSError as e:
                raise PolicyError(f"{where}: keyPath {value}: {e.strerror}: fix the path"
                                  ) from None
            source = f"keyPath {value}"
        else:
            data, source = value, f"keyData #{n + 1}"
        try:
            out.append(load_public_key(data, source))
        except TrustError as e:
            raise PolicyError(f"{where}: {e}") from None
    return out


def _sigstore(req, index, selection, image_identity, candidates, attached, refuse
              ) -> SignatureCheck:
    keys = load_keys(req, index, selection)
    reasons, seen, other = [], 0, 0
    for digest in candidates:
        for item in attached(digest):
            if item.media_type != MEDIA_TYPE:
                other += 1
                continue
            seen += 1
            accepted, reason = _judge(item, digest, keys, req.identity, image_identity)
            if accepted is not None:
                return accepted
            reasons.append(f"signature {seen}: {_clip(reason)}")
    if not seen:
        where = " or ".join(d.replace(":", "-", 1) + ".sig" for d in candidates)
        detail = (f": its attachments hold {other} item(s) of other media types" if other
                  else f" (no attachment {where} in its repository)" if candidates
                  else ": archives and layout directories carry no signatures")
        raise refuse(f"sigstoreSigned: a signature is required but none exists{detail}")
    shown = reasons[:MAX_REASONS]
    if len(reasons) > MAX_REASONS:
        shown.append(f"and {len(reasons) - MAX_REASONS} more")
    raise refuse("sigstoreSigned: " + ("; ".join(shown) if len(reasons) > 1 else
                                       reasons[0][reasons[0].index(": ") + 2:]))


def _clip(text: str, limit: int = 300) -> str:
    """A reason quotes what a registry sent (a claimed identity, field names): keep the
    one-line error one readable line."""
    return text if len(text) <= limit else text[:limit] + f"… ({len(text)} characters)"


def _judge(item, digest: str, keys, rule, image_identity):
    """(SignatureCheck, "") when accepted, else (None, why not)."""
    from pydocklite.trust import identity
    encoded = item.annotations.get(SIGNATURE_ANNOTATION)
    if not encoded:
        return None, f"its {SIGNATURE_ANNOTATION} annotation is missing"
    try:
        signature = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return None, f"its {SIGNATURE_ANNOTATION} annotation is not base64"
    try:
        payload = item.payload()
    except Exception as e:  # noqa: BLE001 - registry errors: a hostile or broken registry
        if type(e).__module__.split(".")[0] != "registry":
            raise
        return None, f"its payload cannot be read: {e}"
    key = next((k for k in keys if k.verify(payload, signature)), None)
    if key is None:
        names = ", ".join(f"{k.source} ({k.kind})" for k in keys)
        return None, f"it was not made by the policy's key ({names}): wrong key or altered"
    try:
        claim = parse_payload(payload)
    except PayloadError as e:
        return None, f"its payload is malformed: {e}"
    if claim.manifest_digest != digest:
        return None, (f"it is for manifest {claim.manifest_digest}, not {digest}: a signature "
                      "of another image")
    if not identity.matches(rule, image_identity, claim.docker_reference):
        return None, (f"it claims identity {_clip(claim.docker_reference, 200)!r}, which "
                      f"signedIdentity {rule.type} does not accept for "
                      f"{image_identity or 'this image'}")
    return SignatureCheck(digest, claim.docker_reference, key.fingerprint, key.kind), ""


def start_preload():
    """A thread importing what signature checks need (`cryptography`'s ECDSA part, ~17 ms
    of CPU) while the caller talks to the registry; join it before leaving."""
    import threading
    thread = threading.Thread(target=_preload, name="trust-preload", daemon=True)
    thread.start()
    return thread


def _preload() -> None:
    try:
        from pydocklite.trust import keys
        keys.preload()
    except Exception:  # noqa: BLE001 - the check imports again and reports what fails
        pass


def check_registry_image(policy, client, ref, resolved) -> Verdict:
    """The policy's verdict on an image about to be pulled: `resolved` is the registry's
    ResolvedImage (manifests and config in memory, nothing stored yet)."""
    from pydocklite.trust.policy import docker_identity
    selection = policy.for_docker(ref)
    candidates = tuple(d for d in (resolved.index_digest, resolved.manifest_digest) if d)

    def fetch(digest):
        from registry.attachments import fetch_attachments
        found = fetch_attachments(client, ref, digest)
        return found.items if found is not None else None
    return check(selection, docker_identity(ref), candidates, fetch)


def check_archive(policy, transport: str, path: str) -> Verdict:
    """The verdict on images loaded from an archive (docker-archive, oci-archive) or a
    layout directory (oci, dir): these carry no signatures."""
    selection = policy.for_path(transport, path)
    return check(selection, None, (), lambda digest: None,
                 what=f"from {transport}:{path}" if path else f"from {transport} on stdin")
