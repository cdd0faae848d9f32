"""Run a function as root of a fresh user namespace holding the caller's full id map.

Rootless, files a container created under its subordinate ids (an nginx cache owned by
www-data) belong to uids the user can't touch directly; inside a user namespace with the
same mapping the user is root over them (`podman unshare` does the same).
"""
from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import Callable

def run_in_userns(fn: Callable[[], None]) -> None:
    """fn() in a child that is root of a new user namespace; raises if it failed."""
    if os.geteuid() == 0:
        fn()
        return
    from pydocklite.runtime import idmap
    from pydocklite.runtime import syscalls as sc
    uid_maps, gid_maps, _warning = idmap.default_mappings()
    go_r, go_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            os.close(go_w)
            os.close(err_r)
            sc.unshare(sc.CLONE_NEWUSER)
            os.write(err_w, b"U")            # tell the parent to write the maps
            if os.read(go_r, 1) != b"g":
                os._exit(1)
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
            fn()
            code = 0
        except BaseException:
            try:
                import traceback
                os.write(err_w, traceback.format_exc().encode()[-2000:])
            except OSError:
                pass
        finally:
            os._exit(code)
    os.close(go_r)
    os.close(err_w)
    try:
        first = os.read(err_r, 1)
        if first == b"U":
            try:
                idmap.apply(pid, uid_maps, gid_maps)
            finally:
                os.write(go_w, b"g")
        rest = first[1:] if first != b"U" else b""
        while True:
            chunk = os.read(err_r, 65536)
            if not chunk:
                break
            rest += chunk
    finally:
        os.close(go_w)
        os.close(err_r)
        _, status = os.waitpid(pid, 0)
    if status != 0:
        raise OSError(f"in a user namespace: {rest.decode(errors='replace').strip()[-500:]}")


def rmtree_as_root(*paths: str) -> None:
    """Delete `paths` whatever container-side uid owns their files (one namespace for all)."""
    import shutil
    todo = []
    for p in paths:
        try:
            _rmtree_own(p)     # often all ours (container root is us): no namespace needed
        except FileNotFoundError:
            pass
        except OSError:
            todo.append(p)
    todo = [p for p in todo if os.path.lexists(p)]

    def remove():
        for p in todo:
            shutil.rmtree(p, ignore_errors=True)
    if todo:
        run_in_userns(remove)


def _rmtree_own(path: str) -> None:
    """Delete a tree whose directories are ours, whatever their modes (overlayfs leaves a
    mode-000 work/work); raises OSError at the first thing we may not delete.

    The tree may hold what a container made (a volume, an upper dir): every directory is
    opened relative to its parent's fd with O_NOFOLLOW, so a symlink swapped in for a
    directory is unlinked, never followed to the host's files."""
    import stat
    parent, name = os.path.split(os.path.normpath(path))
    pfd = os.open(parent or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _rmtree_at(pfd, name, stat)
    finally:
        os.close(pfd)


def _rmtree_at(dir_fd: int, name: str, stat) -> None:
    # O_PATH: no read permission needed (a mode-000 directory), and the inode is pinned
    pin = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        mode = os.fstat(pin).st_mode
        if not stat.S_ISDIR(mode):
            os.unlink(name, dir_fd=dir_fd)
            return
        if mode & 0o700 != 0o700:
            os.chmod(f"/proc/self/fd/{pin}", 0o700)      # that very directory
        fd = os.open(f"/proc/self/fd/{pin}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    finally:
        os.close(pin)
    try:
        for entry in os.listdir(fd):
            _rmtree_at(fd, entry, stat)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dir_fd)
