"""COPY/ADD: sources (globs) -> a plan of files to put in the image -> content hash + tar layer.

Docker's semantics: a directory source copies its *contents*; a file goes to DEST/name when
DEST ends with '/' or is a directory in the image, else DEST is the new file's path; several
sources (or a wildcard) need a directory DEST; missing parent directories are created (0755,
root); ADD unpacks a local tar archive (plain, gzip, bzip2, xz) into DEST. The plan is pure
data; `plan_hash` is the cache key part (content + path + mode + owner, never mtimes, as in
Docker); `write_tar` streams the layer.
"""
from __future__ import annotations

import fnmatch
import hashlib
import os
import posixpath
import tarfile
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from pydocklite.builder.context import DIR, REG, SYMLINK, FileEntry, clean_rel
from pydocklite.builder.errors import ContextError

_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


@dataclass(frozen=True)
class CopyItem:
    dest: str                      # relative path in the image
    entry: FileEntry               # type, mode, owner, mtime, link target, size
    data: Optional[Callable[[], Iterator[bytes]]] = None   # regular files


def _has_magic(s: str) -> bool:
    return any(c in s for c in "*?[")


def glob(fs, pattern: str, what: str) -> List[str]:
    """Context/image paths matching `pattern` (Go filepath.Match per component)."""
    rel = clean_rel(pattern, what)
    if not _has_magic(rel):
        return [rel] if fs.stat(rel) is not None or (rel and _follows(fs, rel)) else []
    parts = rel.split("/")
    found = [""]
    for part in parts:
        nxt = []
        for base in found:
            if _has_magic(part):
                e = fs.stat(base)
                if e is None or e.type != DIR:
                    continue
                pat = part.replace("[^", "[!")
                nxt.extend(f"{base}/{n}" if base else n for n in fs.listdir(base)
                           if fnmatch.fnmatchcase(n, pat))
            else:
                cand = f"{base}/{part}" if base else part
                if fs.stat(cand) is not None:
                    nxt.append(cand)
        found = nxt
    return sorted(found)


def _follows(fs, rel: str) -> bool:
    return getattr(fs, "follow", None) is not None and fs.follow(rel) is not None


def plan_copy(fs, sources: Sequence[str], dest: str, *, dest_is_dir: Callable[[str], bool],
              owner: Optional[Tuple[int, int]], chmod: Optional[int], extract: bool,
              what: str, now: float,
              max_bytes: Optional[Callable[[int], Optional[int]]] = None,
              spool_dir: Optional[str] = None) -> List[CopyItem]:
    """The files COPY/ADD puts in the image. `dest` is absolute (WORKDIR applied).
    `max_bytes(archive size)`: how much an archive ADD unpacks may hold (None: no limit);
    `spool_dir`: where an archive's unpacked bytes wait for the layer (default: $TMPDIR)."""
    matches: List[str] = []
    literal = set()            # sources named without a wildcard: symlinks are followed
    for src in sources:
        found = glob(fs, src, what)
        if not found:
            raise ContextError(f"{what}: file not found in {fs.name}: {src!r} (missing, or "
                               "excluded by .dockerignore)")
        matches.extend(found)
        if not _has_magic(src):
            literal.update(found)
    dest_rel = posixpath.normpath(dest).lstrip("/")
    dest_rel = "" if dest_rel == "." else dest_rel
    into_dir = dest.endswith("/") or dest_rel == "" or dest_is_dir(dest_rel) or \
        dest.endswith("/.")
    if len(matches) > 1 and not into_dir:
        raise ContextError(f"{what}: when using several sources (or a wildcard), the "
                           f"destination must be a directory and end with a '/': {dest}")
    items: Dict[str, CopyItem] = {}

    def add(path: str, entry: FileEntry, data=None) -> None:
        if owner is not None:
            entry = FileEntry(entry.type, entry.mode, entry.size, entry.mtime, entry.linkname,
                              owner[0], owner[1])
        if chmod is not None and entry.type != SYMLINK:
            entry = FileEntry(entry.type, chmod, entry.size, entry.mtime, entry.linkname,
                              entry.uid, entry.gid)
        items[path] = CopyItem(path, entry, data)

    for src in matches:
        entry = fs.follow(src) if src in literal else fs.stat(src)
        if entry is None and src in literal:
            raise ContextError(f"{what}: file not found in {fs.name}: {src!r} (a symlink to "
                               f"nothing inside the {fs.name}: links are followed there)")
        if entry is None:
            continue
        if entry.type == DIR:
            target = dest_rel
            if target and not dest_is_dir(target):
                add(target, _default_owner(entry, fs))
            _add_tree(fs, src, target, add)
            continue
        name = posixpath.basename(src)
        target = posixpath.join(dest_rel, name) if into_dir else dest_rel
        if extract and entry.type == REG and _is_archive(fs, src):
            _add_archive(fs, src, dest_rel, items, add, what,
                         max_bytes(entry.size) if max_bytes else None, spool_dir)
            continue
        add(target, _default_owner(entry, fs), _data(fs, src))
    return [items[k] for k in sorted(items)]


