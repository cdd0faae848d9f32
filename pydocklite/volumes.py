"""The volumes service: named and anonymous volumes of the `local` driver, as directories.

On disk (every path from StoreLayout.volumes_dir):

    volumes/<name>/_data          what containers mount
    volumes/<name>/volume.json    Name, CreatedAt, Labels, Options (atomic writes)
    volumes/<name>/users/<cid>    one empty file per container created with the volume
    volumes/.lock                 flock: create/attach/detach/remove are serialised by it

A name is one path component (pydocklite.naming: dockerd's `[a-zA-Z0-9][a-zA-Z0-9_.-]+`), so
a volume can never resolve outside volumes/. Anonymous volumes (`-v /path`, 64 hex digits)
carry Docker's label `com.docker.volume.anonymous`; `rm -v` and a plain `volume prune` remove
only those (Docker's rule since 23.0), never a named volume or a bind mount's source.
A volume is in use while a container recorded in users/ still exists; `volume rm` and
`prune` refuse or skip it. Data is deleted by directory fds (no symlink followed), as root of
a user namespace when the container's subordinate ids own files there.

The CLI's `volume` verbs and the API's /volumes endpoints both call this service.
"""
from __future__ import annotations

import contextlib
import json
import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from pydocklite.errors import ConflictError, NotFoundError, PydockliteError, UsageError
from pydocklite.filters import labels_pass
from pydocklite.naming import check_volume_name
from pydocklite.runtime.record import record

ANONYMOUS_LABEL = "com.docker.volume.anonymous"
DRIVER = "local"
META = "volume.json"
# Docker's local driver takes these options, all of them to mount a file system or device
MOUNT_OPTIONS = ("type", "device", "o", "size")


class VolumeError(PydockliteError):
    pass


class VolumeNotFoundError(VolumeError, NotFoundError):
    pass


class VolumeInUseError(VolumeError, ConflictError):
    pass


@record
class Volume:
    name: str
    mountpoint: str
    created_at: str
    labels: Tuple[Tuple[str, str], ...] = ()
    options: Tuple[Tuple[str, str], ...] = ()
    users: Tuple[str, ...] = ()           # ids of the containers that use it

    @property
    def anonymous(self) -> bool:
        return any(k == ANONYMOUS_LABEL for k, _ in self.labels)


def volume_json(v: Volume) -> dict:
    """Docker's shape (`volume inspect`, GET /volumes/NAME)."""
    return {"CreatedAt": v.created_at, "Driver": DRIVER, "Labels": dict(v.labels) or None,
            "Mountpoint": v.mountpoint, "Name": v.name, "Options": dict(v.options) or None,
            "Scope": "local"}


FILTER_KEYS = ("name", "label", "label!", "dangling", "driver", "all")


def parse_filters(pairs: Sequence[str]) -> Dict[str, List[str]]:
    """`--filter k=v` values -> {k: [v...]}, keys checked (FILTER_KEYS; `all` is the API's
    prune's: Docker 23+ clients send all=true for -a)."""
    from pydocklite.filters import parse_filters as parse
    return parse(pairs, FILTER_KEYS)


def matches(v: Volume, filters: Dict[str, List[str]]) -> bool:
    labels = dict(v.labels)
    for key, values in filters.items():
        if key == "name" and not any(x in v.name for x in values):
            return False
        if key == "driver" and DRIVER not in values:
            return False
        if key in ("label", "label!") and not labels_pass(labels, {key: values}):
            return False
        if key == "dangling":
            for x in values:
                if x.lower() not in ("true", "false", "1", "0"):
                    raise UsageError(f"invalid filter 'dangling={x}': use true or false")
                if (x.lower() in ("true", "1")) != (not v.users):
                    return False
    return True


