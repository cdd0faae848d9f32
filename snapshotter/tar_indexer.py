"""Streaming tar parser that builds a LayerIndex (re-exported as layer_index.TarIndexer).

Fed the uncompressed layer bytes in order, in chunks of any size; it never holds more than one
header (or one extended header) in memory and skips file data arithmetically, so indexing costs
no more than hashing.  Handles ustar, v7, GNU (long names/links, base-256 numbers) and PAX
(path, linkpath, size, uid, gid, mtime, SCHILY.devmajor/minor, SCHILY.xattr.*, LIBARCHIVE.xattr.*,
global headers).  Entries escaping the layer raise UnsafeLayerEntryError naming layer and entry.
"""
from __future__ import annotations

import base64
import math
import struct
from types import MappingProxyType

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import Dict, List, Optional
from urllib.parse import unquote

from snapshotter.errors import LayerCorruptError, UnsafeLayerEntryError
from snapshotter.layer_index import (BLOCK, CHAR, DIR, FIFO, HARDLINK, REG, SYMLINK, LayerIndex)

_Row = tuple  # an IndexEntry as a plain tuple, in IndexEntry field order

_BLOCK = 512
_ZERO = bytes(_BLOCK)
_ID_MAX = 0xFFFFFFFF
_MAX_EXT = 16 << 20  # cap for a PAX header or GNU long name/link payload
_TYPES = MappingProxyType({b"0": REG, b"\0": REG, b"7": REG, b"1": HARDLINK, b"2": SYMLINK,
                           b"3": CHAR, b"4": BLOCK, b"5": DIR, b"6": FIFO, b"D": DIR})
_NO_DATA = (b"1", b"2", b"3", b"4", b"5", b"6")  # types whose size field never means data follows
_S_HEADER, _S_EXT = 0, 1


def _pad(n: int) -> int:
    return (n + _BLOCK - 1) // _BLOCK * _BLOCK


def _cstr(field: bytes) -> bytes:
    i = field.find(b"\0")
    return field if i < 0 else field[:i]


