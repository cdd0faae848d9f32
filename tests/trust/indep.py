"""An independent sigstore signer and verifier for the tests, written from the format (FACTS.md,
containers/image's docs) without pydocklite's code: PyNaCl (libsodium) for secretbox,
hashlib.scrypt for the KDF, `cryptography` for the signatures, `requests` for the registry.

    key = Keypair.generate("ecdsa-p256")
    key.write("/tmp/k", b"passphrase")            # /tmp/k.private (encrypted), /tmp/k.pub
    key = Keypair.read_private("/tmp/k.private", b"passphrase")
    payload = make_payload("reg/app:1", "sha256:...")
    sign_image(url, "app", "sha256:...", key, "reg/app:1")       # attach like skopeo does
    verify_image(url, "app", "sha256:...", public_pem)  -> [payload dicts that verified]
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from typing import Dict, List, Optional

import nacl.secret
import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

SIG_MEDIA = "application/vnd.dev.cosign.simplesigning.v1+json"
SIG_ANNOTATION = "dev.cosignproject.cosign/signature"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"


def _pem(kind: str, der: bytes) -> bytes:
    b64 = base64.b64encode(der).decode()
    body = "\n".join(b64[i:i + 64] for i in range(0, len(b64), 64))
    return f"-----BEGIN {kind}-----\n{body}\n-----END {kind}-----\n".encode()


def _unpem(data: bytes) -> tuple:
    lines = data.decode().strip().splitlines()
    assert lines[0].startswith("-----BEGIN ") and lines[-1].startswith("-----END ")
    return lines[0][11:-5], base64.b64decode("".join(lines[1:-1]))


def seal_key(der: bytes, passphrase: bytes, n: int = 32768, r: int = 8, p: int = 1,
             kind: str = "ENCRYPTED COSIGN PRIVATE KEY") -> bytes:
    salt = os.urandom(32)
    key = hashlib.scrypt(passphrase, salt=salt, n=n, r=r, p=p, maxmem=256 << 20, dklen=32)
    nonce = os.urandom(24)
    sealed = nacl.secret.SecretBox(key).encrypt(der, nonce).ciphertext
    doc = {"kdf": {"name": "scrypt", "params": {"N": n, "r": r, "p": p},
                   "salt": base64.b64encode(salt).decode()},
           "cipher": {"name": "nacl/secretbox", "nonce": base64.b64encode(nonce).decode()},
           "ciphertext": base64.b64encode(sealed).decode()}
    return _pem(kind, json.dumps(doc).encode())


def open_key(pem: bytes, passphrase: bytes) -> tuple:
    """(PEM type, scrypt params, PKCS#8 DER) of an encrypted key file."""
    kind, blob = _unpem(pem)
    doc = json.loads(blob)
    params = doc["kdf"]["params"]
    key = hashlib.scrypt(passphrase, salt=base64.b64decode(doc["kdf"]["salt"]),
                         n=params["N"], r=params["r"], p=params["p"], maxmem=256 << 20,
                         dklen=32)
    der = nacl.secret.SecretBox(key).decrypt(base64.b64decode(doc["ciphertext"]),
                                             base64.b64decode(doc["cipher"]["nonce"]))
    return kind, params, der


class Keypair:
    def __init__(self, private) -> None:
        self.private = private
        self.public = private.public_key()

    @classmethod
    def generate(cls, kind: str = "ecdsa-p256") -> "Keypair":
        if kind == "ecdsa-p256":
            return cls(ec.generate_private_key(ec.SECP256R1()))
        if kind == "ecdsa-p384":
            return cls(ec.generate_private_key(ec.SECP384R1()))
        if kind == "ecdsa-p521":
            return cls(ec.generate_private_key(ec.SECP521R1()))
        if kind == "ed25519":
            return cls(ed25519.Ed25519PrivateKey.generate())
        if kind.startswith("rsa"):
            return cls(rsa.generate_private_key(65537, int(kind.partition("-")[2] or 2048)))
        raise ValueError(kind)

    @classmethod
    def read_private(cls, path: str, passphrase: bytes) -> "Keypair":
        _, _, der = open_key(open(path, "rb").read(), passphrase)
        return cls(serialization.load_der_private_key(der, None))

    def pkcs8(self) -> bytes:
        return self.private.private_bytes(serialization.Encoding.DER,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption())

    def public_pem(self) -> bytes:
        return self.public.public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)

    def write(self, prefix: str, passphrase: bytes) -> None:
        with open(prefix + ".private", "wb") as f:
            f.write(seal_key(self.pkcs8(), passphrase))
        with open(prefix + ".pub", "wb") as f:
            f.write(self.public_pem())

    def sign(self, data: bytes, rsa_pss: bool = False) -> bytes:
        k = self.private
        if isinstance(k, ed25519.Ed25519PrivateKey):
            return k.sign(data)
        if isinstance(k, ec.EllipticCurvePrivateKey):
            return k.sign(data, ec.ECDSA(hashes.SHA256()))
        if rsa_pss:
            return k.sign(data, padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())
        return k.sign(data, padding.PKCS1v15(), hashes.SHA256())


