"""Signing and verification keys: load, generate, sign, verify (with `cryptography`).

This module imports `cryptography` at its top: import it only when a policy needs signatures
or when signing (policy.py and the image service never import it otherwise).

Key types and algorithms (what containers/image and cosign use):
    ECDSA P-256 (default), P-384   ECDSA over SHA-256, ASN.1 DER signature; P-384 signatures
                                   over SHA-384 are accepted too (newer cosign makes them)
    Ed25519                        pure Ed25519 over the payload
    RSA >= 2048 bits               signs PKCS#1 v1.5 over SHA-256; verifies that or RSA-PSS
                                   (MGF1-SHA-256, any salt length)
Public keys: PEM `PUBLIC KEY` (SubjectPublicKeyInfo) or `RSA PUBLIC KEY`. Private keys: the
encrypted cosign/sigstore PEM (keyfile.py), plain or password-protected PKCS#8, and the
traditional `EC/RSA PRIVATE KEY` blocks.
"""
from __future__ import annotations

import hashlib

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from pydocklite.trust import keyfile
from pydocklite.trust.errors import KeyFileError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

GENERATE_TYPES = ("ecdsa-p256", "ecdsa-p384", "ed25519", "rsa-3072", "rsa-4096")
MIN_RSA_BITS = 2048
_CURVES = {"secp256r1": "ECDSA P-256", "secp384r1": "ECDSA P-384"}
_PRIVATE_TYPES = ("PRIVATE KEY", "ENCRYPTED PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY")


def describe(key) -> str:
    """'ECDSA P-256', 'Ed25519', 'RSA 3072'; KeyFileError for a type we can't use."""
    if isinstance(key, (ec.EllipticCurvePublicKey, ec.EllipticCurvePrivateKey)):
        name = _CURVES.get(key.curve.name)
        if name is None:
            raise KeyFileError(f"ECDSA curve {key.curve.name} is not supported: use P-256 or "
                               "P-384")
        return name
    if isinstance(key, (ed25519.Ed25519PublicKey, ed25519.Ed25519PrivateKey)):
        return "Ed25519"
    if isinstance(key, (rsa.RSAPublicKey, rsa.RSAPrivateKey)):
        if key.key_size < MIN_RSA_BITS:
            raise KeyFileError(f"RSA key of {key.key_size} bits is too weak: use at least "
                               f"{MIN_RSA_BITS}")
        return f"RSA {key.key_size}"
    raise KeyFileError(f"{type(key).__name__.replace('_', '')} keys are not supported: use "
                       "ECDSA P-256/P-384, Ed25519 or RSA")


class PublicKey:
    """A verification key: `kind`, `fingerprint` (sha256 of its DER SubjectPublicKeyInfo),
    `source` (where it came from, for messages) and `verify(payload, signature)`."""

    __slots__ = ("key", "kind", "fingerprint", "source")

    def __init__(self, key, source: str) -> None:
        self.key, self.source = key, source
        self.kind = describe(key)
        der = key.public_bytes(serialization.Encoding.DER,
                               serialization.PublicFormat.SubjectPublicKeyInfo)
        self.fingerprint = "sha256:" + hashlib.sha256(der).hexdigest()

    def pem(self) -> bytes:
        return self.key.public_bytes(serialization.Encoding.PEM,
                                     serialization.PublicFormat.SubjectPublicKeyInfo)

    def verify(self, payload: bytes, signature: bytes) -> bool:
        key = self.key
        try:
            if isinstance(key, ed25519.Ed25519PublicKey):
                key.verify(signature, payload)
                return True
            if isinstance(key, ec.EllipticCurvePublicKey):
                algorithms = [hashes.SHA256()]
                if key.curve.name == "secp384r1":
                    algorithms.append(hashes.SHA384())
                return any(_ok(key.verify, signature, payload, ec.ECDSA(h)) for h in algorithms)
            pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()),
                              salt_length=padding.PSS.AUTO)
            return (_ok(key.verify, signature, payload, padding.PKCS1v15(), hashes.SHA256())
                    or _ok(key.verify, signature, payload, pss, hashes.SHA256()))
        except (InvalidSignature, ValueError, TypeError):
            return False


def _ok(fn, *args) -> bool:
    try:
        fn(*args)
        return True
    except (InvalidSignature, ValueError, TypeError):
        return False