def _default_owner(entry: FileEntry, fs) -> FileEntry:
    """Files from the context belong to root; files of an image keep their owners."""
    if getattr(fs, "diff_ids", None) is not None:
        return entry
    return FileEntry(entry.type, entry.mode, entry.size, entry.mtime, entry.linkname, 0, 0)


def _data(fs, rel: str):
    return lambda: fs.chunks(rel)


def _add_tree(fs, src: str, target: str, add) -> None:
    stack = [(src, target)]
    while stack:
        s, t = stack.pop()
        for name in fs.listdir(s):
            cs = f"{s}/{name}" if s else name
            ct = f"{t}/{name}" if t else name
            e = fs.stat(cs)
            if e is None:
                continue
            e = _default_owner(e, fs)
            if e.type == DIR:
                add(ct, e)
                stack.append((cs, ct))
            elif e.type == REG:
                add(ct, e, _data(fs, cs))
            else:
                add(ct, e)


def _is_archive(fs, rel: str) -> bool:
    if not hasattr(fs, "open_file"):
        return False
    try:
        with fs.open_file(rel) as f:
            return tarfile.is_tarfile(f)
    except (OSError, tarfile.TarError):
        return rel.endswith(_TAR_SUFFIXES)


# ADD unpacks an archive from the build context (someone else's): what it may expand to
MAX_ARCHIVE_ENTRIES = 1_000_000


class ArchiveTooLargeError(ContextError):
    pass


def _add_archive(fs, rel: str, base: str, items, add, what: str,
                 max_bytes: Optional[int], spool_dir: Optional[str] = None) -> None:
    """The archive's members as items; refused (nothing added) past `max_bytes` of content
    or MAX_ARCHIVE_ENTRIES entries: a decompression bomb stops here, before any layer.
    The archive is read once, as a stream: the files' bytes go to an unnamed spool file in
    `spool_dir` (at most `max_bytes` of them) that the items read back by offset; reading a
    compressed member in place meant decompressing from the start for each one."""
    import tempfile
    total = count = 0
    files = {}                # name -> (offset, size) in the spool, for hard links
    spool = tempfile.TemporaryFile(dir=spool_dir, prefix="add-archive-")
    try:
        with fs.open_file(rel) as f, tarfile.open(fileobj=f, mode="r|*") as tf:
            for m in tf:
                count += 1
                total += m.size if m.isreg() else 0
                if count > MAX_ARCHIVE_ENTRIES or (max_bytes is not None and total > max_bytes):
                    raise ArchiveTooLargeError(
                        f"{what}: {rel} unpacks to more than "
                        + (f"{MAX_ARCHIVE_ENTRIES} entries" if count > MAX_ARCHIVE_ENTRIES
                           else f"{max_bytes} bytes") +
                        " (a decompression bomb?): refused; if it is genuine, raise "
                        "PYDOCKLITE_MAX_LAYER_SIZE (0: no limit)")
                name = posixpath.normpath(m.name).lstrip("/")
                if name.startswith("../") or name == "..":
                    raise ContextError(f"{what}: cannot unpack {rel}: member {m.name!r} is "
                                       f"outside of the target: fix the archive")
                if name in (".", ""):
                    continue
                target = posixpath.join(base, name) if base else name
                mode = m.mode & 0o7777
                if m.isdir():
                    add(target, FileEntry(DIR, mode, 0, m.mtime, "", m.uid, m.gid))
                elif m.issym():
                    add(target, FileEntry(SYMLINK, 0o777, 0, m.mtime, m.linkname, m.uid, m.gid))
                elif m.isreg() or m.islnk():
                    if m.isreg():
                        where = (spool.tell(), m.size)       # the spool only grows
                        _copy_exactly(tf.extractfile(m), spool, m.size)
                    else:
                        where = files.get(m.linkname)
                    if where is None:     # as tar(1) writes them: the file comes first
                        raise ContextError(
                            f"{what}: cannot unpack {rel}: hard link {m.name} names "
                            f"{m.linkname!r}, not a file earlier in the archive: fix the "
                            f"archive")
                    files[m.name] = where
                    add(target, FileEntry(REG, mode, where[1], m.mtime, "", m.uid, m.gid),
                        _spool_reader(spool, *where))
        spool.flush()
    except (OSError, tarfile.TarError, EOFError) as e:
        spool.close()
        raise ContextError(f"{what}: cannot unpack {rel}: {e}") from None
    except BaseException:
        spool.close()
        raise


