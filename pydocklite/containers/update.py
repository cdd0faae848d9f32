"""`update`: new limits (--memory, --memory-swap, --cpus, --pids-limit) and restart policy
for a container, under its life lock. Recorded for its next starts (HostConfig, the OCI
spec's linux.resources, the shim's restart policy, which it reads at each exit) and, while
it runs, written to its cgroup through the runtime. What this host can't enforce comes back
as warnings, as `run` gives them."""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import List, Optional

from pydocklite.errors import ContainerStateError, UsageError
from pydocklite.runtime.record import record


MIN_MEMORY = 6 << 20                      # dockerd's smallest memory limit


@record
class UpdateOptions:
    memory: Optional[int] = None          # bytes
    memory_swap: Optional[int] = None     # bytes, -1 = unlimited
    cpus: Optional[float] = None
    pids_limit: Optional[int] = None      # <= 0: unlimited
    restart: Optional[str] = None         # Docker's policy text

    def empty(self) -> bool:
        return all(v is None for v in self._asdict().values())

    def check(self) -> None:
        """Docker's refusals of the values themselves, for the CLI and the API alike."""
        if (self.memory or 0) < 0 or (self.memory_swap or 0) < -1 or (self.cpus or 0) < 0:
            raise UsageError("invalid update: a memory limit, swap limit or CPU count can't be "
                             "negative (a swap limit of -1: unlimited)")
        if self.memory and self.memory < MIN_MEMORY:
            raise UsageError("Minimum memory limit allowed is 6MB")


def update(service, ref: str, want: UpdateOptions) -> List[str]:
    """Apply `want` to container `ref`; returns warnings. UsageError for values Docker
    refuses, ContainerStateError for a container that can't take them."""
    from pydocklite.atomic import atomic_write_json
    from pydocklite.containers.create import _restart_policy
    from pydocklite.containers.options import RunOptions
    from pydocklite.containers.spec_builder import resources
    from pydocklite.shim import config as shim_config
    if want.empty():
        raise UsageError("you must provide one or more flags when using this command")
    want.check()
    policy = _restart_policy(want.restart) if want.restart is not None else None
    with service.store.operation(ref) as state:
        host = dict(state.config.get("HostConfig") or {})
        if policy is not None and policy["Name"] != "no" and host.get("AutoRemove"):
            raise ContainerStateError("Restart policy cannot be updated because AutoRemove is "
                                      "enabled for the container")
        st = state.status()
        if st.state in ("removing", "dead"):
            raise ContainerStateError(f"container {state.name} is {st.state}: it can't be "
                                      f"updated")
        memory = want.memory if want.memory is not None else (host.get("Memory") or None)
        swap = want.memory_swap if want.memory_swap is not None else \
            (host.get("MemorySwap") or None)
        if want.memory is not None and want.memory_swap is None and swap and swap != -1 \
                and swap < memory:
            raise UsageError("Memory limit should be smaller than already set memoryswap "
                             "limit, update the memoryswap at the same time")
        if swap is not None and swap != -1 and memory is not None and swap < memory:
            raise UsageError("Minimum memoryswap limit should be larger than memory limit, "
                             "see usage")
        cpus = want.cpus if want.cpus is not None else \
            ((host.get("NanoCpus") or 0) / 1e9 or None)
        pids = want.pids_limit if want.pids_limit is not None else host.get("PidsLimit")
        res = resources(RunOptions(image="", memory=memory, memory_swap=swap, cpus=cpus,
                                   pids_limit=pids))
        if want.pids_limit is not None and want.pids_limit <= 0:
            res["pids"] = {"limit": -1}           # unlimited, as Docker's 0 or -1
        files = service.store.files(state.id)
        limits = any(v is not None for v in (want.memory, want.memory_swap, want.cpus,
                                             want.pids_limit))
        if limits:
            from pydocklite.runtime import minijson
            spec = minijson.loads(files.spec.read_bytes())
            spec.setdefault("linux", {})["resources"] = res
            atomic_write_json(files.spec, spec)
        if policy is not None or limits:
            cfg = shim_config.read(files.shim_config)
            if policy is not None:
                cfg = cfg._replace(restart=policy["Name"], restart_max=policy["MaximumRetryCount"])
            if limits and not cfg.cgroup_base and service.settings.cgroup_base:
                cfg = cfg._replace(cgroup_base=":".join(service.settings.cgroup_base))
            shim_config.write(files.shim_config, cfg)
        host.update({"Memory": memory or 0, "MemorySwap": swap or 0,
                     "NanoCpus": int((cpus or 0) * 1e9), "PidsLimit": pids})
        if policy is not None:
            host["RestartPolicy"] = policy
        new = service.store.update(state.id, lambda s: s._replace(
            config={**s.config, "HostConfig": host}))
        from pydocklite.containers.limits import unenforced
        warnings = [w for w in [unenforced(want.memory, want.cpus, want.pids_limit,
                                           service.settings.cgroup_base)] if w]
        if limits and st.running and not warnings:
            warnings = _apply_live(service, new, res)
        service.event(new, "update")
    return warnings


def _apply_live(service, state, res: dict) -> List[str]:
    """The new limits on the running container's cgroup, through the runtime."""
    from pydocklite.runtime import control
    from pydocklite.runtime.errors import RuntimeErr, StateError
    try:
        return control.update(state.id, res, str(service.run_layout.runtime_root))
    except StateError as e:
        return [f"the running container's limits were not changed ({e}): they apply from "
                f"its next start"]
    except RuntimeErr as e:
        raise ContainerStateError(f"Cannot update container {state.id[:12]}: {e}") from None
