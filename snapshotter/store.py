"""Layer store: uncompressed layers by diff_id, layers/sha256/<hex>/{blob,index}, each stored once.

An ingest is one pass over the compressed stream: decompress -> sha256 + TarIndexer + blob file,
all in ingest/<temp dir>.  commit() checks the diff_id, fsyncs, and renames the whole directory
into layers/ -> a layer is either complete (blob + index) or absent, even after SIGKILL.  Two
processes ingesting the same layer both succeed: the first commit renames its directory into
place under a per-digest flock, the second finds it there and drops its own copy.

ContentStore/BlobWriter (content_store.py) and FileLock/cleanup_ingest (ondisk.py) are
importable from here too.
"""
from __future__ import annotations

import fcntl
import os
import re
from collections import namedtuple
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import Callable, Dict, Iterable, List, Optional

from snapshotter.content_store import BlobWriter, ContentStore  # noqa: F401  (public here too)
from snapshotter.decompress import open_decompressor
from snapshotter.errors import (DigestMismatchError, LayerCorruptError,  # noqa: F401
                                LayerNotFoundError, LayerTooLargeError, StoreError,
                                StoreFullError)
from snapshotter.layer_index import LayerIndex
from snapshotter.layout import StoreLayout, digest_hex
from snapshotter.mmap_blob import MmapBlob
from snapshotter.ondisk import (STALE_AGE, CommitOnExit, FileLock,  # noqa: F401
                                cleanup_ingest, fsync_dir, io_error, lock_path, rmtree)
from snapshotter.tar_indexer import TarIndexer

__all__ = ["LayerStore", "LayerWriter", "LayerInfo", "ContentStore", "BlobWriter", "FileLock",
           "cleanup_ingest", "LayerNotFoundError"]


class LayerInfo(namedtuple("LayerInfo", "diff_id size entries")):
    """size: bytes of the uncompressed blob; entries: number of entries in its index."""
    __slots__ = ()


SPACE_CHECK_EVERY = 8 << 20


