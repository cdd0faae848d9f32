"""Disk primitives of the store: flock()s, fsync of directories, ingest/ clean-up, I/O errors.

Every temporary file or directory under ingest/ is flock()ed by its writer for as long as it
lives, so `cleanup_ingest()` can tell the leftovers of a killed process (lock free) from work
in progress (lock held), without trusting pids.
"""
from __future__ import annotations

import errno
import fcntl
import os
import re
import time
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import List, Optional

from snapshotter.errors import StoreError, StoreFullError
from snapshotter.layout import StoreLayout

LOCK_NAME = re.compile(r"^[A-Za-z0-9._:@+-]{1,200}$")
INGEST_PREFIXES = ("layer-", "blob-", "removing-")  # what LayerWriter/BlobWriter/remove create
STALE_AGE = 60.0   # seconds: an unlocked ingest entry younger than this may be just created


def io_error(e: OSError, doing: str, where: Path) -> StoreError:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return StoreFullError(f"{doing}: no space left in {where} ({e.strerror}); nothing was "
                              f"committed and temporary files were removed — free disk space "
                              f"(e.g. 'pydocklite system prune') and retry")
    return StoreError(f"{doing}: {e.strerror or e} ({getattr(e, 'filename', None) or where})")


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def rmtree(path: Path) -> None:
    import shutil    # not at module level: ~1.5 ms of every CLI run that looks an image up
    shutil.rmtree(path, ignore_errors=True)
    try:  # a plain file
        os.unlink(path)
    except OSError:
        pass


class CommitOnExit:
    """A writer as a context manager: commit() when the block ends well, abort() if not."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


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


def lock_path(layout: StoreLayout, name: str) -> Path:
    if not LOCK_NAME.match(name) or name.startswith("."):
        raise StoreError(f"invalid lock name {name!r}")
    return layout.locks_dir / (name.replace(":", "-") + ".lock")


def cleanup_ingest(layout: StoreLayout, min_age: float = STALE_AGE) -> List[str]:
    """Remove what killed writers left under ingest/ (entries whose flock is free and that are
    older than `min_age` seconds); return the names removed.  Safe to run at any time.
    Only the store's own entries (INGEST_PREFIXES) are considered: anything else put under
    ingest/ by other code is left alone."""
    removed = []
    try:
        names = os.listdir(layout.ingest_dir)
    except FileNotFoundError:
        return removed
    now = time.time()
    for name in names:
        if not name.startswith(INGEST_PREFIXES):
            continue
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
            rmtree(p)
            removed.append(name)
        finally:
            os.close(fd)
    return removed
