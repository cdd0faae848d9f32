"""Docker's json-file log driver: the writer the shim feeds, the reader `logs` uses.

One JSON object per line, in Docker's key order:
    {"log":"hello\\n","stream":"stdout","time":"2026-11-30T09:58:01.123456789Z"}
A line longer than 16 KiB is cut into 16 KiB entries, all but the last without "\\n"
(Docker's partial messages); text left without a newline when a stream ends is written
as a partial entry by `flush()`/`close()`. With `max_size`, the file rotates to path.1,
path.2, ... keeping `max_files` files in all (max_files=1 truncates in place, as Docker).

`read_logs(path, follow=, tail=, since=, until=, timestamps=, stop_when=)` yields
(stream, bytes) oldest first across rotated files; `-f` follows rotation and ends when
`stop_when()` says the container is gone. `copy_logs` writes them as `docker logs` does:
stdout entries to stdout, stderr entries to stderr, `-t` prefixes RFC3339Nano times.
"""
from __future__ import annotations

import json
import os
import threading
import time
from collections import namedtuple
from datetime import datetime, timezone
from json.encoder import encode_basestring
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import BinaryIO, Callable, Iterator, List, Optional, Tuple, Union

PARTIAL_SIZE = 16 * 1024
STREAMS = ("stdout", "stderr")
TimeArg = "Union[None, int, float, str, datetime]"    # for annotations


class LogError(Exception):
    """A log file that can't be written or read."""


_last_second = (-1, "")          # format_time's last whole second and its text


