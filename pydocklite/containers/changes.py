"""What a container changed (`diff`, the API's GET /containers/{id}/changes) and its whole
filesystem as a tar (`export`, GET /containers/{id}/export).

diff walks the container's snapshot (its upper dir, or the full copy of the vfs driver)
by directory fds (snapshotter.fd_walk: nothing the container placed is followed), as root
of a user namespace with the container's id map (files of its other users may be closed to
you on the host), in a child process that sends the changes back through a pipe. The mount
points the runtime made for the container's binds (/etc/hosts, a volume's target...) are
left out, as Docker's container "init" layer keeps them out of its diff: the target itself,
and a directory that changed only for it.

export is the confined helper's tar of "/" (containers/fs_access.open_archive), without
what is mounted below it; running or stopped containers alike.
"""
from __future__ import annotations

import json
import os
import stat
import threading

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import List, Tuple

KINDS = {"C": 0, "A": 1, "D": 2}       # Docker's ChangeType numbers (the API's "Kind")


def diff(settings, ref: str) -> List[Tuple[str, str]]:
    """[(kind, "/path")], kind "A", "C" or "D", sorted by path, as `docker diff`."""
    from pydocklite.errors import ContainerStateError
    from pydocklite.state.store import ContainerStore
    from snapshotter.errors import SnapshotNotFoundError
    from snapshotter.snapshots import Snapshotter
    store = ContainerStore(settings.layout.containers_dir)
    state = store.get(ref)
    snap = Snapshotter(settings.layout,
                       (state.config or {}).get("StorageDriver") or settings.storage_driver)
    try:
        info = snap.stat(state.id)
    except SnapshotNotFoundError:
        raise ContainerStateError(f"container {state.name} has no filesystem (its create "
                                  f"was cut short): remove it") from None
    tree = snap.tree(info.chain)
    upper = os.path.join(info.path, "upper" if info.driver != "vfs" else "fs")
    mounts = _mount_points(store.files(state.id).spec)
    found = _walk_as_container_root(upper, tree, info.driver == "vfs")
    return _without_mount_points(found, mounts, tree)


def export(settings, ref: str):
    """A tar stream of the container's filesystem (fs_access.ArchiveStream: read() until
    b"", then close()), mounts below "/" left out; an `export` event."""
    from pydocklite.containers.fs_access import open_archive
    from pydocklite.state.store import ContainerStore
    stream = open_archive(settings, ref, "/", rootfs_only=True)
    from pydocklite import events
    st = ContainerStore(settings.layout.containers_dir).get(ref)
    events.container(settings.runtime_layout.events_dir, "export", st.id, st.image, st.name,
                     st.config.get("Config", {}).get("Labels"))
    return stream


def _mount_points(spec_path) -> set:
    """The relative paths where the container's spec mounts something."""
    try:
        with open(spec_path) as f:
            spec = json.load(f)
    except (OSError, ValueError):
        return set()
    out = set()
    for m in spec.get("mounts") or ():
        dest = str(m.get("destination") or "").strip("/")
        if dest:
            out.add(dest)
    return out


def _walk_as_container_root(upper: str, tree, full_copy: bool) -> list:
    """[(kind, rel, is_dir, mode, uid, gid)] from a child that is root of a user namespace
    with the container's id map (so every file is readable and owners are the container's)."""
    from pydocklite.userns_exec import run_in_userns
    from snapshotter.diff import tree_changes, upper_changes
    r, w = os.pipe()
    got: list = []

    def collect() -> None:
        with os.fdopen(r, "rb") as f:
            for line in f:
                got.append(tuple(json.loads(line)))
    reader = threading.Thread(target=collect, daemon=True)
    reader.start()

    def walk() -> None:
        fd = os.open(upper, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(w, "w") as out:
            changes = tree_changes(fd, tree) if full_copy else upper_changes(fd, tree)
            for kind, rel, st in changes:
                row = [kind, rel, bool(st and stat.S_ISDIR(st.st_mode)),
                       st.st_mode & 0o7777 if st else 0, st.st_uid if st else 0,
                       st.st_gid if st else 0]
                out.write(json.dumps(row) + "\n")
    try:
        run_in_userns(walk)
    finally:
        try:
            os.close(w)
        except OSError:
            pass
        reader.join(timeout=60)
    return got


def _without_mount_points(found: list, mounts: set, tree) -> List[Tuple[str, str]]:
    """Leave out the mount points and the directories that changed only for them."""
    kept = [row for row in found if row[1] not in mounts]
    has_child = set()
    for row in kept:
        parent = row[1]
        while "/" in parent:
            parent = parent.rpartition("/")[0]
            has_child.add(parent)
    parents_of_mounts = {m.rpartition("/")[0] for m in mounts}
    out = []
    for kind, rel, is_dir, mode, uid, gid in kept:
        if is_dir and rel not in has_child:
            node = tree.get(rel)
            if kind == "C" and node is not None and \
                    (node.mode & 0o7777, node.uid, node.gid) == (mode, uid, gid):
                continue                # copied up only for a mount point below it
            if kind == "A" and any(p == rel or p.startswith(rel + "/")
                                   for p in parents_of_mounts):
                continue                # made only to hold a mount point
        out.append((kind, "/" + rel))
    return sorted(out, key=lambda c: c[1])
