"""The one tar extractor: every tar stream pydocklite unpacks onto a filesystem goes through it
(`cp` out of a container on the host, `cp` into a container inside the confined helper).

The stream is hostile (a container, an archive from anywhere). The rules, the same on every
Python (nothing here uses `tarfile`: the parser is snapshotter.tar_stream's):
- names are relative and stay inside: an absolute name, a `..` that climbs out, a NUL, or an
  entry below something that is not a directory stops the extraction with an error;
- everything is created relative to directory file descriptors opened with O_NOFOLLOW from
  the destination's own fd, so no symlink (one this archive made a moment ago, or one a
  racing process swaps in) ever redirects a write; an existing directory is never replaced;
- a symbolic link is made only if it can't lead outside the destination (relative, climbing
  no higher than its own depth, and no `..` after a name: see `link_stays_inside`); a hard
  link only to a regular file this same archive made; other links are skipped;
- device nodes are never made; fifos only when the policy allows; set-uid/set-gid bits
  dropped unless the policy keeps them; owners set only when the policy asks (else the
  files are the caller's); internal xattrs (user.overlay.*, user.pydocklite.*) never set.
Whatever was skipped is listed in `Extractor.skipped` (name, reason) for the caller to say.
"""
from __future__ import annotations

import errno
import os
import stat

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import Dict, List, Optional, Tuple

from snapshotter.layer_index import (BLOCK, CHAR, DIR, FIFO, HARDLINK, INTERNAL_XATTR_PREFIXES,
                                     REG, SYMLINK)
from snapshotter.tar_stream import TarParser, normal_name
from pydocklite.errors import UnsafeArchiveError
from pydocklite.runtime.record import Record

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_MAX_OPEN_DIRS = 64


class ExtractPolicy(Record):
    """What an extraction may make. owners: chown to the archive's ids (else they stay the
    caller's); setid: keep set-uid/set-gid bits; fifos: make fifos; links_anywhere: keep
    symbolic links whatever they point at (only where the destination is the container's
    own filesystem, seen from inside it); xattrs: set the entries' extended attributes."""
    __slots__ = ("owners", "setid", "fifos", "links_anywhere", "xattrs")


# the host: nothing that only makes sense inside a container, nothing that leads out
HOST = ExtractPolicy(owners=False, setid=False, fifos=False, links_anywhere=False, xattrs=False)


def normalise(name: str, what: str = "archive") -> str:
    """The relative path of an archive entry, or raise UnsafeArchiveError."""
    try:
        return normal_name(name, "the destination")
    except ValueError as e:
        raise UnsafeArchiveError(f"{what}: entry {name!r}: {e}") from None


def link_stays_inside(rel: str, target: str) -> bool:
    """Whether symlink `rel` (relative to the destination) -> `target` can only lead inside:
    relative, its `..`s all leading and no more than the link's depth. With every link
    made so, no chain of links leads out either (a `..` only ever follows a real directory)."""
    if not target or target.startswith("/") or "\0" in target:
        return False
    depth = rel.count("/")
    comps = [c for c in target.split("/") if c not in ("", ".")]
    ups = 0
    for c in comps:
        if c != "..":
            break
        ups += 1
    return ups <= depth and ".." not in comps[ups:]


