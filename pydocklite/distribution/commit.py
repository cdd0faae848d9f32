"""`commit`: a container's filesystem changes become a new layer on top of its image.

The container's snapshot (key = container id) is committed through the snapshotter, which
writes its upper dir as a tar layer. Files in the upper dir are owned by host ids of the
container's user namespace (you and your subordinate range): the same id map the container
ran with turns them back into the ids seen inside. The new config is the image's, with the
container's command, user, working dir and environment, then the --change instructions,
and one more history entry.
"""
from __future__ import annotations

import json
import time
from typing import Iterable, Optional

from pydocklite.distribution.changes import apply_changes
from pydocklite.distribution.local_image import config_bytes, now_rfc3339, register


def container_idmap():
    """The snapshotter's IdMap for this user's rootless containers."""
    from pydocklite.runtime.idmap import default_mappings
    from snapshotter.diff import IdMap
    uids, gids, _warning = default_mappings()
    return IdMap(uids=tuple((m.container_id, m.host_id, m.size) for m in uids),
                 gids=tuple((m.container_id, m.host_id, m.size) for m in gids))


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
                     snapshotter=None):
    """Commit container `ref`; returns the new ImageRecord. No collection runs from the
    moment the new layer exists until the image that names it is recorded (the gc lock is
    held shared), and the parent image is checked to be whole first."""
    from snapshotter.leases import gc_lock
    with gc_lock(service.layout.ensure(), shared=True):
        return _commit_container(service, containers, ref, name, message=message,
                                 author=author, changes=changes, snapshotter=snapshotter)


def _commit_container(service, containers, ref: str, name: Optional[str], *, message: str,
                      author: str, changes: Iterable[str], snapshotter):
    from snapshotter.snapshots import Snapshotter
    state = containers.store.get(ref)
    snap = snapshotter or Snapshotter(service.layout, service.settings.storage_driver)
    parent = service.lookup(state.image_id)
    image_doc = service.config_json(parent)
    commit_key = f"commit-{state.id[:12]}-{time.time_ns()}"
    layer = snap.commit(commit_key, state.id, idmap=container_idmap())
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
                     "diff_ids": list(parent.diff_ids) + [layer.diff_id]}
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
