"""Leases: what a running pull, build, load or create is about to use, kept by garbage
collection (containerd's leases, as files).

A pull commits its layers before it records the image; a build makes layers and configs no
image names until its last step; a create stands on an image's layers before its record
says so. Until then nothing references them, and a concurrent `rmi`/`image prune` would
delete them. So each such operation holds a lease naming the layers (diff ids) and blobs
(digests) it uses:

    with Lease(layout, "pull nginx") as lease:
        lease.add(layers=diff_ids, blobs=digests)     # before checking they are there
        ... ingest, write, record the image ...

and garbage collection runs under the exclusive gc lock, keeping whatever a live lease names
(`with gc_lock(layout): keep = leased(layout)`). Adding to a lease takes the gc lock shared,
so a lease is either seen by a collection or written after it ended: what a lease names
that exists after add() returns stays until the lease is closed. Leases of dead processes
(pid and start time no longer match) are ignored and removed by the collector.
"""
from __future__ import annotations

import json
import os

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import Iterable, Optional, Set, Tuple

from snapshotter.layout import StoreLayout
from snapshotter.ondisk import FileLock, lock_path


def leases_dir(layout: StoreLayout):
    return layout.root / "leases"


def gc_lock(layout: StoreLayout, shared: bool = False) -> FileLock:
    """The lock collections hold exclusively while they decide and delete."""
    layout.locks_dir.mkdir(parents=True, exist_ok=True)
    return FileLock(lock_path(layout, "gc"), shared=shared)


def _start_time(pid: int) -> Optional[int]:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    rest = data[data.rfind(b")") + 2:].split()
    if not rest or rest[0] in (b"Z", b"X"):
        return None
    return int(rest[19])


class Lease:
    def __init__(self, layout: StoreLayout, what: str = "") -> None:
        self.layout, self.what = layout, what
        self.layers: Set[str] = set()
        self.blobs: Set[str] = set()
        pid = os.getpid()
        self.path = leases_dir(layout) / f"{pid}-{_start_time(pid) or 0}-{os.urandom(4).hex()}"

    def add(self, layers: Iterable[str] = (), blobs: Iterable[str] = ()) -> None:
        """Name more layers/blobs; once this returns no collection deletes them (check
        afterwards that they exist: one may have run just before)."""
        new_layers = set(layers) - self.layers
        new_blobs = {b for b in blobs if b} - self.blobs
        if not new_layers and not new_blobs:
            return
        self.layers |= new_layers
        self.blobs |= new_blobs
        d = leases_dir(self.layout)
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f".{self.path.name}.tmp"
        with gc_lock(self.layout, shared=True):
            with open(tmp, "w") as f:
                json.dump({"what": self.what, "layers": sorted(self.layers),
                           "blobs": sorted(self.blobs)}, f)
            os.replace(tmp, self.path)

    def close(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def __enter__(self) -> "Lease":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def leased(layout: StoreLayout) -> Tuple[Set[str], Set[str]]:
    """(layers, blobs) live leases name; call with gc_lock(layout) held. Leases of processes
    that are gone are removed."""
    layers: Set[str] = set()
    blobs: Set[str] = set()
    d = leases_dir(layout)
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        return layers, blobs
    for name in names:
        path = d / name
        pid, _, rest = name.partition("-")
        start = rest.partition("-")[0]
        if name.startswith("."):
            continue
        if not pid.isdigit() or not start.isdigit() or _start_time(int(pid)) != int(start):
            try:
                os.unlink(path)              # its process is gone
            except OSError:
                pass
            continue
        try:
            with open(path) as f:
                doc = json.load(f)
        except (OSError, ValueError):
            continue
        layers.update(str(x) for x in doc.get("layers", ()))
        blobs.update(str(x) for x in doc.get("blobs", ()))
    return layers, blobs
