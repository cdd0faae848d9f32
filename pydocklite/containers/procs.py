"""What runs in a container, seen from the host: `top`, `stats`, and `cp` (which works
inside the container's user and mount namespaces, so paths resolve as the container sees
them and symlinks in the image can't lead outside its root)."""
from __future__ import annotations

import os
import tarfile
import time
from typing import Dict, List

CLONE_NEWUSER = 0x10000000
CLONE_NEWNS = 0x00020000


def container_pids(settings, cid: str) -> List[int]:
    from pydocklite.runtime import api
    return api.processes(cid, root=str(settings.runtime_dir / "runtime"))


def _stat(pid: int) -> List[str]:
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    return data[data.rindex(")") + 2:].split()


def cpu_ticks(pids: List[int]) -> int:
    total = 0
    for pid in pids:
        try:
            fields = _stat(pid)
            total += int(fields[11]) + int(fields[12])
        except (OSError, ValueError, IndexError):
            pass
    return total


def rss_bytes(pids: List[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            pass
    return total


def sample_stats(settings, states, interval: float = 0.5) -> List[Dict]:
    """CPU % over `interval`, memory (RSS sum), pids; per running container."""
    hz = os.sysconf("SC_CLK_TCK")
    pids = {s.id: container_pids(settings, s.id) for s in states}
    before = {cid: cpu_ticks(p) for cid, p in pids.items()}
    t0 = time.monotonic()
    time.sleep(interval)
    dt = time.monotonic() - t0
    total_mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    out = []
    for s in states:
        p = pids[s.id]
        cpu = (cpu_ticks(p) - before[s.id]) / hz / dt * 100.0
        mem = rss_bytes(p)
        limit = s.config.get("HostConfig", {}).get("Memory") or total_mem
        out.append({"id": s.id, "name": s.name, "cpu": cpu, "mem": mem, "limit": limit,
                    "pids": len(p)})
    return out


def _enter(pid: int) -> None:
    """Join the user and mount namespaces of `pid` (the caller must be single-threaded)."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    for ns, flag in (("user", CLONE_NEWUSER), ("mnt", CLONE_NEWNS)):
        fd = os.open(f"/proc/{pid}/ns/{ns}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            if os.readlink(f"/proc/{pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}") \
                    and libc.setns(fd, flag) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns({ns}) into pid {pid}: {os.strerror(err)}")
        finally:
            os.close(fd)
    os.chdir("/")


def copy_out(pid: int, src: str, dest: str) -> None:
    """cp CONTAINER:src dest — a tar stream from a child in the container's namespaces."""
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        code = 1
        try:
            os.close(r)
            _enter(pid)
            with os.fdopen(w, "wb") as out, tarfile.open(fileobj=out, mode="w|") as tar:
                tar.add(src, arcname=os.path.basename(src.rstrip("/")) or ".")
            code = 0
        except BaseException as e:   # reported through the exit status and stderr
            os.write(2, f"Error: {src}: {e}\n".encode())
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as inp:
        _extract(inp, dest)
    _, status = os.waitpid(child, 0)
    if status != 0:
        raise OSError(f"could not copy {src} out of the container")


def copy_in(pid: int, src: str, dest: str) -> None:
    """cp src CONTAINER:dest — the host side tars, the child in the container extracts."""
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        code = 1
        try:
            os.close(w)
            _enter(pid)
            with os.fdopen(r, "rb") as inp:
                _extract(inp, dest)
            code = 0
        except BaseException as e:
            os.write(2, f"Error: {dest}: {e}\n".encode())
        finally:
            os._exit(code)
    os.close(r)
    with os.fdopen(w, "wb") as out, tarfile.open(fileobj=out, mode="w|") as tar:
        tar.add(src, arcname=os.path.basename(src.rstrip("/")) or ".")
    _, status = os.waitpid(child, 0)
    if status != 0:
        raise OSError(f"could not copy {src} into the container")


def _extract(stream, dest: str) -> None:
    """Docker's rule: into an existing directory keeps the name, else the copy gets `dest`."""
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        into_dir = os.path.isdir(dest)
        for member in tar:
            name = member.name
            if not into_dir:
                head, _, rest = name.partition("/")
                name = os.path.basename(dest.rstrip("/")) + ("/" + rest if rest else "")
                member.name = name
                base = os.path.dirname(os.path.abspath(dest)) or "/"
            else:
                base = dest
            if hasattr(tarfile, "data_filter"):
                tar.extract(member, base, filter="tar")
            else:
                if member.name.startswith("/") or ".." in member.name.split("/"):
                    raise OSError(f"refusing unsafe path {member.name!r}")
                tar.extract(member, base)


# --- the API's archive endpoints: the same confinement (a child in the container's user and
# mount namespaces) with the tar stream handed to the caller instead of the host's disk ------

def _in_container(pid: int, work, inp=None, parent_end=None):
    """Fork a child that joins the container's namespaces and runs work(out_fd, inp) (inp:
    a pipe's read end the parent feeds through parent_end); returns (child pid, read end of
    its output)."""
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        code = 1
        try:
            os.close(r)
            if parent_end is not None:
                os.close(parent_end)
            _enter(pid)
            code = work(w, inp) or 0
        except BaseException as e:   # reported through the exit status and stderr
            text = f"{type(e).__name__}: {e}".encode(errors="replace")
            for fd, prefix in ((w, b"\0ERR"), (2, b"in the container: ")):
                try:
                    os.write(fd, prefix + text + (b"\n" if fd == 2 else b""))
                except OSError:
                    pass
        finally:
            os._exit(code)
    os.close(w)
    if inp is not None:
        os.close(inp)
    return child, r


def path_stat(pid: int, path: str) -> dict:
    """name, size, mode (Go's os.FileMode bits), mtime, linkTarget of `path` as the
    container sees it (lstat); FileNotFoundError when absent."""
    import json

    def work(out, _inp):
        st = os.lstat(path)
        import stat as S
        mode = S.S_IMODE(st.st_mode)
        if S.S_ISDIR(st.st_mode):
            mode |= 1 << 31
        elif S.S_ISLNK(st.st_mode):
            mode |= 1 << 27
        elif S.S_ISFIFO(st.st_mode):
            mode |= 1 << 25
        elif S.S_ISSOCK(st.st_mode):
            mode |= 1 << 24
        elif S.S_ISCHR(st.st_mode):
            mode |= (1 << 26) | (1 << 21)
        elif S.S_ISBLK(st.st_mode):
            mode |= 1 << 26
        link = os.readlink(path) if S.S_ISLNK(st.st_mode) else ""
        t = time.gmtime(st.st_mtime)
        doc = {"name": os.path.basename(path.rstrip("/")) or "/", "size": st.st_size,
               "mode": mode, "mtime": time.strftime("%Y-%m-%dT%H:%M:%S", t) + "Z",
               "linkTarget": link}
        os.write(out, json.dumps(doc).encode())
        return 0
    child, r = _in_container(pid, work)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(child, 0)
    if data.startswith(b"\0ERR"):
        msg = data[4:].decode(errors="replace")
        if "No such file" in msg:
            raise FileNotFoundError(f"Could not find the file {path} in container")
        raise OSError(msg)
    return json.loads(data)


def tar_stream(pid: int, path: str):
    """The tar of `path` (named by its last element) as the container sees it, in chunks."""
    def work(out, _inp):
        with os.fdopen(out, "wb") as f, tarfile.open(fileobj=f, mode="w|") as tar:
            tar.add(path, arcname=os.path.basename(path.rstrip("/")) or ".")
        return 0
    child, r = _in_container(pid, work)
    try:
        with os.fdopen(r, "rb") as f:
            while True:
                chunk = f.read(65536)
                if not chunk:
                    break
                yield chunk
    finally:
        _, status = os.waitpid(child, 0)
    if status != 0:
        raise OSError(f"could not read {path} in the container")


def untar_into(pid: int, path: str, chunks) -> None:
    """Extract a tar (an iterable of byte chunks) into the directory `path` of the
    container, inside its namespaces (nothing can land outside its root)."""
    in_r, in_w = os.pipe()

    def work(out, inp):
        with os.fdopen(inp, "rb") as f, tarfile.open(fileobj=f, mode="r|") as tar:
            if not os.path.isdir(path):
                raise FileNotFoundError(f"{path} is not a directory in the container")
            for member in tar:
                if hasattr(tarfile, "data_filter"):
                    tar.extract(member, path, filter="tar")
                else:
                    if member.name.startswith("/") or ".." in member.name.split("/"):
                        raise OSError(f"refusing unsafe path {member.name!r}")
                    tar.extract(member, path)
        return 0
    child, r = _in_container(pid, work, in_r, in_w)
    try:
        with os.fdopen(in_w, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
    except BrokenPipeError:
        pass
    with os.fdopen(r, "rb") as f:
        err = f.read()
    _, status = os.waitpid(child, 0)
    if status != 0 or err.startswith(b"\0ERR"):
        msg = err[4:].decode(errors="replace") or f"could not extract into {path}"
        if "not a directory" in msg or "No such file" in msg:
            raise FileNotFoundError(msg)
        raise OSError(msg)