def verify_signature(public_pem: bytes, data: bytes, signature: bytes) -> bool:
    key = serialization.load_pem_public_key(public_pem)
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        else:
            key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        return True
    except InvalidSignature:
        return False


def make_payload(reference: str, digest: str, **overrides) -> bytes:
    doc = {"critical": {"identity": {"docker-reference": reference},
                        "image": {"docker-manifest-digest": digest},
                        "type": "cosign container image signature"},
           "optional": {"creator": "tests/trust/indep.py", "timestamp": int(time.time())}}
    doc.update(overrides)
    return json.dumps(doc).encode()


# --- the registry side (plain HTTP, anonymous: the test registry) ------------------------

def _tag(digest: str) -> str:
    return digest.replace(":", "-", 1) + ".sig"


def put_blob(url: str, repo: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    if requests.head(f"{url}/v2/{repo}/blobs/{digest}").status_code == 200:
        return digest
    r = requests.post(f"{url}/v2/{repo}/blobs/uploads/")
    r.raise_for_status()
    loc = r.headers["Location"]
    loc = loc if loc.startswith("http") else url + loc
    sep = "&" if "?" in loc else "?"
    requests.put(f"{loc}{sep}digest={digest}", data=data,
                 headers={"Content-Type": "application/octet-stream"}).raise_for_status()
    return digest


def put_manifest(url: str, repo: str, reference: str, raw: bytes,
                 media_type: str = OCI_MANIFEST) -> str:
    r = requests.put(f"{url}/v2/{repo}/manifests/{reference}", data=raw,
                     headers={"Content-Type": media_type})
    r.raise_for_status()
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def attach(url: str, repo: str, digest: str, layers: List[Dict], config: Optional[bytes] = None,
           tag: Optional[str] = None) -> str:
    """Put an attachment manifest with these layer descriptors (blobs must exist)."""
    config = config or json.dumps({"architecture": "", "os": "", "config": {},
                                   "rootfs": {"type": "layers",
                                              "diff_ids": [d["digest"] for d in layers]}}
                                  ).encode()
    cdigest = put_blob(url, repo, config)
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": cdigest, "size": len(config)},
                "layers": layers}
    return put_manifest(url, repo, tag or _tag(digest), json.dumps(manifest).encode())


def signature_layer(url: str, repo: str, payload: bytes, signature: Optional[bytes],
                    media_type: str = SIG_MEDIA, annotation: Optional[str] = None) -> Dict:
    pdigest = put_blob(url, repo, payload)
    ann = {}
    if annotation is not None:
        ann[SIG_ANNOTATION] = annotation
    elif signature is not None:
        ann[SIG_ANNOTATION] = base64.b64encode(signature).decode()
    return {"mediaType": media_type, "digest": pdigest, "size": len(payload), "annotations": ann}


def sign_image(url: str, repo: str, digest: str, key: Keypair, reference: str,
               payload: Optional[bytes] = None, extra_layers: List[Dict] = ()) -> bytes:
    """Attach one signature (replacing the attachment); returns the payload signed."""
    payload = payload or make_payload(reference, digest)
    layer = signature_layer(url, repo, payload, key.sign(payload))
    attach(url, repo, digest, [*extra_layers, layer])
    return payload


def attachment(url: str, repo: str, digest: str) -> Optional[dict]:
    r = requests.get(f"{url}/v2/{repo}/manifests/{_tag(digest)}",
                     headers={"Accept": OCI_MANIFEST})
    if r.status_code == 404:
        return None
    r.raise_for_status()
    return r.json()


def verify_image(url: str, repo: str, digest: str, public_pem: bytes) -> List[dict]:
    """The payloads of the image's attached signatures that verify with the key and name
    this digest (what a verifier independent of pydocklite accepts)."""
    doc = attachment(url, repo, digest)
    out = []
    for layer in (doc or {}).get("layers", []):
        if layer.get("mediaType") != SIG_MEDIA:
            continue
        payload = requests.get(f"{url}/v2/{repo}/blobs/{layer['digest']}").content
        assert hashlib.sha256(payload).hexdigest() == layer["digest"].split(":")[1]
        sig = base64.b64decode(layer.get("annotations", {}).get(SIG_ANNOTATION, ""))
        if not verify_signature(public_pem, payload, sig):
            continue
        claim = json.loads(payload)
        if claim["critical"]["image"]["docker-manifest-digest"] == digest and \
                claim["critical"]["type"] == "cosign container image signature":
            out.append(claim)
    return out


def manifest_digest(url: str, repo: str, reference: str, accept: str = "") -> str:
    accept = accept or ", ".join([
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json", OCI_MANIFEST,
        "application/vnd.docker.distribution.manifest.v2+json"])
    r = requests.get(f"{url}/v2/{repo}/manifests/{reference}", headers={"Accept": accept})
    r.raise_for_status()
    return "sha256:" + hashlib.sha256(r.content).hexdigest()
