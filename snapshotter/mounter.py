"""Carry out the `Mount` list a Snapshotter returned: the mounting half of the API.

    active = mount_all(mounts, target, allow_other=True)
    ...
    active.unmount()

Call it where the mounts should live: inside the container's user+mount namespace (FUSE and
overlayfs mount directly there; use allow_other so every uid of the container can use the
FUSE mount), or on the host as the user (`pydocklite mount`: FUSE via fusermount,
allow_other=False). FUSE servers are forked from the caller into their own session: they
outlive it, and exit when their mount is unmounted. `ActiveMounts.server_pids()` names them
(a killed server leaves its mount answering ENOTCONN; the upper dir's data stays intact).
"""
from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import List, Optional, Sequence, Tuple

from .errors import MountError
from .snapshots import FUSE_TYPE, Mount

MS_BIND, MS_REC, MS_RDONLY, MS_REMOUNT = 4096, 16384, 1, 32


class ActiveMounts:
    """What mount_all did, in order; unmount() undoes it (last first)."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.mountpoints: List[str] = []
        self.servers: list = []      # fuse_fs.FuseServer

    def server_pids(self) -> List[int]:
        return [s.pid for s in self.servers]

    def unmount(self) -> None:
        from .fuse_fs import unmount_path
        errors = []
        for mp in reversed(self.mountpoints):
            try:
                unmount_path(mp)
            except MountError as exc:
                errors.append(str(exc))
        for s in self.servers:
            try:
                s.unmount()
            except (MountError, OSError) as exc:
                errors.append(str(exc))
        self.mountpoints.clear()
        self.servers.clear()
        if errors:
            raise MountError("; ".join(errors))


def fuse_lowers(m: Mount) -> Tuple[Tuple[Path, Path], ...]:
    layers = m.option("layers") or ""
    dirs = [Path(p) for p in layers.split(":") if p]
    return tuple((d / "index", d / "blob") for d in dirs)


def mount_all(mounts: Sequence[Mount], target, *, allow_other: bool = True,
              log_path: Optional[Path] = None, die_with_caller: bool = False) -> ActiveMounts:
    """Mount them at `target` (the Mount's own target when it has one); die_with_caller:
    the FUSE servers are killed if the caller dies (mounts in a private namespace)."""
    target = str(target)
    active = ActiveMounts(target)
    try:
        for m in mounts:
            where = m.target or target
            if m.type == FUSE_TYPE:
                from .fuse_fs import spawn_fuse
                upper = m.option("upperdir")
                cache = m.option("treecache")
                srv = spawn_fuse(where, fuse_lowers(m), Path(upper) if upper else None,
                                 allow_other=allow_other, log_path=log_path,
                                 fsname=m.source, tree_cache=Path(cache) if cache else None,
                                 die_with_caller=die_with_caller)
                active.servers.append(srv)
            elif m.type == "overlay":
                from .overlay import mount_overlay
                mount_overlay(where, m.options)
                active.mountpoints.append(where)
            elif m.type == "bind":
                _bind(m.source, where, "ro" in m.options)
                active.mountpoints.append(where)
            else:
                raise MountError(f"unknown mount type {m.type!r}")
    except BaseException:
        try:
            active.unmount()
        except MountError:
            pass
        raise
    return active


def _bind(source: str, target: str, readonly: bool) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(source.encode(), target.encode(), None, MS_BIND | MS_REC, None) != 0:
        err = ctypes.get_errno()
        raise MountError(f"bind mount of {source} on {target} failed: {os.strerror(err)}"
                         + (": run it inside a user+mount namespace" if err == errno.EPERM else ""))
    if readonly:
        libc.mount(None, target.encode(), None, MS_BIND | MS_REMOUNT | MS_RDONLY, None)


def host_mount(snapshotter, key: str, target) -> str:
    """`pydocklite mount`: make snapshot `key`'s files visible on the host, as the user.

    FUSE (via fusermount) at `target` for fuse and overlay snapshots — the server is a
    detached process that outlives the caller; undo with `host_unmount(target)`. A vfs
    snapshot is already a plain directory: its path is returned and nothing is mounted.
    Don't mount a snapshot a running container is writing to (two writers on one upper).
    Returns the directory holding the files.
    """
    info = snapshotter.stat(key)
    if info.driver == "vfs":
        return str(Path(info.path) / "fs")
    mount_all(snapshotter.mounts(key, driver="fuse"), target, allow_other=False)
    return str(target)


def host_unmount(target) -> None:
    """Undo host_mount (fusermount -u); the FUSE server then exits by itself."""
    from .fuse_fs import unmount_path
    unmount_path(str(target))
