"""Content store (compressed blobs, manifests, configs) and layer store (uncompressed layers).

Publishing is always: write into a temporary name under ingest/ -> fsync -> verify the digest
-> rename into place -> fsync the directory.  Nothing half-written is ever visible under
blobs/ or layers/.  Each temporary file or directory is flock()ed by its writer for as long as
it lives, so `cleanup_ingest()` can tell leftovers of a killed process (lock free) from work in
progress (lock held).  Two processes ingesting the same layer both succeed: the first commit
renames its directory into place under a per-digest lock, the second finds it there and drops
its own copy.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional

from snapshotter.decompress import open_decompressor
from snapshotter.errors import (DigestMismatchError, LayerCorruptError, StoreError,
                                StoreFullError)
from snapshotter.layer_index import LayerIndex, TarIndexer
from snapshotter.layout import StoreLayout, digest_hex
from snapshotter.mmap_blob import MmapBlob

_LOCK_NAME = re.compile(r"^[A-Za-z0-9._:@+-]{1,200}$")
_STALE_AGE = 60.0   # seconds: an unlocked ingest entry younger than this may be just created


class LayerNotFoundError(StoreError):
    """The layer (by diff_id) or blob (by digest) is not in the store."""


@dataclass(frozen=True)
class LayerInfo:
    diff_id: str
    size: int        # bytes of the uncompressed blob
    entries: int     # number of entries in its index


def _io_error(e: OSError, doing: str, where: Path) -> StoreError:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return StoreFullError(f"{doing}: no space left in {where} ({e.strerror}); nothing was "
                              f"committed and temporary files were removed — free disk space "
                              f"(e.g. 'pydocklite system prune') and retry")
    return StoreError(f"{doing}: {e.strerror or e} ({getattr(e, 'filename', None) or where})")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    try:  # a plain file
        os.unlink(path)
    except OSError:
        pass


class FileLock:
    """Exclusive (or shared) flock on a lock file; a context manager, reentrant per object."""

    def __init__(self, path: Path, shared: bool = False, timeout: Optional[float] = None) -> None:
        self.path = Path(path)
        self.shared = shared
        self.timeout = timeout
        self._fd: Optional[int] = None
        self._depth = 0

    def acquire(self) -> "FileLock":
        if self._fd is not None:
            self._depth += 1
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        op = fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX
        try:
            if self.timeout is None:
                fcntl.flock(fd, op)
            else:
                deadline = time.monotonic() + self.timeout
                while True:
                    try:
                        fcntl.flock(fd, op | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() >= deadline:
                            raise StoreError(f"timed out after {self.timeout:g}s waiting for lock "
                                             f"{self.path}; another pydocklite is busy") from None
                        time.sleep(0.05)
        except BaseException:
            os.close(fd)
            raise
        self._fd, self._depth = fd, 1
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        self._depth -= 1
        if self._depth == 0:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the only descriptor releases the flock

    def __enter__(self) -> "FileLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _lock_path(layout: StoreLayout, name: str) -> Path:
    if not _LOCK_NAME.match(name) or name.startswith("."):
        raise StoreError(f"invalid lock name {name!r}")
    return layout.locks_dir / (name.replace(":", "-") + ".lock")


def cleanup_ingest(layout: StoreLayout, min_age: float = _STALE_AGE) -> List[str]:
    """Remove what killed writers left under ingest/ (entries whose flock is free and that are
    older than `min_age` seconds); return the names removed.  Safe to run at any time."""
    removed = []
    try:
        names = os.listdir(layout.ingest_dir)
    except FileNotFoundError:
        return removed
    now = time.time()
    for name in names:
        p = layout.ingest_dir / name
        try:
            fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # a live writer holds it
            if not name.startswith("removing-") and now - os.fstat(fd).st_mtime < min_age:
                continue
            _rmtree(p)
            removed.append(name)
        finally:
            os.close(fd)
    return removed


class BlobWriter:
    """Streams one blob into ingest/, verifies its digest (and size), publishes atomically.
    Context manager: commit on a clean exit, abort on an exception."""

    def __init__(self, layout: StoreLayout, digest: str, size: Optional[int] = None) -> None:
        self.digest, self.expected_size = digest, size
        self._dest = layout.blob_path(digest)
        self._ingest = layout.ensure().ingest_dir
        fd, tmp = tempfile.mkstemp(prefix=f"blob-{digest_hex(digest)[:16]}-", dir=self._ingest)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._tmp = Path(tmp)
        self._file = os.fdopen(fd, "wb")
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
            raise _io_error(e, f"writing blob {self.digest}", self._ingest) from e
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
                _fsync_dir(self._dest.parent)
        except OSError as e:
            self.abort()
            raise _io_error(e, f"committing blob {self.digest}", self._ingest) from e
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

    def __enter__(self) -> "BlobWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


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
            raise LayerNotFoundError(f"blob {digest} is not in the store {self.layout.root}") from None
        except OSError as e:
            raise _io_error(e, f"reading blob {digest}", p) from e
        actual = "sha256:" + hashlib.sha256(data).hexdigest()
        if actual != digest:
            raise DigestMismatchError(f"stored blob {p} (corrupt store: remove it and pull again)",
                                      digest, actual)
        return data

    def write(self, digest: str, data: bytes) -> Path:
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


class LayerWriter:
    """One pass over a compressed layer: decompress -> sha256 + TarIndexer + blob file.
    commit() verifies the diff_id, fsyncs, and renames the directory into layers/.
    Context manager: commit on a clean exit (if not done yet), abort on an exception.
    `diff_id` may be None (a layer being created locally): the computed digest is used."""

    def __init__(self, store: "LayerStore", diff_id: Optional[str], media_type: Optional[str],
                 name: str) -> None:
        if diff_id is not None:
            digest_hex(diff_id)
        self.store, self.diff_id, self.name = store, diff_id, name or diff_id or "layer"
        layout = store.layout.ensure()
        cleanup_ingest(layout)
        hint = digest_hex(diff_id)[:16] if diff_id else "new"
        try:
            self.dir = Path(tempfile.mkdtemp(prefix=f"layer-{hint}-", dir=layout.ingest_dir))
        except OSError as e:
            raise _io_error(e, f"starting ingest of layer {self.name}", layout.ingest_dir) from e
        self._dirfd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        fcntl.flock(self._dirfd, fcntl.LOCK_EX)
        self._file = None
        self._state = "open"
        try:
            self._file = open(self.dir / "blob", "xb")
            self._hash = hashlib.sha256()
            self._indexer = TarIndexer(self.name)
            self._dec = open_decompressor(media_type, self._sink, self.name)
        except BaseException:
            self.abort()
            raise
        self.size = 0

    def _sink(self, data: bytes) -> None:
        self._hash.update(data)
        self._indexer.feed(data)
        self._file.write(data)
        self.size += len(data)

    def write(self, chunk) -> None:
        """Feed the next compressed bytes.  Any error aborts the ingest before it is raised."""
        if self._state != "open":
            raise StoreError(f"layer {self.name}: write after {self._state}")
        try:
            self._dec.write(chunk)
        except OSError as e:
            self.abort()
            raise _io_error(e, f"storing layer {self.name}", self.store.layout.ingest_dir) from e
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
            _fsync_dir(self.dir)
            with self.store.lock(self.diff_id):
                if not self.store.has(self.diff_id):
                    dest = layout.layer_dir(self.diff_id)
                    if dest.exists():  # a directory without blob+index: not committed, replace
                        _rmtree(dest)
                    os.rename(self.dir, dest)
                    _fsync_dir(layout.layers_dir)
        except OSError as e:
            self.abort()
            raise _io_error(e, f"committing layer {self.name}", layout.ingest_dir) from e
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
            _rmtree(self.dir)
        if self._dirfd is not None:
            os.close(self._dirfd)  # releases the ingest lock, after the removal
            self._dirfd = None

    def abort(self) -> None:
        """Drop everything written so far; idempotent."""
        if self._state == "open":
            self._finish("aborted")

    def __enter__(self) -> "LayerWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


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
        idx = self._indexes.get(diff_id)
        if idx is None:
            self._require(diff_id)
            idx = LayerIndex.load(self.layout.layer_index(diff_id))
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
               name: str = "") -> LayerWriter:
        return LayerWriter(self, diff_id, media_type, name or (diff_id or "new layer"))

    def ingest_stream(self, diff_id: Optional[str], media_type: Optional[str],
                      chunks: Iterable[bytes], name: str = "") -> LayerInfo:
        """Ingest from an iterable of compressed chunks (e.g. RegistryClient.stream_blob)."""
        with self.ingest(diff_id, media_type, name) as w:
            for c in chunks:
                w.write(c)
            return w.commit()

    def ingest_file(self, diff_id: Optional[str], media_type: Optional[str], path: Path,
                    name: str = "") -> LayerInfo:
        def chunks():
            with open(path, "rb") as f:
                while True:
                    b = f.read(1 << 20)
                    if not b:
                        return
                    yield b
        return self.ingest_stream(diff_id, media_type, chunks(), name or str(path))

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
                raise _io_error(e, f"removing layer {diff_id}", d) from e
        _rmtree(gone)

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
        return FileLock(_lock_path(self.layout, name), shared=shared, timeout=timeout)

    def verify(self, diff_id: str) -> None:
        """Re-hash the stored blob (fsck); DigestMismatchError if it changed on disk."""
        self._require(diff_id)
        h = hashlib.sha256()
        with open(self.layout.layer_blob(diff_id), "rb") as f:
            for b in iter(lambda: f.read(1 << 20), b""):
                h.update(b)
        if "sha256:" + h.hexdigest() != diff_id:
            raise DigestMismatchError(f"stored layer {diff_id} (remove it and pull again)",
                                      diff_id, "sha256:" + h.hexdigest())

    def cleanup_ingest(self, min_age: float = _STALE_AGE) -> List[str]:
        return cleanup_ingest(self.layout, min_age)
