"""Reading an HTTP body whole, at most N bytes: a registry (or a token server, or whatever
answers in its place) is not trusted with our memory.

`read_capped(resp, cap, what)` takes a `requests` response opened with stream=True, reads the
raw bytes itself and decompresses a Content-Encoding with a bounded output, so neither a huge
body nor a gzip bomb gets past `cap`. `drain(resp)` ends a response without reading more
than a little of it.
"""
from __future__ import annotations

import zlib
from typing import Any

from .errors import ResponseTooLargeError

_CHUNK = 64 << 10


def read_capped(resp: Any, cap: int, what: str) -> bytes:
    """The body of `resp` (stream=True), or ResponseTooLargeError past `cap` bytes."""
    def too_large(size: str) -> ResponseTooLargeError:
        return ResponseTooLargeError(f"{what} is larger than {cap} bytes (the server sent "
                                     f"{size}): refused, a broken or hostile registry?")
    length = resp.headers.get("Content-Length", "")
    if length.isdigit() and int(length) > cap:
        resp.close()
        raise too_large(f"{length} bytes")
    encoding = resp.headers.get("Content-Encoding", "").strip().lower()
    if encoding in ("", "identity"):
        dec = None
    elif encoding in ("gzip", "x-gzip"):
        dec = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif encoding == "deflate":
        dec = zlib.decompressobj()
    else:
        resp.close()
        raise ResponseTooLargeError(f"{what}: unsupported Content-Encoding {encoding!r}")
    out = bytearray()
    while True:
        chunk = resp.raw.read(_CHUNK, decode_content=False)
        if not chunk:
            break
        if dec is None:
            out += chunk
        else:
            try:
                out += dec.decompress(chunk, cap + 1 - len(out))
            except zlib.error as e:
                resp.close()
                raise ResponseTooLargeError(f"{what}: bad {encoding} body: {e}") from None
            if dec.unconsumed_tail:          # more output than the cap allows
                out += b"\0"
        if len(out) > cap:
            resp.close()
            raise too_large(f"more than {cap} bytes")
    return bytes(out)


def drain(resp: Any, limit: int = _CHUNK) -> None:
    """Read at most `limit` bytes of what is left of `resp` (so a small body lets the
    connection be reused), then close it."""
    try:
        if not getattr(resp, "_content_consumed", True):
            resp.raw.read(limit, decode_content=False)
    except Exception:  # noqa: BLE001 - a broken connection: closing is all that is left
        pass
    resp.close()
