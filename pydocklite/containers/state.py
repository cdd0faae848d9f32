"""A container's recorded facts, the status derived from them, and the on-disk store.

`ContainerState` holds only facts (pids with their kernel start times, exit code, times).
`status()` derives Docker's words from them: a pid counts as alive only if /proc/PID/stat
still shows the recorded start time (field 22), so pid reuse can't fool it, and a shim
that died while its container ran is reported as "exited" with an error naming it.

`ContainerStore(containers_dir)`: one directory per container holding state.json
(atomic temp+fsync+rename), a `lock` file (fcntl.flock, per container) and, under
`.names/`, one symlink per name -> id created under a global lock, so two CLIs can't take
one name. Lookup: exact id, exact name, then a unique id prefix (Docker's order).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
from datetime import datetime, timezone
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import Any, Callable, Dict, Iterator, List, Optional

from pydocklite.atomic import atomic_write_json  # noqa: F401 (part of this module's API)
from pydocklite.containers.names import generate_name, is_valid_name, normalize_name
from pydocklite.humanize import human_duration  # noqa: F401 (part of this module's API)
from pydocklite.errors import (ConflictError, ContainerError, ContainerNotFoundError,
                               UsageError)
from pydocklite.runtime.record import Factory, record

ZERO_TIME = "0001-01-01T00:00:00Z"
SCHEMA = 1


class NameConflictError(ContainerError, ConflictError):
    """A container name already taken by another container."""


class InvalidNameError(ContainerError, UsageError):
    pass


class AmbiguousReferenceError(ContainerError, UsageError):
    pass


class StateCorruptError(ContainerError):
    pass


# --- processes -----------------------------------------------------------------------------

def process_start_time(pid: int) -> Optional[int]:
    """Start time of `pid` in clock ticks since boot (/proc/PID/stat field 22), or None if the
    process doesn't exist or is a zombie (exited, not yet reaped: it runs nothing)."""
    if pid <= 0:
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    rest = data[data.rfind(b")") + 2:].split()  # rest[0] is field 3 (state)
    if not rest or rest[0] in (b"Z", b"X"):
        return None
    return int(rest[19])


def pid_alive(pid: int, start_time: int) -> bool:
    """True if `pid` runs and is the very process that started at `start_time`."""
    return pid > 0 and start_time > 0 and process_start_time(pid) == start_time


