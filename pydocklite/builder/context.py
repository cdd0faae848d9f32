"""The build context as a read-only file system: the context directory minus .dockerignore.

`ContextFS` and `ImageFS` (imagefs.py, an image's or a stage's layers) share one small
interface that COPY/ADD work over: `stat(rel)`, `listdir(rel)`, `chunks(rel)`. Paths are
relative, '/'-separated, "" for the root. A path that names something outside the context
(`../x`, or a symlink leading out of it) is refused with ContextError.
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
    """The context directory, with .dockerignore applied (excluded paths look absent)."""

    name = "build context"

    def __init__(self, root: Path, ignore: Optional[IgnoreMatcher] = None) -> None:
        self.root = Path(os.path.realpath(root))
        self.ignore = ignore or IgnoreMatcher()

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

    def _host(self, rel: str) -> str:
        """Host path of a context path. Cheap: walks below a source use lstat and never follow
        symlinks; top-level sources go through follow(), which checks where links lead."""
        return os.path.join(str(self.root), rel) if rel else str(self.root)

    def _visible(self, rel: str, is_dir: bool) -> bool:
        if not rel or not self.ignore.excluded(rel):
            return True
        return is_dir and self.ignore.may_reinclude_under(rel)

    def stat(self, rel: str) -> Optional[FileEntry]:
        try:
            s = os.lstat(self._host(rel))
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as e:
            raise ContextError(f"cannot read {rel} in the build context: {e.strerror}") from None
        entry = _entry(s, self._host(rel))
        if entry is None or not self._visible(rel, entry.type == DIR):
            return None
        return entry

    def follow(self, rel: str) -> Optional[FileEntry]:
        """stat() through a symlink that stays inside the context (top-level COPY sources)."""
        host = self._host(rel)
        real = os.path.realpath(host)
        if real != str(self.root) and not real.startswith(str(self.root) + os.sep):
            raise ContextError(f"forbidden path outside the build context: {rel} -> {real}")
        if not os.path.lexists(host) or not self._visible(rel, os.path.isdir(real)):
            return None
        try:
            return _entry(os.stat(real), real)
        except FileNotFoundError:
            return None

    def listdir(self, rel: str) -> List[str]:
        try:
            names = sorted(os.listdir(self._host(rel)))
        except OSError as e:
            raise ContextError(f"cannot list {rel or '.'} in the build context: "
                               f"{e.strerror}") from None
        out = []
        for n in names:
            child = f"{rel}/{n}" if rel else n
            if self.ignore.excluded(child):
                if not (os.path.isdir(os.path.join(str(self.root), child))
                        and self.ignore.may_reinclude_under(child)):
                    continue
            out.append(n)
        return out

    def chunks(self, rel: str) -> Iterator[bytes]:
        with open(self._host(rel), "rb") as f:
            while True:
                b = f.read(CHUNK)
                if not b:
                    return
                yield b

    def host_path(self, rel: str) -> str:
        return self._host(rel)


def _entry(s: os.stat_result, host: str) -> Optional[FileEntry]:
    mode = s.st_mode
    if st.S_ISREG(mode):
        return FileEntry(REG, mode & 0o7777, s.st_size, s.st_mtime)
    if st.S_ISDIR(mode):
        return FileEntry(DIR, mode & 0o7777, 0, s.st_mtime)
    if st.S_ISLNK(mode):
        return FileEntry(SYMLINK, 0o777, 0, s.st_mtime, os.readlink(host))
    return None