def _dec(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


class TarIndexer:
    """Feed the uncompressed tar stream with feed(); finish() returns the LayerIndex.

    `name` is used in error messages (e.g. the layer's diff_id or the image/layer number).
    """

    def __init__(self, name: str = "layer") -> None:
        self.name = name
        self.pos = 0                  # bytes of the stream consumed so far
        self._buf = bytearray()
        self._need = _BLOCK
        self._state = _S_HEADER
        self._skip = 0                # bytes of member data (plus padding) still to pass over
        self._ext_type = b""
        self._ext_size = 0
        self._gpax: Dict[str, bytes] = {}
        self._pax: Optional[Dict[str, bytes]] = None
        self._longname: Optional[bytes] = None
        self._longlink: Optional[bytes] = None
        self._done = False
        self._current = ""            # name of the member being read (for error messages)
        self._rows: List[Optional[_Row]] = [("", DIR, 0o755, 0, 0, 0, 0.0, "", 0, 0, (), 0)]
        self._at: Dict[str, int] = {"": 0}

    # -- stream plumbing --
    def feed(self, data) -> None:
        mv = memoryview(data)
        n = len(mv)
        i = 0
        while i < n:
            if self._skip:
                k = min(self._skip, n - i)
                self._skip -= k
                i += k
                self.pos += k
                continue
            if self._done:  # bytes after the end-of-archive block are hashed/stored, not parsed
                self.pos += n - i
                return
            k = min(self._need - len(self._buf), n - i)
            if k <= 0:  # cannot happen with validated sizes; never spin on a bad state
                raise self._corrupt("internal parser state error")
            self._buf += mv[i:i + k]
            i += k
            self.pos += k
            if len(self._buf) == self._need:
                block = bytes(self._buf)
                self._buf.clear()
                if self._state == _S_HEADER:
                    self._header(block)
                else:
                    self._state, self._need = _S_HEADER, _BLOCK
                    self._extension(block[:self._ext_size])

    def finish(self) -> LayerIndex:
        if self._skip or self._buf or self._state != _S_HEADER:
            raise LayerCorruptError(
                f"layer {self.name}: tar stream truncated inside entry {self._current!r} "
                f"(after {self.pos} bytes); the download or the layer is incomplete — pull again")
        if self.pos == 0:
            raise LayerCorruptError(f"layer {self.name}: empty layer stream (no tar data)")
        if self._pax is not None or self._longname is not None or self._longlink is not None:
            raise LayerCorruptError(f"layer {self.name}: tar stream ends after an extended header "
                                    f"with no entry (after {self.pos} bytes)")
        return LayerIndex._from_rows([r for r in self._rows if r is not None])

    # -- headers --
    def _corrupt(self, what: str) -> LayerCorruptError:
        return LayerCorruptError(f"layer {self.name}: corrupt tar stream at byte {self.pos}: {what}")

    def _num(self, field: bytes, what: str, signed: bool = False) -> int:
        if field[:1] and field[0] & 0x80:            # GNU base-256
            if field[0] == 0x80:
                return int.from_bytes(field[1:], "big")
            if field[0] == 0xFF and signed:
                return int.from_bytes(field, "big", signed=True)
            raise self._corrupt(f"bad base-256 {what} field")
        s = _cstr(field).strip(b" \0")
        if s.strip(b"01234567"):
            raise self._corrupt(f"bad octal {what} field {field!r}")
        return int(s, 8) if s else 0

    def _header(self, block: bytes) -> None:
        if block == _ZERO:
            self._done = True
            return
        stored = self._num(block[148:156], "checksum")
        plain = sum(block) - sum(block[148:156]) + 8 * 32
        if stored != plain:
            signed = sum(struct.unpack("512b", block)) - sum(struct.unpack("8b", block[148:156])) + 256
            if stored != signed:
                raise self._corrupt("header checksum mismatch (not a tar stream, or damaged)")
        tflag = block[156:157]
        size = self._num(block[124:136], "size")
        name = _cstr(block[0:100])
        if block[257:263] == b"ustar\0":
            prefix = _cstr(block[345:500])
            if prefix:
                name = prefix + b"/" + name
        self._current = _dec(name)
        if tflag in (b"x", b"g", b"X", b"L", b"K"):
            if size > _MAX_EXT:
                raise self._corrupt(f"extended header of {size} bytes is too large")
            self._ext_type, self._ext_size = tflag, size
            if size == 0:
                self._extension(b"")
            else:
                self._state, self._need = _S_EXT, _pad(size)
            return
        pax = self._gpax if self._pax is None else {**self._gpax, **self._pax}
        pax = {k: v for k, v in pax.items() if v != b""}
        self._pax = None
        if self._longname is not None:
            name, self._longname = self._longname, None
        if "path" in pax:
            name = pax["path"]
        link = _cstr(block[157:257])
        if self._longlink is not None:
            link, self._longlink = self._longlink, None
        if "linkpath" in pax:
            link = pax["linkpath"]
        self._current = raw = _dec(name)
        try:
            if "size" in pax:
                size = int(pax["size"])
            uid = int(pax["uid"]) if "uid" in pax else self._num(block[108:116], "uid")
            gid = int(pax["gid"]) if "gid" in pax else self._num(block[116:124], "gid")
            mtime = (float(pax["mtime"]) if "mtime" in pax
                     else float(self._num(block[136:148], "mtime", True)))
            major = minor = 0
            if tflag in (b"3", b"4"):
                major = (int(pax["SCHILY.devmajor"]) if "SCHILY.devmajor" in pax
                         else self._num(block[329:337], "devmajor"))
                minor = (int(pax["SCHILY.devminor"]) if "SCHILY.devminor" in pax
                         else self._num(block[337:345], "devminor"))
        except ValueError:
            raise self._corrupt(f"bad numeric PAX value in entry {raw!r}") from None
        if size < 0 or not (0 <= uid <= _ID_MAX and 0 <= gid <= _ID_MAX and 0 <= major <= _ID_MAX
                            and 0 <= minor <= _ID_MAX) or not math.isfinite(mtime):
            raise self._corrupt(f"size, uid, gid, device or mtime out of range in entry {raw!r}")
        mode = self._num(block[100:108], "mode") & 0o7777
        if tflag in (b"S", b"M", b"N") or any(k.startswith("GNU.sparse.") for k in pax):
            raise LayerCorruptError(f"layer {self.name}: entry {raw!r} is a GNU sparse/multi-volume "
                                    f"member, which layers may not contain; rebuild the layer")
        etype = _TYPES.get(tflag, REG)
        if tflag == b"\0" and name.endswith(b"/"):
            etype = DIR
        has_data = tflag not in _NO_DATA
        offset = self.pos if has_data else 0
        if has_data:
            self._skip = _pad(size)
        if etype != REG:
            size = 0
        if tflag == b"V":  # volume label: not a file
            return
        xattrs = {}
        for k, v in pax.items():
            if k.startswith("LIBARCHIVE.xattr."):  # bsdtar: URL-encoded name, base64 value
                try:
                    xattrs[unquote(k[17:], errors="surrogateescape")] = base64.b64decode(v + b"==")
                except ValueError:
                    raise self._corrupt(f"bad LIBARCHIVE.xattr value in entry {raw!r}") from None
        for k, v in pax.items():
            if k.startswith("SCHILY.xattr."):
                xattrs[k[13:]] = v
        self._add(raw, etype, mode, uid, gid, size, mtime, _dec(link), major, minor,
                  tuple(sorted(xattrs.items())), offset)

    def _extension(self, data: bytes) -> None:
        t = self._ext_type
        if t in (b"L", b"K"):
            value = _cstr(data)
            if t == b"L":
                self._longname = value
            else:
                self._longlink = value
            return
        records = self._parse_pax(data)
        if t == b"g":
            self._gpax.update(records)
        else:
            self._pax = {**(self._pax or {}), **records}

    def _parse_pax(self, data: bytes) -> Dict[str, bytes]:
        out: Dict[str, bytes] = {}
        i, n = 0, len(data)
        while i < n:
            if data[i] == 0:  # NUL padding at the end of the payload
                break
            sp = data.find(b" ", i)
            try:
                length = int(data[i:sp]) if sp > i else -1
            except ValueError:
                length = -1
            end = i + length
            if length <= 0 or end > n or data[end - 1:end] != b"\n" or end <= sp:
                raise self._corrupt("malformed PAX extended header record")
            key, eq, value = data[sp + 1:end - 1].partition(b"=")
            if not eq:
                raise self._corrupt("PAX record without '='")
            out[_dec(key)] = value
            i = end
        return out

    # -- paths and entries --
    def _normalise(self, raw: str, entry: str) -> str:
        if "\0" in raw:
            raise UnsafeLayerEntryError(self.name, entry, "the name contains a NUL byte")
        if raw.startswith("/") and raw.strip("/"):  # a bare "/" is the root itself
            raise UnsafeLayerEntryError(self.name, entry, "absolute paths are not allowed in a layer")
        parts: List[str] = []
        for comp in raw.split("/"):
            if comp in ("", "."):
                continue
            if comp == "..":
                if not parts:
                    raise UnsafeLayerEntryError(self.name, entry, "'..' leads outside the layer")
                parts.pop()
            else:
                parts.append(comp)
        return "/".join(parts)

    def _ensure_parents(self, path: str, entry: str) -> None:
        missing = []
        parent = path.rpartition("/")[0] if path else None
        while parent is not None:
            i = self._at.get(parent)
            if i is not None:
                if self._rows[i][1] != DIR:
                    raise UnsafeLayerEntryError(
                        self.name, entry, f"its parent {parent!r} is not a directory in this layer "
                                          f"(writing through a {self._rows[i][1]!r} entry)")
                break
            missing.append(parent)
            parent = parent.rpartition("/")[0] if parent else None
        for p in reversed(missing):
            self._at[p] = len(self._rows)
            self._rows.append((p, DIR, 0o755, 0, 0, 0, 0.0, "", 0, 0, (), 0))

    def _add(self, raw, etype, mode, uid, gid, size, mtime, link, major, minor, xattrs, offset):
        path = self._normalise(raw, raw)
        if path == "" and etype != DIR:
            raise UnsafeLayerEntryError(self.name, raw, "the layer root must be a directory")
        self._ensure_parents(path, raw)
        if etype == HARDLINK:
            target = self._normalise(link, raw)
            i = self._at.get(target)
            if i is None or target == path:
                raise UnsafeLayerEntryError(
                    self.name, raw, f"hardlink target {link!r} is not an earlier entry of this layer")
            trow = self._rows[i]
            if trow[1] == DIR:
                raise UnsafeLayerEntryError(self.name, raw, f"hardlink to directory {link!r}")
            if trow[1] == HARDLINK:
                target = trow[7]
            link, size, offset = target, trow[5], trow[11]
        elif etype != SYMLINK:
            link = ""
        if etype not in (CHAR, BLOCK):
            major = minor = 0
        row = (path, etype, mode, uid, gid, size, mtime, link, major, minor, xattrs, offset)
        i = self._at.get(path)
        if i is None:
            self._at[path] = len(self._rows)
            self._rows.append(row)
            return
        if self._rows[i][1] == DIR and etype != DIR:  # a non-directory replaces a directory
            prefix = path + "/" if path else ""
            for p in [p for p in self._at if p.startswith(prefix) and p != path]:
                self._rows[self._at.pop(p)] = None
        self._rows[i] = row
