"""A container's files, from the host: the service behind `cp` (both ways), the Engine API's
archive endpoints (HEAD/GET/PUT /containers/{id}/archive) and `export`.

Every operation runs in ONE kind of helper (runtime/confined.py): a process confined inside
the container as its own processes are (all its namespaces, its seccomp filter and
capabilities, no terminal, no inherited fds, no name lookups, no code loaded once inside).
What it sends back is untrusted: a stat is a small bounded JSON object, a tar stream is
unpacked only by the one extractor (tar_extract.py), which keeps everything below its
destination.

    st = stat_path(settings, "web", "/etc/nginx")            # PathStat, or ContainerPathError
    with open_archive(settings, "web", "/etc/nginx") as tar:  # a tar stream: tar.read(n)
        ...                                                   # close() raises what went wrong
    skipped = put_archive(settings, "web", "/tmp", read)      # a tar from read(n) into /tmp
    copy_from_container(...) / copy_to_container(...)         # `cp`'s host side

A running (or paused) container is joined; one without processes (created, exited) has its
snapshot mounted for the helper in a private sandbox (fs_sandbox.py), the container locked
meanwhile.
"""
from __future__ import annotations

import errno
import json
import os

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import Callable, List, Tuple

from pydocklite.errors import (ContainerPathError, ContainerPathNotFoundError,
                               ContainerStateError, UsageError)
from pydocklite.runtime.record import Record

STAT_MAX = 64 << 10          # bytes of JSON a stat may send back
HELPER_NAME = b"pdl-fsaccess"


class PathStat(Record):
    """What `stat_path` found: Linux st_mode (S_IFMT bits included), link_target the
    resolved path inside the container when the path is a symbolic link."""
    __slots__ = ("name", "size", "mode", "mtime", "link_target")


GO_MODE_DIR, GO_MODE_SYMLINK, GO_MODE_DEVICE = 1 << 31, 1 << 27, 1 << 26
GO_MODE_PIPE, GO_MODE_SOCKET, GO_MODE_SETUID, GO_MODE_SETGID = 1 << 25, 1 << 24, 1 << 23, 1 << 22
GO_MODE_CHARDEV, GO_MODE_STICKY = 1 << 21, 1 << 20


def docker_path_stat(ps: PathStat) -> dict:
    """The X-Docker-Container-Path-Stat object (base64 of its JSON goes in the header):
    `mode` in Go's os.FileMode bits, `mtime` RFC 3339."""
    import stat as st
    import time
    m = ps.mode
    go = m & 0o777
    kind = st.S_IFMT(m)
    go |= {st.S_IFDIR: GO_MODE_DIR, st.S_IFLNK: GO_MODE_SYMLINK, st.S_IFIFO: GO_MODE_PIPE,
           st.S_IFSOCK: GO_MODE_SOCKET, st.S_IFBLK: GO_MODE_DEVICE,
           st.S_IFCHR: GO_MODE_DEVICE | GO_MODE_CHARDEV}.get(kind, 0)
    if m & st.S_ISUID:
        go |= GO_MODE_SETUID
    if m & st.S_ISGID:
        go |= GO_MODE_SETGID
    if m & st.S_ISVTX:
        go |= GO_MODE_STICKY
    whole = int(ps.mtime)
    mtime = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
    frac = f"{ps.mtime - whole:.9f}"[1:].rstrip("0").rstrip(".")
    return {"name": ps.name, "size": ps.size, "mode": go, "mtime": f"{mtime}{frac}Z",
            "linkTarget": ps.link_target}


# --- the helper -----------------------------------------------------------------------------

def _container(settings, ref: str):
    from pydocklite.state.store import ContainerStore
    state = ContainerStore(settings.layout.containers_dir).get(ref)
    st = state.status()
    if st.state in ("removing", "dead"):
        raise ContainerStateError(f"container {state.name} is {st.state}: its files can't be "
                                  f"reached")
    return state


def _start(settings, state, fn, stdin=None, stdout=None):
    """A helper running fn in the container: joining it when it runs, else in a sandbox with
    its snapshot mounted (the container locked meanwhile: a `start` waits)."""
    from pydocklite.runtime import confined
    from pydocklite.runtime.errors import StateError
    # what the helper runs must be imported before it enters the container
    from pydocklite.containers import fs_inside  # noqa: F401
    if state.status().running:
        try:
            return confined.start_in_running(str(settings.runtime_layout.runtime_root),
                                             state.id, fn, stdin, stdout, HELPER_NAME)
        except StateError:
            pass                        # it stopped meanwhile: its files are still there
    from pydocklite.containers.fs_sandbox import Sandbox
    from pydocklite.state.store import ContainerStore
    store = ContainerStore(settings.layout.containers_dir)
    # the container's life lock: no start (or rm) while its files are reached this way
    lock = store.operation(state.id)
    state = lock.__enter__()
    try:
        if state.status().running:
            raise ContainerStateError(f"container {state.name} started while its files were "
                                      f"being reached: try again")
        sandbox = Sandbox(settings, state)
        try:
            conf = confined.confinement_of(sandbox.spec,
                                           str(settings.runtime_layout.runtime_root /
                                               ".seccomp-cache"), sandbox.full_map)
            helper = confined.start(fn, sandbox, conf, stdin, stdout, HELPER_NAME)
        except BaseException:
            sandbox.close()
            raise
    except BaseException:
        lock.__exit__(None, None, None)
        raise
    helper.cleanups += [lambda: lock.__exit__(None, None, None), sandbox.close]
    return helper


