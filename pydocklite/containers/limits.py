"""Which requested limits this host can't enforce, and the fix (what `run`, `create` and
`update` warn, and the API returns as Warnings)."""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import Optional, Sequence

BASE_FIX = ("or give pydocklite a cgroup you may write to: PYDOCKLITE_CGROUP_BASE=DIR[:DIR...] "
            "(a cgroup v2 directory delegated to you, or on cgroup v1 one directory per "
            "hierarchy, e.g. children of your cgroups that root created and chowned to you)")


def unenforced(memory, cpus, pids_limit, base: Sequence[str] = ()) -> Optional[str]:
    """A warning naming the limits asked for (not None) that no delegated cgroup controller
    can enforce here, and how to fix that; None when they all can (or none is asked)."""
    if memory is None and cpus is None and pids_limit is None:
        return None
    try:
        from pydocklite.runtime import cgroups
        info = cgroups.detect(list(base) if base else None)
    except Exception as e:  # noqa: BLE001 - report as missing support
        return f"resource limits may not be enforced: {e}"
    controllers = set(getattr(info, "controllers", ()) or ())
    wanted = {"memory": memory is not None, "cpu": cpus is not None,
              "pids": pids_limit is not None}
    missing = [c for c, w in wanted.items() if w and c not in controllers]
    if not missing:
        return None
    where = f"the cgroup base {':'.join(base)}" if base else "you"
    why = getattr(info, "reason", "") if not info.mode else ""
    fix = getattr(info, "fix", "") or ""
    if not base:
        fix = f"{fix}; {BASE_FIX}" if fix else BASE_FIX
    return (f"the {', '.join(missing)} controller(s) are not delegated to {where}: those "
            f"limits will not be enforced" + (f" ({why.rstrip('.')})" if why else "")
            + (f". Fix: {fix}" if fix else ""))
