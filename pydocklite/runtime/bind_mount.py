"""Bind mounts onto a file descriptor, with their flags in force from the first instant.

`bind(root_fd, src, dest, target_fd, recursive, flags, warn)` is how every bind mount of the
runtime lands in a container's rootfs: a detached copy of the source (open_tree), its
flags (ro, nosuid, nodev, noexec, atime) set with mount_setattr before move_mount attaches
it on the target's fd (Linux 5.12+); on older kernels, mount(2) on /proc/self/fd/N and a
remount of the new mount, found again by name and checked to be the one just made.
`remount_bind(path, flags)` re-applies flags to a mount, keeping what a user namespace locks.
"""
from __future__ import annotations

import errno
import os

from . import inroot
from . import syscalls as sc

_ST_TO_MS = ((os.ST_RDONLY, sc.MS_RDONLY), (os.ST_NOSUID, sc.MS_NOSUID),
             (os.ST_NODEV, sc.MS_NODEV), (os.ST_NOEXEC, sc.MS_NOEXEC),
             (os.ST_NOATIME, sc.MS_NOATIME), (os.ST_NODIRATIME, sc.MS_NODIRATIME),
             (getattr(os, "ST_RELATIME", 4096), sc.MS_RELATIME))
_ATIME = sc.MS_NOATIME | sc.MS_RELATIME | sc.MS_STRICTATIME | sc.MS_NODIRATIME


def _current_flags(path: str) -> int:
    f = os.statvfs(path).f_flag
    return sum(ms for st, ms in _ST_TO_MS if f & st)


def remount_bind(path: str, flags: int, warn=None) -> None:
    """Bind-remount with flags, keeping the flags the kernel locks in a user namespace.

    The atime flags of a mount inherited from the host are locked in a user namespace too:
    when changing them is refused, the rest is applied and the atime kept (told to warn)."""
    cur = _current_flags(path)
    keep = cur & (sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC | sc.MS_RDONLY)
    if not flags & _ATIME:
        keep |= cur & _ATIME
    try:
        sc.mount(None, path, None, sc.MS_BIND | sc.MS_REMOUNT | flags | keep)
    except PermissionError:
        if not flags & _ATIME or warn is None:
            raise
        # no atime flag in a remount keeps the mount's own
        sc.mount(None, path, None, sc.MS_BIND | sc.MS_REMOUNT | (flags & ~_ATIME) | keep)
        warn(f"{path}: the atime option can't be changed on a mount from the host here "
             f"(locked in a user namespace): its own atime setting is kept")


_TO_ATTR = ((sc.MS_RDONLY, sc.MOUNT_ATTR_RDONLY), (sc.MS_NOSUID, sc.MOUNT_ATTR_NOSUID),
            (sc.MS_NODEV, sc.MOUNT_ATTR_NODEV), (sc.MS_NOEXEC, sc.MOUNT_ATTR_NOEXEC),
            (sc.MS_NOATIME, sc.MOUNT_ATTR_NOATIME), (sc.MS_STRICTATIME, sc.MOUNT_ATTR_STRICTATIME),
            (sc.MS_NODIRATIME, sc.MOUNT_ATTR_NODIRATIME))


def _set_attrs(tree: int, flags: int, recursive: bool, warn, what: str) -> None:
    """mount_setattr the MS_* `flags` on a detached tree. Flags only ever get added, so what
    the kernel locks (a host mount's nosuid, ro...) stays; an atime change it refuses on a
    mount from the host is dropped with a warning, as remount_bind does."""
    attr = sum(a for ms, a in _TO_ATTR if flags & ms)
    clr = sc.MOUNT_ATTR__ATIME if flags & _ATIME & ~sc.MS_NODIRATIME else 0
    if not attr and not clr:
        return
    try:
        sc.mount_setattr(tree, attr, clr, recursive=recursive)
    except PermissionError:
        if not clr or warn is None:
            raise
        sc.mount_setattr(tree, attr & ~(sc.MOUNT_ATTR__ATIME | sc.MOUNT_ATTR_NODIRATIME), 0,
                         recursive=recursive)
        warn(f"{what}: the atime option can't be changed on a mount from the host here "
             f"(locked in a user namespace): its own atime setting is kept")


def bind(root_fd: int, src, dest: str, target: int, recursive: bool, flags: int,
         warn, propagation: int = 0) -> None:
    """Bind `src` (a host path: trusted; or an fd) on `target` (an O_PATH fd in the rootfs
    for `dest`) with `flags` (MS_RDONLY, MS_NOSUID...) in force from the moment it is
    visible."""
    by_fd = isinstance(src, int)
    try:
        tree = sc.open_tree(src if by_fd else -100, "" if by_fd else src,      # -100: AT_FDCWD
                            sc.OPEN_TREE_CLONE | os.O_CLOEXEC
                            | (sc.AT_RECURSIVE if recursive else 0)
                            | (sc.AT_EMPTY_PATH if by_fd else 0))
    except OSError as e:
        if e.errno not in (errno.ENOSYS, errno.EPERM):
            raise
        return _bind_classic(root_fd, src, dest, target, recursive, flags, warn, propagation)
    try:
        try:
            _set_attrs(tree, flags, recursive, warn, dest)
        except OSError as e:
            if e.errno != errno.ENOSYS:          # mount_setattr: Linux 5.12
                raise
            return _bind_classic(root_fd, src, dest, target, recursive, flags, warn,
                                 propagation)
        sc.move_mount(tree, target)
        if propagation:
            sc.mount(None, inroot.fd_path(tree), None, propagation)   # the new mount itself
    finally:
        os.close(tree)


def _bind_classic(root_fd: int, src: str, dest: str, target: int, recursive: bool,
                  flags: int, warn, propagation: int) -> None:
    """Kernels without mount_setattr: bind on /proc/self/fd/N, then find the new mount by
    its name again and check it is the one just made (the source's inode, on another mount
    than the target was) before remounting it with the flags."""
    src_fd = os.dup(src) if isinstance(src, int) else os.open(src, os.O_PATH | os.O_CLOEXEC)
    try:
        sc.mount(inroot.fd_path(src_fd), inroot.fd_path(target), None,
                 sc.MS_BIND | (sc.MS_REC if recursive else 0))
        if not (flags & ~(sc.MS_BIND | sc.MS_REC) or propagation):
            return
        top = inroot.resolve(root_fd, dest)
        try:
            if not inroot.same_file(top, src_fd) or \
                    inroot.mount_id(top) == inroot.mount_id(target):
                raise OSError(errno.EXDEV, f"mount target {dest} changed while it was being "
                                           "mounted (a symlink race?): refused")
            if flags & ~(sc.MS_BIND | sc.MS_REC):
                remount_bind(inroot.fd_path(top), flags & ~(sc.MS_BIND | sc.MS_REC), warn)
            if propagation:
                sc.mount(None, inroot.fd_path(top), None, propagation)
        finally:
            os.close(top)
    finally:
        os.close(src_fd)
