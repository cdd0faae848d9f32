"""Exceptions raised by the snapshotter package.

    SnapshotterError
     ├── StoreError              the store could not do what was asked (I/O, full disk, bad digest)
     │    ├── StoreFullError     ENOSPC/EDQUOT, or less free space than asked to keep
     │    ├── LayerTooLargeError a layer expanded past its limit (a decompression bomb?)
     │    ├── LayerNotFoundError no layer with that diff_id in the store
     │    └── BlobNotFoundError  no blob with that digest in the content store
     ├── LayerCorruptError       a layer stream, tar, blob or index is damaged or truncated
     ├── UnsafeLayerEntryError   a tar entry would escape the layer (../, absolute path, bad hardlink)
     ├── DigestMismatchError     content does not hash to the digest it was announced with
     ├── SnapshotNotFoundError
     ├── SnapshotExistsError
     └── MountError

Library code raises these; only the CLI prints them.  Messages name the object and the fix.
"""
from __future__ import annotations


class SnapshotterError(Exception):
    """Base of every error raised by snapshotter/."""


class StoreError(SnapshotterError):
    """The content or layer store failed (I/O error, invalid digest, unknown media type...)."""


class StoreFullError(StoreError):
    """The disk (or quota) is full; nothing was committed and temporary files were removed."""


class LayerTooLargeError(StoreError):
    """A layer decompressed to more than it was allowed; nothing was committed."""


class LayerNotFoundError(StoreError):
    """No layer with that diff_id in the store."""


class BlobNotFoundError(StoreError):
    """No blob with that digest in the content store."""


class LayerCorruptError(SnapshotterError):
    """A layer's compressed stream, tar stream, blob or index is damaged or truncated."""


class UnsafeLayerEntryError(SnapshotterError):
    """A tar entry would reach outside the layer; the layer is refused at index time."""

    def __init__(self, layer: str, entry: str, reason: str = "it would escape the layer") -> None:
        self.layer = layer
        self.entry = entry
        self.reason = reason
        super().__init__(
            f"layer {layer}: unsafe tar entry {entry!r}: {reason}; "
            f"the layer was refused (nothing stored) — use an image built by a trusted tool"
        )


class DigestMismatchError(SnapshotterError):
    """Content hashed to another digest than the one it was announced with."""

    def __init__(self, what: str, expected: str, actual: str) -> None:
        self.what = what
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"{what}: digest mismatch: expected {expected}, got {actual}; "
            f"nothing was stored — the source is corrupt or the manifest/config is wrong"
        )


class SnapshotNotFoundError(SnapshotterError):
    """No snapshot (or committed layer) with that key/name."""


class SnapshotExistsError(SnapshotterError):
    """A snapshot with that key already exists."""


class MountError(SnapshotterError):
    """A mount (FUSE or kernel overlay) could not be set up or torn down."""
