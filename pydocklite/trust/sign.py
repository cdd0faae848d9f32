"""Signing images and making keys: what `push --sign-by-sigstore-private-key`, `image sign`
and `key generate` do (the CLI only parses and prints).

    key = load_signing_key("cosign.private", passphrase_file="pw.txt")  # before any upload
    sign_manifest(client, ref, "sha256:<manifest digest>", key)         # -> attachment digest
    generate_key_files("mykey", passphrase=b"...", kind="ecdsa-p256")   # mykey.private/.pub

A signature says: key K vouches that manifest D is image R (the reference pushed, fully
expanded, with its tag); it is stored as skopeo and Podman store it (registry/attachments.py).
"""
from __future__ import annotations

import base64
import os
import sys

from pydocklite.trust.errors import KeyFileError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Optional


def read_passphrase_file(path: str) -> bytes:
    """The first line of the file, without its newline (as containers/image reads it)."""
    try:
        with open(path, "rb") as f:
            line = f.readline(1 << 16)
    except OSError as e:
        raise KeyFileError(f"passphrase file {path}: {e.strerror}") from None
    return line[:-1] if line.endswith(b"\n") else line


def passphrase_source(passphrase_file: "Optional[str]", key_path: str) -> "Callable[[], bytes]":
    """A function giving the passphrase when the key turns out to be encrypted: from the
    file, else asked on the terminal; with neither, a KeyFileError naming the flag."""
    def get() -> bytes:
        if passphrase_file:
            return read_passphrase_file(passphrase_file)
        if sys.stdin is not None and sys.stdin.isatty():
            import getpass
            return getpass.getpass(f"Passphrase for {key_path}: ").encode()
        raise KeyFileError(f"{key_path} is encrypted: give its passphrase with "
                           "--sign-passphrase-file FILE (or run on a terminal to be asked)")
    return get


def load_signing_key(path: str, passphrase_file: "Optional[str]" = None):
    """The private key (keys.PrivateKey) at `path`, decrypted: every problem (unreadable,
    truncated, not a private key, unsupported type, wrong passphrase) raises KeyFileError."""
    from pydocklite.trust.keys import load_private_key
    try:
        with open(path, "rb") as f:
            data = f.read(1 << 20)
    except OSError as e:
        raise KeyFileError(f"signing key {path}: {e.strerror}: give the .private file that "
                           "'pydocklite key generate' wrote") from None
    return load_private_key(data, path, passphrase_source(passphrase_file, path))


def make_signature(key, docker_reference: str, manifest_digest: str) -> tuple:
    """(media type, payload bytes, annotations) of one signature, for put_signatures."""
    from pydocklite.trust.payload import MEDIA_TYPE, SIGNATURE_ANNOTATION, make_payload
    payload = make_payload(docker_reference, manifest_digest)
    signature = base64.b64encode(key.sign(payload)).decode()
    return MEDIA_TYPE, payload, {SIGNATURE_ANNOTATION: signature}


def sign_manifest(client, ref, manifest_digest: str, key, identity: "Optional[str]" = None
                  ) -> str:
    """Sign `manifest_digest` as image `identity` (default: `ref` as given, fully expanded)
    and attach the signature in `ref`'s repository, after any already there."""
    from registry.attachments import put_signatures
    claim = identity or str(ref._replace(digest=None) if ref.tag else ref)
    return put_signatures(client, ref, manifest_digest,
                          [make_signature(key, claim, manifest_digest)])


def generate_key_files(prefix: str, passphrase: bytes, kind: str = "ecdsa-p256") -> tuple:
    """Write PREFIX.private (encrypted, 0600) and PREFIX.pub; refuses to overwrite either.
    Returns the two paths."""
    from pydocklite.trust.keys import encrypted_pem, generate
    private_path, public_path = f"{prefix}.private", f"{prefix}.pub"
    for p in (private_path, public_path):
        if os.path.lexists(p):
            raise KeyFileError(f"refusing to overwrite {p}: remove it or pick another "
                               "--output-prefix")
    key = generate(kind)
    private_pem, public_pem = encrypted_pem(key, passphrase), key.public.pem()
    written = []
    try:
        for path, data, mode in ((private_path, private_pem, 0o600),
                                 (public_path, public_pem, 0o644)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
            written.append(path)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
    except OSError as e:
        for path in written:
            try:
                os.unlink(path)
            except OSError:
                pass
        raise KeyFileError(f"cannot write {e.filename or prefix}: {e.strerror}") from None
    return private_path, public_path
