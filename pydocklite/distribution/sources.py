"""Archives to read and write, whether a tar file (maybe gzip-compressed), a directory, or a
stream: one small interface for archive.py.

    src = open_source(path)          # a directory or a (compressed) tar file
    src.names(); src.read("index.json"); with src.open("blobs/sha256/...") as f: ...
    sink = TarSink(fileobj) | DirSink(path)
    sink.add_bytes("manifest.json", data); sink.add_file("x/layer.tar", path); sink.close()
"""
from __future__ import annotations

import io
import os
import posixpath
import tarfile
from pathlib import Path
from typing import BinaryIO, List

from pydocklite.distribution.errors import ArchiveError


def _norm(name: str) -> str:
    name = posixpath.normpath(name.lstrip("/"))
    return "" if name == "." else name


class DirSource:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, name: str) -> Path:
        n = _norm(name)
        if n.startswith(".."):
            raise ArchiveError(f"archive {self.root}: path {name!r} leaves the archive")
        return self.root / n

    def names(self) -> List[str]:
        out = []
        for dirpath, _, files in os.walk(self.root):
            for f in files:
                out.append(os.path.relpath(os.path.join(dirpath, f), self.root))
        return out

    def has(self, name: str) -> bool:
        return self._path(name).is_file()

    def open(self, name: str) -> BinaryIO:
        try:
            return open(self._path(name), "rb")
        except OSError as e:
            raise ArchiveError(f"archive {self.root}: cannot read {name}: {e.strerror}") from e

    def read(self, name: str) -> bytes:
        with self.open(name) as f:
            return f.read()

    def close(self) -> None:
        pass


class TarSource:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.tf = tarfile.open(str(path), "r:*")
        except (tarfile.TarError, OSError) as e:
            raise ArchiveError(f"{path} is not a tar archive or directory: {e}") from e
        self.members = {}
        for m in self.tf.getmembers():
            self.members[_norm(m.name)] = m

    def names(self) -> List[str]:
        return [n for n, m in self.members.items() if m.isfile() or m.issym() or m.islnk()]

    def has(self, name: str) -> bool:
        return _norm(name) in self.members

    def open(self, name: str) -> BinaryIO:
        m = self.members.get(_norm(name))
        seen = 0
        while m is not None and m.issym() and seen < 16:   # docker save links shared layers
            target = _norm(posixpath.join(posixpath.dirname(_norm(m.name)), m.linkname))
            m, seen = self.members.get(target), seen + 1
        if m is None:
            raise ArchiveError(f"archive {self.path} has no file {name}")
        f = self.tf.extractfile(m)
        if f is None:
            raise ArchiveError(f"archive {self.path}: {name} is not a regular file")
        return f

    def read(self, name: str) -> bytes:
        with self.open(name) as f:
            return f.read()

    def close(self) -> None:
        self.tf.close()


def open_source(path: Path):
    path = Path(path)
    if path.is_dir():
        return DirSource(path)
    if not path.exists():
        raise ArchiveError(f"open {path}: no such file or directory")
    return TarSource(path)


class TarSink:
    """Writes a tar stream (mtime 0, root-owned entries: the same image gives the same tar)."""

    def __init__(self, fileobj: BinaryIO) -> None:
        self.tf = tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT)
        self.dirs = set()

    def _dirs(self, name: str) -> None:
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in self.dirs:
                self.dirs.add(d)
                ti = tarfile.TarInfo(d)
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                self.tf.addfile(ti)

    def add_bytes(self, name: str, data: bytes) -> None:
        self._dirs(name)
        ti = tarfile.TarInfo(name)
        ti.size, ti.mode = len(data), 0o644
        self.tf.addfile(ti, io.BytesIO(data))

    def add_file(self, name: str, path: Path) -> None:
        self._dirs(name)
        ti = tarfile.TarInfo(name)
        ti.size, ti.mode = os.path.getsize(path), 0o644
        with open(path, "rb") as f:
            self.tf.addfile(ti, f)

    def close(self) -> None:
        self.tf.close()


class DirSink:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def add_bytes(self, name: str, data: bytes) -> None:
        p = self.root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)

    def add_file(self, name: str, path: Path) -> None:
        import shutil
        p = self.root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, p)

    def close(self) -> None:
        pass
