"""Tar streams: one bounded push parser (`TarParser`) and one writer (`TarWriter`).

Every tar pydocklite reads goes through `TarParser`: layers being indexed (tar_indexer.py),
archives unpacked on the host and streams from a container (pydocklite/tar_extract.py). It is
fed the bytes in order, in chunks of any size, never holds more than one header or one
extended header (capped) in memory, and hands each entry to `member()` with the names and
numbers of its PAX / GNU extensions applied, then the entry's data to `data()`. Handles
ustar, v7, GNU (long names/links, base-256 numbers) and PAX (path, linkpath, size, uid, gid,
mtime, SCHILY.devmajor/minor, SCHILY.xattr.*, LIBARCHIVE.xattr.*, global headers); refuses
GNU sparse and multi-volume members. Names are passed on as found: judging them (absolute,
`..`, links) is the consumer's job.

`TarWriter` writes PAX-format entries from plain values (no user or group names: nothing is
looked up), padding or cutting a file whose data turns out shorter or longer than announced
so the stream stays valid.
"""
from __future__ import annotations

import base64
import math
import struct
from collections import namedtuple
from types import MappingProxyType
from urllib.parse import unquote

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import Callable, Dict, Iterable, Optional

from snapshotter.errors import LayerCorruptError
from snapshotter.layer_index import BLOCK, CHAR, DIR, FIFO, HARDLINK, REG, SYMLINK

BLOCK_SIZE = 512
_ZERO = bytes(BLOCK_SIZE)
ID_MAX = 0xFFFFFFFF
MAX_EXTENSION = 16 << 20  # cap for a PAX header or GNU long name/link payload
_TYPES = MappingProxyType({b"0": REG, b"\0": REG, b"7": REG, b"1": HARDLINK, b"2": SYMLINK,
                           b"3": CHAR, b"4": BLOCK, b"5": DIR, b"6": FIFO, b"D": DIR})
_NO_DATA = (b"1", b"2", b"3", b"4", b"5", b"6")  # types whose size field never means data follows
_S_HEADER, _S_EXT = 0, 1


class TarMember(namedtuple("TarMember", "name type mode uid gid size mtime linkname "
                                        "devmajor devminor xattrs offset")):
    """One entry as the stream gives it. `name`/`linkname` are the raw names (str, undecodable
    bytes kept as surrogates); `type` is one of layer_index's REG DIR SYMLINK HARDLINK CHAR
    BLOCK FIFO; `size` is the data that follows (0 for anything but REG); `xattrs` a sorted
    tuple of (name, bytes); `offset` where the data starts in the stream (0 if none)."""
    __slots__ = ()


def normal_name(raw: str, where: str = "the archive") -> str:
    """An entry name made relative and plain ("./a//b" -> "a/b", "/" -> ""), or ValueError
    saying why it can't be (a NUL, an absolute name, a '..' that climbs out of `where`)."""
    if "\0" in raw:
        raise ValueError("the name contains a NUL byte")
    if raw.startswith("/") and raw.strip("/"):  # a bare "/" is the root itself
        raise ValueError(f"absolute names are not allowed in {where}")
    parts = []
    for comp in raw.split("/"):
        if comp in ("", "."):
            continue
        if comp == "..":
            if not parts:
                raise ValueError(f"'..' leads outside {where}")
            parts.pop()
        else:
            parts.append(comp)
    return "/".join(parts)


def pad(n: int) -> int:
    return (n + BLOCK_SIZE - 1) // BLOCK_SIZE * BLOCK_SIZE


def _cstr(field: bytes) -> bytes:
    i = field.find(b"\0")
    return field if i < 0 else field[:i]


