"""Content store: compressed blobs, manifests and configs by digest under blobs/sha256/.

A blob is streamed into ingest/, fsynced, checked against its digest (and size), then renamed
into place: nothing half-written is ever visible under blobs/.
"""
from __future__ import annotations

import fcntl
import os
import re
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import List, Optional

from snapshotter.errors import BlobNotFoundError, DigestMismatchError, StoreError
from snapshotter.layout import StoreLayout, digest_hex, sha256_hex
from snapshotter.ondisk import CommitOnExit, fsync_dir, io_error


class BlobWriter(CommitOnExit):
    """Streams one blob into ingest/, verifies its digest (and size), publishes atomically.
    Context manager: commit on a clean exit, abort on an exception."""

    def __init__(self, layout: StoreLayout, digest: str, size: Optional[int] = None) -> None:
        self.digest, self.expected_size = digest, size
        self._dest = layout.blob_path(digest)
        self._ingest = layout.ensure().ingest_dir
        import tempfile
        fd, tmp = tempfile.mkstemp(prefix=f"blob-{digest_hex(digest)[:16]}-", dir=self._ingest)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._tmp = Path(tmp)
        self._file = os.fdopen(fd, "wb")
        import hashlib
        self._hash = hashlib.sha256()
        self.size = 0
        self._state = "open"

    def write(self, data) -> None:
        if self._state != "open":
            raise StoreError(f"blob {self.digest}: write after {self._state}")
        try:
            self._file.write(data)
        except OSError as e:
            self.abort()
            raise io_error(e, f"writing blob {self.digest}", self._ingest) from e
        self._hash.update(data)
        self.size += len(data)

    def commit(self) -> Path:
        if self._state == "committed":
            return self._dest
        if self._state != "open":
            raise StoreError(f"blob {self.digest}: commit after {self._state}")
        try:
            actual = "sha256:" + self._hash.hexdigest()
            if actual != self.digest:
                raise DigestMismatchError(f"blob {self.digest}", self.digest, actual)
            if self.expected_size is not None and self.size != self.expected_size:
                raise DigestMismatchError(f"blob {self.digest} size", str(self.expected_size),
                                          str(self.size))
            self._file.flush()
            os.fsync(self._file.fileno())
            os.chmod(self._tmp, 0o644)
            if not self._dest.exists():
                os.replace(self._tmp, self._dest)
                fsync_dir(self._dest.parent)
        except OSError as e:
            self.abort()
            raise io_error(e, f"committing blob {self.digest}", self._ingest) from e
        except BaseException:
            self.abort()
            raise
        self._close()
        self._state = "committed"
        return self._dest

    def _close(self) -> None:
        try:
            os.unlink(self._tmp)
        except OSError:
            pass
        try:
            self._file.close()  # releases the flock last
        except OSError:
            pass

    def abort(self) -> None:
        if self._state == "open":
            self._state = "aborted"
            self._close()


class ContentStore:
    """Compressed blobs, manifests and configs by digest under blobs/sha256/."""

    def __init__(self, layout: StoreLayout) -> None:
        self.layout = layout

    def has(self, digest: str) -> bool:
        return self.layout.blob_path(digest).is_file()

    def path(self, digest: str) -> Path:
        return self.layout.blob_path(digest)

    def read(self, digest: str) -> bytes:
        """The blob's bytes, verified against its digest."""
        p = self.layout.blob_path(digest)
        try:
            data = p.read_bytes()
        except FileNotFoundError:
            raise BlobNotFoundError(f"blob {digest} is not in the store {self.layout.root}") from None
        except OSError as e:
            raise io_error(e, f"reading blob {digest}", p) from e
        actual = "sha256:" + sha256_hex(data)
        if actual != digest:
            raise DigestMismatchError(f"stored blob {p} (corrupt store: remove it and pull again)",
                                      digest, actual)
        return data

    def write(self, digest: str, data: bytes) -> Path:
        import hashlib
        actual = "sha256:" + hashlib.sha256(data).hexdigest()
        if actual != digest:
            raise DigestMismatchError(f"blob {digest}", digest, actual)
        if self.has(digest):
            return self.path(digest)
        with self.writer(digest) as w:
            w.write(data)
        return self.path(digest)

    def writer(self, digest: str, size: Optional[int] = None) -> BlobWriter:
        return BlobWriter(self.layout, digest, size)

    def remove(self, digest: str) -> None:
        try:
            os.unlink(self.layout.blob_path(digest))
        except FileNotFoundError:
            pass

    def list(self) -> List[str]:
        try:
            names = os.listdir(self.layout.blobs_dir)
        except FileNotFoundError:
            return []
        return sorted("sha256:" + n for n in names if re.fullmatch(r"[0-9a-f]{64}", n))