def now_created_at() -> str:
    """Docker's CreatedAt: RFC 3339 to the second, in UTC."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class VolumeService:
    def __init__(self, settings) -> None:
        self.settings = settings
        self.layout = settings.layout
        self.root = self.layout.volumes_dir

    # --- paths and locking (names are checked before any path is made of them) --------
    def _dir(self, name: str):
        return self.root / check_volume_name(name)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        import fcntl
        self.layout.ensure()
        self.root.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(str(self.root / ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _containers_alive(self) -> set:
        d = self.layout.containers_dir
        try:
            return {e.name for e in os.scandir(d) if e.is_dir(follow_symlinks=False)}
        except FileNotFoundError:
            return set()

    def _load(self, name: str, alive: Optional[set] = None) -> Volume:
        d = self._dir(name)
        try:
            with open(d / META, encoding="utf-8") as f:
                meta = json.load(f)
        except FileNotFoundError:
            raise VolumeNotFoundError(f"get {name}: no such volume: check the name with "
                                      "'pydocklite volume ls'") from None
        except (OSError, ValueError) as e:
            raise VolumeError(f"volume {name}: its metadata {d / META} is unreadable ({e}): "
                              "remove the volume and create it again") from None
        try:
            users = sorted(os.listdir(d / "users"))
        except FileNotFoundError:
            users = []
        if alive is not None:
            users = [u for u in users if u in alive]
        return Volume(name=name, mountpoint=str(d / "_data"),
                      created_at=str(meta.get("CreatedAt", "")),
                      labels=tuple(sorted((str(k), str(v)) for k, v in
                                          (meta.get("Labels") or {}).items())),
                      options=tuple(sorted((str(k), str(v)) for k, v in
                                           (meta.get("Options") or {}).items())),
                      users=tuple(users))

    def _make(self, name: str, labels: dict, options: dict) -> Volume:
        from pydocklite.atomic import atomic_write_json
        d = self._dir(name)
        d.mkdir(mode=0o700)
        (d / "_data").mkdir(mode=0o755)
        (d / "users").mkdir(mode=0o700)
        atomic_write_json(d / META, {"Name": name, "CreatedAt": now_created_at(),
                                     "Labels": labels, "Options": options})
        return self._load(name)

    # --- the verbs --------------------------------------------------------------------
    def create(self, name: Optional[str] = None, labels: Optional[dict] = None,
               options: Optional[dict] = None, driver: str = DRIVER) -> Volume:
        """`volume create`: a new volume (a random name without one: not "anonymous", that
        is only a container's `-v /dst`), or the existing one of that name (as Docker)."""
        if driver not in ("", DRIVER):
            raise UsageError(f"volume driver {driver!r} is not available: pydocklite has only "
                             "the local driver")
        options = dict(options or {})
        for key in options:
            if key not in MOUNT_OPTIONS:
                raise UsageError(f"invalid option key: {key!r}: the local driver takes "
                                 f"{', '.join(MOUNT_OPTIONS)}")
        if options:
            raise UsageError("volume options (--opt " + ", ".join(sorted(options)) + ") mount a "
                             "file system or device, which needs root: rootless volumes are "
                             "directories; create it without --opt")
        labels = dict(labels or {})
        with self._locked():
            if not name:
                return self._make(os.urandom(32).hex(), labels, {})
            try:
                return self._load(name)
            except VolumeNotFoundError:
                return self._make(name, labels, {})

    def inspect(self, name: str) -> Volume:
        return self._load(name, self._containers_alive())

    def list(self, filters: Optional[Dict[str, List[str]]] = None) -> List[Volume]:
        alive = self._containers_alive()
        out = []
        try:
            names = sorted(os.listdir(self.root))
        except FileNotFoundError:
            return []
        from pydocklite.naming import is_valid
        for n in names:
            if not is_valid(n):
                continue        # .lock, a half-removed ".rm-*" directory
            try:
                v = self._load(n, alive)
            except VolumeError:
                continue
            if matches(v, filters or {}):
                out.append(v)
        return out

    def remove(self, name: str, force: bool = False) -> str:
        """`volume rm`: refused while a container uses it (even with force, as Docker);
        force only makes a missing volume not an error."""
        with self._locked():
            try:
                v = self._load(name, self._containers_alive())
            except VolumeNotFoundError:
                if force:
                    return name
                raise
            if v.users:
                raise VolumeInUseError(f"remove {name}: volume is in use - "
                                       f"[{', '.join(v.users)}]: remove those containers first")
            self._delete(name)
        return name

    def prune(self, filters: Optional[Dict[str, List[str]]] = None,
              all_volumes: bool = False) -> Tuple[List[str], int]:
        """Remove unused volumes: anonymous ones only unless all_volumes (Docker 23+);
        returns (names, bytes freed)."""
        removed, freed = [], 0
        with self._locked():
            alive = self._containers_alive()
            for v in self.list(filters):
                v = self._load(v.name, alive)
                if v.users or not (all_volumes or v.anonymous):
                    continue
                freed += disk_usage(v.mountpoint)
                self._delete(v.name)
                removed.append(v.name)
        return removed, freed

    # --- containers' side -------------------------------------------------------------
    def attach(self, name: str, cid: str) -> Volume:
        """The volume a container `cid` being created mounts (`-v NAME:/dst`, or `-v /dst`
        with name ""): created if missing, the container recorded as a user."""
        with self._locked():
            if not name:
                v = self._make(os.urandom(32).hex(), {ANONYMOUS_LABEL: ""}, {})
            else:
                try:
                    v = self._load(name)
                except VolumeNotFoundError:
                    v = self._make(name, {}, {})
            users = self._dir(v.name) / "users"
            users.mkdir(mode=0o700, exist_ok=True)
            os.close(os.open(str(users / check_container_id(cid)),
                             os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
        return v

    def detach(self, names: Sequence[str], cid: str, remove_anonymous: bool = False) -> None:
        """Container `cid` is gone: forget it as a user; with remove_anonymous (`rm -v`), an
        anonymous volume no other container uses is deleted. Named volumes never are."""
        check_container_id(cid)
        with self._locked():
            alive = self._containers_alive() - {cid}
            for name in names:
                try:
                    os.unlink(self._dir(name) / "users" / cid)
                except FileNotFoundError:
                    pass
                if not remove_anonymous:
                    continue
                try:
                    v = self._load(name, alive)
                except VolumeNotFoundError:
                    continue
                if v.anonymous and not v.users:
                    self._delete(name)

    def _delete(self, name: str) -> None:
        """Out of sight first (a rename within volumes/), then the files, by directory fds."""
        from pydocklite.userns_exec import rmtree_as_root
        d = self._dir(name)
        gone = self.root / f".rm-{name}-{os.urandom(4).hex()}"
        os.rename(d, gone)
        rmtree_as_root(str(gone))


def check_container_id(cid: str) -> str:
    if len(cid) != 64 or any(c not in "0123456789abcdef" for c in cid):
        raise UsageError(f"invalid container id {cid!r}")
    return cid


def disk_usage(path: str) -> int:
    """Sizes of the files under `path`, as Docker counts them (what we may read; os.walk
    follows no symlink)."""
    total = 0
    for top, _dirs, files in os.walk(path, onerror=lambda e: None):
        for n in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(top, n)).st_size
    return total
