"""The per-user events journal: what the commands, the shims and the API service did, in
Docker's event shape, for `pydocklite events`, `system events` and the API's /events.

    $XDG_RUNTIME_DIR/pydocklite/events/journal     JSON lines, oldest first
                                      journal.1   the previous one (rotated)
                                      lock        shared by appenders, exclusive to rotate

emit() appends one event as one write(2) to a file opened O_APPEND: the appends of any
number of processes (a CLI, a shim recording a `die`, the API) never interleave, and a
process killed at any moment leaves whole lines (a reader skips a line that isn't JSON).
The journal is bounded: past MAX_BYTES it is renamed to journal.1 (replacing the older
one) under the lock's exclusive hold, so at most ~2 x MAX_BYTES are kept (Docker keeps its
last events in memory; this survives the commands that wrote them, not a reboot).

read() yields the events between two times, then (follow=True) those still to come, in
the order they were appended; a follower that sees the journal rotated reads the old file
to its end first (the rotation waited for every append to it), and journal.1 when that is
another one. A follower more than two rotations (~2 MiB of events) behind loses events.

Cheap: emit() imports nothing beyond os and json; a failing journal (full disk, no runtime
dir) never fails the command that emits.
"""
from __future__ import annotations

import json
import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import Callable, Dict, Iterator, List, Optional

MAX_BYTES = 1 << 20
POLL = 0.05          # how often a follower looks for new events (seconds)


