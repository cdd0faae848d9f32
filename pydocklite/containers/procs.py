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
    return api.processes(cid, root=str(settings.runtime_layout.runtime_root))


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