def now_rfc3339() -> str:
    """Current UTC time the way Docker writes it (RFC 3339, nanoseconds, Z)."""
    ns = __import__("time").time_ns()
    sec, frac = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(sec, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


def parse_rfc3339(text: str) -> Optional[datetime]:
    """Parse Docker's timestamps (any fraction length, Z or offset); None for empty/zero time."""
    if not text or text.startswith("0001-01-01"):
        return None
    t = text.replace("Z", "+00:00")
    if "." in t:
        head, tail = t.split(".", 1)
        i = next((k for k, c in enumerate(tail) if not c.isdigit()), len(tail))
        t = f"{head}.{tail[:i][:6].ljust(6, '0')}{tail[i:]}"
    return datetime.fromisoformat(t)


# --- facts and derived status -----------------------------------------------------------------

@record
class Status:
    """Derived, never stored. `state` is one of Docker's words: created, running, paused,
    restarting, removing, exited, dead."""
    state: str
    running: bool
    pid: int
    exit_code: int
    error: str
    shim_alive: bool


@record
class ContainerState:
    id: str
    name: str
    image: str                      # the reference the user gave ("nginx:latest")
    image_id: str = ""              # "sha256:<hex>" of the image config
    created: str = ZERO_TIME
    config: Dict[str, Any] = Factory(dict)   # Docker's Config/HostConfig used
    shim_pid: int = 0
    shim_start_time: int = 0
    init_pid: int = 0
    init_start_time: int = 0
    exit_code: Optional[int] = None  # recorded by the shim when the init exits
    started_at: str = ZERO_TIME
    finished_at: str = ZERO_TIME
    oom_killed: bool = False
    restart_count: int = 0
    restarting: bool = False        # the shim waits to apply the restart policy
    paused: bool = False
    removing: bool = False
    dead: bool = False              # removal failed half-way; only `rm -f` helps
    error: str = ""
    log_path: str = ""
    shim_log_path: str = ""

    @property
    def short_id(self) -> str:
        return self.id[:12]

    def status(self, alive: Callable[[int, int], bool] = pid_alive) -> Status:
        shim_alive = alive(self.shim_pid, self.shim_start_time)
        init_alive = alive(self.init_pid, self.init_start_time)
        code = self.exit_code if self.exit_code is not None else 0
        if self.dead:
            return Status("dead", False, 0, code, self.error, shim_alive)
        if self.removing:
            return Status("removing", False, 0, code, self.error, shim_alive)
        if init_alive:
            err = self.error
            if not shim_alive and self.shim_pid:
                err = err or (f"shim (pid {self.shim_pid}) exited while the container runs: "
                              f"logs and exit status are no longer recorded")
            return Status("paused" if self.paused else "running", True, self.init_pid, code,
                          err, shim_alive)
        if self.restarting and shim_alive:
            return Status("restarting", False, 0, code, self.error, True)
        if self.exit_code is not None:
            return Status("exited", False, 0, self.exit_code, self.error, shim_alive)
        if self.started_at != ZERO_TIME or self.init_pid:
            if shim_alive:  # the init just exited; its shim is recording the status
                return Status("running", True, self.init_pid, 0, self.error, True)
            err = self.error or (f"shim (pid {self.shim_pid}) died while the container was running;"
                                 f" exit status unknown (see {self.shim_log_path or 'the shim log'})")
            return Status("exited", False, 0, 255, err, False)
        return Status("created", False, 0, code, self.error, shim_alive)

    def human_status(self, now: Optional[datetime] = None,
                     alive: Callable[[int, int], bool] = pid_alive) -> str:
        """The STATUS column of `docker ps`: "Up 5 minutes", "Exited (0) 2 hours ago"..."""
        st = self.status(alive)
        now = now or datetime.now(timezone.utc)

        def since(ts: str) -> str:
            t = parse_rfc3339(ts)
            return human_duration((now - t).total_seconds()) if t else "Less than a second"
        if st.state in ("running", "paused"):
            up = f"Up {since(self.started_at)}"
            return up + " (Paused)" if st.state == "paused" else up
        if st.state == "restarting":
            return f"Restarting ({st.exit_code}) {since(self.finished_at)} ago"
        if st.state == "exited":
            if self.finished_at == ZERO_TIME:
                return f"Exited ({st.exit_code})"
            return f"Exited ({st.exit_code}) {since(self.finished_at)} ago"
        return {"created": "Created", "removing": "Removal In Progress", "dead": "Dead"}[st.state]

    def inspect_state(self, alive: Callable[[int, int], bool] = pid_alive) -> Dict[str, Any]:
        """The "State" object of `docker inspect`."""
        st = self.status(alive)
        return {
            "Status": st.state, "Running": st.state in ("running", "paused"),
            "Paused": st.state == "paused", "Restarting": st.state == "restarting",
            "OOMKilled": self.oom_killed, "Dead": st.state == "dead", "Pid": st.pid,
            "ExitCode": st.exit_code, "Error": st.error, "StartedAt": self.started_at,
            "FinishedAt": self.finished_at,
        }

    def to_json(self) -> Dict[str, Any]:
        data = self._asdict()
        data["schema"] = SCHEMA
        return data

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "ContainerState":
        names = set(cls._fields)
        return cls(**{k: v for k, v in data.items() if k in names})


def new_id() -> str:
    """64 hex digits whose 12-digit short form isn't all decimal (Docker avoids those)."""
    while True:
        cid = os.urandom(32).hex()
        if not cid[:12].isdigit():
            return cid


@contextlib.contextmanager
def _flock(path: Path, shared: bool = False) -> Iterator[None]:
    fd = os.open(str(path), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the lock


class ContainerStore:
    """Container records under `containers_dir` (StoreLayout.containers_dir)."""

    def __init__(self, containers_dir: Path):
        self.root = Path(containers_dir)
        self.names_dir = self.root / ".names"

    def ensure(self) -> None:
        self.names_dir.mkdir(parents=True, exist_ok=True)

    def container_dir(self, cid: str) -> Path:
        return self.root / cid

    def state_path(self, cid: str) -> Path:
        return self.root / cid / "state.json"

    # locks
    def lock(self, cid: str, shared: bool = False):
        """Per-container lock (context manager); hold it around read-modify-write."""
        d = self.container_dir(cid)
        if not d.is_dir():
            raise ContainerNotFoundError(f"No such container: {cid}")
        return _flock(d / "lock", shared)

    def global_lock(self):
        self.ensure()
        return _flock(self.root / ".lock")

    # names
    def _name_link(self, name: str) -> Path:
        return self.names_dir / name

    def owner_of(self, name: str) -> Optional[str]:
        try:
            return os.readlink(self._name_link(normalize_name(name)))
        except OSError:
            return None

    def reserve_name(self, name: str, cid: str) -> None:
        """Take `name` for container `cid`; NameConflictError if another live container has it."""
        name = normalize_name(name)
        if not is_valid_name(name):
            raise InvalidNameError(f'Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] '
                                   f'are allowed')
        with self.global_lock():
            owner = self.owner_of(name)
            if owner == cid:
                return
            if owner is not None:
                if self.container_dir(owner).is_dir():
                    raise NameConflictError(
                        f'Conflict. The container name "/{name}" is already in use by container '
                        f'"{owner}". You have to remove (or rename) that container to be able '
                        f'to reuse that name.')
                os.unlink(self._name_link(name))  # stale: its container is gone
            os.symlink(cid, self._name_link(name))

    def release_name(self, name: str, cid: str) -> None:
        name = normalize_name(name)
        with self.global_lock():
            if self.owner_of(name) == cid:
                os.unlink(self._name_link(name))

    def _reserve_generated(self, cid: str) -> str:
        for retry in range(20):
            name = generate_name(retry)
            if name == "boring_wozniak":
                continue
            try:
                self.reserve_name(name, cid)
                return name
            except NameConflictError:
                continue
        raise ContainerError("could not generate a unique container name: name one with --name")

    # records
    def create(self, state: ContainerState) -> ContainerState:
        """Record a new container: reserves its name (generated if empty), writes state.json.
        Fills id (if empty) and created (if zero). Returns the stored state."""
        self.ensure()
        cid = state.id or new_id()
        name = normalize_name(state.name)
        d = self.container_dir(cid)
        # the directory exists before the name points at it: a name link whose directory is
        # missing is then always stale (see reserve_name)
        d.mkdir(mode=0o700)
        try:
            if name:
                self.reserve_name(name, cid)
            else:
                name = self._reserve_generated(cid)
        except BaseException:
            d.rmdir()
            raise
        try:
            state = state._replace(id=cid, name=name,
                                        created=state.created if state.created != ZERO_TIME
                                        else now_rfc3339())
            atomic_write_json(self.state_path(cid), state.to_json())
        except BaseException:
            self.release_name(name, cid)
            _rmtree(d)
            raise
        return state

    def load(self, cid: str) -> ContainerState:
        try:
            data = json.loads(self.state_path(cid).read_text())
        except FileNotFoundError:
            raise ContainerNotFoundError(f"No such container: {cid}") from None
        except (ValueError, OSError) as exc:
            raise StateCorruptError(f"container {cid}: unreadable state.json ({exc}); "
                                    f"remove it with `rm -f {cid[:12]}`") from None
        return ContainerState.from_json(data)

    def save(self, state: ContainerState) -> None:
        """Write state.json atomically (hold `lock(id)` when read-modify-writing)."""
        if not self.container_dir(state.id).is_dir():
            raise ContainerNotFoundError(f"No such container: {state.id}")
        atomic_write_json(self.state_path(state.id), state.to_json())

    def update(self, cid: str, change: Callable[[ContainerState], ContainerState]) -> ContainerState:
        """Locked read-modify-write: `change(old)` returns the new state."""
        with self.lock(cid):
            new = change(self.load(cid))
            self.save(new)
            return new

    def ids(self) -> List[str]:
        try:
            return sorted(e.name for e in os.scandir(self.root)
                          if e.is_dir() and not e.name.startswith("."))
        except FileNotFoundError:
            return []

    def list(self) -> List[ContainerState]:
        """All containers, newest first (like `ps -a`); records removed meanwhile are skipped."""
        out = []
        for cid in self.ids():
            try:
                out.append(self.load(cid))
            except (ContainerNotFoundError, StateCorruptError):
                continue
        out.sort(key=lambda s: s.created, reverse=True)
        return out

    def resolve(self, ref: str) -> str:
        """Full id for an id, a name ("web" or "/web") or a unique id prefix."""
        if not ref:
            raise ContainerNotFoundError("No such container: (empty name)")
        if ref.isalnum() and self.state_path(ref).is_file():
            return ref
        owner = self.owner_of(ref)
        if owner and self.state_path(owner).is_file():
            return owner
        matches = [cid for cid in self.ids() if cid.startswith(ref.lower())] if ref.isalnum() else []
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            shown = ", ".join(m[:12] for m in matches[:5])
            raise AmbiguousReferenceError(
                f'multiple containers match the prefix "{ref}" ({shown}): give more characters '
                f'of the id or the name')
        raise ContainerNotFoundError(f"No such container: {ref}")

    def get(self, ref: str) -> ContainerState:
        return self.load(self.resolve(ref))

    def rename(self, ref: str, new_name: str) -> ContainerState:
        cid = self.resolve(ref)
        new_name = normalize_name(new_name)
        with self.lock(cid):
            old = self.load(cid)
            if old.name == new_name:
                raise InvalidNameError(f"Renaming a container with the same name as its current "
                                     f"name: {new_name}")
            self.reserve_name(new_name, cid)
            new = old._replace(name=new_name)
            self.save(new)
            self.release_name(old.name, cid)
        return new

    def remove(self, cid: str) -> None:
        """Delete the record and free its name; the caller has stopped the container and
        cleaned its mounts. Files inside the container dir (upper/, logs) go with it."""
        with self.lock(cid):
            state = self.load(cid)
            self.release_name(state.name, cid)
            tmp = self.root / f".removing-{cid}"
            os.rename(self.container_dir(cid), tmp)
        _rmtree(tmp)
        if tmp.exists():
            raise ContainerError(f"container {cid[:12]} was removed but {tmp} could not be fully "
                                 f"deleted: its files belong to subordinate ids, delete it as "
                                 f"root of a user namespace with the same id map")


def _rmtree(path: Path) -> None:
    import shutil    # not at module level: `ps` and `logs` never delete (shutil costs ~2 ms)
    shutil.rmtree(path, ignore_errors=True)