def emit(events_dir, type_: str, action: str, actor_id: str,
         attributes: Optional[Dict[str, str]] = None, *, scope: str = "local",
         now_ns: Optional[int] = None) -> Optional[dict]:
    """Append one event (Docker's JSON shape); returns it, or None when the journal could
    not be written (the command goes on)."""
    ns = time.time_ns() if now_ns is None else now_ns
    attrs = {str(k): str(v) for k, v in (attributes or {}).items()}
    event = {"Type": type_, "Action": action,
             "Actor": {"ID": actor_id, "Attributes": attrs},
             "scope": scope, "time": ns // 1_000_000_000, "timeNano": ns}
    if type_ == "container":        # the fields Docker still sends for older clients
        event = {"status": action, "id": actor_id, "from": attrs.get("image", ""), **event}
    elif type_ == "image":
        event = {"status": action, "id": actor_id, **event}
    line = (json.dumps(event, separators=(",", ":")) + "\n").encode()
    try:
        _append(str(events_dir), line)
    except OSError:
        return None
    return event


def container(events_dir, action: str, cid: str, image: str, name: str,
              labels: Optional[Dict[str, str]] = None, **extra: str) -> Optional[dict]:
    """A container event with Docker's attributes: the labels, image, name, then extras
    (exitCode, signal, execID...)."""
    attrs = dict(labels or {})
    attrs.update(image=image, name=name)
    attrs.update(extra)
    return emit(events_dir, "container", action, cid, attrs)


def _append(events_dir: str, line: bytes) -> None:
    import fcntl
    journal = os.path.join(events_dir, "journal")
    try:
        lock = os.open(os.path.join(events_dir, "lock"),
                       os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except FileNotFoundError:
        # the runtime directory too, 0700 (makedirs gives only the last one the mode)
        os.makedirs(os.path.dirname(events_dir), mode=0o700, exist_ok=True)
        os.makedirs(events_dir, mode=0o700, exist_ok=True)
        lock = os.open(os.path.join(events_dir, "lock"),
                       os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_SH)
        fd = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, line)
            size = os.fstat(fd).st_size
        finally:
            os.close(fd)
        if size > MAX_BYTES:
            fcntl.flock(lock, fcntl.LOCK_EX)    # every other append has finished
            try:
                if os.stat(journal).st_size > MAX_BYTES:
                    os.replace(journal, journal + ".1")
            except FileNotFoundError:
                pass
    finally:
        os.close(lock)


# --- reading ---------------------------------------------------------------------------------

def read(events_dir, *, since_ns: Optional[int] = None, until_ns: Optional[int] = None,
         follow: bool = False, match: Optional[Callable[[dict], bool]] = None,
         stop: Optional[Callable[[], bool]] = None) -> Iterator[dict]:
    """Events with since_ns <= timeNano <= until_ns that `match`, oldest first. follow:
    then wait for new ones until until_ns passes or stop() says so. since_ns None with
    follow: only events from now on (Docker's `events` without --since)."""
    journal = os.path.join(str(events_dir), "journal")
    start_ns = since_ns
    if start_ns is None and follow:
        start_ns = time.time_ns()
    keep = match or (lambda e: True)

    def wanted(e: dict) -> bool:
        t = e.get("timeNano")
        if not isinstance(t, int):
            return False
        return (start_ns is None or t >= start_ns) and \
            (until_ns is None or t <= until_ns) and keep(e)

    f = None
    try:
        try:
            f = open(journal, "rb")
            if since_ns is None and follow:
                f.seek(0, os.SEEK_END)      # only what comes from now on
        except FileNotFoundError:
            f = None
        if since_ns is not None or not follow:
            # the older file after opening the newer one: a rotation in between makes
            # journal.1 the file we hold (skipped: read below), never loses one
            for e in _events_of(journal + ".1", unless_file=f):
                if wanted(e):
                    yield e
        buf = b""
        while True:
            chunk = f.read(65536) if f is not None else b""
            if chunk:
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    e = _parse(line)
                    if e is not None and wanted(e):
                        yield e
                continue
            if not follow:
                return
            if until_ns is not None and time.time_ns() > until_ns:
                return
            if stop is not None and stop():
                return
            if _rotated(f, journal):        # drained the old file: on to the new one
                if f is not None:
                    # rotated more than once since: the one in between is journal.1 now
                    for e in _events_of(journal + ".1", unless_file=f):
                        if wanted(e):
                            yield e
                    f.close()
                try:
                    f = open(journal, "rb")
                except FileNotFoundError:
                    f = None
                buf = b""
                continue
            time.sleep(POLL)
    finally:
        if f is not None:
            f.close()


def _rotated(f, journal: str) -> bool:
    try:
        st = os.stat(journal)
    except FileNotFoundError:
        return False
    if f is None:
        return True
    mine = os.fstat(f.fileno())
    return (st.st_ino, st.st_dev) != (mine.st_ino, mine.st_dev)


def _events_of(path: str, unless_file=None) -> List[dict]:
    """The events of the file at `path` ([] if it is `unless_file`, one already read)."""
    try:
        with open(path, "rb") as f:
            if unless_file is not None:
                a, b = os.fstat(f.fileno()), os.fstat(unless_file.fileno())
                if (a.st_ino, a.st_dev) == (b.st_ino, b.st_dev):
                    return []
            data = f.read()
    except FileNotFoundError:
        return []
    return [e for e in map(_parse, data.split(b"\n")) if e is not None]


def _parse(line: bytes) -> Optional[dict]:
    if not line.strip():
        return None
    try:
        e = json.loads(line)
    except ValueError:
        return None      # a torn or foreign line: skipped, never fatal
    return e if isinstance(e, dict) and isinstance(e.get("Actor"), dict) else None


# --- filters (Docker's: type, event, container, image, label, volume, network, scope) --------

FILTER_KEYS = ("type", "event", "container", "image", "label", "volume", "network", "scope",
               "daemon", "plugin", "node", "service", "secret", "config")


def matcher(filters: Dict[str, List[str]]) -> Callable[[dict], bool]:
    """Docker's event filters: values of one key are OR'ed, keys are AND'ed. `filters`:
    {"type": ["container"], "label": ["a=b"], ...} (unknown keys: UsageError)."""
    from pydocklite.errors import UsageError
    for key in filters:
        if key not in FILTER_KEYS:
            raise UsageError(f"invalid filter '{key}': use " + ", ".join(FILTER_KEYS[:8]))

    def one(e: dict, key: str, value: str) -> bool:
        actor = e.get("Actor") or {}
        attrs = actor.get("Attributes") or {}
        if key == "type":
            return e.get("Type") == value
        if key == "event":
            action = e.get("Action", "")
            return action == value or action.split(":", 1)[0] == value
        if key == "scope":
            return e.get("scope") == value
        if key == "label":
            from pydocklite.filters import label_matches
            return label_matches(attrs, value)
        if key == "image":
            image = attrs.get("image", "") if e.get("Type") == "container" else \
                actor.get("ID", "")
            return value in (image, attrs.get("name", "")) or \
                _same_image(value, image) or _same_image(value, attrs.get("name", ""))
        kinds = {"container": "container", "volume": "volume", "network": "network"}
        if key in kinds:
            if e.get("Type") != kinds[key]:
                return False
            aid = actor.get("ID", "")
            return value == attrs.get("name") or (len(value) >= 1 and aid.startswith(value))
        return False

    def match(e: dict) -> bool:
        return all(any(one(e, k, v) for v in vals) for k, vals in filters.items() if vals)
    return match


def _same_image(a: str, b: str) -> bool:
    """busybox vs busybox:latest vs docker.io/library/busybox:latest."""
    if not a or not b:
        return False

    def norm(x: str) -> str:
        for prefix in ("docker.io/library/", "docker.io/"):
            if x.startswith(prefix):
                x = x[len(prefix):]
        if ":" not in x.rsplit("/", 1)[-1] and "@" not in x:
            x += ":latest"
        return x
    return norm(a) == norm(b)


def parse_filters(items: List[str]) -> Dict[str, List[str]]:
    """["type=container", "event=die"] (--filter) -> {"type": ["container"], ...}."""
    from pydocklite.filters import parse_filters as parse
    return parse(items, FILTER_KEYS)
