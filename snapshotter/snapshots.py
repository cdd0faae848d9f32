"""The snapshotter API (containerd's vocabulary), over the layer store.

- A *committed* snapshot has a name and is a chain of layers (diff_ids, bottom first): the
  layers of an image, or of an earlier `commit`.
- An *active* snapshot (`prepare(key, parent)`) is a writable filesystem on top of a chain.
- A *view* (`view(key, parent)`) is a read-only one.
- `parent` is a committed snapshot's name, a single diff_id, a sequence of diff_ids, or None.

The API returns `Mount` values, never mounts anything itself; `mounter.mount_all(mounts,
target)` carries them out (inside the container's user+mount namespace, or on the host for
`pydocklite mount`). Metadata lives in one sqlite database, so concurrent CLI processes see
consistent state; each active snapshot owns `snapshots/<id>/` (upper, work, lower, fs).
"""
from __future__ import annotations

import json
import os
import time
from collections import namedtuple
from contextlib import contextmanager
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import List, Optional, Sequence, Tuple, Union

from .errors import MountError, SnapshotExistsError, SnapshotNotFoundError, SnapshotterError

try:
    # the C module itself: the sqlite3 package adds only the date and time adapters, and
    # its import of datetime (~1 ms of every `run`); neither is used here
    import _sqlite3 as sqlite3
except ImportError:      # an interpreter that names it otherwise
    import sqlite3

FUSE_TYPE = "fuse.pydocklite"
KIND_ACTIVE, KIND_VIEW, KIND_COMMITTED = "active", "view", "committed"


class Mount(namedtuple("Mount", "type source target options")):
    """type: "fuse.pydocklite" | "overlay" | "bind"; target: "" = the caller's target, else
    an internal mount point to make first; options: a tuple of strings. (Named tuples, not
    dataclasses, here: a CLI start pays ~0.5 ms for each dataclass it defines.)"""
    __slots__ = ()

    def option(self, name: str) -> Optional[str]:
        for o in self.options:
            if o == name:
                return ""
            if o.startswith(name + "="):
                return o[len(name) + 1:]
        return None


class SnapshotInfo(namedtuple("SnapshotInfo", "key kind parent chain driver created path")):
    """parent: as given ("" for none); chain: the layer diff_ids; path: the snapshot dir
    ("" for committed ones)."""
    __slots__ = ()


class Usage(namedtuple("Usage", "size inodes")):
    """size in bytes."""
    __slots__ = ()


_SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshots (
    key TEXT PRIMARY KEY, kind TEXT NOT NULL, parent TEXT NOT NULL, chain TEXT NOT NULL,
    driver TEXT NOT NULL, created REAL NOT NULL, dir TEXT NOT NULL
);
"""


def _set_up(path: Path) -> bool:
    """Does the database file hold our table (and WAL mode) already? A new file gets the
    table first, in rollback-journal mode, where the file stays empty until the CREATE
    commits (and a reader's lock waits for that commit), then the WAL mode: a non-empty
    file has the table. (The other order raced: switching to WAL writes the file's first
    page at once, and a process that saw it went on to find no table.)"""
    try:
        return os.stat(path).st_size > 0
    except OSError:
        return False


class Snapshotter:
    def __init__(self, layout, driver: str = "auto") -> None:
        self.layout = layout
        self.requested = driver
        self._choice = None
        self.root = Path(layout.snapshots_dir)
        self.db_path = self.root / "metadata.db"

    # --- plumbing -------------------------------------------------------------------------
    @property
    def choice(self):
        """DriverChoice(driver, reason) — computed on first use (loads libfuse to check)."""
        if self._choice is None:
            from .overlay import choose_driver
            self._choice = choose_driver(self.requested)
        return self._choice

    @property
    def driver(self) -> str:
        return self.choice.driver

    @contextmanager
    def _db(self, write: bool = True):
        """A transaction: IMMEDIATE (the write lock at once) for a change, deferred for a
        read (readers don't wait for writers in WAL mode). The WAL mode and the table are
        set up while the file is empty (_set_up)."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        con = sqlite3.connect(str(self.db_path), timeout=30, isolation_level=None)
        try:
            new = not _set_up(self.db_path)
            for attempt in range(20):
                try:
                    if new:      # both idempotent: done again after a failed attempt
                        con.executescript(_SCHEMA)
                        con.execute("PRAGMA journal_mode=WAL")
                        new = False
                    con.execute("PRAGMA synchronous=NORMAL")   # WAL: consistent after a crash
                    con.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                    break
                except sqlite3.OperationalError as e:
                    # SQLITE_PROTOCOL: the WAL index kept changing under us while other
                    # processes (shims removing containers, a service) opened and closed
                    # the database; "locked" while setting up a new file: another process
                    # switching it to WAL at the same time (sqlite gives up at once rather
                    # than deadlock). Nothing was done yet, so trying again is safe.
                    retry = "locking protocol" in str(e) or (new and "locked" in str(e))
                    if not retry or attempt == 19:
                        raise
                    import time
                    time.sleep(0.005 * (attempt + 1))
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        finally:
            con.close()

    @staticmethod
    def _info(row) -> SnapshotInfo:
        key, kind, parent, chain, driver, created, d = row
        return SnapshotInfo(key, kind, parent, tuple(json.loads(chain)), driver, created, d)

    def _get(self, con, key: str) -> SnapshotInfo:
        row = con.execute("SELECT key, kind, parent, chain, driver, created, dir FROM snapshots "
                          "WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise SnapshotNotFoundError(f"snapshot {key!r} does not exist: check the key "
                                        f"(`walk()` lists them)")
        return self._info(row)

    def _chain(self, con, parent) -> Tuple[str, ...]:
        if parent is None or parent == "" or parent == ():
            return ()
        if isinstance(parent, str):
            row = con.execute("SELECT kind, chain FROM snapshots WHERE key = ?",
                              (parent,)).fetchone()
            if row is not None:
                if row[0] != KIND_COMMITTED:
                    raise SnapshotterError(f"parent {parent!r} is an {row[0]} snapshot: only "
                                           f"committed snapshots can be parents; commit it first")
                return tuple(json.loads(row[1]))
            if not parent.startswith("sha256:"):
                raise SnapshotNotFoundError(f"parent snapshot {parent!r} does not exist")
            parent = (parent,)
        chain = tuple(parent)
        for d in chain:
            if not Path(self.layout.layer_index(d)).exists():
                raise SnapshotNotFoundError(f"layer {d} is not in the store: pull the image again")
        return chain

    # --- creating -------------------------------------------------------------------------
    def prepare(self, key: str, parent: Union[str, Sequence[str], None] = None) -> List[Mount]:
        return self._create(key, parent, KIND_ACTIVE)

    def view(self, key: str, parent: Union[str, Sequence[str], None] = None) -> List[Mount]:
        return self._create(key, parent, KIND_VIEW)

    def _create(self, key: str, parent, kind: str) -> List[Mount]:
        driver = self.driver
        with self._db() as con:
            if con.execute("SELECT 1 FROM snapshots WHERE key = ?", (key,)).fetchone():
                raise SnapshotExistsError(f"snapshot {key!r} already exists: remove it first "
                                          f"or use another key")
            chain = self._chain(con, parent)
            d = self.root / f"{int(time.time() * 1e6):x}-{os.getpid()}"
            d.mkdir(mode=0o700)
            try:
                if driver == "vfs":
                    from .vfs import extract_chain
                    extract_chain(self.layout, chain, d / "fs")
                elif kind == KIND_ACTIVE:
                    (d / "upper").mkdir(mode=0o755)
                    if driver == "overlay":
                        (d / "work").mkdir(mode=0o700)
                        (d / "lower").mkdir(mode=0o755)
                parent_s = parent if isinstance(parent, str) else ",".join(parent or ())
                con.execute("INSERT INTO snapshots VALUES (?, ?, ?, ?, ?, ?, ?)",
                            (key, kind, parent_s, json.dumps(chain), driver, time.time(), str(d)))
            except BaseException:
                import shutil
                shutil.rmtree(d, ignore_errors=True)
                raise
            info = self._get(con, key)
        return self._mounts(info)

    def _mounts(self, info: SnapshotInfo) -> List[Mount]:
        d = Path(info.path)
        layers = "layers=" + ":".join(str(self.layout.layer_dir(x)) for x in info.chain)
        cache = f"treecache={self.tree_cache_path(info.chain)}"
        ro = info.kind == KIND_VIEW
        if info.driver == "vfs":
            return [Mount("bind", str(d / "fs"), "", ("rbind", "ro" if ro else "rw"))]
        if info.driver == "fuse" or ro:
            opts = (layers, cache, "ro") if ro else (layers, cache, f"upperdir={d / 'upper'}")
            return [Mount(FUSE_TYPE, str(d), "", opts)]
        # overlay: a read-only FUSE merge of the layers becomes overlayfs's lowerdir
        from .overlay import overlay_options
        upper, work = str(d / "upper"), str(d / "work")
        if not info.chain:
            (d / "lower").mkdir(exist_ok=True)
            return [Mount("overlay", "overlay", "", overlay_options([str(d / "lower")], upper,
                                                                    work))]
        return [Mount(FUSE_TYPE, str(d), str(d / "lower"), (layers, cache, "ro")),
                Mount("overlay", "overlay", "", overlay_options([str(d / "lower")], upper, work))]

    def tree_cache_path(self, chain: Sequence[str]) -> Path:
        """Where the merged tree of a chain is cached (built by the first mount of it)."""
        from .merge import chain_key
        return self.root / "trees" / f"{chain_key(chain)}.tree"

    def warm(self, chain: Sequence[str]) -> None:
        """Build the merged-tree cache of a chain now (e.g. right after a pull), so the first
        mount of it is as fast as the later ones."""
        from .merge import load_or_build
        load_or_build([self.layout.layer_index(x) for x in chain], self.tree_cache_path(chain))

    # --- queries --------------------------------------------------------------------------
    def mounts(self, key: str, driver: Optional[str] = None) -> List[Mount]:
        """The mounts of snapshot `key`. driver="fuse" gives a FUSE mount of an overlay
        snapshot (same upper-dir format), for mounting it on the host (`pydocklite mount`)
        while no container uses it."""
        with self._db(write=False) as con:
            info = self._get(con, key)
        if info.kind == KIND_COMMITTED:
            raise SnapshotterError(f"snapshot {key!r} is committed: make a view of it to mount it")
        if driver is not None and driver != info.driver:
            if driver != "fuse" or info.driver != "overlay":
                raise SnapshotterError(f"snapshot {key!r} uses driver {info.driver}: it can't be "
                                       f"mounted with driver {driver}")
            info = SnapshotInfo(info.key, info.kind, info.parent, info.chain, driver,
                                info.created, info.path)
        return self._mounts(info)

    def stat(self, key: str) -> SnapshotInfo:
        with self._db(write=False) as con:
            return self._get(con, key)

    def walk(self) -> List[SnapshotInfo]:
        with self._db(write=False) as con:
            rows = con.execute("SELECT key, kind, parent, chain, driver, created, dir FROM "
                               "snapshots ORDER BY created").fetchall()
        return [self._info(r) for r in rows]

    def usage(self, key: str) -> Usage:
        """Disk used by the snapshot's own changes (a committed one: its layers)."""
        info = self.stat(key)
        if info.kind == KIND_COMMITTED:
            size = sum(os.path.getsize(self.layout.layer_blob(x)) for x in info.chain)
            return Usage(size, 0)
        size = inodes = 0
        from .fd_walk import DIR_FLAGS, walk
        for sub in ("upper", "fs"):
            try:
                top = os.open(str(Path(info.path) / sub), DIR_FLAGS)
            except OSError:
                continue
            try:
                # by fds: a container's links are never followed; what the user may not
                # read (a subordinate id's 0700 dir) is left out, as before
                for e in walk(top, unreadable=lambda rel, err: None):
                    inodes += 1
                    size += e.st.st_blocks * 512
            finally:
                os.close(top)
        return Usage(size, inodes)

    # --- commit / remove ------------------------------------------------------------------
    def commit(self, name: str, key: str, idmap=None):
        """Turn active snapshot `key` into a new layer and record committed snapshot `name`
        (its chain = the parent's chain + the new layer). Returns the store's LayerInfo.
        `idmap` (diff.IdMap) maps on-disk owners back to container ids (subuid ranges)."""
        from .diff import TRUST_ALL, TRUST_NONE, IdMap, diff_to_layer, write_diff_for
        from .store import LayerStore
        info = self.stat(key)
        if info.kind != KIND_ACTIVE:
            raise SnapshotterError(f"snapshot {key!r} is a {info.kind} snapshot: only active "
                                   f"snapshots can be committed")
        with self._db() as con:
            if con.execute("SELECT 1 FROM snapshots WHERE key = ?", (name,)).fetchone():
                raise SnapshotExistsError(f"snapshot {name!r} already exists: pick another name")
        d = Path(info.path)
        tree = None
        if info.driver == "vfs":
            tree = self.tree(info.chain)
        # the FUSE upper server keeps its override xattrs out of the container's reach;
        # through kernel overlayfs the container can set any user.* xattr itself
        write = write_diff_for(d / "upper" if info.driver != "vfs" else None, d / "fs", tree,
                               idmap or IdMap(),
                               TRUST_ALL if info.driver == "fuse" else TRUST_NONE)
        layer = diff_to_layer(LayerStore(self.layout), write, f"snapshot {key}")
        with self._db() as con:
            chain = info.chain + (layer.diff_id,)
            con.execute("INSERT INTO snapshots VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (name, KIND_COMMITTED, key, json.dumps(chain), info.driver,
                         time.time(), ""))
        return layer

    def tree(self, chain):
        """The merged lower tree of a chain of layers (diff ids)."""
        from .layer_index import LayerIndex
        from .merge import MergedTree
        return MergedTree([LayerIndex.load(self.layout.layer_index(x)) for x in chain])

    def sweep(self) -> List[str]:
        """Delete snapshot directories no snapshot records whose creator is gone: a process
        killed between making a snapshot's directory and recording it (_create) leaves one.
        The name says who made it ("<time>-<pid>"); a live creator's are left alone.
        Returns the directories deleted."""
        with self._db() as con:
            known = {row[0] for row in con.execute("SELECT dir FROM snapshots")}
            gone = []
            for entry in os.scandir(self.root):
                stem, dash, pid = entry.name.rpartition("-")
                if not dash or not pid.isdigit() or not entry.is_dir(follow_symlinks=False) \
                        or entry.path in known or _alive(int(pid)):
                    continue
                _rmtree(Path(entry.path))
                gone.append(entry.path)
        return gone

    def remove(self, key: str, clear=None) -> None:
        """Delete the snapshot's directory, then forget it (refused while anything from it is
        mounted in this mount namespace). Removing a committed snapshot keeps its layers.
        Files owned by other ids of a user namespace can only be deleted from inside it: call
        this where the snapshot was used (the shim), else a SnapshotterError says so and the
        snapshot stays recorded. clear(dir): called first with the snapshot's directory, in
        the same transaction (a caller that deletes what it knows is there its own way)."""
        with self._db() as con:
            info = self._get(con, key)
            if info.path:
                if clear is not None:
                    clear(info.path)
                busy = mounted_under(info.path)
                if busy:
                    raise MountError(f"snapshot {key!r} is still mounted at {busy[0]}: unmount "
                                     f"it (stop the container) first")
                _rmtree(Path(info.path))
            con.execute("DELETE FROM snapshots WHERE key = ?", (key,))


def mounted_under(path: str) -> List[str]:
    """Mount points in this mount namespace at or under `path`, or whose source (a FUSE
    server's fsname is its snapshot dir) is `path`."""
    base = os.path.realpath(path)
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            mp = fields[4].replace("\\040", " ")
            sep = fields.index("-")
            source = fields[sep + 2] if len(fields) > sep + 2 else ""
            root = fields[3].replace("\\040", " ")   # a bind mount's source dir
            if mp == base or mp.startswith(base + "/") or source == base or \
                    root == base or root.startswith(base + "/"):
                out.append(mp)
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _rmtree(path: Path) -> None:
    import shutil    # not at module level: ~1.5 ms of each CLI run (only removals need it)
    if not path.exists():
        return
    # directories may be read-only (a layer's 0555 dir, overlayfs's work/work is 0000):
    # make the ones we own writable on the way down
    try:
        os.chmod(path, 0o700)
    except OSError:
        pass
    for dirpath, dirnames, _ in os.walk(path):
        for name in dirnames:
            p = os.path.join(dirpath, name)
            try:
                if not os.path.islink(p):
                    os.chmod(p, 0o700)
            except OSError:
                pass
    try:
        shutil.rmtree(path)
        return
    except OSError as exc:
        first = exc
    # files of other ids of the user namespace (subuids): delete them from a namespace with
    # the same mapping, as `podman unshare rm -rf` would
    unshare = shutil.which("unshare")
    if unshare and os.geteuid() != 0:
        import subprocess
        subprocess.run([unshare, "--map-auto", "--map-root-user", "rm", "-rf", "--", str(path)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not path.exists():
            return
    raise SnapshotterError(
        f"cannot delete snapshot dir {path}: {first.strerror or first} ({first.filename}); its "
        f"files belong to a user namespace's ids and `unshare --map-auto` could not help: "
        f"remove it from inside that namespace") from None