class PrivateKey:
    """A signing key: `kind`, `public` (PublicKey) and `sign(payload) -> signature bytes`."""

    __slots__ = ("key", "kind", "public", "source")

    def __init__(self, key, source: str) -> None:
        self.key, self.source = key, source
        self.kind = describe(key)
        self.public = PublicKey(key.public_key(), source)

    def sign(self, payload: bytes) -> bytes:
        key = self.key
        if isinstance(key, ed25519.Ed25519PrivateKey):
            return key.sign(payload)
        if isinstance(key, ec.EllipticCurvePrivateKey):
            return key.sign(payload, ec.ECDSA(hashes.SHA256()))
        return key.sign(payload, padding.PKCS1v15(), hashes.SHA256())

    def pkcs8(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.DER,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())


def load_public_key(data: bytes, source: str) -> PublicKey:
    kind, der = keyfile.one_pem_block(data, source)
    if kind in _PRIVATE_TYPES or kind in keyfile.ENCRYPTED_TYPES:
        raise KeyFileError(f"{source} holds a private key ({kind}), not a public key: give "
                           "the public key (the .pub file)")
    import warnings
    try:
        if kind == "PUBLIC KEY":
            with warnings.catch_warnings():       # DSA's deprecation: refused just below
                warnings.simplefilter("ignore")
                key = serialization.load_der_public_key(der)
        elif kind == "RSA PUBLIC KEY":
            key = serialization.load_pem_public_key(keyfile.to_pem(kind, der))
        else:
            raise KeyFileError(f"{source} holds a {kind!r} PEM block, not a public key: give a "
                               "PEM 'PUBLIC KEY'")
    except (ValueError, UnsupportedAlgorithm) as e:
        raise KeyFileError(f"{source}: the public key cannot be read ({e}): the file is "
                           "damaged or not a key") from None
    try:
        return PublicKey(key, source)
    except KeyFileError as e:
        raise KeyFileError(f"{source}: {e}") from None


def load_private_key(data: bytes, source: str, passphrase: "Callable[[], bytes]") -> PrivateKey:
    """`passphrase()` is called only when the key is encrypted."""
    kind, der = keyfile.one_pem_block(data, source)
    try:
        if kind in keyfile.ENCRYPTED_TYPES:
            der = keyfile.open_pkcs8(der, passphrase(), source)
            key = serialization.load_der_private_key(der, None)
        elif kind == "ENCRYPTED PRIVATE KEY":
            key = serialization.load_der_private_key(der, passphrase())
        elif kind in _PRIVATE_TYPES:
            key = serialization.load_pem_private_key(keyfile.to_pem(kind, der), None)
        elif kind in ("PUBLIC KEY", "RSA PUBLIC KEY"):
            raise KeyFileError(f"{source} holds a public key, not a private key: give the "
                               "private key (the .private file)")
        else:
            raise KeyFileError(f"{source} holds a {kind!r} PEM block, not a private key")
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        if kind == "ENCRYPTED PRIVATE KEY" and "password" in str(e).lower():
            raise KeyFileError(f"{source}: wrong passphrase: give the key's passphrase"
                               ) from None
        raise KeyFileError(f"{source}: the private key cannot be read ({e}): the file is "
                           "damaged or not a key") from None
    try:
        return PrivateKey(key, source)
    except KeyFileError as e:
        raise KeyFileError(f"{source}: {e}") from None


def generate(kind: str = "ecdsa-p256") -> PrivateKey:
    if kind == "ecdsa-p256":
        key = ec.generate_private_key(ec.SECP256R1())
    elif kind == "ecdsa-p384":
        key = ec.generate_private_key(ec.SECP384R1())
    elif kind == "ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
    elif kind.startswith("rsa-") and kind in GENERATE_TYPES:
        key = rsa.generate_private_key(public_exponent=65537, key_size=int(kind[4:]))
    else:
        raise KeyFileError(f"unknown key type {kind!r}: use one of {', '.join(GENERATE_TYPES)}")
    return PrivateKey(key, "generated key")


def encrypted_pem(private: PrivateKey, passphrase: bytes) -> bytes:
    """What skopeo's generate-sigstore-key writes to P.private."""
    return keyfile.seal_pkcs8(private.pkcs8(), passphrase)
