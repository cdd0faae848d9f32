"""Shared image lowers: one read-only FUSE view of an image's layer chain per user,
mounted in the namespace host's mount namespace and used as overlayfs's lowerdir by every
container of that image (their mount namespaces are copies of the host's). One server,
one kernel page cache: the second container of an image reads its files from memory.

A lower is held by containers (the shim asks for it before creating the container and
gives it back when the container is gone for good); each hold also watches processes (the
shim, then the container's init): when all of a hold's processes are dead the hold is
dropped, so a killed shim can't pin a lower forever. The last hold gone, the lower
lingers LINGER seconds (PYDOCKLITE_LOWER_LINGER, 0 = release at once): the next container
of the image within that time, the `run --rm` of a loop or a restarted Compose service,
finds its mount and page cache instead of paying a new server (~10 ms) and cold reads.
Then the server is killed and the mount point detached.
"""
from __future__ import annotations

import os
import signal
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import List, Sequence

from pydocklite.nshost.pause import alive
from pydocklite.nshost.state import Lower

MNT_DETACH = 2
LINGER = 10.0


def linger() -> float:
    """Seconds an unused lower is kept for the image's next container."""
    from pydocklite.settings import env_seconds
    return env_seconds("PYDOCKLITE_LOWER_LINGER", LINGER)


def mount(key: str, path: Path, layer_dirs: Sequence[str], tree_cache: str, log) -> Lower:
    """Start the FUSE server of a chain's merged view at `path`; its Lower (no holders)."""
    from snapshotter.fuse_fs import spawn_fuse
    from pydocklite.runtime.state import proc_start_time
    path.mkdir(parents=True, exist_ok=True, mode=0o755)
    lowers = tuple((Path(d) / "index", Path(d) / "blob") for d in layer_dirs)
    srv = spawn_fuse(str(path), lowers, None, allow_other=True, fsname="pydocklite-lower",
                     tree_cache=Path(tree_cache) if tree_cache else None)
    log(f"lower {path.name}: FUSE server {srv.pid} for {len(lowers)} layer(s)")
    return Lower(key, str(path), srv.pid, proc_start_time(srv.pid) or 0, {})


def unmount(lower: Lower, log) -> None:
    """Kill the server (its mount answers ENOTCONN from then on, to nobody: no container
    uses it) and detach the mount point."""
    try:
        os.kill(lower.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    from pydocklite.runtime import syscalls as sc
    try:
        sc.umount2(lower.path, MNT_DETACH)
    except OSError:
        pass
    try:
        os.rmdir(lower.path)
    except OSError:
        pass
    log(f"lower {lower.key}: released")


def is_mounted(path: str) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


def live_holders(lower: Lower) -> dict:
    """The holds whose watched processes still run (a hold with none listed is kept)."""
    out = {}
    for cid, pids in lower.holders.items():
        if not pids or any(alive(pid, start) for pid, start in pids):
            out[cid] = pids
    return out


def watch_list(pids: Sequence[int]) -> List[list]:
    from pydocklite.runtime.state import proc_start_time
    out = []
    for pid in pids:
        start = proc_start_time(int(pid))
        if start:
            out.append([int(pid), start])
    return out
