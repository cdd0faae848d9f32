"""What a policy check concluded about an image, kept in its record and shown by `inspect`.

    Verdict(policy="/home/u/.config/containers/policy.json",
            entry='transports.docker["registry.example/app"]',
            requirements=("sigstoreSigned",),
            signatures=(SignatureCheck(manifest_digest="sha256:...", identity="registry...",
                                       key="sha256:<of the public key's DER>",
                                       key_kind="ECDSA P-256"),),
            checked_at="2026-12-07T05:00:00Z")
`verified` is true when at least one signature was accepted (a sigstoreSigned requirement
held); an image accepted by insecureAcceptAnything keeps a Verdict with no signatures.
Light on purpose: image_db.py imports it when it reads a record that has one.
"""
from __future__ import annotations

from pydocklite.runtime.record import record


@record
class SignatureCheck:
    manifest_digest: str        # the manifest the accepted signature is for
    identity: str               # the docker-reference the signature claims
    key: str                    # sha256 of the verifying public key's DER SubjectPublicKeyInfo
    key_kind: str               # "ECDSA P-256", "Ed25519", "RSA 3072", ...

    def to_json(self) -> dict:
        return {"ManifestDigest": self.manifest_digest, "Identity": self.identity,
                "Key": self.key, "KeyType": self.key_kind}


@record
class Verdict:
    policy: str                 # the policy file
    entry: str                  # default | transports.<transport>["<scope>"]
    requirements: tuple         # the requirement types that all held
    signatures: tuple = ()      # SignatureCheck per sigstoreSigned requirement
    checked_at: str = ""        # RFC 3339, UTC

    @property
    def verified(self) -> bool:
        return bool(self.signatures)

    def to_json(self) -> dict:
        """The `Trust` object of `image inspect` (and of the image database)."""
        return {"Verified": self.verified, "Policy": self.policy, "PolicyEntry": self.entry,
                "Requirements": list(self.requirements),
                "Signatures": [s.to_json() for s in self.signatures],
                "CheckedAt": self.checked_at}

    @classmethod
    def from_json(cls, d: dict) -> "Verdict":
        return cls(policy=str(d.get("Policy", "")), entry=str(d.get("PolicyEntry", "")),
                   requirements=tuple(d.get("Requirements") or ()),
                   signatures=tuple(SignatureCheck(str(s.get("ManifestDigest", "")),
                                                   str(s.get("Identity", "")),
                                                   str(s.get("Key", "")),
                                                   str(s.get("KeyType", "")))
                                    for s in d.get("Signatures") or () if isinstance(s, dict)),
                   checked_at=str(d.get("CheckedAt", "")))