def format_time(ns: int, fixed: bool = False) -> str:
    """RFC 3339 UTC with nanoseconds: Go's RFC3339Nano (trailing zeros trimmed, used in the
    file) or, fixed=True, RFC3339NanoFixed (always 9 digits, used by `logs -t`)."""
    global _last_second
    sec, frac = divmod(ns, 1_000_000_000)
    cached = _last_second         # (one tuple: threads may race to replace it, harmlessly)
    if cached[0] == sec:
        base = cached[1]
    else:
        base = datetime.fromtimestamp(sec, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        _last_second = (sec, base)
    digits = f"{frac:09d}"
    if not fixed:
        digits = digits.rstrip("0")
    return f"{base}.{digits}Z" if digits else f"{base}Z"


def parse_time_ns(text: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 time with any fraction length."""
    from pydocklite.humanize import rfc3339_ns
    try:
        return rfc3339_ns(text)
    except ValueError:
        raise LogError(f"invalid timestamp {text!r}: expected RFC 3339") from None


def to_ns(value: TimeArg) -> Optional[int]:
    """since/until as nanoseconds: a datetime (naive = UTC), epoch seconds, or RFC 3339 text."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return int(value.timestamp()) * 1_000_000_000 + value.microsecond * 1000
    if isinstance(value, (int, float)):
        return int(value * 1_000_000_000)
    try:
        return to_ns(float(value))
    except ValueError:
        return parse_time_ns(value)


def parse_size(text: Union[str, int]) -> int:
    """--log-opt max-size as Docker reads it (go-units FromHumanSize): "10m" = 10,000,000,
    "1.5k" = 1500, "2MiB" = 2,097,152, a bare number is bytes."""
    if isinstance(text, int):
        return text
    import re
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(?:([kmgtp])(i)?)?b?\s*", str(text), re.IGNORECASE)
    if not m:
        raise LogError(f"invalid size {text!r}: use a number with an optional unit (k, m, g)")
    num, unit, binary = m.groups()
    base = 1024 if binary else 1000
    power = "kmgtp".index(unit.lower()) + 1 if unit else 0
    return int(float(num) * base ** power)


def _encoder(stream: str, time_text: str):
    """A function making the log record of one chunk of `stream` at `time_text`: what
    json.dumps({"log": ..., "stream": ..., "time": ...}) would (compact, not ASCII-only),
    with the characters Go's encoder escapes escaped too (the files then match Docker's
    byte for byte), the record's tail made once for all of a read's lines (a container
    that logs a line per request, nginx under load, wrote ~20k records a second here)."""
    tail = f',"stream":"{stream}","time":"{time_text}"}}\n'.encode()

    def encode(data: bytes) -> bytes:
        text = encode_basestring(data.decode("utf-8", "replace"))
        if "<" in text or ">" in text or "&" in text:
            text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
        if "\u2028" in text or "\u2029" in text:
            text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
        return b'{"log":' + text.encode() + tail
    return encode


def _utf8_cut(buf: bytes, limit: int) -> int:
    """A cut point <= limit that doesn't split a UTF-8 sequence (when one is in reach)."""
    for cut in range(limit, max(limit - 4, 0), -1):
        if (buf[cut] & 0xC0) != 0x80:
            return cut
    return limit


class JsonLogWriter:
    """Thread-safe writer of one container's json-file log, with size rotation."""

    def __init__(self, path: Union[str, Path], max_size: int = 0, max_files: int = 1,
                 clock: Callable[[], int] = time.time_ns):
        self.path = Path(path)
        self.max_size = max_size or 0
        self.max_files = max(1, max_files)
        self._clock = clock
        self._lock = threading.Lock()
        self._pending = {s: b"" for s in STREAMS}
        self._f: Optional[BinaryIO] = open(self.path, "ab", buffering=0)
        self._size = self._f.seek(0, os.SEEK_END)

    def write(self, stream: str, data: bytes) -> None:
        """Log `data` read from the container's `stream` ("stdout" or "stderr")."""
        if stream not in STREAMS:
            raise ValueError(f"stream must be stdout or stderr, not {stream!r}")
        with self._lock:
            pending = self._pending[stream]
            buf = pending + data if pending else data
            if len(buf) < PARTIAL_SIZE:        # no line can be too long: split at once
                lines = buf.split(b"\n")
                self._pending[stream] = lines.pop()
                self._emit(stream, [ln + b"\n" for ln in lines])
                return
            out: List[bytes] = []
            start = 0
            while True:
                nl = buf.find(b"\n", start, start + PARTIAL_SIZE)
                if nl >= 0:
                    out.append(buf[start:nl + 1])
                    start = nl + 1
                elif len(buf) - start >= PARTIAL_SIZE:
                    cut = start + _utf8_cut(buf[start:start + PARTIAL_SIZE + 1], PARTIAL_SIZE)
                    out.append(buf[start:cut])
                    start = cut
                else:
                    break
            self._pending[stream] = buf[start:]
            self._emit(stream, out)

    def flush(self, stream: Optional[str] = None) -> None:
        """Write text still waiting for a newline as partial entries (stream ended)."""
        with self._lock:
            for s in ([stream] if stream else STREAMS):
                if self._pending[s]:
                    data, self._pending[s] = self._pending[s], b""
                    self._emit(s, [data])

    def close(self) -> None:
        self.flush()
        with self._lock:
            if self._f is not None:
                os.fsync(self._f.fileno())
                self._f.close()
                self._f = None

    def __enter__(self) -> "JsonLogWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _emit(self, stream: str, chunks: List[bytes]) -> None:
        if not chunks:
            return
        if self._f is None:
            raise LogError(f"log {self.path} is closed")
        encode = _encoder(stream, format_time(self._clock()))
        recs = [encode(chunk) for chunk in chunks]
        size = sum(map(len, recs))
        if not self.max_size or self._size + size <= self.max_size:
            self._f.write(b"".join(recs))           # one write for all of a read's lines
            self._size += size
            return
        for rec in recs:
            if self._size > 0 and self._size + len(rec) > self.max_size:
                self._rotate()
            self._f.write(rec)
            self._size += len(rec)

    def _rotate(self) -> None:
        assert self._f is not None
        if self.max_files <= 1:
            self._f.truncate(0)
            self._f.seek(0)
            self._size = 0
            return
        self._f.close()
        for n in range(self.max_files - 1, 0, -1):
            src = self.path if n == 1 else Path(f"{self.path}.{n - 1}")
            try:
                os.replace(src, f"{self.path}.{n}")
            except FileNotFoundError:
                pass
        self._f = open(self.path, "ab", buffering=0)
        self._size = 0


# --- reading ---------------------------------------------------------------------------------

class LogEntry(namedtuple("LogEntry", "stream data time")):
    """One log line: stream name, its bytes, its time as stored (RFC3339Nano). A named
    tuple: `logs` reads thousands, and a dataclass costs each CLI start ~5 ms to import."""
    __slots__ = ()

    @property
    def time_ns(self) -> int:
        return parse_time_ns(self.time)


def log_files(path: Union[str, Path]) -> List[Path]:
    """The log and its rotated files, oldest first (path.N ... path.1, path)."""
    p = Path(path)
    prefix = p.name + "."
    rotated = []
    try:
        names = os.listdir(p.parent)      # (a glob was ~4% of an API `logs` request)
    except FileNotFoundError:
        names = []
    for name in names:
        suffix = name[len(prefix):]
        if name.startswith(prefix) and suffix.isascii() and suffix.isdigit():
            rotated.append((int(suffix), p.parent / name))
    return [f for _, f in sorted(rotated, reverse=True)] + ([p] if p.exists() else [])


def _decode(line: bytes) -> Optional[LogEntry]:
    try:
        obj = json.loads(line)
        return LogEntry(obj.get("stream", "stdout"), obj["log"].encode("utf-8", "replace"),
                        obj.get("time", ""))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None  # a torn or foreign line: skipped, as Docker's decoder does after a crash


def _last_lines(path: Path, n: int, end: Optional[int] = None,
                block: int = 64 * 1024) -> Tuple[List[bytes], int]:
    """The last n complete lines before offset `end` (default: the file's size), read
    backwards, and the offset just past the last complete line."""
    with open(path, "rb") as f:
        if end is None:
            end = f.seek(0, os.SEEK_END)
        data = b""
        pos = end
        while pos > 0 and data.count(b"\n") <= n:
            step = min(block, pos)
            pos -= step
            f.seek(pos)
            data = f.read(step) + data
    lines = data.split(b"\n")
    incomplete = lines.pop()          # b"" when the data ends with a newline
    if n <= 0:
        return [], end - len(incomplete)
    return lines[-n:], end - len(incomplete)


def read_entries(path: Union[str, Path], *, follow: bool = False, tail: Optional[int] = None,
                 since: TimeArg = None, until: TimeArg = None,
                 stop_when: Optional[Callable[[], bool]] = None,
                 poll_interval: float = 0.05) -> Iterator[LogEntry]:
    """LogEntry values oldest first; see read_logs."""
    since_ns, until_ns = to_ns(since), to_ns(until)

    def keep(e: LogEntry) -> bool:
        if since_ns is None and until_ns is None:
            return True
        t = e.time_ns
        return (since_ns is None or t >= since_ns) and (until_ns is None or t <= until_ns)

    files = log_files(path)
    live = Path(path)
    if tail is not None and tail >= 0:
        f = open(live, "rb") if live.exists() else None
        lines: List[bytes] = []
        resume = 0
        for name in reversed(files):
            if name == live and f is not None:
                got, resume = _last_lines(live, tail, os.fstat(f.fileno()).st_size)
            else:
                got, _ = _last_lines(name, tail - len(lines))
            lines = got + lines
            if len(lines) >= tail:
                break
        for line in lines:
            e = _decode(line)
            if e is not None and keep(e):
                yield e
        if not follow:
            if f is not None:
                f.close()
            return
        if f is not None:
            f.seek(resume)
    else:
        for old in files[:-1]:
            with open(old, "rb") as fo:
                for line in fo:
                    e = _decode(line)
                    if e is not None and keep(e):
                        yield e
        f = open(live, "rb") if live.exists() else None
        if not follow:
            if f is not None:
                with f:
                    for line in f:
                        if line.endswith(b"\n"):
                            e = _decode(line)
                            if e is not None and keep(e):
                                yield e
            return
    yield from _follow(live, f, keep, until_ns, stop_when, poll_interval)


def _follow(live: Path, f: Optional[BinaryIO], keep: Callable[[LogEntry], bool],
            until_ns: Optional[int], stop_when: Optional[Callable[[], bool]],
            poll_interval: float) -> Iterator[LogEntry]:
    rest = b""
    stopping = False
    try:
        while True:
            got = False
            if f is None and live.exists():
                f = open(live, "rb")
            if f is not None:
                if os.fstat(f.fileno()).st_size < f.tell():   # truncated in place (max_files=1)
                    f.seek(0)
                    rest = b""
                chunk = f.read(1 << 20)
                if chunk:
                    got = True
                    lines = (rest + chunk).split(b"\n")
                    rest = lines.pop()
                    for line in lines:
                        e = _decode(line)
                        if e is None:
                            continue
                        if until_ns is not None and e.time_ns > until_ns:
                            return
                        if keep(e):
                            yield e
                    continue
                nxt = _next_file(live, f)
                if nxt is not None:   # rotated, and our (renamed) file is fully read
                    f.close()
                    f, rest = nxt, b""
                    continue
            if stopping:
                return
            if not got:
                if stop_when is not None and stop_when():
                    stopping = True   # one more pass drains what was written meanwhile
                    continue
                time.sleep(poll_interval)
    finally:
        if f is not None:
            f.close()


def _next_file(live: Path, f: BinaryIO) -> Optional[BinaryIO]:
    """After a rotation: the file written after the one `f` reads (None if `f` is current)."""
    ino = os.fstat(f.fileno()).st_ino
    try:
        if os.stat(live).st_ino == ino:
            return None
    except FileNotFoundError:
        return None
    try:
        live_ino = os.stat(live).st_ino
    except FileNotFoundError:
        return None
    files = log_files(live)
    inodes = []
    for name in files:
        try:
            inodes.append(os.stat(name).st_ino)
        except FileNotFoundError:
            inodes.append(-1)
    # the file after ours; if ours was already deleted, the oldest one left
    idx = inodes.index(ino) + 1 if ino in inodes else 0
    for name, want in zip(files[idx:], inodes[idx:]):
        try:
            nxt = open(name, "rb")
        except FileNotFoundError:
            continue
        try:
            # a rotation while we looked renames every file: the name may now be another
            # file, and the next one could be skipped; look again on the next pass then
            if os.fstat(nxt.fileno()).st_ino != want or os.stat(live).st_ino != live_ino:
                nxt.close()
                return None
        except FileNotFoundError:
            nxt.close()
            return None
        return nxt
    return None


def read_logs(path: Union[str, Path], *, follow: bool = False, tail: Optional[int] = None,
              since: TimeArg = None, until: TimeArg = None, timestamps: bool = False,
              stop_when: Optional[Callable[[], bool]] = None,
              poll_interval: float = 0.05) -> Iterator[Tuple[str, bytes]]:
    """(stream, data) per entry, oldest first across rotated files.

    tail: only the last N entries (None or negative = all); since/until: datetime, epoch
    seconds or RFC 3339 text; timestamps: prefix each entry with its RFC3339NanoFixed time
    and a space (`logs -t`); follow: keep reading new entries (through rotation) until
    stop_when() returns True, then drain and end."""
    for e in read_entries(path, follow=follow, tail=tail, since=since, until=until,
                          stop_when=stop_when, poll_interval=poll_interval):
        if timestamps:
            yield e.stream, format_time(e.time_ns, fixed=True).encode() + b" " + e.data
        else:
            yield e.stream, e.data


def copy_logs(path: Union[str, Path], stdout: BinaryIO, stderr: BinaryIO, **options) -> None:
    """`docker logs`: stdout entries to `stdout`, stderr entries to `stderr` (binary files)."""
    for stream, data in read_logs(path, **options):
        out = stderr if stream == "stderr" else stdout
        out.write(data)
        if options.get("follow"):
            out.flush()
