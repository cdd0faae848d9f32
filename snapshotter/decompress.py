"""Push-style streaming decompression of layer blobs, chosen by media type.

    d = open_decompressor(media_type, sink, name)   # sink(bytes) receives uncompressed data
    d.write(compressed_chunk) ...; d.close()        # close() raises if the stream is truncated

gzip goes through zlib (multi-member streams and zero padding between members accepted, CRC and
length of every member checked); zstd through `zstandard` (imported lazily; Python 3.14's
`compression.zstd` is used when `zstandard` is absent), multiple frames accepted.  Output is
handed to the sink in chunks of about 1 MiB and memory stays bounded whatever the compression
ratio, so a "decompression bomb" costs disk, not RAM.
"""
from __future__ import annotations

import zlib

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import Callable, List, Optional

from snapshotter.errors import LayerCorruptError, StoreError

GZIP, ZSTD, NONE = "gzip", "zstd", "none"
CHUNK = 1 << 20
_ZSTD_SLICE = 1024  # compressed bytes per zstd call: <= 32 MiB of output even for pure RLE input
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

MEDIA_TYPES = {
    "application/vnd.oci.image.layer.v1.tar": NONE,
    "application/vnd.oci.image.layer.v1.tar+gzip": GZIP,
    "application/vnd.oci.image.layer.v1.tar+zstd": ZSTD,
    "application/vnd.oci.image.layer.nondistributable.v1.tar": NONE,
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip": GZIP,
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd": ZSTD,
    "application/vnd.docker.image.rootfs.diff.tar": NONE,
    "application/vnd.docker.image.rootfs.diff.tar.gzip": GZIP,
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip": GZIP,
    "gzip": GZIP, "zstd": ZSTD, "none": NONE, "tar": NONE,
}


def compression_of(media_type: Optional[str]) -> Optional[str]:
    """GZIP/ZSTD/NONE for a layer media type; None for "auto" (sniff the magic bytes)."""
    if media_type in (None, "", "auto"):
        return None
    try:
        return MEDIA_TYPES[media_type]
    except KeyError:
        raise StoreError(f"unsupported layer media type {media_type!r}: expected one of "
                         f"the OCI/Docker tar, tar+gzip or tar+zstd layer types") from None


def sniff(head: bytes) -> str:
    """Compression of a stream from its first bytes."""
    if head.startswith(_GZIP_MAGIC):
        return GZIP
    if head.startswith(_ZSTD_MAGIC):
        return ZSTD
    return NONE


def _zstd_decompressobj():
    try:
        import zstandard
    except ImportError:
        try:
            from compression import zstd as stdzstd  # Python >= 3.14
        except ImportError:
            raise StoreError("this layer is zstd-compressed but neither the 'zstandard' module nor "
                             "Python 3.14's compression.zstd is available: pip install zstandard"
                             ) from None
        return stdzstd.ZstdDecompressor(), stdzstd.ZstdError
    return zstandard.ZstdDecompressor().decompressobj(), zstandard.ZstdError


class StreamDecompressor:
    """Base: counts bytes, sniffs/validates the magic, batches output for the sink."""

    def __init__(self, sink: Callable[[bytes], None], name: str, kind: Optional[str]) -> None:
        self.sink = sink
        self.name = name
        self.kind = kind                      # None until sniffed
        self.compressed_bytes = 0
        self.uncompressed_bytes = 0
        self._head = b""
        self._out: List[bytes] = []
        self._outn = 0
        self._obj = None                      # current gzip member / zstd frame decoder
        self._err: tuple = ()
        self._members = 0
        self._closed = False

    # -- output batching --
    def _emit(self, data: bytes) -> None:
        if data:
            self._out.append(data)
            self._outn += len(data)
            if self._outn >= CHUNK:
                self._flush_out()

    def _flush_out(self) -> None:
        if self._out:
            data = self._out[0] if len(self._out) == 1 else b"".join(self._out)
            self._out, self._outn = [], 0
            self.uncompressed_bytes += len(data)
            self.sink(data)

    def _corrupt(self, what: str) -> LayerCorruptError:
        return LayerCorruptError(
            f"layer {self.name}: {what} (after {self.compressed_bytes} compressed bytes); "
            f"the download is damaged or incomplete — nothing was stored, pull again")

    # -- input --
    def write(self, data) -> None:
        if self._closed:
            raise StoreError(f"layer {self.name}: write after close")
        data = bytes(data)
        if not data:
            return
        self.compressed_bytes += len(data)
        if self._head is not None:
            self._head += data
            if len(self._head) < 4:
                return
            data, self._head = self._head, None
            found = sniff(data)
            if self.kind is None:
                self.kind = found
            elif found != self.kind and (found != NONE or self.kind != NONE):
                raise self._corrupt(f"the media type says {self.kind} but the data "
                                    f"{'is ' + found + '-compressed' if found != NONE else 'is not ' + self.kind}")
        if self.kind == NONE:
            self.uncompressed_bytes += len(data)
            self.sink(data)
        else:
            self._feed(data)

    def _feed(self, data: bytes) -> None:
        while data:
            if self._obj is None:
                if self._members:
                    data = data.lstrip(b"\0")     # zero padding after the last member
                    if not data:
                        return
                self._new_member()
            data = self._step(data)

    def _new_member(self) -> None:
        if self.kind == GZIP:
            self._obj, self._err = zlib.decompressobj(16 + zlib.MAX_WBITS), (zlib.error,)
        else:
            obj, err = _zstd_decompressobj()
            self._obj, self._err = obj, (err,)

    def _step(self, data: bytes) -> bytes:
        """Decompress from `data` until it is used up or the member ends; return leftover."""
        obj = self._obj
        try:
            if self.kind == GZIP:
                while True:
                    out = obj.decompress(data, CHUNK)
                    self._emit(out)
                    data = obj.unconsumed_tail
                    if obj.eof or (not data and len(out) < CHUNK):
                        break
            else:
                i, n = 0, len(data)
                while i < n and not obj.eof:
                    self._emit(obj.decompress(data[i:i + _ZSTD_SLICE]))
                    i += _ZSTD_SLICE
                if not obj.eof:
                    return b""
                data = data[i:]
        except self._err as e:
            raise self._corrupt(f"corrupt {self.kind} stream: {e}") from e
        if obj.eof:
            self._obj = None
            self._members += 1
            return obj.unused_data + data if self.kind != GZIP else obj.unused_data
        return b""

    def close(self) -> None:
        """Flush; raise LayerCorruptError if the stream is empty or ends inside a member/frame."""
        if self._closed:
            return
        if self._head is not None:
            rest, self._head = self._head, None
            if rest:
                if self.kind is None:
                    self.kind = sniff(rest)
                if self.kind == NONE:
                    self.uncompressed_bytes += len(rest)
                    self.sink(rest)
                else:
                    self._feed(rest)
        if self.kind != NONE and self.compressed_bytes:
            if self._obj is not None:
                raise self._corrupt(f"{self.kind} stream is truncated")
            if not self._members:
                raise self._corrupt(f"no {self.kind} data")
        self._flush_out()
        self._closed = True


def open_decompressor(media_type: Optional[str], sink: Callable[[bytes], None],
                      name: str = "layer") -> StreamDecompressor:
    """A decompressor for a layer of `media_type` (None/"auto": detect from the magic bytes)."""
    return StreamDecompressor(sink, name, compression_of(media_type))
