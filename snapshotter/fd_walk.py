"""Walk a directory tree that someone else controls (a container's upper dir, its root seen
from a confined helper) without ever following a symbolic link it placed.

Everything is relative to directory file descriptors opened with O_NOFOLLOW from the root's
fd: a directory swapped for a symlink between two steps fails to open (ELOOP/ENOTDIR) and is
reported as what it is now, never followed; a directory is described by the fstat of the fd
the walk then descends into, so what is listed is what is read. Path strings are only names
for the output, never resolved again.

    for e in walk(root_fd):               # parents first, names sorted
        e.rel, e.st, e.dir_fd, e.name     # dir_fd/name: where the entry is (valid during the step)
        fd = open_regular(e)               # the file's data, or None if it is not one any more
"""
from __future__ import annotations

import errno
import os
import stat

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import Callable, Iterator, Optional

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class Entry:
    """One step of the walk; `st` is an lstat (for a directory: the fstat of its open fd)."""
    __slots__ = ("rel", "name", "dir_fd", "st", "fd")

    def __init__(self, rel: str, name: str, dir_fd: int, st: os.stat_result,
                 fd: int = -1) -> None:
        self.rel, self.name, self.dir_fd, self.st, self.fd = rel, name, dir_fd, st, fd


def open_dir(dir_fd: int, name: str) -> int:
    return os.open(name, DIR_FLAGS, dir_fd=dir_fd)


def lstat_at(dir_fd: int, name: str) -> os.stat_result:
    return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)


def open_regular(e: Entry):
    """(fd, fstat) of the regular file now at entry e's name (opened without following a
    link: if a file was swapped in since the listing, it is that one, described by its own
    fstat), or None when there is no regular file there any more."""
    try:
        fd = os.open(e.name, _FILE_FLAGS, dir_fd=e.dir_fd)
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.ENOENT, errno.ENXIO, errno.EWOULDBLOCK):
            return None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        return None
    os.set_blocking(fd, True)
    return fd, st


def read_link(e: Entry) -> str:
    return os.readlink(e.name, dir_fd=e.dir_fd)


def walk(root_fd: int, descend: Optional[Callable[[Entry], bool]] = None,
         skip: Optional[Callable[[str], bool]] = None,
         unreadable: Optional[Callable[[str, OSError], None]] = None) -> Iterator[Entry]:
    """Every entry below root_fd (not the root itself), parents before children, names
    sorted. descend(entry) -> False keeps the walk out of a directory (still yielded);
    skip(name) -> True leaves a name out entirely; unreadable(rel, error): a directory that
    can't be opened or listed is told there and passed over (default: the error is raised).
    The directory fds are closed as the walk leaves them; an Entry's dir_fd and fd are valid
    only until the next step."""
    stack = [(os.dup(root_fd), "", None)]
    try:
        while stack:
            dfd, rel, names = stack[-1]
            if names is None:
                try:
                    names = iter(sorted(os.listdir(dfd)))
                except PermissionError as err:
                    if unreadable is None:
                        raise
                    unreadable(rel, err)
                    names = iter(())
                stack[-1] = (dfd, rel, names)
            name = next(names, None)
            if name is None:
                os.close(dfd)
                stack.pop()
                continue
            if skip is not None and skip(name):
                continue
            child = f"{rel}/{name}" if rel else name
            try:
                st = lstat_at(dfd, name)
            except FileNotFoundError:
                continue                    # gone since the listing
            if not stat.S_ISDIR(st.st_mode):
                yield Entry(child, name, dfd, st)
                continue
            try:
                cfd = open_dir(dfd, name)
            except PermissionError as err:
                if unreadable is None:
                    raise
                unreadable(child, err)
                yield Entry(child, name, dfd, st)
                continue
            except OSError as err:
                if err.errno not in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT):
                    raise
                try:                        # swapped since the lstat: say what it is now
                    st = lstat_at(dfd, name)
                except FileNotFoundError:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    raise
                yield Entry(child, name, dfd, st)
                continue
            entry = Entry(child, name, dfd, os.fstat(cfd), cfd)
            yield entry
            if descend is None or descend(entry):
                stack.append((cfd, child, None))
            else:
                os.close(cfd)
    finally:
        for dfd, _, _ in stack:
            os.close(dfd)
