"""Signing and verification keys: load, generate, sign, verify (with `cryptography`).

`cryptography` is imported on first use, and only the parts a key type needs: this module
is imported only when a policy needs signatures or when signing.

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

import functools
import hashlib
import importlib

from pydocklite.trust import keyfile
from pydocklite.trust.errors import KeyFileError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

GENERATE_TYPES = ("ecdsa-p256", "ecdsa-p384", "ed25519", "rsa-3072", "rsa-4096")
MIN_RSA_BITS = 2048
_CURVES = {"secp256r1": "ECDSA P-256", "secp384r1": "ECDSA P-384"}
_PRIVATE_TYPES = ("PRIVATE KEY", "ENCRYPTED PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY")


def _mod(name: str):
    """A module of cryptography.hazmat.primitives, imported on first use: verification with
    the default ECDSA key needs only `asymmetric.ec` and `hashes` (~17 ms of CPU on this
    host's Python 3.11 once the pull's own imports are done, against ~43 ms for
    everything this module can use: the `serialization` package alone, with its SSH key
    code, is ~20 ms)."""
    return importlib.import_module("cryptography.hazmat.primitives." + name)


def _load_der_public_key(der: bytes):
    try:      # what serialization.load_der_public_key is since cryptography 42, without
        from cryptography.hazmat.bindings._rust import openssl   # importing that package
        loader = openssl.keys.load_der_public_key
    except (ImportError, AttributeError):
        loader = _mod("serialization").load_der_public_key
    return loader(der)


def _spki_der(key) -> bytes:
    try:
        fmt = _mod("_serialization")
    except ImportError:
        fmt = _mod("serialization")
    return key.public_bytes(fmt.Encoding.DER, fmt.PublicFormat.SubjectPublicKeyInfo)


def preload() -> None:
    """Import what verifying with an ECDSA key needs (ImageService.pull runs this in a
    thread while it talks to the registry)."""
    _verifying_ecdsa(), _mod("hashes")
    try:
        from cryptography.hazmat.bindings._rust import openssl
        openssl.keys.load_der_public_key
    except (ImportError, AttributeError):
        pass


def describe(key) -> str:
    """'ECDSA P-256', 'Ed25519', 'RSA 3072'; KeyFileError for a type we can't use."""
    ec = _mod("asymmetric.ec")
    if isinstance(key, (ec.EllipticCurvePublicKey, ec.EllipticCurvePrivateKey)):
        name = _CURVES.get(key.curve.name)
        if name is None:
            raise KeyFileError(f"ECDSA curve {key.curve.name} is not supported: use P-256 or "
                               "P-384")
        return name
    ed25519 = _mod("asymmetric.ed25519")
    if isinstance(key, (ed25519.Ed25519PublicKey, ed25519.Ed25519PrivateKey)):
        return "Ed25519"
    rsa = _mod("asymmetric.rsa")
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

    def __init__(self, key, source: str, spki_der: bytes = b"") -> None:
        self.key, self.source = key, source
        self.kind = describe(key)
        self.fingerprint = "sha256:" + hashlib.sha256(spki_der or _spki_der(key)).hexdigest()

    def pem(self) -> bytes:
        return keyfile.to_pem("PUBLIC KEY", _spki_der(self.key))

    def verify(self, payload: bytes, signature: bytes) -> bool:
        from cryptography.exceptions import InvalidSignature
        key, hashes = self.key, _mod("hashes")
        try:
            if self.kind.startswith("ECDSA"):
                algorithms = [hashes.SHA256()]
                if key.curve.name == "secp384r1":
                    algorithms.append(hashes.SHA384())
                return any(_verify_ec(key, signature, payload, h) for h in algorithms)
            if self.kind == "Ed25519":
                key.verify(signature, payload)
                return True
            padding = _mod("asymmetric.padding")
            pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()),
                              salt_length=padding.PSS.AUTO)
            return (_ok(key.verify, signature, payload, padding.PKCS1v15(), hashes.SHA256())
                    or _ok(key.verify, signature, payload, pss, hashes.SHA256()))
        except (InvalidSignature, ValueError, TypeError):
            return False