def _failed(e, state, path: str) -> Exception:
    if e.errno == errno.ENOENT:
        return ContainerPathNotFoundError(f"Could not find the file {path} in container "
                                          f"{state.name}")
    if e.errno == errno.ENOTDIR:
        return ContainerPathError(f"{path} is not a directory in container {state.name}")
    return ContainerPathError(f"container {state.name}: {path}: {e}")


def _wait(helper, state, path: str) -> None:
    """Wait for the helper; its failure as the service's error for `path`."""
    from pydocklite.runtime.confined import ConfinedError
    try:
        helper.wait()
    except ConfinedError as e:
        raise _failed(e, state, path) from None


def _read_bounded(fd: int, limit: int) -> bytes:
    data = b""
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return data
        data += chunk
        if len(data) > limit:
            raise ContainerPathError(f"the container's helper sent more than {limit} bytes")


def _run_small(settings, state, fn, path: str, limit: int = STAT_MAX):
    """Run fn in a helper; its fd 1 is read back (bounded) and parsed as JSON."""
    r, w = os.pipe()
    try:
        helper = _start(settings, state, fn, stdout=w)
    except BaseException:
        os.close(r)
        raise
    finally:
        os.close(w)
    try:
        data = _read_bounded(r, limit)
    except BaseException:
        helper.kill()
        raise
    finally:
        os.close(r)
    _wait(helper, state, path)
    try:
        return json.loads(data)
    except ValueError:
        raise ContainerPathError(f"container {state.name}: {path}: the helper's answer is "
                                 f"not valid JSON") from None


def _check_path(path: str) -> str:
    if not path or "\0" in path:
        raise UsageError(f"invalid path {path!r}: give an absolute path in the container")
    return path if path.startswith("/") else "/" + path


# --- the service ----------------------------------------------------------------------------

def stat_path(settings, ref: str, path: str) -> PathStat:
    """lstat of `path` inside the container (Docker's HEAD /containers/{id}/archive)."""
    from pydocklite.containers import fs_inside
    state = _container(settings, ref)
    path = _check_path(path)
    doc = _run_small(settings, state, lambda: fs_inside.stat_path(path), path)
    try:
        return PathStat(str(doc["name"]), int(doc["size"]), int(doc["mode"]),
                        float(doc["mtime"]), str(doc["linkTarget"]))
    except (KeyError, TypeError, ValueError):
        raise ContainerPathError(f"container {state.name}: {path}: malformed stat from the "
                                 f"helper") from None


class ArchiveStream:
    """The read end of a helper's tar stream: read(n) until b"", then close(), which waits
    for the helper and raises ContainerPathError if it failed (the stream is then cut)."""

    def __init__(self, fd: int, helper, state, path: str) -> None:
        self.fd, self.helper, self.state, self.path = fd, helper, state, path

    def fileno(self) -> int:
        return self.fd

    def read(self, n: int = 1 << 20) -> bytes:
        return os.read(self.fd, n)

    def close(self) -> None:
        if self.fd < 0:
            return
        os.close(self.fd)
        self.fd = -1
        _wait(self.helper, self.state, self.path)

    def abort(self) -> None:
        """Stop early: kill the helper, no error."""
        self.helper.kill()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "ArchiveStream":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.close()


def open_archive(settings, ref: str, path: str, rootfs_only: bool = False) -> ArchiveStream:
    """A tar stream of `path` in the container (Docker's GET /containers/{id}/archive:
    entries named by the path's last name; "DIR/." gives the contents). rootfs_only leaves
    out what is mounted below the path (for `export` of "/")."""
    from pydocklite.containers import fs_inside
    state = _container(settings, ref)
    path = _check_path(path)
    r, w = os.pipe()
    try:
        helper = _start(settings, state, lambda: fs_inside.tar_path(path, rootfs_only),
                        stdout=w)
    except BaseException:
        os.close(r)
        raise
    finally:
        os.close(w)
    return ArchiveStream(r, helper, state, path)


def put_archive(settings, ref: str, path: str, read: Callable[[int], bytes],
                copy_ids: bool = False) -> List[Tuple[str, str]]:
    """Extract the tar that read(n) yields into directory `path` in the container (Docker's
    PUT /containers/{id}/archive); owners are the container's root unless copy_ids. Returns
    the (name, reason) of the entries that were skipped (device nodes...)."""
    def feed(write):
        while True:
            chunk = read(1 << 20)
            if not chunk:
                return
            write(chunk)
    return put_tar(settings, ref, path, feed, copy_ids)


def put_tar(settings, ref: str, path: str, feed: Callable[[Callable[[bytes], None]], None],
            copy_ids: bool = False) -> List[Tuple[str, str]]:
    """put_archive() for a producer: feed(write) writes the tar through write(bytes)."""
    from pydocklite.containers import fs_inside
    state = _container(settings, ref)
    path = _check_path(path)
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    try:
        helper = _start(settings, state, lambda: fs_inside.untar_into(path, copy_ids),
                        stdin=in_r, stdout=out_w)
    except BaseException:
        os.close(in_w)
        os.close(out_r)
        raise
    finally:
        os.close(in_r)
        os.close(out_w)

    def write(chunk) -> None:
        mv = memoryview(chunk)
        while mv:
            mv = mv[os.write(in_w, mv):]
    try:
        try:
            feed(write)
        except BrokenPipeError:
            pass                      # the helper stopped reading: its status says why
        finally:
            os.close(in_w)
        answer = _read_bounded(out_r, STAT_MAX)
    except BaseException:
        helper.kill()
        raise
    finally:
        os.close(out_r)
    _wait(helper, state, path)
    try:
        return [(str(n), str(why)) for n, why in json.loads(answer)]
    except (ValueError, TypeError):
        return []
