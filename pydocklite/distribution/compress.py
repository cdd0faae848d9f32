"""Compress a stored (uncompressed) layer for upload, reproducibly.

gzip goes through zlib with its own gzip wrapper (mtime 0, no file name, OS byte "unix"),
level 6: the same layer always gives the same bytes with the same zlib, so a second push
of a layer finds the blob it uploaded the first time. zstd (level 3) uses `zstandard`,
imported only when asked for.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from pydocklite.distribution.errors import DistributionError

GZIP, ZSTD = "gzip", "zstd"
READ = 1 << 20


@dataclass(frozen=True)
class CompressedBlob:
    path: Path           # temporary file; the caller deletes it
    digest: str
    size: int
    compression: str


def _zstd_compressor():
    try:
        import zstandard
    except ImportError:
        raise DistributionError("--compress zstd needs the zstandard module, which this "
                                "Python lacks: install it or use gzip") from None
    return zstandard.ZstdCompressor(level=3).compressobj()


def compress_layer(source: Path, workdir: Path, compression: str = GZIP,
                   progress: Optional[Callable[[int], None]] = None) -> CompressedBlob:
    """Compress the file `source` into a temp file under `workdir`; hashes on the way."""
    if compression == GZIP:
        comp = zlib.compressobj(6, zlib.DEFLATED, 31, 9)
    elif compression == ZSTD:
        comp = _zstd_compressor()
    else:
        raise DistributionError(f"unknown compression {compression!r}: use gzip or zstd")
    workdir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="push-", suffix="." + compression, dir=str(workdir))
    h = hashlib.sha256()
    size = done = 0
    try:
        with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
            for chunk in iter(lambda: src.read(READ), b""):
                data = comp.compress(chunk)
                done += len(chunk)
                if data:
                    out.write(data)
                    h.update(data)
                    size += len(data)
                if progress is not None:
                    progress(done)
            data = comp.flush()
            out.write(data)
            h.update(data)
            size += len(data)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return CompressedBlob(Path(tmp), "sha256:" + h.hexdigest(), size, compression)
