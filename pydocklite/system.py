"""System-wide services: `system prune` (stopped containers, unused networks, dangling or
unused images, build cache, and with volumes=True unused anonymous volumes), each through
the service that owns those objects (containers, networks, images, volumes), in Docker's
order: containers first, so what they held becomes unused."""
from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import Dict, List, Optional, Tuple

from pydocklite.errors import UsageError
from pydocklite.filters import labels_pass
from pydocklite.runtime.record import record

FILTER_KEYS = ("until", "label", "label!")


@record
class PruneReport:
    containers: Tuple[str, ...]
    networks: Tuple[str, ...]
    volumes: Tuple[str, ...]
    images: Tuple[str, ...]         # image ids deleted
    build_cache: int                # build cache entries removed
    reclaimed: int                  # bytes


def prune(settings, all_images: bool = False, volumes: bool = False,
          filters: Optional[Dict[str, List[str]]] = None) -> PruneReport:
    """Docker's `system prune [-a] [--volumes] [--filter until=|label=|label!=]`."""
    filters = {k: list(v) for k, v in (filters or {}).items() if v}
    for key in filters:
        if key not in FILTER_KEYS:
            raise UsageError(f"invalid filter '{key}': use until=, label= or label!=")
    if volumes and "until" in filters:
        raise UsageError('"until" filter is not supported with "--volumes"')
    until_ns = _until(filters.get("until"))
    containers, freed = _containers(settings, filters, until_ns)
    from pydocklite.networks import NetworkService
    networks = NetworkService(settings).prune(filters)
    vols: List[str] = []
    if volumes:
        from pydocklite.volumes import VolumeService
        vols, vbytes = VolumeService(settings).prune(
            {k: v for k, v in filters.items() if k != "until"})
        freed += vbytes
    from pydocklite.images import ImageService
    images, ibytes = ImageService(settings).prune(
        all_images=all_images, select=_image_select(filters, until_ns))
    cache, cbytes = _build_cache(settings, everything=all_images)
    return PruneReport(tuple(containers), tuple(networks), tuple(vols), tuple(images), cache,
                       freed + ibytes + cbytes)


def _until(values) -> Optional[int]:
    if not values:
        return None
    from pydocklite.humanize import timestamp_ns
    return min(timestamp_ns(v) for v in values)


def _containers(settings, filters: dict, until_ns: Optional[int]):
    """(ids removed, bytes their upper dirs held)."""
    from pydocklite.containers.container import ContainerService
    from pydocklite.state.container import parse_rfc3339
    service = ContainerService(settings)
    sizes = {}

    def select(state, st) -> bool:
        if until_ns is not None:
            created = parse_rfc3339(state.created)
            if created is None or created.timestamp() * 1e9 >= until_ns:
                return False
        if not labels_pass(state.config.get("Config", {}).get("Labels") or {}, filters):
            return False
        sizes[state.id] = _snapshot_bytes(settings, state.id)
        return True
    removed = service.prune(select=select)
    return removed, sum(sizes.get(cid, 0) for cid in removed)


def _snapshot_bytes(settings, cid: str) -> int:
    from snapshotter.snapshots import Snapshotter
    try:
        info = Snapshotter(settings.layout, settings.storage_driver).stat(cid)
    except Exception:  # noqa: BLE001 - no snapshot: nothing to count
        return 0
    return _du(info.path) if info.path else 0


def _image_select(filters: dict, until_ns: Optional[int]):
    if not filters:
        return None
    from pydocklite.state.container import parse_rfc3339

    def select(record, labels: dict) -> bool:
        created = parse_rfc3339(record.created)
        if until_ns is not None and (created is None or created.timestamp() * 1e9 >= until_ns):
            return False
        return labels_pass(labels, filters)
    return select


def _build_cache(settings, everything: bool) -> Tuple[int, int]:
    """Build cache entries whose image or layers are gone (all of them, and the RUN
    --mount=type=cache directories, with `everything`); (entries, bytes)."""
    import json
    import shutil
    root = settings.layout.root
    cache_dir = root / "build-cache"
    removed, freed = 0, 0
    if cache_dir.is_dir():
        from snapshotter.content_store import ContentStore
        content = ContentStore(settings.layout)
        for p in cache_dir.iterdir():
            if not p.name.endswith(".json"):
                continue
            try:
                data = json.loads(p.read_text())
                stale = not content.has(data.get("image_id", ""))
            except (OSError, ValueError):
                stale = True
            if everything or stale:
                freed += p.stat().st_size
                p.unlink()
                removed += 1
    mounts = root / "build-cache-mounts"
    if everything and mounts.is_dir():
        freed += _du(str(mounts))
        from pydocklite.userns_exec import rmtree_as_root
        rmtree_as_root(str(mounts))
        shutil.rmtree(mounts, ignore_errors=True)
    return removed, freed


def _du(path: str) -> int:
    """Bytes of the files under path (what `system df` counts), not following links."""
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                pass
    return total
