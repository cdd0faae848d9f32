"""Paths inside a container's rootfs, resolved by file descriptors.

The rootfs, its volumes and everything under them are the container's: a running container
sharing a volume can swap a directory for a symlink at any moment. So a path in the rootfs is
never handed to the kernel as a string to follow on the host side. It is opened relative to a
directory fd of the rootfs, every symlink met on the way resolved as if the rootfs were "/"
(openat2 with RESOLVE_IN_ROOT where the kernel has it, 5.6+; else a component-by-component
O_NOFOLLOW walk doing the same), and the result is an O_PATH fd: whatever happens to the
names afterwards, that fd is the directory or file that was checked. Mounts then target it
through /proc/self/fd/N or move_mount(2) (runc's fix for CVE-2021-30465).
"""
from __future__ import annotations

import errno
import os
import posixpath
import stat

from . import syscalls as sc

MAX_LINKS = 40
_O_PATH = os.O_PATH | os.O_CLOEXEC


def open_root(path: str) -> int:
    return os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)


def fd_path(fd: int) -> str:
    """The magic link naming exactly what `fd` is open on."""
    return f"/proc/self/fd/{fd}"


def clean(path: str) -> str:
    """Lexically normalised, relative to the root ("" is the root itself); ".." can't climb
    above it."""
    p = posixpath.normpath("/" + path).lstrip("/")
    return "" if p == "." else p


def resolve(root_fd: int, path: str) -> int:
    """An O_PATH fd of `path` inside the root `root_fd` (symlinks followed inside the root,
    the last one included). FileNotFoundError if some component is missing."""
    rel = clean(path)
    if not rel:
        return os.dup(root_fd)
    try:
        return sc.openat2(root_fd, rel, _O_PATH,
                          sc.RESOLVE_IN_ROOT | sc.RESOLVE_NO_MAGICLINKS)
    except OSError as e:
        if e.errno not in (errno.ENOSYS, errno.EPERM):   # EPERM: a seccomp filter
            if e.errno == errno.ENOENT:
                raise FileNotFoundError(errno.ENOENT, f"{path}: no such file or directory"
                                        ) from None
            raise
    return walk(root_fd, rel)


def walk(root_fd: int, path: str) -> int:
    """resolve() without openat2: one component at a time with O_NOFOLLOW, symlinks read and
    re-rooted, ".." never above the root."""
    stack = [os.dup(root_fd)]                 # the directories walked through, root first
    todo = [p for p in clean(path).split("/") if p]
    links = 0
    try:
        while todo:
            comp = todo.pop(0)
            if comp == ".":
                continue
            if comp == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                continue
            try:
                fd = os.open(comp, _O_PATH | os.O_NOFOLLOW, dir_fd=stack[-1])
            except FileNotFoundError:
                raise FileNotFoundError(errno.ENOENT, f"{path}: no such file or directory"
                                        ) from None
            if stat.S_ISLNK(os.fstat(fd).st_mode):
                links += 1
                try:
                    target = os.readlink(comp, dir_fd=stack[-1])
                finally:
                    os.close(fd)
                if links > MAX_LINKS:
                    raise OSError(errno.ELOOP, f"{path}: too many levels of symbolic links")
                if target.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop())
                todo = [p for p in target.split("/") if p] + todo
                continue
            if todo and not stat.S_ISDIR(os.fstat(fd).st_mode):
                os.close(fd)
                raise NotADirectoryError(errno.ENOTDIR, f"{path}: a component is not a "
                                         "directory")
            stack.append(fd)
        return stack.pop()
    finally:
        for fd in stack:
            os.close(fd)


def ensure(root_fd: int, path: str, is_dir: bool, _depth: int = 0) -> int:
    """resolve(), creating what is missing: directories (0755) on the way, and the last
    component as a directory or an empty file (0644). A dangling symlink on the way is
    followed inside the root and its target created."""
    rel = clean(path)
    try:
        return resolve(root_fd, rel)
    except FileNotFoundError:
        pass
    parts = rel.split("/")
    for i in range(1, len(parts) + 1):
        prefix = "/".join(parts[:i])
        try:
            os.close(resolve(root_fd, prefix))
            continue
        except FileNotFoundError:
            pass
        parent = resolve(root_fd, "/".join(parts[:i - 1]))
        name = parts[i - 1]
        try:
            if i == len(parts) and not is_dir:
                os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW
                                 | os.O_CLOEXEC, 0o644, dir_fd=parent))
            else:
                os.mkdir(name, 0o755, dir_fd=parent)
        except FileExistsError:
            # the name is there yet doesn't resolve: a dangling symlink; make its target
            try:
                target = os.readlink(name, dir_fd=parent)
            except OSError:
                raise FileExistsError(errno.EEXIST, f"{path}: {prefix} appeared while it "
                                      "was being created") from None
            if _depth >= MAX_LINKS:
                raise OSError(errno.ELOOP, f"{path}: too many levels of symbolic links"
                              ) from None
            base = "" if target.startswith("/") else "/".join(parts[:i - 1])
            rest = "/".join([base, target] + parts[i:])
            return ensure(root_fd, rest, is_dir, _depth + 1)
        finally:
            os.close(parent)
    return resolve(root_fd, rel)


def same_file(fd_a: int, fd_b: int) -> bool:
    a, b = os.fstat(fd_a), os.fstat(fd_b)
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def mount_id(fd: int) -> int:
    """The id of the mount `fd` is on (/proc/self/fdinfo, Linux 3.15+)."""
    with open(f"/proc/self/fdinfo/{fd}") as f:
        for line in f:
            if line.startswith("mnt_id:"):
                return int(line.split()[1])
    raise OSError(errno.ENOSYS, "no mnt_id in /proc/self/fdinfo")
