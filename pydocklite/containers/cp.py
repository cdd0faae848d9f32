"""`cp`'s host side (Docker's rules for names), over the container files service
(fs_access.py): the container's side always runs in the confined helper, and a tar coming
out of a container is unpacked on the host only by the one extractor (tar_extract.py), which
keeps everything below the destination and skips what can't be made safely there.

    skipped = copy_from_container(settings, "box", "/srv/d", "out/")   # cp box:/srv/d out/
    skipped = copy_to_container(settings, "box", "in.txt", "/srv/")    # cp in.txt box:/srv/
"""
from __future__ import annotations

import os
import stat

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import List, Tuple

from pydocklite.containers import fs_access
from pydocklite.errors import ContainerPathError, ContainerPathNotFoundError, UsageError


def _last_name(path: str) -> str:
    """The name a path is copied under ("." for "DIR/." and "/": its contents)."""
    if path.endswith("/.") or path.rstrip("/") in ("", "."):
        return "."
    return os.path.basename(os.path.normpath(path))


def _open_dir(path: str) -> int:
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def copy_from_container(settings, ref: str, src: str, dest: str,
                        stdout_fd: int = 1) -> List[Tuple[str, str]]:
    """cp CONTAINER:SRC DEST (DEST "-": the tar stream to stdout_fd)."""
    from pydocklite.tar_extract import HOST, Extractor
    if dest == "-":
        with fs_access.open_archive(settings, ref, src) as tar:
            while True:
                chunk = tar.read()
                if not chunk:
                    break
                mv = memoryview(chunk)
                while mv:
                    mv = mv[os.write(stdout_fd, mv):]
        return []
    ps = fs_access.stat_path(settings, ref, src)
    name = _last_name(src)
    src_is_dir = stat.S_ISDIR(ps.mode) or name == "."
    try:
        dst = os.stat(dest)
    except FileNotFoundError:
        dst = None
    rename = None
    if dst is not None and stat.S_ISDIR(dst.st_mode):
        into = dest                               # DEST/name (or DEST/ for the contents)
    elif dst is not None:
        if src_is_dir:
            raise UsageError(f"cannot copy a directory to a file: {dest}")
        into, rename = os.path.dirname(os.path.abspath(dest)), (name, os.path.basename(dest))
    elif dest.endswith("/"):
        raise UsageError(f"destination directory {dest} does not exist: create it first")
    elif name == ".":
        os.mkdir(dest, 0o755)
        into = dest
    else:
        into = os.path.dirname(os.path.abspath(dest))
        rename = (name, os.path.basename(os.path.normpath(dest)))
        if not os.path.isdir(into):
            raise UsageError(f"no such directory: {into}")
    dest_fd = _open_dir(into)
    try:
        ex = Extractor(dest_fd, HOST, f"the copy of {src} from container {ref}", rename)
        with fs_access.open_archive(settings, ref, src) as tar:
            try:
                while True:
                    chunk = tar.read()
                    if not chunk:
                        break
                    ex.feed(chunk)
            except BaseException:
                ex.close()
                raise
        return ex.finish()
    finally:
        os.close(dest_fd)


def copy_to_container(settings, ref: str, src: str, dest: str, copy_ids: bool = False,
                      stdin_fd: int = 0) -> List[Tuple[str, str]]:
    """cp SRC CONTAINER:DEST (SRC "-": a tar stream from stdin_fd, into directory DEST)."""
    from pydocklite.tar_tree import TreeWriter
    if src == "-":
        return fs_access.put_archive(settings, ref, dest, lambda n: os.read(stdin_fd, n),
                                     copy_ids)
    name = _last_name(src)
    try:
        if name == ".":
            parent_fd, entry = _open_dir(src), "."
            sst = os.fstat(parent_fd)
        else:
            sst = os.lstat(src)
            parent_fd, entry = _open_dir(os.path.dirname(os.path.abspath(src))), name
    except FileNotFoundError:
        raise UsageError(f"no such file or directory: {src}") from None
    try:
        dest = "/" + dest.lstrip("/")
        try:
            ps = fs_access.stat_path(settings, ref, dest)
            if stat.S_ISLNK(ps.mode):
                ps = fs_access.stat_path(settings, ref, dest.rstrip("/") + "/")
            dest_is_dir = stat.S_ISDIR(ps.mode)
        except ContainerPathNotFoundError:
            ps, dest_is_dir = None, False
        except ContainerPathError:
            ps, dest_is_dir = True, False         # a link to a file
        if dest_is_dir:
            into, tar_name = dest, name           # DEST/name, or DEST/ for the contents
        elif dest.endswith("/"):
            raise UsageError(f"destination directory {ref}:{dest} does not exist: create it "
                             f"first")
        elif ps is not None and stat.S_ISDIR(sst.st_mode):
            raise UsageError(f"cannot copy a directory to a file: {ref}:{dest}")
        else:
            into = os.path.dirname(os.path.normpath(dest))
            tar_name = os.path.basename(os.path.normpath(dest))

        def feed(write):
            tw = TreeWriter(write)
            tw.add_tree(parent_fd, entry, sst, tar_name)
            tw.close()
        return fs_access.put_tar(settings, ref, into, feed, copy_ids)
    finally:
        os.close(parent_fd)
