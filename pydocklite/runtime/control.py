"""Operations on a running container through its cgroup: pause/resume (the freezer), update
(new limits), stats (runc's `events --stats` JSON), and the processes in it.

    pause(cid, root) ; resume(cid, root)          # v1 freezer.state / v2 cgroup.freeze
    update(cid, resources: dict, root) -> [warning]   # limits not enforced are warnings
    stats(cid, root) -> dict                       # runc's types.Stats shape
    is_frozen(cgroup_paths) -> bool                # state.py derives "paused" from it

A container has a cgroup when its spec asked for limits or named a cgroupsPath and one could
be made (rootless: a delegated one); without it these operations fail, naming why.
"""
from __future__ import annotations

import os

from . import state as st
from .errors import RuntimeErr, StateError


def _cgroup(cid: str, root: str, what: str):
    s = st.load(root, cid)
    if not s.cgroup:
        raise StateError(f"container {cid!r} has no cgroup (it asked for no limits and no "
                         f"cgroupsPath, or none could be made for this user): cannot {what} "
                         f"it")
    from . import cgroups
    return s, cgroups.attach(s.cgroup)


def is_frozen(paths) -> bool:
    """Is the cgroup at these (controller, dir) paths frozen? (state.json's "cgroup")."""
    for controller, d in paths or ():
        if controller == "":
            f, frozen = os.path.join(d, "cgroup.freeze"), ("1",)
        elif controller == "freezer":
            f, frozen = os.path.join(d, "freezer.state"), ("FROZEN", "FREEZING")
        else:
            continue
        try:
            with open(f) as fh:
                return fh.read().strip() in frozen
        except OSError:
            return False
    return False


def pause(cid: str, root: str) -> None:
    s, cg = _cgroup(cid, root, "pause")
    if s.status != "running":
        raise StateError(f"cannot pause container {cid!r}: container not running "
                         f"({s.status})")
    cg.freeze()


def resume(cid: str, root: str) -> None:
    s, cg = _cgroup(cid, root, "resume")
    if s.status != "paused":
        raise StateError(f"cannot resume container {cid!r}: container not paused "
                         f"({s.status})")
    cg.thaw()


def update(cid: str, resources: dict, root: str) -> list:
    """Apply new linux.resources to the container's cgroup; returns warnings for limits the
    host can't enforce (a write the kernel refuses is an error, as runc reports it)."""
    if not isinstance(resources, dict):
        raise RuntimeErr("update --resources: expected a JSON object (the runtime-spec's "
                         "linux.resources)")
    from . import spec_fields
    from .cgroups import attach
    spec_fields.check({"linux": {"resources": resources}})
    s, cg = _cgroup(cid, root, "update")
    if s.status not in ("created", "running", "paused"):
        raise StateError(f"cannot update container {cid!r}: container not running "
                         f"({s.status})")
    try:
        not_applied = attach(cg.paths, resources).apply()
    except ValueError as e:
        raise RuntimeErr(str(e)) from None
    refused = [n for n in not_applied if "failed" in n.reason]
    if refused:
        raise RuntimeErr("; ".join(f"{n.limit}: {n.reason}" for n in refused))
    return [f"limit {n.limit} not applied: {n.reason}" for n in not_applied]


def _read(d, name: str):
    if d is None:
        return None
    try:
        with open(os.path.join(d, name)) as f:
            return f.read()
    except OSError:
        return None


def _int(text, default=0) -> int:
    if text is None:
        return default
    text = text.strip()
    if text == "max":
        return 0xFFFFFFFFFFFFFFFF      # what runc reports for "no limit" on v2
    try:
        return int(text)
    except ValueError:
        return default


def _kv(text) -> dict:
    out = {}
    for line in (text or "").splitlines():
        k, _, v = line.partition(" ")
        if v.strip().lstrip("-").isdigit():
            out[k] = int(v)
    return out


def stats(cid: str, root: str) -> dict:
    """The container's cgroup statistics in runc's `events --stats` shape."""
    s, cg = _cgroup(cid, root, "read the statistics of")
    if cg.version == "v2":
        d = cg.path
        cpu = _kv(_read(d, "cpu.stat"))
        mem = _kv(_read(d, "memory.stat"))
        events = _kv(_read(d, "memory.events"))
        usage = {"total": cpu.get("usage_usec", 0) * 1000,
                 "kernel": cpu.get("system_usec", 0) * 1000,
                 "user": cpu.get("user_usec", 0) * 1000}
        throttling = {"periods": cpu.get("nr_periods", 0),
                      "throttled_periods": cpu.get("nr_throttled", 0),
                      "throttled_time": cpu.get("throttled_usec", 0) * 1000}
        memory = {"usage": {"usage": _int(_read(d, "memory.current")),
                            "limit": _int(_read(d, "memory.max")),
                            "max": _int(_read(d, "memory.peak")),
                            "failcnt": events.get("max", 0)},
                  "swap": {"usage": _int(_read(d, "memory.swap.current")),
                           "limit": _int(_read(d, "memory.swap.max"))},
                  "cache": mem.get("file", 0), "raw": mem}
        pids = {"current": _int(_read(d, "pids.current")), "limit": _int(_read(d, "pids.max"))}
    else:
        cpud, memd, pidd = (cg.dir_for(c) for c in ("cpuacct", "memory", "pids"))
        acct = _kv(_read(cpud, "cpuacct.stat"))
        tick = 1_000_000_000 // (os.sysconf("SC_CLK_TCK") or 100)
        usage = {"total": _int(_read(cpud, "cpuacct.usage")),
                 "percpu": [int(x) for x in (_read(cpud, "cpuacct.usage_percpu") or "").split()],
                 "kernel": acct.get("system", 0) * tick, "user": acct.get("user", 0) * tick}
        cpu = _kv(_read(cg.dir_for("cpu"), "cpu.stat"))
        throttling = {"periods": cpu.get("nr_periods", 0),
                      "throttled_periods": cpu.get("nr_throttled", 0),
                      "throttled_time": cpu.get("throttled_time", 0)}
        mem = _kv(_read(memd, "memory.stat"))
        memory = {"usage": {"usage": _int(_read(memd, "memory.usage_in_bytes")),
                            "limit": _int(_read(memd, "memory.limit_in_bytes")),
                            "max": _int(_read(memd, "memory.max_usage_in_bytes")),
                            "failcnt": _int(_read(memd, "memory.failcnt"))},
                  "swap": {"usage": _int(_read(memd, "memory.memsw.usage_in_bytes")),
                           "limit": _int(_read(memd, "memory.memsw.limit_in_bytes"))},
                  "cache": mem.get("cache", 0), "raw": mem}
        pids = {"current": _int(_read(pidd, "pids.current")),
                "limit": _int(_read(pidd, "pids.max"))}
    return {"cpu": {"usage": usage, "throttling": throttling}, "memory": memory,
            "pids": pids, "blkio": {}, "hugetlb": {}}


def oom_kills(cid: str, root: str) -> int:
    """How many times the kernel's OOM killer struck in the container's cgroup so far."""
    s, cg = _cgroup(cid, root, "watch")
    if cg.version == "v2":
        return _kv(_read(cg.path, "memory.events")).get("oom_kill", 0)
    return _kv(_read(cg.dir_for("memory"), "memory.oom_control")).get("oom_kill", 0)


def cgroup_pids(cid: str, root: str):
    """Pids in the container's cgroup (runc's `ps`), or None when it has no cgroup."""
    s = st.load(root, cid)
    if not s.cgroup:
        return None
    from .cgroups import attach
    return attach(s.cgroup).pids()
