"""`commit`: a container's filesystem changes become a new layer on top of its image.

The container's snapshot (key = container id) is committed through the snapshotter, which
writes its upper dir as a tar layer, walking it by directory fds (a link the container placed
or swaps in is never followed). Files in the upper dir are owned by host ids of the
container's user namespace (you and your subordinate range, 0600 files of its other users
among them): the walk runs as root of a user namespace with the same id map, where every file
is readable and shows the ids seen inside. A running container is paused meanwhile (`-p`,
Docker's default) so the layer is one moment of it. The new config is the image's, with the
container's command, user, working dir and environment, then the --change instructions, and
one more history entry.
"""
from __future__ import annotations

import json
import time
from typing import Iterable, Optional

from pydocklite.distribution.changes import apply_changes
from pydocklite.distribution.local_image import config_bytes, now_rfc3339, register


def commit_upper(settings, cid: str, name: str, snapshotter=None, before=None) -> str:
    """Commit snapshot `cid` as committed snapshot `name`, from inside a user namespace with
    the containers' id map (every file readable, owners as seen inside); its diff_id.
    before(): run there first (a build drops the runtime's mount points)."""
    from snapshotter.diff import IdMap
    from snapshotter.snapshots import Snapshotter
    from pydocklite.userns_exec import run_in_userns
    layout, driver = settings.layout, settings.storage_driver

    def commit():
        if before is not None:
            before()
        Snapshotter(layout, driver).commit(name, cid, idmap=IdMap())
    run_in_userns(commit)
    return (snapshotter or Snapshotter(layout, driver)).stat(name).chain[-1]


def _container_config(image_cfg: dict, recorded: dict) -> dict:
    """What the container ran with, over the image's config (docker commit does the same)."""
    cfg = dict(image_cfg or {})
    for key in ("Cmd", "Entrypoint", "User", "WorkingDir"):
        if key in recorded and recorded[key] is not None:
            cfg[key] = recorded[key]
    env = recorded.get("Env")
    if env:
        image_env = set(cfg.get("Env") or [])
        cfg["Env"] = [e for e in env if e in image_env or not e.startswith("HOSTNAME=")]
    if "Cmd" in cfg and not cfg["Cmd"]:
        cfg["Cmd"] = None
    return cfg


def commit_container(service, containers, ref: str, name: Optional[str] = None, *,
                     message: str = "", author: str = "", changes: Iterable[str] = (),
                     snapshotter=None, pause: bool = True):
    """Commit container `ref` (paused meanwhile if it runs and `pause`); the new
    ImageRecord. No collection runs from the moment the new layer exists until the image
    that names it is recorded (the gc lock is held shared)."""
    from snapshotter.leases import gc_lock
    with gc_lock(service.layout.ensure(), shared=True):
        return _commit_container(service, containers, ref, name, message=message,
                                 author=author, changes=changes, snapshotter=snapshotter,
                                 pause=pause)


def _commit_container(service, containers, ref: str, name: Optional[str], *, message: str,
                      author: str, changes: Iterable[str], snapshotter, pause: bool):
    from snapshotter.snapshots import Snapshotter
    state = containers.store.get(ref)
    snap = snapshotter or Snapshotter(service.layout, service.settings.storage_driver)
    parent = service.lookup(state.image_id)
    image_doc = service.config_json(parent)
    commit_key = f"commit-{state.id[:12]}-{time.time_ns()}"
    frozen = pause and state.status().state == "running"
    if frozen:
        from pydocklite.containers.pause import freeze
        freeze(service.settings, state)
    try:
        diff_id = commit_upper(service.settings, state.id, commit_key, snap)
    finally:
        if frozen:
            from pydocklite.containers.pause import thaw
            thaw(service.settings, state)
    try:
        snap.remove(commit_key)     # the layer stays in the store; the image records it
    except Exception:  # noqa: BLE001 - a stale committed record costs nothing
        pass
    recorded = (state.config or {}).get("Config") or {}
    cfg = _container_config(image_doc.get("config") or {}, recorded)
    cfg = apply_changes(cfg, changes)
    created = now_rfc3339()
    args = (state.config or {}).get("Args") or []
    entry = {"created": created, "created_by": " ".join(args)}
    if author:
        entry["author"] = author
    if message:
        entry["comment"] = message
    doc = json.loads(json.dumps(image_doc))
    doc["config"] = cfg
    doc["created"] = created
    doc["container"] = state.id
    if author:
        doc["author"] = author
    else:
        doc.pop("author", None)
    doc["rootfs"] = {"type": "layers",
                     "diff_ids": list(parent.diff_ids) + [diff_id]}
    doc["history"] = list(doc.get("history") or []) + [entry]
    doc.pop("container_config", None)
    _remember_parent_blobs(service, parent)
    names = [name] if name else []
    return register(service, config_bytes(doc), names)


def _remember_parent_blobs(service, parent) -> None:
    """Where the parent's compressed layers are known to be, for pushes of the new image
    (its own manifest lists uncompressed layers and it has no repo digests yet)."""
    from pydocklite.distribution.blobinfo import BlobInfoStore, candidates
    store = BlobInfoStore(service.layout.root)
    for diff_id, known in zip(parent.diff_ids, candidates(service, parent, parent.diff_ids)):
        for k in known:
            if k.repos:
                try:
                    store.add(diff_id, k)
                except OSError:
                    pass
