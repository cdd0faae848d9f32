"""NaCl's `secretbox` (XSalsa20 + Poly1305) in pure Python, for the encrypted key format.

cosign, skopeo and Podman seal a private key with `secretbox` under a key derived by scrypt
(keyfile.py). `cryptography` offers scrypt but no XSalsa20-Poly1305, and a second crypto
library in the zipapp would not earn its place for a few hundred bytes per key, so the two
primitives are written here from their specifications (D. J. Bernstein: "Salsa20
specification", "Extending the Salsa20 nonce", "The Poly1305-AES message-authentication code";
NaCl's box construction). The tests check both directions against PyNaCl (libsodium).

    sealed = seal(key32, nonce24, plaintext)      # 16-byte tag + ciphertext, as NaCl writes
    plaintext = open_box(key32, nonce24, sealed)  # raises BoxError if the tag is wrong

Speed is no concern: a key is a few hundred bytes (~10 blocks of 64 bytes).
"""
from __future__ import annotations

import hmac
import struct

KEY_SIZE = 32
NONCE_SIZE = 24
TAG_SIZE = 16
_MASK = 0xFFFFFFFF
_SIGMA = struct.unpack("<4I", b"expand 32-byte k")
# quarter-rounds of a double round: four columns, then four rows (indices a, b, c, d)
_DOUBLE_ROUND = ((0, 4, 8, 12), (5, 9, 13, 1), (10, 14, 2, 6), (15, 3, 7, 11),
                 (0, 1, 2, 3), (5, 6, 7, 4), (10, 11, 8, 9), (15, 12, 13, 14))
_P1305 = (1 << 130) - 5
_R_CLAMP = 0x0FFFFFFC0FFFFFFC0FFFFFFC0FFFFFFF


class BoxError(ValueError):
    """The sealed box does not authenticate: wrong key (passphrase) or altered bytes."""


def _rounds(x: list) -> list:
    """The 20 Salsa20 rounds over 16 words (in place; returned for convenience)."""
    for _ in range(10):
        for a, b, c, d in _DOUBLE_ROUND:
            t = (x[a] + x[d]) & _MASK
            x[b] ^= ((t << 7) | (t >> 25)) & _MASK
            t = (x[b] + x[a]) & _MASK
            x[c] ^= ((t << 9) | (t >> 23)) & _MASK
            t = (x[c] + x[b]) & _MASK
            x[d] ^= ((t << 13) | (t >> 19)) & _MASK
            t = (x[d] + x[c]) & _MASK
            x[a] ^= ((t << 18) | (t >> 14)) & _MASK
    return x


def _state(key: bytes, middle: tuple) -> list:
    k = struct.unpack("<8I", key)
    return [_SIGMA[0], *k[:4], _SIGMA[1], *middle, _SIGMA[2], *k[4:], _SIGMA[3]]


def hsalsa20(key: bytes, nonce16: bytes) -> bytes:
    """The 32-byte subkey XSalsa20 derives from a key and the first 16 nonce bytes."""
    x = _rounds(_state(key, struct.unpack("<4I", nonce16)))
    return struct.pack("<8I", x[0], x[5], x[10], x[15], x[6], x[7], x[8], x[9])


def _salsa20_stream(key: bytes, nonce8: bytes, length: int) -> bytes:
    n = struct.unpack("<2I", nonce8)
    out = bytearray()
    counter = 0
    while len(out) < length:
        start = _state(key, (n[0], n[1], counter & _MASK, counter >> 32))
        x = _rounds(list(start))
        out += struct.pack("<16I", *((a + b) & _MASK for a, b in zip(x, start)))
        counter += 1
    return bytes(out[:length])


def xsalsa20_stream(key: bytes, nonce: bytes, length: int) -> bytes:
    _check(key, nonce)
    return _salsa20_stream(hsalsa20(key, nonce[:16]), nonce[16:], length)


def poly1305(key: bytes, message: bytes) -> bytes:
    """The 16-byte Poly1305 tag of `message` under a one-time 32-byte key."""
    r = int.from_bytes(key[:16], "little") & _R_CLAMP
    s = int.from_bytes(key[16:32], "little")
    acc = 0
    for i in range(0, len(message), 16):
        block = message[i:i + 16] + b"\x01"
        acc = (acc + int.from_bytes(block, "little")) * r % _P1305
    return ((acc + s) & ((1 << 128) - 1)).to_bytes(16, "little")


def _xor(data: bytes, stream: bytes) -> bytes:
    n = len(data)
    return (int.from_bytes(data, "little") ^ int.from_bytes(stream[:n], "little")
            ).to_bytes(n, "little")


def _check(key: bytes, nonce: bytes) -> None:
    if len(key) != KEY_SIZE:
        raise ValueError(f"secretbox key must be {KEY_SIZE} bytes, not {len(key)}")
    if len(nonce) != NONCE_SIZE:
        raise ValueError(f"secretbox nonce must be {NONCE_SIZE} bytes, not {len(nonce)}")


def seal(key: bytes, nonce: bytes, plaintext: bytes) -> bytes:
    """NaCl crypto_secretbox: Poly1305 tag (16 bytes) followed by the ciphertext."""
    stream = xsalsa20_stream(key, nonce, 32 + len(plaintext))
    ciphertext = _xor(plaintext, stream[32:])
    return poly1305(stream[:32], ciphertext) + ciphertext


def open_box(key: bytes, nonce: bytes, sealed: bytes) -> bytes:
    """Check the tag and decrypt; BoxError when it does not authenticate."""
    if len(sealed) < TAG_SIZE:
        raise BoxError("sealed data is shorter than its authentication tag")
    tag, ciphertext = sealed[:TAG_SIZE], sealed[TAG_SIZE:]
    stream = xsalsa20_stream(key, nonce, 32 + len(ciphertext))
    if not hmac.compare_digest(poly1305(stream[:32], ciphertext), tag):
        raise BoxError("authentication failed")
    return _xor(ciphertext, stream[32:])
