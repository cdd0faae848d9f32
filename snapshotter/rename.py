"""rename(2) for the union view (union.py), in its own module because it is the one
operation that can move a whole merged directory.

Files: the source is copied up, renamed inside the upper dir, and a whiteout hides the old
lower name. Directories: their merged content is copied up entirely (like overlayfs without
redirect_dir would force `mv` to do), moved in one rename, and marked opaque so nothing of
the lower layers shows through at the new place.
"""
from __future__ import annotations

import errno
import os
import stat

from .merge import DIR
from .upper import is_whiteout, parent_of


def rename(u, old: str, new: str) -> None:
    """rename(2) in the merged view; the caller holds the union's lock."""
    upper = u._writable()
    if old == new:
        return
    if new.startswith(old + "/") or not old:
        raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), new)
    skind, sobj = u.resolve(old)
    src_dir = u.is_dir(skind, sobj)
    try:
        dkind, dobj = u.resolve(new)
    except FileNotFoundError:
        dkind = None
    dst_lower = u._lower_exists(new)
    if dkind is not None:
        dst_dir = u.is_dir(dkind, dobj)
        if src_dir and not dst_dir:
            raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), new)
        if dst_dir and not src_dir:
            raise OSError(errno.EISDIR, os.strerror(errno.EISDIR), new)
        if dst_dir and u.readdir(new):
            raise OSError(errno.ENOTEMPTY, os.strerror(errno.ENOTEMPTY), new)
    src_lower = u._lower_exists(old)
    if src_dir:
        _copy_up_tree(u, old)
    else:
        u.copy_up(old)
    u.copy_up(parent_of(new))
    upper.remove_whiteout(new)
    if dkind == "upper" and src_dir:
        u._clear_upper_dir(new)
        upper.forget_subtree(new)
    upper.rename(old, new)
    if src_dir:
        upper.move_state(old, new)
        if dst_lower or src_lower:
            upper.set_opaque(new)
    if src_lower:
        u.copy_up(parent_of(old))
        upper.add_whiteout(old)


def _copy_up_tree(u, rel: str) -> None:
    """Copy a whole directory's merged content up, so it can move as one upper dir."""
    u.copy_up(rel)
    for name in u.readdir(rel):
        child = f"{rel}/{name}" if rel else name
        kind, obj = u.resolve(child)
        if kind == "lower" and obj.type == DIR:
            _copy_up_tree(u, child)
        elif kind == "upper" and stat.S_ISDIR(obj.st_mode):
            if u._lower_exists(child) and child not in u.upper.opaque:
                _copy_up_tree(u, child)
        elif kind == "lower":
            u.copy_up(child)
    # whiteouts inside no longer matter once the dir becomes opaque at its new place
    for name, st in u.upper.listdir(rel):
        if is_whiteout(st):
            u.upper.unlink(f"{rel}/{name}" if rel else name)

