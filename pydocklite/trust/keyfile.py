"""The encrypted private-key format of cosign, skopeo and Podman: PEM around scrypt+secretbox.

    -----BEGIN ENCRYPTED COSIGN PRIVATE KEY-----        (or ENCRYPTED SIGSTORE PRIVATE KEY)
    base64 of {"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":B64},
               "cipher":{"name":"nacl/secretbox","nonce":B64},"ciphertext":B64}
    -----END ENCRYPTED COSIGN PRIVATE KEY-----

scrypt(passphrase, salt, N, r, p) gives the 32-byte secretbox key sealing the PKCS#8 DER of
the private key (the field order and compact JSON are what Go's encoding/json writes). We
write exactly what skopeo 1.9.3 and Podman 4.3 accept (the COSIGN block type, N=32768, r=8,
p=1, 32-byte salt, 24-byte nonce) and read any sane scrypt parameters.

Also here: a small PEM reader that says what is wrong with a file (truncated, no block,
several blocks) before `cryptography` sees it.
"""
from __future__ import annotations

import base64
import binascii
import json
import os

from pydocklite.trust.errors import KeyFileError

COSIGN_PEM = "ENCRYPTED COSIGN PRIVATE KEY"
SIGSTORE_PEM = "ENCRYPTED SIGSTORE PRIVATE KEY"
ENCRYPTED_TYPES = (COSIGN_PEM, SIGSTORE_PEM)
SCRYPT_N, SCRYPT_R, SCRYPT_P = 32768, 8, 1
SALT_SIZE = 32
MAX_SCRYPT_MEMORY = 1 << 30     # 128 * N * r bytes; refuse key files asking for more


def pem_blocks(data: bytes, source: str) -> list:
    """[(type, der bytes)] of every PEM block in `data`; KeyFileError names what is wrong."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise KeyFileError(f"{source} is not a PEM file (it holds binary data): give a PEM "
                           "key (-----BEGIN ...-----)") from None
    blocks = []
    lines = iter(text.splitlines())
    for line in lines:
        line = line.strip()
        if not (line.startswith("-----BEGIN ") and line.endswith("-----")):
            continue
        kind = line[len("-----BEGIN "):-5]
        body = []
        for inner in lines:
            inner = inner.strip()
            if inner == f"-----END {kind}-----":
                break
            if inner.startswith("-----"):
                raise KeyFileError(f"{source}: PEM block {kind!r} ends with {inner!r}: the "
                                   "file is damaged")
            if ":" not in inner:          # RFC 1421 headers (Proc-Type...) are skipped
                body.append(inner)
        else:
            raise KeyFileError(f"{source}: PEM block {kind!r} has no END line: the file is "
                               "truncated")
        try:
            der = base64.b64decode("".join(body), validate=True)
        except (binascii.Error, ValueError):
            raise KeyFileError(f"{source}: PEM block {kind!r} is not valid base64: the file "
                               "is damaged or truncated") from None
        if not der:
            raise KeyFileError(f"{source}: PEM block {kind!r} is empty")
        blocks.append((kind, der))
    if not blocks:
        raise KeyFileError(f"{source} holds no PEM block (-----BEGIN ...-----): give a PEM "
                           "key file")
    return blocks


def one_pem_block(data: bytes, source: str) -> tuple:
    blocks = pem_blocks(data, source)
    if len(blocks) > 1:
        kinds = ", ".join(k for k, _ in blocks)
        raise KeyFileError(f"{source} holds {len(blocks)} PEM blocks ({kinds}): give a file "
                           "with one key")
    return blocks[0]


def to_pem(kind: str, der: bytes) -> bytes:
    b64 = base64.b64encode(der).decode()
    lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
    return (f"-----BEGIN {kind}-----\n" + "\n".join(lines) + f"\n-----END {kind}-----\n"
            ).encode()


def _scrypt(passphrase: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase)


def seal_pkcs8(der: bytes, passphrase: bytes) -> bytes:
    """The PEM of an `ENCRYPTED COSIGN PRIVATE KEY` holding the PKCS#8 `der`."""
    from pydocklite.trust.secretbox import seal
    salt, nonce = os.urandom(SALT_SIZE), os.urandom(24)
    key = _scrypt(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    doc = {"kdf": {"name": "scrypt", "params": {"N": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P},
                   "salt": _b64(salt)},
           "cipher": {"name": "nacl/secretbox", "nonce": _b64(nonce)},
           "ciphertext": _b64(seal(key, nonce, der))}
    return to_pem(COSIGN_PEM, json.dumps(doc, separators=(",", ":")).encode())


def open_pkcs8(blob: bytes, passphrase: bytes, source: str) -> bytes:
    """The PKCS#8 DER sealed in an encrypted key's JSON; KeyFileError when the passphrase is
    wrong or the document is not the format."""
    from pydocklite.trust.secretbox import BoxError, open_box
    try:
        doc = json.loads(blob)
        kdf, cipher = doc["kdf"], doc["cipher"]
        params = kdf["params"]
        name, cipher_name = kdf["name"], cipher["name"]
        n, r, p = params["N"], params["r"], params["p"]
        salt, nonce = _unb64(kdf["salt"]), _unb64(cipher["nonce"])
        sealed = _unb64(doc["ciphertext"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise KeyFileError(f"{source}: the encrypted key is not the cosign/sigstore JSON "
                           "format (kdf, cipher, ciphertext): the file is damaged") from None
    if name != "scrypt" or cipher_name != "nacl/secretbox":
        raise KeyFileError(f"{source}: unsupported key encryption {name}/{cipher_name}: only "
                           "scrypt with nacl/secretbox is known")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (n, r, p)) or \
            n < 2 or n & (n - 1) or not 1 <= r <= 64 or not 1 <= p <= 64 or \
            128 * n * r > MAX_SCRYPT_MEMORY or len(nonce) != 24:
        raise KeyFileError(f"{source}: the encrypted key has unusable scrypt parameters "
                           f"N={n!r} r={r!r} p={p!r} or nonce: the file is damaged")
    key = _scrypt(passphrase, salt, n, r, p)
    try:
        return open_box(key, nonce, sealed)
    except BoxError:
        raise KeyFileError(f"{source}: wrong passphrase (or the key file was altered): give "
                           "the passphrase the key was generated with") from None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(value) -> bytes:
    if not isinstance(value, str):
        raise TypeError("not a base64 string")
    return base64.b64decode(value, validate=True)
