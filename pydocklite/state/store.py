"""The on-disk store of container records (one directory per container).

`ContainerStore(containers_dir)`: containers/<id>/ holds state.json (atomic temp+fsync+
rename), a `lock` file (fcntl.flock, per container) and, under `.names/`, one symlink per
name -> id created under a global lock, so two CLIs can't take one name. Lookup: exact id,
exact name, then a unique id prefix (Docker's order). Every path comes from
pydocklite.layout.ContainerFiles.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import Callable, Iterator, List, Optional

from pydocklite.atomic import atomic_write_json
from pydocklite.errors import (ConflictError, ContainerError, ContainerNotFoundError,
                               UsageError)
from pydocklite.layout import ContainerFiles
from pydocklite.state.container import ContainerState, ZERO_TIME, new_id, now_rfc3339


class NameConflictError(ContainerError, ConflictError):
    """A container name already taken by another container."""


class InvalidNameError(ContainerError, UsageError):
    pass


class AmbiguousReferenceError(ContainerError, UsageError):
    pass


class StateCorruptError(ContainerError):
    pass


class ContainerBusyError(ContainerError, ConflictError):
    """Another lifecycle operation holds the container's life lock (wait=False)."""


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
        self._root_str = str(self.root)
        self.names_dir = self.root / ".names"

    def ensure(self) -> None:
        self.names_dir.mkdir(parents=True, exist_ok=True)

    def files(self, cid: str) -> ContainerFiles:
        """The paths of container `cid`'s files."""
        return ContainerFiles(self.root / cid)

    def container_dir(self, cid: str) -> Path:
        return self.root / cid

    def _has_state(self, cid: str) -> bool:
        # plain strings (pathlib costs ~10 us a path: this is on every API request)
        return os.path.isfile(os.path.join(self._root_str, cid, "state.json"))

    def state_path(self, cid: str) -> Path:
        return self.files(cid).state

    # locks
    def lock(self, cid: str, shared: bool = False):
        """The record's lock (context manager): held around a read-modify-write of
        state.json, briefly (the shim takes it too, to record pids and exit status)."""
        files = self.files(cid)
        if not files.dir.is_dir():
            raise ContainerNotFoundError(f"No such container: {cid}")
        return _flock(files.lock, shared)

    @contextlib.contextmanager
    def operation(self, ref: str, wait: bool = True) -> Iterator[ContainerState]:
        """The container's life lock: every lifecycle operation (start, stop, kill, rm,
        restart, update, pause) holds it from its checks to its last action, so two can't
        act on one container at once (two starts, a start and an rm); the shim takes it to
        restart the container or remove it (--rm). Yields the state as loaded under the
        lock: ContainerNotFoundError when the container was removed while we waited.
        wait=False: ContainerBusyError at once if another operation holds it."""
        cid = self.resolve(ref)
        files = self.files(cid)
        try:
            fd = os.open(str(files.op_lock), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:
            raise ContainerNotFoundError(f"No such container: {ref}") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                raise ContainerBusyError(f"container {cid[:12]} is busy: another operation "
                                         f"on it is under way; try again") from None
            # removed while we waited: its files (and this lock's) are gone
            yield self.load(cid)
        finally:
            os.close(fd)

    def global_lock(self):
        self.ensure()
        return _flock(self.root / ".lock")

    # names
    def _name_link(self, name: str) -> Path:
        return self.names_dir / name

    def owner_of(self, name: str) -> Optional[str]:
        """The id holding `name`; None for a name that is free or not a valid name (so a
        hostile one, "../x", never reaches the file system)."""
        name = normalize_name(name)
        if not is_valid_name(name):
            return None
        try:
            owner = os.readlink(os.path.join(self._root_str, ".names", name))
        except OSError:
            return None
        return owner if _is_id(owner) else None

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
                if self.files(owner).dir.is_dir():
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
        """Record a new container and reserve its name (a generated one if empty). Fills id
        (if empty) and created (if zero). Returns the stored state.

        The record appears whole: its directory is made under a hidden name with state.json
        in it, then renamed into place; the name is reserved after that (a name link whose
        container directory is missing is stale, see reserve_name). A creator killed half-way
        leaves only a hidden .creating-* directory, which a later create sweeps away."""
        self.ensure()
        self._sweep_partial()
        cid = state.id or new_id()
        wanted = normalize_name(state.name)
        if wanted and not is_valid_name(wanted):
            raise InvalidNameError(f'Invalid container name ({wanted}), only '
                                   f'[a-zA-Z0-9][a-zA-Z0-9_.-] are allowed')
        state = state._replace(id=cid, name=wanted or generate_name(0),
                               created=state.created if state.created != ZERO_TIME
                               else now_rfc3339())
        tmp = self.root / f".creating-{cid}"
        tmp.mkdir(mode=0o700)
        try:
            # not durable: the record is complete only when the creator's next write (the
            # container's configuration) is, and that one is
            atomic_write_json(tmp / "state.json", state.to_json(), durable=False)
            os.rename(tmp, self.files(cid).dir)
        except BaseException:
            _rmtree(tmp)
            raise
        try:
            if wanted:
                self.reserve_name(wanted, cid)
            else:
                try:
                    self.reserve_name(state.name, cid)
                except NameConflictError:
                    state = state._replace(name=self._reserve_generated(cid))
                    self.save(state)
        except BaseException:
            _rmtree(self.files(cid).dir)
            raise
        return state

    def _sweep_partial(self, age: float = 60.0) -> None:
        """Hidden leftovers of a create or rm killed half-way (.creating-*, .removing-*)
        older than `age` seconds."""
        import time
        now = time.time()
        try:
            entries = [e for e in os.scandir(self.root)
                       if e.name.startswith((".creating-", ".removing-"))]
        except FileNotFoundError:
            return
        for e in entries:
            try:
                if now - e.stat(follow_symlinks=False).st_mtime > age:
                    _rmtree(Path(e.path))
            except OSError:
                continue

    def load(self, cid: str) -> ContainerState:
        try:
            # a plain string path: this runs for every container of every `ps`
            with open(os.path.join(self._root_str, cid, "state.json"), "rb") as f:
                data = json.loads(f.read())
        except FileNotFoundError:
            raise ContainerNotFoundError(f"No such container: {cid}") from None
        except (ValueError, OSError) as exc:
            raise StateCorruptError(f"container {cid}: unreadable state.json ({exc}); "
                                    f"remove it with `rm -f {cid[:12]}`") from None
        return ContainerState.from_json(data)

    def save(self, state: ContainerState, durable: bool = True) -> None:
        """Write state.json atomically (hold `lock(id)` when read-modify-writing)."""
        if not self.files(state.id).dir.is_dir():
            raise ContainerNotFoundError(f"No such container: {state.id}")
        atomic_write_json(self.state_path(state.id), state.to_json(), durable=durable)

    def update(self, cid: str, change: Callable[[ContainerState], ContainerState],
               then: Optional[Callable[[ContainerState], None]] = None,
               durable: bool = True) -> ContainerState:
        """Locked read-modify-write: `change(old)` returns the new state; then(new) runs
        before the lock is let go (a reader taking the lock after seeing the new state
        knows it has run: the shim's `die` event is in the journal). durable=False: see
        atomic.py (for facts that mean nothing after a reboot, such as pids)."""
        with self.lock(cid):
            new = change(self.load(cid))
            self.save(new, durable=durable)
            if then is not None:
                then(new)
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
        if _is_id(ref) and self._has_state(ref):
            return ref
        owner = self.owner_of(ref)
        if owner and self._has_state(owner):
            return owner
        matches = [cid for cid in self.ids() if cid.startswith(ref.lower())] \
            if _is_id(ref.lower()) else []
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
            os.rename(self.files(cid).dir, tmp)
        _rmtree(tmp)
        if tmp.exists():
            raise ContainerError(f"container {cid[:12]} was removed but {tmp} could not be fully "
                                 f"deleted: its files belong to subordinate ids, delete it as "
                                 f"root of a user namespace with the same id map")


def normalize_name(name: str) -> str:
    """Strip the API's leading "/" ("/web" -> "web")."""
    return name[1:] if name.startswith("/") else name


def is_valid_name(name: str) -> bool:
    # state.names (its word lists, dockerd's rule) only where a name is checked or made:
    # `ps`, `logs` and `inspect` never need it
    from pydocklite.state.names import is_valid_name as valid
    return valid(name)


def generate_name(retry: int = 0) -> str:
    from pydocklite.state.names import generate_name as generate
    return generate(retry)


def _is_id(text: str) -> bool:
    """A container id or id prefix: lowercase hex only (never a path)."""
    return bool(text) and len(text) <= 64 and all(c in "0123456789abcdef" for c in text)


def _rmtree(path: Path) -> None:
    import shutil    # not at module level: `ps` and `logs` never delete (shutil costs ~2 ms)
    shutil.rmtree(path, ignore_errors=True)