class Extractor(TarParser):
    """Feed the stream (feed(chunk)...), then finish(). `dest_fd` is an open directory:
    everything goes below it. `rename_top` = (old, new): entries named old or old/... become
    new/... (Docker's cp to a name that doesn't exist yet)."""

    wants_data = True

    def __init__(self, dest_fd: int, policy: ExtractPolicy = HOST, what: str = "archive",
                 rename_top: Optional[Tuple[str, str]] = None) -> None:
        super().__init__(what)
        self.dest_fd = dest_fd
        self.policy = policy
        self.rename_top = rename_top
        self.skipped: List[Tuple[str, str]] = []
        self._made: Dict[str, str] = {}            # rel -> type, what this archive made
        self._dirs: Dict[str, int] = {}            # rel dir -> open fd (a small cache)
        self._fd = -1                              # the regular file being written
        self._pending = None                       # its metadata, applied when complete
        self._late_dirs: List[tuple] = []          # directories' modes/times: at the end
        self._mode_mask = 0o7777 if policy.setid else 0o1777   # 0o6000: set-uid/set-gid

    # -- directories, by fd -------------------------------------------------------------
    def _dir(self, rel: str) -> int:
        """An fd of directory `rel` below dest (made 0755 when missing), never via a link.
        The fds stay open until the next entry (_trim): callers may hold several."""
        if rel == "":
            return self.dest_fd
        fd = self._dirs.get(rel)
        if fd is not None:
            return fd
        parent, _, name = rel.rpartition("/")
        pfd = self._dir(parent)
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=pfd)
        except FileNotFoundError:
            os.mkdir(name, 0o755, dir_fd=pfd)
            fd = os.open(name, _DIR_FLAGS, dir_fd=pfd)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                raise UnsafeArchiveError(f"{self.what}: entry {self.current!r}: {rel!r} is not "
                                         f"a directory (a link or a file): not written "
                                         f"through") from None
            raise
        self._dirs[rel] = fd
        return fd

    def _trim(self) -> None:
        while len(self._dirs) > _MAX_OPEN_DIRS:
            os.close(self._dirs.pop(next(iter(self._dirs))))

    def _clear(self, pfd: int, name: str, rel: str, want_dir: bool) -> bool:
        """Make room for `name`; True when an existing directory is to be reused."""
        try:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            if want_dir:
                return True
            raise UnsafeArchiveError(f"{self.what}: entry {self.current!r} would replace the "
                                     f"directory {rel!r}: remove it first")
        os.unlink(name, dir_fd=pfd)
        self._forget(rel)
        return False

    def _forget(self, rel: str) -> None:
        self._made.pop(rel, None)
        fd = self._dirs.pop(rel, None)
        if fd is not None:
            os.close(fd)

    # -- entries ------------------------------------------------------------------------
    def member(self, m) -> None:
        self._finish_file()
        self._trim()
        rel = normalise(m.name, self.what)
        if self.rename_top is not None:
            old, new = self.rename_top
            if rel == old or rel.startswith(old + "/"):
                rel = new + rel[len(old):]
        if rel == "":
            return                      # the destination itself: left as it is
        parent, _, name = rel.rpartition("/")
        pfd = self._dir(parent)
        mode = m.mode & self._mode_mask
        t = m.type
        if t == DIR:
            if not self._clear(pfd, name, rel, True):
                os.mkdir(name, 0o700, dir_fd=pfd)
            self._made[rel] = DIR
            self._late_dirs.append((rel, m, mode))
            return
        if t in (CHAR, BLOCK) or (t == FIFO and not self.policy.fifos):
            self.skipped.append((rel, "device node" if t != FIFO else "fifo"))
            return
        if t == SYMLINK and not self.policy.links_anywhere \
                and not link_stays_inside(rel, m.linkname):
            self.skipped.append((rel, f"symbolic link to {m.linkname}, outside the "
                                      f"destination"))
            return
        if t == HARDLINK:
            self._hardlink(pfd, name, rel, m)
            return
        self._clear(pfd, name, rel, False)
        if t == SYMLINK:
            os.symlink(m.linkname, name, dir_fd=pfd)
        elif t == FIFO:
            os.mkfifo(name, mode, dir_fd=pfd)   # its final mode: no chmod that could follow
        else:
            self._fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW |
                               os.O_CLOEXEC, 0o600, dir_fd=pfd)
            self._pending = (rel, m, mode)
            self._made[rel] = REG
            if not m.size:
                self._finish_file()
            return
        self._made[rel] = t
        self._meta_at(pfd, name, m)

    def _hardlink(self, pfd: int, name: str, rel: str, m) -> None:
        try:
            target = normalise(m.linkname)
        except UnsafeArchiveError:
            target = None
        if target is not None and self.rename_top is not None:
            old, new = self.rename_top
            if target == old or target.startswith(old + "/"):
                target = new + target[len(old):]
        if target is None or self._made.get(target) != REG or target == rel:
            self.skipped.append((rel, f"hard link to {m.linkname}, not a file of this archive"))
            return
        tparent, _, tname = target.rpartition("/")
        tfd = self._dir(tparent)
        st = os.stat(tname, dir_fd=tfd, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode):
            self.skipped.append((rel, f"hard link to {m.linkname}, no longer a file"))
            return
        self._clear(pfd, name, rel, False)
        os.link(tname, name, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
        self._made[rel] = REG

    def data(self, chunk) -> None:
        while chunk:
            n = os.write(self._fd, chunk)
            chunk = chunk[n:]

    def _finish_file(self) -> None:
        if self._fd < 0:
            return
        fd, self._fd = self._fd, -1
        rel, m, mode = self._pending
        self._pending = None
        try:
            self._meta_fd(fd, m, mode)
        finally:
            os.close(fd)

    # -- metadata -----------------------------------------------------------------------
    def _xattrs_fd(self, fd: int, m) -> None:
        if not self.policy.xattrs:
            return
        for k, v in m.xattrs:
            if k.startswith(INTERNAL_XATTR_PREFIXES):
                continue
            try:
                os.setxattr(fd, k, v)
            except OSError as e:   # a filesystem or namespace that can't hold it
                self.skipped.append((m.name, f"extended attribute {k}: {e.strerror}"))

    def _meta_fd(self, fd: int, m, mode: int) -> None:
        if self.policy.owners:
            os.fchown(fd, m.uid, m.gid)
        self._xattrs_fd(fd, m)
        os.fchmod(fd, mode)
        ns = int(m.mtime * 1e9)
        os.utime(fd, ns=(ns, ns))

    def _meta_at(self, pfd: int, name: str, m) -> None:
        if self.policy.owners:
            os.chown(name, m.uid, m.gid, dir_fd=pfd, follow_symlinks=False)
        ns = int(m.mtime * 1e9)
        os.utime(name, ns=(ns, ns), dir_fd=pfd, follow_symlinks=False)

    def finish(self) -> List[Tuple[str, str]]:
        """Check the stream ended well, apply the directories' metadata (deepest first);
        returns what was skipped."""
        try:
            self._finish_file()
            self.check_end()
            for rel, m, mode in reversed(self._late_dirs):
                if self._made.get(rel) != DIR:
                    continue                 # replaced later in the archive
                self._trim()
                fd = self._dir(rel)
                self._meta_fd(fd, m, mode)
        finally:
            self.close()
        return self.skipped

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        for fd in self._dirs.values():
            os.close(fd)
        self._dirs.clear()


def extract_stream(read, dest_fd: int, policy: ExtractPolicy = HOST, what: str = "archive",
                   rename_top: Optional[Tuple[str, str]] = None,
                   chunk: int = 1 << 20) -> List[Tuple[str, str]]:
    """Extract what `read(n)` returns (until b"") below `dest_fd`; returns what was skipped."""
    ex = Extractor(dest_fd, policy, what, rename_top)
    try:
        while True:
            b = read(chunk)
            if not b:
                break
            ex.feed(b)
    except BaseException:
        ex.close()
        raise
    return ex.finish()