def _copy_exactly(src, dst, size: int) -> None:
    left = size
    while left:
        b = src.read(min(left, 1 << 20))
        if not b:
            raise EOFError("unexpected end of data")
        dst.write(b)
        left -= len(b)


def _spool_reader(spool, offset: int, size: int):
    """The bytes [offset, offset + size) of the spool file (pread: readers don't share a
    file position); the closure keeps the spool open while the plan needs it."""
    def read():
        pos, end = offset, offset + size
        while pos < end:
            b = os.pread(spool.fileno(), min(end - pos, 1 << 20), pos)
            if not b:
                raise ContextError("ADD: the archive's spool file was cut short")
            pos += len(b)
            yield b
    return read


def parent_dirs(items: Sequence[CopyItem], exists: Callable[[str], Optional[FileEntry]],
                now: float) -> List[CopyItem]:
    """Entries for the parent directories of the items: the image's own metadata when the
    directory exists there, else 0755 root."""
    have = {i.dest for i in items}
    out: Dict[str, CopyItem] = {}
    for item in items:
        parent = posixpath.dirname(item.dest)
        while parent and parent not in have and parent not in out:
            e = exists(parent)
            if e is None or e.type != DIR:
                e = FileEntry(DIR, 0o755, 0, now)
            out[parent] = CopyItem(parent, e)
            parent = posixpath.dirname(parent)
    return list(out.values())


def plan_hash(items: Sequence[CopyItem]) -> str:
    """sha256 over paths, types, modes, owners, link targets and file contents."""
    h = hashlib.sha256()
    for it in sorted(items, key=lambda i: i.dest):
        e = it.entry
        h.update(f"{it.dest}\0{e.type}\0{e.mode:o}\0{e.uid}:{e.gid}\0{e.linkname}\0".encode())
        if it.data is not None:
            fh = hashlib.sha256()
            for b in it.data():
                fh.update(b)
            h.update(fh.digest())
    return "sha256:" + h.hexdigest()


def write_tar(out, items: Sequence[CopyItem], mtime_clamp: Optional[int] = None) -> None:
    """The layer tar: parents before children, sorted, integer mtimes (clamped to
    SOURCE_DATE_EPOCH when given), no user/group names: same inputs, same bytes."""
    tf = tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT)
    try:
        for it in sorted(items, key=lambda i: i.dest.split("/")):
            e = it.entry
            ti = tarfile.TarInfo(it.dest + ("/" if e.type == DIR else ""))
            ti.mode, ti.uid, ti.gid = e.mode, e.uid, e.gid
            mt = int(e.mtime)
            ti.mtime = min(mt, mtime_clamp) if mtime_clamp is not None else mt
            ti.uname = ti.gname = ""
            if e.type == DIR:
                ti.type = tarfile.DIRTYPE
                tf.addfile(ti)
            elif e.type == SYMLINK:
                ti.type, ti.linkname = tarfile.SYMTYPE, e.linkname
                tf.addfile(ti)
            else:
                ti.type, ti.size = tarfile.REGTYPE, e.size
                tf.addfile(ti, _Reader(it.data(), e.size, it.dest))
    finally:
        tf.close()


class _Reader:
    """A file object over a chunk iterator, for tarfile.addfile (exactly `size` bytes)."""

    def __init__(self, chunks: Iterator[bytes], size: int, name: str) -> None:
        self._it, self._buf, self._left, self._name = chunks, b"", size, name

    def read(self, n: int = -1) -> bytes:
        while (n < 0 or len(self._buf) < n) and self._left > len(self._buf):
            try:
                self._buf += next(self._it)
            except StopIteration:
                break
        if n < 0:
            n = len(self._buf)
        out, self._buf = self._buf[:n], self._buf[n:]
        if len(out) < min(n, self._left):
            raise ContextError(f"{self._name} changed size while being copied: retry the build")
        self._left -= len(out)
        return out