@functools.lru_cache(maxsize=None)
def _verifying_ecdsa():
    """ec.ECDSA for verifying. ec.ECDSA.__init__ imports cryptography's whole OpenSSL
    backend (ciphers, paddings: 30-50 ms of CPU here, more than everything else a signed
    pull adds) only to check RFC 6979 support, which signing deterministically needs and
    verifying never does. This subclass skips that __init__ and answers the two public
    properties the verifier reads (_verify_ec falls back to ec.ECDSA if a version balks)."""
    ec = _mod("asymmetric.ec")

    class VerifyingECDSA(ec.ECDSA):
        def __init__(self, algorithm) -> None:      # no super().__init__: see above
            self._hash = algorithm

        @property
        def algorithm(self):
            return self._hash

        @property
        def deterministic_signing(self) -> bool:
            return False
    return VerifyingECDSA


def _verify_ec(key, signature: bytes, payload: bytes, hash_algorithm) -> bool:
    from cryptography.exceptions import InvalidSignature
    try:
        key.verify(signature, payload, _verifying_ecdsa()(hash_algorithm))
        return True
    except InvalidSignature:
        return False
    except Exception:  # noqa: BLE001 - a version refusing the subclass: the public way
        return _ok(key.verify, signature, payload, _mod("asymmetric.ec").ECDSA(hash_algorithm))


def _ok(fn, *args) -> bool:
    from cryptography.exceptions import InvalidSignature
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
        key, hashes = self.key, _mod("hashes")
        if self.kind.startswith("ECDSA"):
            return key.sign(payload, _mod("asymmetric.ec").ECDSA(hashes.SHA256()))
        if self.kind == "Ed25519":
            return key.sign(payload)
        return key.sign(payload, _mod("asymmetric.padding").PKCS1v15(), hashes.SHA256())

    def pkcs8(self) -> bytes:
        serialization = _mod("serialization")
        return self.key.private_bytes(serialization.Encoding.DER,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())


def load_public_key(data: bytes, source: str) -> PublicKey:
    kind, der = keyfile.one_pem_block(data, source)
    if kind in _PRIVATE_TYPES or kind in keyfile.ENCRYPTED_TYPES:
        raise KeyFileError(f"{source} holds a private key ({kind}), not a public key: give "
                           "the public key (the .pub file)")
    import warnings
    from cryptography.exceptions import UnsupportedAlgorithm
    spki = b""
    try:
        if kind == "PUBLIC KEY":
            with warnings.catch_warnings():       # DSA's deprecation: refused just below
                warnings.simplefilter("ignore")
                key = _load_der_public_key(der)
            spki = der
        elif kind == "RSA PUBLIC KEY":
            key = _mod("serialization").load_pem_public_key(keyfile.to_pem(kind, der))
        else:
            raise KeyFileError(f"{source} holds a {kind!r} PEM block, not a public key: give a "
                               "PEM 'PUBLIC KEY'")
    except (ValueError, UnsupportedAlgorithm) as e:
        raise KeyFileError(f"{source}: the public key cannot be read ({e}): the file is "
                           "damaged or not a key") from None
    try:
        return PublicKey(key, source, spki)
    except KeyFileError as e:
        raise KeyFileError(f"{source}: {e}") from None


def load_private_key(data: bytes, source: str, passphrase: "Callable[[], bytes]") -> PrivateKey:
    """`passphrase()` is called only when the key is encrypted."""
    from cryptography.exceptions import UnsupportedAlgorithm
    serialization = _mod("serialization")
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
        if kind == "ENCRYPTED PRIVATE KEY":
            # a wrong passphrase decrypts to garbage whose padding happens to check out once
            # in ~256 tries: the parser then fails, and the two can't be told apart
            raise KeyFileError(f"{source}: wrong passphrase, or the key file is damaged: give "
                               "the key's passphrase") from None
        raise KeyFileError(f"{source}: the private key cannot be read ({e}): the file is "
                           "damaged or not a key") from None
    try:
        return PrivateKey(key, source)
    except KeyFileError as e:
        raise KeyFileError(f"{source}: {e}") from None


def generate(kind: str = "ecdsa-p256") -> PrivateKey:
    ec, ed25519, rsa = _mod("asymmetric.ec"), _mod("asymmetric.ed25519"), _mod("asymmetric.rsa")
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
