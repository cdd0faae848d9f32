"""The build context as a read-only file system: the context directory minus .dockerignore.

`ContextFS` and `ImageFS` (imagefs.py, an image's or a stage's layers) share one small
interface that COPY/ADD work over: `stat(rel)`, `listdir(rel)`, `chunks(rel)`. Paths are
relative, '/'-separated, "" for the root. A path that names something outside the context
(`../x`) is refused with ContextError; symlinks are followed inside the context only.
"""
from __future__ import annotations

import os
import posixpath
import stat as st
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional

from pydocklite.builder.dockerignore import IgnoreMatcher, parse_ignore
from pydocklite.builder.errors import ContextError

REG, DIR, SYMLINK = "f", "d", "l"
CHUNK = 1 << 20


@dataclass(frozen=True)
class FileEntry:
    type: str            # "f", "d", "l" (other kinds are not copied)
    mode: int            # permission bits (0o7777)
    size: int
    mtime: float
    linkname: str = ""
    uid: int = 0
    gid: int = 0


def clean_rel(path: str, what: str = "path") -> str:
    """'./a/../b/' -> 'b'; '' for the root; ContextError when it climbs out of the root."""
    p = posixpath.normpath(path)
    if p.startswith("/"):
        p = posixpath.normpath(p.lstrip("/") or ".")
    if p == ".":
        return ""
    if p == ".." or p.startswith("../"):
        raise ContextError(f"forbidden path outside the build context: {path} ({what}): "
                           "COPY/ADD can only use files inside the context directory")
    return p


class ContextFS:
    """The context directory, with .dockerignore applied (excluded paths look absent).

    A build context is someone else's tree (a cloned repository): its symlinks may point
    anywhere. Every path is resolved inside the context by file descriptors, symlinks
    followed as if the context were "/" (runtime/inroot.py, BuildKit's scoping): a link to
    /etc, or a directory link on the way to a file (`sub -> /etc`, `COPY sub/passwd`),
    leads to the context's own etc/, never the host's. Files are read through the fd that
    was checked."""

    name = "build context"

    def __init__(self, root: Path, ignore: Optional[IgnoreMatcher] = None) -> None:
        self.root = Path(os.path.realpath(root))
        self.ignore = ignore or IgnoreMatcher()
        self._fd: Optional[int] = None

    @classmethod
    def open(cls, root: Path, dockerfile_name: str = "Dockerfile") -> "ContextFS":
        root = Path(root)
        if not root.is_dir():
            raise ContextError(f"unable to prepare context: path {str(root)!r} is not a "
                               "directory")
        rules = ()
        for candidate in (f"{dockerfile_name}.dockerignore", ".dockerignore"):
            p = root / candidate
            if p.is_file():
                try:
                    rules = parse_ignore(p.read_text(errors="replace"))
                except OSError as e:
                    raise ContextError(f"cannot read {p}: {e.strerror}") from None
                break
        return cls(root, IgnoreMatcher(rules))

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _root_fd(self) -> int:
        if self._fd is None:
            from pydocklite.runtime import inroot
            try:
                self._fd = inroot.open_root(str(self.root))
            except OSError as e:
                raise ContextError(f"cannot open the build context {self.root}: "
                                   f"{e.strerror}") from None
        return self._fd

    def _open(self, rel: str) -> Optional[int]:
        """O_PATH fd of `rel` resolved inside the context (links followed there), or None."""
        from pydocklite.runtime import inroot
        try:
            return inroot.resolve(self._root_fd(), rel)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as e:
            raise ContextError(f"cannot read {rel} in the build context: {e.strerror}") from None

    def _visible(self, rel: str, is_dir: bool) -> bool:
        if not rel or not self.ignore.excluded(rel):
            return True
        return is_dir and self.ignore.may_reinclude_under(rel)

    def stat(self, rel: str) -> Optional[FileEntry]:
        """The entry itself (a symlink is a symlink); the directories on the way to it are
        resolved inside the context."""
        if not rel:
            return _entry(os.fstat(self._root_fd()), "")
        head, _, name = rel.rpartition("/")
        parent = self._open(head)
        if parent is None:
            return None
        try:
            s = os.lstat(name, dir_fd=parent)
            entry = _entry(s, os.readlink(name, dir_fd=parent) if st.S_ISLNK(s.st_mode) else "")
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as e:
            raise ContextError(f"cannot read {rel} in the build context: {e.strerror}") from None
        finally:
            os.close(parent)
        if entry is None or not self._visible(rel, entry.type == DIR):
            return None
        return entry

    def follow(self, rel: str) -> Optional[FileEntry]:
        """stat() through symlinks, resolved inside the context (top-level COPY sources)."""
        fd = self._open(rel)
        if fd is None:
            return None
        try:
            entry = _entry(os.fstat(fd), "")
        finally:
            os.close(fd)
        if entry is None or not self._visible(rel, entry.type == DIR):
            return None
        return entry

    def listdir(self, rel: str) -> List[str]:
        fd = self._readable(rel, os.O_DIRECTORY, "list")
        try:
            out = []
            for n in sorted(os.listdir(fd)):
                child = f"{rel}/{n}" if rel else n
                if self.ignore.excluded(child):
                    try:
                        is_dir = st.S_ISDIR(os.lstat(n, dir_fd=fd).st_mode)
                    except OSError:
                        continue
                    if not (is_dir and self.ignore.may_reinclude_under(child)):
                        continue
                out.append(n)
            return out
        finally:
            os.close(fd)

    def _readable(self, rel: str, flags: int, what: str) -> int:
        """A readable fd of `rel`, reopened from the O_PATH fd that was resolved."""
        from pydocklite.runtime import inroot
        fd = self._open(rel)
        if fd is None:
            raise ContextError(f"cannot {what} {rel or '.'} in the build context: it is gone")
        try:
            return os.open(inroot.fd_path(fd), os.O_RDONLY | os.O_CLOEXEC | flags)
        except OSError as e:
            raise ContextError(f"cannot {what} {rel or '.'} in the build context: "
                               f"{e.strerror}") from None
        finally:
            os.close(fd)

    def open_file(self, rel: str):
        """A binary file object on `rel` (resolved inside the context)."""
        return os.fdopen(self._readable(rel, 0, "read"), "rb")

    def chunks(self, rel: str) -> Iterator[bytes]:
        with self.open_file(rel) as f:
            while True:
                b = f.read(CHUNK)
                if not b:
                    return
                yield b

    def host_path(self, rel: str) -> str:
        """The host path `rel` resolves to inside the context (for a RUN --mount bind)."""
        from pydocklite.runtime import inroot
        fd = self._open(rel)
        if fd is None:
            raise ContextError(f"{rel!r} is not in the build context")
        try:
            return os.readlink(inroot.fd_path(fd))
        finally:
            os.close(fd)


def _entry(s: os.stat_result, linkname: str) -> Optional[FileEntry]:
    mode = s.st_mode
    if st.S_ISREG(mode):
        return FileEntry(REG, mode & 0o7777, s.st_size, s.st_mtime)
    if st.S_ISDIR(mode):
        return FileEntry(DIR, mode & 0o7777, 0, s.st_mtime)
    if st.S_ISLNK(mode):
        return FileEntry(SYMLINK, 0o777, 0, s.st_mtime, linkname)
    return None