def _dec(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


class TarParser:
    """Feed the stream with feed(); finish() checks it ended cleanly.

    Subclasses override member(m) (called at each entry) and data(chunk) (the entry's data,
    a memoryview valid only during the call; called only when wants_data is true).
    `what` names the stream in error messages ("layer sha256:...", "archive x.tar").
    Errors are LayerCorruptError (whatever the stream is: one error type for a bad tar)."""

    wants_data = False

    def __init__(self, what: str = "tar stream") -> None:
        self.what = what
        self.pos = 0                  # bytes of the stream consumed so far
        self._buf = bytearray()
        self._need = BLOCK_SIZE
        self._state = _S_HEADER
        self._skip = 0                # bytes of member data (plus padding) still to pass over
        self._data_left = 0           # of which data (the rest is padding)
        self._ext_type = b""
        self._ext_size = 0
        self._gpax: Dict[str, bytes] = {}
        self._pax: Optional[Dict[str, bytes]] = None
        self._longname: Optional[bytes] = None
        self._longlink: Optional[bytes] = None
        self.done = False             # the end-of-archive block was seen
        self.current = ""             # name of the member being read (for error messages)

    # -- hooks --
    def member(self, m: TarMember) -> None:
        pass

    def data(self, chunk: memoryview) -> None:
        pass

    # -- stream plumbing --
    def feed(self, data) -> None:
        mv = memoryview(data)
        n = len(mv)
        i = 0
        while i < n:
            if self._skip:
                k = min(self._skip, n - i)
                if self._data_left:
                    d = min(k, self._data_left)
                    self._data_left -= d
                    if self.wants_data:
                        self.data(mv[i:i + d])
                self._skip -= k
                i += k
                self.pos += k
                continue
            if self.done:  # bytes after the end-of-archive block are not parsed
                self.pos += n - i
                return
            k = min(self._need - len(self._buf), n - i)
            if k <= 0:  # cannot happen with validated sizes; never spin on a bad state
                raise self.corrupt("internal parser state error")
            self._buf += mv[i:i + k]
            i += k
            self.pos += k
            if len(self._buf) == self._need:
                block = bytes(self._buf)
                self._buf.clear()
                if self._state == _S_HEADER:
                    self._header(block)
                else:
                    self._state, self._need = _S_HEADER, BLOCK_SIZE
                    self._extension(block[:self._ext_size])

    def check_end(self) -> None:
        """Raise unless the stream stopped between entries (a cut stream is an error)."""
        if self._skip or self._buf or self._state != _S_HEADER:
            raise LayerCorruptError(
                f"{self.what}: tar stream truncated inside entry {self.current!r} "
                f"(after {self.pos} bytes); the download or the archive is incomplete")
        if self.pos == 0:
            raise LayerCorruptError(f"{self.what}: empty stream (no tar data)")
        if self._pax is not None or self._longname is not None or self._longlink is not None:
            raise LayerCorruptError(f"{self.what}: tar stream ends after an extended header "
                                    f"with no entry (after {self.pos} bytes)")

    # -- headers --
    def corrupt(self, what: str) -> LayerCorruptError:
        return LayerCorruptError(f"{self.what}: corrupt tar stream at byte {self.pos}: {what}")

    def _num(self, field: bytes, what: str, signed: bool = False) -> int:
        if field[:1] and field[0] & 0x80:            # GNU base-256
            if field[0] == 0x80:
                return int.from_bytes(field[1:], "big")
            if field[0] == 0xFF and signed:
                return int.from_bytes(field, "big", signed=True)
            raise self.corrupt(f"bad base-256 {what} field")
        s = _cstr(field).strip(b" \0")
        if s.strip(b"01234567"):
            raise self.corrupt(f"bad octal {what} field {field!r}")
        return int(s, 8) if s else 0

    def _header(self, block: bytes) -> None:
        if block == _ZERO:
            self.done = True
            return
        stored = self._num(block[148:156], "checksum")
        plain = sum(block) - sum(block[148:156]) + 8 * 32
        if stored != plain:
            signed = sum(struct.unpack("512b", block)) - sum(struct.unpack("8b", block[148:156])) + 256
            if stored != signed:
                raise self.corrupt("header checksum mismatch (not a tar stream, or damaged)")
        tflag = block[156:157]
        size = self._num(block[124:136], "size")
        name = _cstr(block[0:100])
        if block[257:263] == b"ustar\0":
            prefix = _cstr(block[345:500])
            if prefix:
                name = prefix + b"/" + name
        self.current = _dec(name)
        if tflag in (b"x", b"g", b"X", b"L", b"K"):
            if size > MAX_EXTENSION:
                raise self.corrupt(f"extended header of {size} bytes is too large")
            self._ext_type, self._ext_size = tflag, size
            if size == 0:
                self._extension(b"")
            else:
                self._state, self._need = _S_EXT, pad(size)
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
        self.current = raw = _dec(name)
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
            raise self.corrupt(f"bad numeric PAX value in entry {raw!r}") from None
        if size < 0 or not (0 <= uid <= ID_MAX and 0 <= gid <= ID_MAX and 0 <= major <= ID_MAX
                            and 0 <= minor <= ID_MAX) or not math.isfinite(mtime):
            raise self.corrupt(f"size, uid, gid, device or mtime out of range in entry {raw!r}")
        mode = self._num(block[100:108], "mode") & 0o7777
        if tflag in (b"S", b"M", b"N") or any(k.startswith("GNU.sparse.") for k in pax):
            raise LayerCorruptError(f"{self.what}: entry {raw!r} is a GNU sparse/multi-volume "
                                    f"member, which pydocklite does not accept; write the "
                                    f"archive without --sparse")
        etype = _TYPES.get(tflag, REG)
        if tflag == b"\0" and name.endswith(b"/"):
            etype = DIR
        has_data = tflag not in _NO_DATA
        offset = self.pos if has_data else 0
        if has_data:
            self._skip = pad(size)
            self._data_left = size if etype == REG and tflag != b"V" else 0
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
                    raise self.corrupt(f"bad LIBARCHIVE.xattr value in entry {raw!r}") from None
        for k, v in pax.items():
            if k.startswith("SCHILY.xattr."):
                xattrs[k[13:]] = v
        if etype not in (SYMLINK, HARDLINK):
            link = b""
        self.member(tuple.__new__(TarMember, (raw, etype, mode, uid, gid, size, mtime, _dec(link),
                                              major, minor, tuple(sorted(xattrs.items())),
                                              offset)))

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
                raise self.corrupt("malformed PAX extended header record")
            key, eq, value = data[sp + 1:end - 1].partition(b"=")
            if not eq:
                raise self.corrupt("PAX record without '='")
            out[_dec(key)] = value
            i = end
        return out


# --- writing -------------------------------------------------------------------------------

_TYPEFLAG = {REG: b"0", HARDLINK: b"1", SYMLINK: b"2", CHAR: b"3", BLOCK: b"4", DIR: b"5",
             FIFO: b"6"}
_OCTAL_MAX = {8: 0o7777777, 12: 0o77777777777}


def _octal(value: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, value)


def _pax_record(key: str, value: bytes) -> bytes:
    body = b" " + key.encode("utf-8", "surrogateescape") + b"=" + value + b"\n"
    n = len(body) + 1
    while len(str(n)) + len(body) != n:
        n = len(str(n)) + len(body)
    return str(n).encode() + body


def _split_ustar(name: bytes):
    """(prefix, name) for a ustar header, or None when the name doesn't fit."""
    if len(name) <= 100:
        return b"", name
    i = name.rfind(b"/", 0, 156)          # the longest prefix leaves the shortest name
    if i > 0 and 0 < len(name) - i - 1 <= 100:
        return name[:i], name[i + 1:]
    return None


class TarWriter:
    """Writes entries to `write` (a callable taking bytes); close() ends the archive."""

    def __init__(self, write: Callable[[bytes], object]) -> None:
        self._write = write

    def _header(self, name: bytes, tflag: bytes, mode: int, uid: int, gid: int, size: int,
                mtime: int, link: bytes = b"", major: int = 0, minor: int = 0) -> bytes:
        split = _split_ustar(name) or (b"", name[:100])
        h = bytearray(BLOCK_SIZE)
        h[0:len(split[1])] = split[1]
        h[100:108] = _octal(mode & 0o7777, 8)
        h[108:116] = _octal(min(uid, 0o7777777), 8)
        h[116:124] = _octal(min(gid, 0o7777777), 8)
        if size > _OCTAL_MAX[12]:
            h[124:136] = b"\x80" + size.to_bytes(11, "big")
        else:
            h[124:136] = _octal(size, 12)
        h[136:148] = _octal(min(max(mtime, 0), _OCTAL_MAX[12]), 12)
        h[148:156] = b" " * 8
        h[156:157] = tflag
        h[157:157 + len(link[:100])] = link[:100]
        h[257:265] = b"ustar\x0000"
        h[329:337] = _octal(min(major, 0o7777777), 8)
        h[337:345] = _octal(min(minor, 0o7777777), 8)
        h[345:345 + len(split[0])] = split[0]
        h[148:156] = b"%06o\0 " % sum(h)
        return bytes(h)

    def add(self, name: str, type: str, mode: int, uid: int = 0, gid: int = 0,
            mtime: float = 0, size: int = 0, linkname: str = "", devmajor: int = 0,
            devminor: int = 0, xattrs: Iterable = (), data: Optional[Iterable[bytes]] = None
            ) -> int:
        """Write one entry (`name` relative, a directory's with or without a trailing "/").
        REG entries take `size` bytes from the `data` chunks: fewer are padded with zeros,
        more are cut. Returns how many bytes of data came from `data`."""
        bname = name.encode("utf-8", "surrogateescape")
        if type == DIR and not bname.endswith(b"/"):
            bname += b"/"
        blink = linkname.encode("utf-8", "surrogateescape")
        size = size if type == REG else 0
        mt = int(mtime)
        pax = []
        if _split_ustar(bname) is None:
            pax.append(("path", bname))
        if len(blink) > 100:
            pax.append(("linkpath", blink))
        if size > _OCTAL_MAX[12]:
            pax.append(("size", b"%d" % size))
        for key, v in (("uid", uid), ("gid", gid)):
            if v > _OCTAL_MAX[8]:
                pax.append((key, b"%d" % v))
        if not 0 <= mt <= _OCTAL_MAX[12]:
            pax.append(("mtime", b"%d" % mt))
        for k, v in xattrs:
            pax.append(("SCHILY.xattr." + k, bytes(v)))
        if pax:
            payload = b"".join(_pax_record(k, v) for k, v in pax)
            self._write(self._header(b"PaxHeaders/" + bname.rstrip(b"/")[-80:], b"x", 0o644,
                                     0, 0, len(payload), 0))
            self._write(payload + bytes(pad(len(payload)) - len(payload)))
        self._write(self._header(bname, _TYPEFLAG[type], mode, uid, gid, size, mt, blink,
                                 devmajor, devminor))
        got = 0
        if size:
            for chunk in data or ():
                if got >= size:
                    break
                chunk = chunk[:size - got]
                self._write(chunk)
                got += len(chunk)
            left = size - got + pad(size) - size
            while left:
                k = min(left, 1 << 16)
                self._write(bytes(k))
                left -= k
        return got

    def close(self) -> None:
        self._write(_ZERO * 2)