class LayerWriter(CommitOnExit):
    """One pass over a compressed layer: decompress -> sha256 + TarIndexer + blob file.
    commit() verifies the diff_id, fsyncs, and renames the directory into layers/.
    Context manager: commit on a clean exit (if not done yet), abort on an exception.
    `diff_id` may be None (a layer being created locally): the computed digest is used.

    Bounds for a layer from someone else (SECURITY.md, class 7), each a clean abort:
    `limit(compressed bytes fed so far)` -> the most the layer may decompress to (None: no
    limit); `min_free`: bytes the file system must keep free while it is written (checked
    every SPACE_CHECK_EVERY bytes); `hint` ends those errors (how to raise the bound)."""

    def __init__(self, store: "LayerStore", diff_id: Optional[str], media_type: Optional[str],
                 name: str, limit: "Optional[Callable[[int], Optional[int]]]" = None,
                 min_free: int = 0, hint: str = "") -> None:
        if diff_id is not None:
            digest_hex(diff_id)
        self.store, self.diff_id, self.name = store, diff_id, name or diff_id or "layer"
        self._limit_of, self._limit, self._fed = limit, None, 0
        self._min_free, self._next_check, self._hint = min_free, 0, hint
        layout = store.layout.ensure()
        cleanup_ingest(layout)
        hint = digest_hex(diff_id)[:16] if diff_id else "new"
        try:
            import tempfile
            self.dir = Path(tempfile.mkdtemp(prefix=f"layer-{hint}-", dir=layout.ingest_dir))
        except OSError as e:
            raise io_error(e, f"starting ingest of layer {self.name}", layout.ingest_dir) from e
        self._dirfd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        fcntl.flock(self._dirfd, fcntl.LOCK_EX)
        self._file = None
        self._state = "open"
        self.size = 0
        try:
            self._file = open(self.dir / "blob", "xb")
            import hashlib
            self._hash = hashlib.sha256()
            self._indexer = TarIndexer(self.name)
            self._dec = open_decompressor(media_type, self._sink, self.name)
        except OSError as e:
            self.abort()
            raise io_error(e, f"starting ingest of layer {self.name}", layout.ingest_dir) from e
        except BaseException:
            self.abort()
            raise

    def _sink(self, data: bytes) -> None:
        self.size += len(data)
        if self._limit is not None and self.size > self._limit:
            raise LayerTooLargeError(
                f"layer {self.name} expands to more than {self._limit} bytes from "
                f"{self._fed} compressed (a decompression bomb?): refused, nothing was stored"
                + (f"; {self._hint}" if self._hint else ""))
        if self._min_free and self.size >= self._next_check:
            self._next_check = self.size + SPACE_CHECK_EVERY
            st = os.fstatvfs(self._file.fileno())
            free = st.f_bavail * st.f_frsize
            if free - len(data) < self._min_free:
                raise StoreFullError(
                    f"layer {self.name}: only {free} bytes left free in "
                    f"{self.store.layout.root}, below the {self._min_free} to keep free: "
                    "stopped, nothing was stored; free disk space"
                    + (f" ({self._hint})" if self._hint else ""))
        self._hash.update(data)
        self._indexer.feed(data)
        self._file.write(data)

    def write(self, chunk) -> None:
        """Feed the next compressed bytes.  Any error aborts the ingest before it is raised."""
        if self._state != "open":
            raise StoreError(f"layer {self.name}: write after {self._state}")
        self._fed += len(chunk)
        if self._limit_of is not None:
            self._limit = self._limit_of(self._fed)
        try:
            self._dec.write(chunk)
        except OSError as e:
            self.abort()
            raise io_error(e, f"storing layer {self.name}", self.store.layout.ingest_dir) from e
        except BaseException:
            self.abort()
            raise

    def commit(self) -> LayerInfo:
        if self._state == "committed":
            return self.info
        if self._state != "open":
            raise StoreError(f"layer {self.name}: commit after {self._state}")
        layout = self.store.layout
        try:
            self._dec.close()
            index = self._indexer.finish()
            actual = "sha256:" + self._hash.hexdigest()
            if self.diff_id is None:
                self.diff_id = actual
            elif actual != self.diff_id:
                raise DigestMismatchError(f"layer {self.name} (uncompressed content)",
                                          self.diff_id, actual)
            if index.data_end() > self.size:
                raise LayerCorruptError(f"layer {self.name}: index points past the blob's end")
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            index.save(self.dir / "index")
            for f in ("blob", "index"):
                os.chmod(self.dir / f, 0o444)
            os.chmod(self.dir, 0o755)
            fsync_dir(self.dir)
            with self.store.lock(self.diff_id):
                if not self.store.has(self.diff_id):
                    dest = layout.layer_dir(self.diff_id)
                    if dest.exists():  # a directory without blob+index: not committed, replace
                        rmtree(dest)
                    os.rename(self.dir, dest)
                    fsync_dir(layout.layers_dir)
        except OSError as e:
            self.abort()
            raise io_error(e, f"committing layer {self.name}", layout.ingest_dir) from e
        except BaseException:
            self.abort()
            raise
        self.info = LayerInfo(self.diff_id, self.size, len(index))
        self._finish("committed")
        return self.info

    def _finish(self, state: str) -> None:
        self._state = state
        if self._file is not None and not self._file.closed:
            try:
                self._file.close()
            except OSError:
                pass
        if self.dir.exists() and self.dir.parent == self.store.layout.ingest_dir:
            rmtree(self.dir)
        if self._dirfd is not None:
            os.close(self._dirfd)  # releases the ingest lock, after the removal
            self._dirfd = None

    def abort(self) -> None:
        """Drop everything written so far; idempotent."""
        if self._state == "open":
            self._finish("aborted")


