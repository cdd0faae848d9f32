"""Keep the rootfs FUSE servers out of the container's cgroup.

The runtime puts the container's first process into its cgroup as soon as the user
namespace exists, before `prepare_rootfs` forks the FUSE servers that serve the rootfs: they
would count against the container's --memory and --pids-limit (a server thread per request
counts as a task) and be candidates for its OOM kills. Before the container starts, the shim
moves them into a sibling leaf cgroup (LEAF, under the same base the user was given or
delegated), and removes that leaf when it is empty again.
"""
from __future__ import annotations

import os
from typing import Callable, List, Sequence

# the name the runtime uses for the processes of a v2 base, and its cgroup file writer
from pydocklite.runtime.cgroups import LEAF, write_value


def _inherit_cpuset(parent: str, leaf: str) -> None:
    for name in ("cpuset.cpus", "cpuset.mems"):
        mine, theirs = os.path.join(leaf, name), os.path.join(parent, name)
        if os.path.exists(mine):
            with open(mine) as f:
                if f.read().strip():
                    continue
            with open(theirs) as f:
                write_value(mine, f.read().strip())


def move_out(cgroup_paths: Sequence, pids: Sequence[int], log: Callable[[str], None]
             ) -> List[str]:
    """Move `pids` (whole processes) from the container cgroup dirs in `cgroup_paths`
    (the runtime's [[controller, dir], ...]) into LEAF next to each; returns the leaves."""
    leaves: List[str] = []
    for d in sorted({p for _, p in cgroup_paths}):
        leaf = os.path.join(os.path.dirname(d), LEAF)
        try:
            os.makedirs(leaf, exist_ok=True)
            _inherit_cpuset(os.path.dirname(d), leaf)
            for pid in pids:
                try:
                    write_value(os.path.join(leaf, "cgroup.procs"), str(pid))
                except ProcessLookupError:
                    pass
        except OSError as e:
            log(f"warning: the rootfs FUSE servers stay in the container's cgroup {d} "
                f"(moving them to {leaf}: {e.strerror}): they count against its limits")
            continue
        leaves.append(leaf)
    return leaves


def remove_leaves(leaves: Sequence[str]) -> None:
    """Remove the leaves once empty (another container's servers may still be there)."""
    for leaf in leaves:
        try:
            os.rmdir(leaf)
        except OSError:
            pass
