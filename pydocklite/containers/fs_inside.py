"""What the confined helper does inside a container (runtime/confined.py runs these).

They run after the helper entered the container and locked the import system: only modules
imported by this one (at the top, on the host) may be used, no name is looked up (numeric
ids only), and nothing reaches the host but the bytes written to fd 1 (and fd 2, the status).
Paths resolve inside the container: its root is the helper's root.

    stat_path(path)                       -> one JSON object on fd 1
    tar_path(path, rootfs_only)           -> a tar stream on fd 1
    untar_into(path, copy_ids)            <- a tar stream on fd 0; skipped entries as JSON on fd 1
"""
from __future__ import annotations

import errno
import json
import os
import stat

from pydocklite import tar_extract, tar_tree


def _write_all(fd: int, data) -> None:
    mv = memoryview(data)
    while mv:
        n = os.write(fd, mv)
        mv = mv[n:]


def _split(path: str):
    """(directory, last name, follow the last name?) of an absolute container path. A
    trailing "/" means the directory itself: its name is followed. "DIR/." and "/" mean a
    directory's contents: ("DIR", ".", True)."""
    if not path.startswith("/"):
        path = "/" + path
    contents = path.endswith("/.") or path == "/"
    follow = contents or path.endswith("/")
    path = os.path.normpath(path)
    if contents:
        return path, ".", True
    parent, name = os.path.split(path)
    return parent, name, follow


def _target_of(parent: str, name: str, follow: bool):
    """(dir fd, name, lstat, path) of the path to work on (name "." = the open dir fd
    itself). Resolution happens in the container: its root is ours."""
    if follow and name != ".":
        real = os.path.realpath(os.path.join(parent, name))
        if real == "/":
            parent, name = "/", "."
        else:
            parent, name = os.path.split(real)
    fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if name == ".":
            return fd, ".", os.fstat(fd), parent
        return (fd, name, os.stat(name, dir_fd=fd, follow_symlinks=False),
                os.path.join(parent, name))
    except BaseException:
        os.close(fd)
        raise


def stat_path(path: str) -> None:
    parent, name, follow = _split(path)
    dfd, nm, st, _ = _target_of(parent, name, follow)
    os.close(dfd)
    link = ""
    if stat.S_ISLNK(st.st_mode):
        link = os.path.realpath(os.path.join(parent, name))
    shown = os.path.basename(os.path.normpath(path)) or "/"
    doc = {"name": shown, "size": st.st_size, "mode": st.st_mode, "mtime": st.st_mtime,
           "linkTarget": link}
    _write_all(1, json.dumps(doc).encode())


def _mount_points() -> set:
    """Mount points below / in this (the container's) mount namespace, as relative paths."""
    out = set()
    try:
        with open("/proc/self/mountinfo", "rb") as f:
            for line in f:
                fields = line.split(b" ")
                if len(fields) > 4:
                    mp = fields[4].decode("utf-8", "surrogateescape")
                    mp = mp.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n")
                    mp = mp.replace("\\134", "\\")
                    if mp != "/":
                        out.add(mp.lstrip("/"))
    except OSError:
        pass
    return out


def tar_path(path: str, rootfs_only: bool = False) -> None:
    """A tar of `path` on fd 1: named by its last name (a symlink as itself unless the path
    ends with "/"), or its contents only ("./...") for "DIR/." and "/". rootfs_only: leave
    out what is mounted below (proc, sys, dev, volumes, bind mounts), keeping the mount
    points themselves, empty, and name the entries as `docker export` does ("bin/sh", no
    "./" and no entry for the top)."""
    parent, name, follow = _split(path)
    dfd, nm, st, real = _target_of(parent, name, follow)
    try:
        out = tar_tree.TreeWriter(lambda b: _write_all(1, b))
        prune = _mount_points() if rootfs_only else ()
        out.add_tree(dfd, nm, st, "" if rootfs_only else name, prune=prune, base=real)
        out.close()
    finally:
        os.close(dfd)


def untar_into(path: str, copy_ids: bool = False) -> None:
    """Extract the tar on fd 0 into directory `path` (followed: Docker's PUT archive).
    Owners are the container's root unless copy_ids; what was skipped goes to fd 1 as JSON.
    A directory is never replaced by a file (Docker's noOverwriteDirNonDir, always on)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except NotADirectoryError:
        raise OSError(errno.ENOTDIR, f"{path} is not a directory") from None
    policy = tar_extract.ExtractPolicy(owners=copy_ids, setid=True, fifos=True,
                                       links_anywhere=True, xattrs=True)
    try:
        skipped = tar_extract.extract_stream(lambda n: os.read(0, n), fd, policy,
                                             what=f"archive for {path}")
    finally:
        os.close(fd)
    _write_all(1, json.dumps(skipped).encode())