class LayerStore:
    """Uncompressed layers by diff_id: layers/sha256/<hex>/{blob,index}, each stored once."""

    def __init__(self, layout: StoreLayout) -> None:
        self.layout = layout
        self._indexes: Dict[str, LayerIndex] = {}

    def has(self, diff_id: str) -> bool:
        d = self.layout.layer_dir(diff_id)
        return (d / "index").is_file() and (d / "blob").is_file()

    def _require(self, diff_id: str) -> None:
        if not self.has(diff_id):
            raise LayerNotFoundError(f"layer {diff_id} is not in the store {self.layout.root}; "
                                     f"pull the image again")

    def index(self, diff_id: str) -> LayerIndex:
        """The layer's index (cached per LayerStore).  A damaged or outdated index file is
        rebuilt from the blob, which is verified against the diff_id in the same pass."""
        idx = self._indexes.get(diff_id)
        if idx is None:
            self._require(diff_id)
            try:
                idx = LayerIndex.load(self.layout.layer_index(diff_id))
            except LayerCorruptError:
                idx = self.reindex(diff_id)
            self._indexes[diff_id] = idx
        return idx

    def blob_path(self, diff_id: str) -> Path:
        return self.layout.layer_blob(diff_id)

    def size(self, diff_id: str) -> int:
        self._require(diff_id)
        return self.layout.layer_blob(diff_id).stat().st_size

    def open_blob(self, diff_id: str) -> MmapBlob:
        self._require(diff_id)
        return MmapBlob(self.layout.layer_blob(diff_id), name=f"layer {diff_id}")

    def ingest(self, diff_id: Optional[str], media_type: Optional[str],
               name: str = "", **bounds) -> LayerWriter:
        """A LayerWriter; `bounds`: its limit, min_free and hint."""
        return LayerWriter(self, diff_id, media_type, name or (diff_id or "new layer"), **bounds)

    def ingest_stream(self, diff_id: Optional[str], media_type: Optional[str],
                      chunks: Iterable[bytes], name: str = "", **bounds) -> LayerInfo:
        """Ingest from an iterable of compressed chunks (e.g. RegistryClient.stream_blob)."""
        with self.ingest(diff_id, media_type, name, **bounds) as w:
            for c in chunks:
                w.write(c)
            return w.commit()

    def ingest_file(self, diff_id: Optional[str], media_type: Optional[str], path: Path,
                    name: str = "", **bounds) -> LayerInfo:
        def chunks():
            with open(path, "rb") as f:
                while True:
                    b = f.read(1 << 20)
                    if not b:
                        return
                    yield b
        return self.ingest_stream(diff_id, media_type, chunks(), name or str(path), **bounds)

    def remove(self, diff_id: str) -> None:
        """Remove a layer (atomic: it disappears by one rename, then is deleted)."""
        with self.lock(diff_id):
            self._indexes.pop(diff_id, None)
            d = self.layout.layer_dir(diff_id)
            if not d.exists():
                raise LayerNotFoundError(f"layer {diff_id} is not in the store {self.layout.root}")
            gone = self.layout.ingest_dir / f"removing-{digest_hex(diff_id)[:16]}-{os.urandom(6).hex()}"
            try:
                os.rename(d, gone)
            except OSError as e:
                raise io_error(e, f"removing layer {diff_id}", d) from e
        rmtree(gone)

    def list(self) -> List[str]:
        try:
            names = os.listdir(self.layout.layers_dir)
        except FileNotFoundError:
            return []
        out = ["sha256:" + n for n in names if re.fullmatch(r"[0-9a-f]{64}", n)]
        return sorted(d for d in out if self.has(d))

    def lock(self, name: str, shared: bool = False, timeout: Optional[float] = None) -> FileLock:
        """A flock on locks/<name>.lock (e.g. a diff_id, or "images" for images.json)."""
        self.layout.locks_dir.mkdir(parents=True, exist_ok=True)
        return FileLock(lock_path(self.layout, name), shared=shared, timeout=timeout)

    def _scan(self, diff_id: str) -> LayerIndex:
        """Hash and index the stored blob in one pass; DigestMismatchError if it changed."""
        self._require(diff_id)
        import hashlib
        h, ix = hashlib.sha256(), TarIndexer(f"stored layer {diff_id}")
        try:
            with open(self.layout.layer_blob(diff_id), "rb") as f:
                for b in iter(lambda: f.read(1 << 20), b""):
                    h.update(b)
                    ix.feed(b)
        except OSError as e:
            raise io_error(e, f"reading layer {diff_id}", self.layout.layer_blob(diff_id)) from e
        if "sha256:" + h.hexdigest() != diff_id:
            raise DigestMismatchError(f"stored layer {diff_id} (remove it and pull again)",
                                      diff_id, "sha256:" + h.hexdigest())
        return ix.finish()

    def verify(self, diff_id: str) -> None:
        """fsck one layer: re-hash the blob and check the index file matches it."""
        idx = self._scan(diff_id)
        if LayerIndex.load(self.layout.layer_index(diff_id)).entries != idx.entries:
            raise LayerCorruptError(f"layer {diff_id}: index does not match the blob; "
                                    f"run reindex or pull the image again")

    def reindex(self, diff_id: str) -> LayerIndex:
        """Rebuild the index file from the (verified) blob, atomically."""
        idx = self._scan(diff_id)
        with self.lock(diff_id):
            try:
                idx.save(self.layout.layer_index(diff_id))
            except OSError as e:
                raise io_error(e, f"rewriting the index of layer {diff_id}",
                               self.layout.layer_dir(diff_id)) from e
        self._indexes[diff_id] = idx
        return idx

    def cleanup_ingest(self, min_age: float = STALE_AGE) -> List[str]:
        return cleanup_ingest(self.layout, min_age)
