"""One teardown of a container, whoever asks: `rm`, the shim of a `--rm` container when
it exits, a `create` that failed half-way.

    release_runtime(settings, cid, log)   what a run leaves in the runtime directory: the
                                          runtime's state (delete --force kills what is left)
    remove(settings, store, cid, log)     all of a stopped container: the above, its run
                                          dir, its snapshot (files under subordinate ids
                                          deleted as root of a user namespace), its record,
                                          its volumes told it is gone (the anonymous ones
                                          deleted with rm -v, --rm, a failed create)

Each step goes on when an earlier one finds nothing to do (a half-made container, a second
teardown): removal is idempotent. The caller holds the container's life lock
(ContainerStore.operation) and has stopped the container.
"""
from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import Callable, Optional, Sequence


def release_runtime(settings, cid: str, log: Optional[Callable[[str], None]] = None) -> None:
    from pydocklite.runtime import api
    from pydocklite.runtime.errors import ContainerNotFound
    layout = settings.runtime_layout
    try:
        api.delete(cid, root=str(layout.runtime_root), force=True)
    except ContainerNotFound:
        pass
    except Exception as e:  # noqa: BLE001 - told, and the removal goes on
        if log is not None:
            log(f"runtime delete: {e}")


def remove(settings, store, cid: str, log: Optional[Callable[[str], None]] = None,
           event: bool = True, volumes: Optional[Sequence[str]] = None,
           remove_anonymous: bool = False, host: bool = True) -> None:
    """Everything of stopped container `cid`; raises only when its record or files stay.
    event: tell the journal (`destroy`), not for a create that failed (no `create` either).
    volumes: the names of its volumes (None: those its record names); remove_anonymous:
    delete the anonymous ones no other container uses (rm -v, --rm, as Docker).
    host: tell the namespace host (when one runs) to forget the container's endpoints and
    its hold on a shared lower (its shim, killed, may not have; the shim itself has)."""
    import shutil
    from pydocklite.errors import ContainerNotFoundError
    try:
        state = store.load(cid)
    except ContainerNotFoundError:
        state = None
    if volumes is None:
        volumes = [str(n) for n in (state.config.get("Volumes") or ())] if state else []
    release_runtime(settings, cid, log)
    if host:
        _forget_in_host(settings, cid, log)
    shutil.rmtree(settings.runtime_layout.run_dir(cid), ignore_errors=True)
    discard_snapshot(settings, cid)
    try:
        store.remove(cid)
    except ContainerNotFoundError:
        return
    if volumes:
        from pydocklite.volumes import VolumeService
        VolumeService(settings).detach(list(volumes), cid, remove_anonymous=remove_anonymous)
    if state is not None and event:
        from pydocklite import events
        events.container(settings.runtime_layout.events_dir, "destroy", cid, state.image,
                         state.name, state.config.get("Config", {}).get("Labels"))


def _forget_in_host(settings, cid: str, log) -> None:
    from pydocklite.nshost.client import connect
    try:
        host = connect(settings.runtime_dir, start=False)
        if host is not None:
            with host:
                host.call("forget", cid=cid)
    except Exception as e:  # noqa: BLE001 - the host notices dead processes itself
        if log is not None:
            log(f"namespace host: {e}")


def discard_snapshot(settings, cid: str) -> None:
    from snapshotter.errors import SnapshotNotFoundError
    from snapshotter.snapshots import Snapshotter
    snap = Snapshotter(settings.layout, settings.storage_driver)

    def as_root(path: str) -> None:
        # files the container made belong to its subordinate ids: delete them as root of a
        # user namespace with the same map, then let the snapshotter finish (one
        # transaction: a stat and a remove opened the database twice, ~1 ms of each --rm)
        from pydocklite.userns_exec import rmtree_as_root
        rmtree_as_root(*(os.path.join(path, sub) for sub in ("upper", "work", "fs")))
    try:
        snap.remove(cid, clear=as_root)
    except SnapshotNotFoundError:
        # none recorded: a create killed while it made the snapshot may have left its
        # directory behind (rare: this is the only time the snapshots dir is scanned)
        snap.sweep()
