"""Cgroups for containers: find a cgroup subtree we may use, make one child per container,
enforce OCI `linux.resources`, read stats, kill everything inside, remove it.

    info = detect()                       # what this host/user can do, and the fix if nothing
    cg = create("ctr-" + id, spec["linux"].get("resources"))      # raises CgroupError if none
    cg.add_pid(init_pid)
    for limit, reason in cg.apply(): warn(...)                     # never raises for limits
    cg.stats(); cg.kill_all(); cg.destroy()
    attach(cg.paths)                      # the same cgroup again from another process

We only ever write inside our own subtree: the delegated cgroup2 directory the user owns
(or, as root, the process's own cgroup), or on cgroup v1 the process's own cgroup in each
hierarchy (root), or base directories given explicitly (e.g. chowned to the user by root).
"""
from __future__ import annotations

import errno
import os
import time

from .cgroup_detect import (LEAF, USED_V1, CgroupInfo, detect,  # noqa: F401 (public API)
                            hierarchy_of)
from .errors import RuntimeErr
from .record import Factory, record

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: typing costs ~2 ms to import on every start
    from typing import Optional, Sequence, Union

V2_CONTROLLERS = ("memory", "io", "hugetlb", "cpu", "cpuset", "pids")   # domain ones first
V1_CONTROLLERS = tuple(sorted(USED_V1))


class CgroupError(RuntimeErr):
    """A cgroup could not be created, joined or removed (message names it and the fix)."""


@record
class CgroupStats:
    memory_usage: Optional[int]     # bytes
    memory_limit: Optional[int]     # bytes, None = unlimited/unknown
    cpu_usage_ns: Optional[int]
    pids_current: Optional[int]
    pids_limit: Optional[int]       # None = unlimited/unknown


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def write_value(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _pids(path: str) -> list:
    try:
        return [int(x) for x in _read(os.path.join(path, "cgroup.procs")).split()]
    except FileNotFoundError:
        return []


def _int_or_none(text: str) -> Optional[int]:
    text = text.strip()
    if text in ("max", "") or not text.lstrip("-").isdigit():
        return None
    v = int(text)
    return None if v < 0 or v >= 0x7FFFFFFFFFFFF000 else v


@record
class Cgroup:
    """One container's cgroup. `paths`: ((controller, dir), ...); on v2 one entry ("", dir)."""
    name: str
    version: str                                  # "v1" | "v2"
    paths: tuple
    resources: dict = Factory(dict, compare=False)
    missing: tuple = ()                           # ((controller, reason), ...)

    @property
    def path(self) -> str:
        return self.paths[0][1]

    def dir_for(self, controller: str) -> Optional[str]:
        if self.version == "v2":
            return self.path
        for c, p in self.paths:
            if c == controller:
                return p
        return None

    def _dirs(self) -> list:
        seen, out = set(), []
        for _, p in self.paths:
            if p not in seen:
                seen.add(p)
                out.append(p)
        return out

    def add_pid(self, pid: int) -> None:
        for d in self._dirs():
            try:
                write_value(os.path.join(d, "cgroup.procs"), str(pid))
            except OSError as e:
                raise CgroupError(f"cannot move pid {pid} into cgroup {d}: {e.strerror}; "
                                  "the cgroup must be writable by this user and the process "
                                  "owned by it") from None

    def apply(self) -> list:
        """Write the limits; return [NotApplied(limit, reason)] for each one not enforced."""
        from .cgroup_resources import NotApplied, plan    # not needed by delete and friends
        p = plan(self.resources, self.version)
        missing = dict(self.missing)
        out = list(p.not_applied)
        retry = []
        for w in p.writes:
            d = self.dir_for(w.controller)
            if d is None or w.controller in missing:
                why = missing.get(w.controller, f"the {w.controller} controller is not available")
                out.append(NotApplied(w.limit, why))
                continue
            f = os.path.join(d, w.file)
            if not os.path.exists(f):
                out.append(NotApplied(w.limit, f"{f} does not exist (this kernel lacks it)"))
                continue
            try:
                write_value(f, w.value)
            except OSError as e:
                retry.append((w, f, e))
        for w, f, first in retry:   # e.g. memsw before limit, quota before period
            try:
                write_value(f, w.value)
            except OSError as e:
                out.append(NotApplied(w.limit, f"writing {w.value!r} to {f} failed: "
                                               f"{e.strerror or first.strerror}"))
        return out

    def stats(self) -> CgroupStats:
        def get(controller: str, name: str) -> Optional[str]:
            d = self.dir_for(controller)
            try:
                return _read(os.path.join(d, name)) if d else None
            except OSError:
                return None

        def num(controller: str, name: str) -> Optional[int]:
            t = get(controller, name)
            return _int_or_none(t) if t is not None else None
        if self.version == "v2":
            cpu = None
            t = get("cpu", "cpu.stat")
            for line in (t or "").splitlines():
                k, _, v = line.partition(" ")
                if k == "usage_usec":
                    cpu = int(v) * 1000
            return CgroupStats(num("memory", "memory.current"), num("memory", "memory.max"),
                               cpu, num("pids", "pids.current"), num("pids", "pids.max"))
        return CgroupStats(num("memory", "memory.usage_in_bytes"),
                           num("memory", "memory.limit_in_bytes"), num("cpuacct", "cpuacct.usage"),
                           num("pids", "pids.current"), num("pids", "pids.max"))

    def pids(self) -> list:
        out = set()
        for d in self._dirs():
            for root, _dirs, _files in os.walk(d):
                out.update(_pids(root))
        return sorted(out)

    def freeze(self) -> None:
        self._freezer(True)

    def thaw(self) -> None:
        self._freezer(False)

    def _freezer(self, frozen: bool) -> None:
        if self.version == "v2":
            f, v = os.path.join(self.path, "cgroup.freeze"), "1" if frozen else "0"
        else:
            d = self.dir_for("freezer")
            if d is None:
                raise CgroupError(f"cgroup {self.name}: no freezer hierarchy to freeze with")
            f, v = os.path.join(d, "freezer.state"), "FROZEN" if frozen else "THAWED"
        try:
            write_value(f, v)
        except OSError as e:
            raise CgroupError(f"cannot {'freeze' if frozen else 'thaw'} {f}: {e.strerror}") from None

    def kill_all(self, timeout: float = 10.0) -> None:
        """SIGKILL every process in the cgroup (and below) and wait until it is empty."""
        if self.version == "v2":
            try:
                write_value(os.path.join(self.path, "cgroup.kill"), "1")
            except OSError:
                pass        # kernel < 5.14, or cgroup gone: fall back to signalling pids
        deadline = time.monotonic() + timeout
        while True:
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, 9)      # SIGKILL (the signal module costs ms)
                except ProcessLookupError:
                    pass
                except PermissionError as e:
                    raise CgroupError(f"cannot kill pid {pid} in cgroup {self.name}: "
                                      f"{e.strerror}") from None
            if time.monotonic() > deadline:
                raise CgroupError(f"cgroup {self.name} still has processes {pids[:10]} after "
                                  f"{timeout:.0f}s of SIGKILL (uninterruptible sleep?)")
            time.sleep(0.01)

    def destroy(self, timeout: float = 5.0) -> None:
        """Remove the cgroup directories (sub-cgroups first), retrying while still populated."""
        deadline = time.monotonic() + timeout
        for d in self._dirs():
            while True:
                try:
                    _rmtree_cgroup(d)
                    break
                except OSError as e:
                    if e.errno not in (errno.EBUSY, errno.ENOTEMPTY) or \
                            time.monotonic() > deadline:
                        raise CgroupError(f"cannot remove cgroup {d}: {e.strerror}; processes "
                                          f"left: {_pids(d)[:10]} (kill_all first)") from None
                    time.sleep(0.02)

    def to_json(self) -> dict:
        return {"name": self.name, "version": self.version, "paths": [list(p) for p in self.paths]}


def _rmtree_cgroup(d: str) -> None:
    if not os.path.isdir(d):
        return
    for entry in os.scandir(d):
        if entry.is_dir(follow_symlinks=False):
            _rmtree_cgroup(entry.path)
    try:
        os.rmdir(d)
    except FileNotFoundError:
        pass


def attach(paths: Sequence, resources: Optional[dict] = None) -> Cgroup:
    """A Cgroup for directories created earlier (Cgroup.paths or to_json()['paths'])."""
    paths = tuple((str(c), str(p)) for c, p in paths)
    if not paths:
        raise CgroupError("attach: no cgroup paths given")
    name = os.path.basename(paths[0][1])
    version = "v2" if len(paths) == 1 and paths[0][0] == "" else "v1"
    return Cgroup(name, version, paths, dict(resources or {}))


def _check_name(name: str) -> None:
    if not name or "/" in name or name in (".", "..") or "\n" in name or name == LEAF:
        raise CgroupError(f"invalid cgroup name {name!r}: one path component, not {LEAF!r}")


def create(name: str, resources: Optional[dict] = None,
           base: Union[str, Sequence[str], None] = None,
           info: Optional[CgroupInfo] = None) -> Cgroup:
    """Create the cgroup `name` under the usable base (see detect()) or the given base dir(s).

    An existing directory of that name is reused. Limits are not written until apply().
    info: what detect(base) (or below()) answered already, to skip asking again.
    """
    _check_name(name)
    if info is None:
        info = detect(base)
    if not info.bases:
        raise CgroupError(f"no cgroup available for container {name}: {info.reason} "
                          f"Fix: {info.fix}")
    try:
        if info.mode == "v2":
            return _create_v2(name, resources, info.bases[0])
        return _create_v1(name, resources, info.bases, info.hierarchies)
    except OSError as e:
        raise CgroupError(f"cannot create cgroup {name} under {', '.join(info.bases)}: "
                          f"{e}") from None


def _create_v2(name: str, resources: Optional[dict], base: str) -> Cgroup:
    available = set(_read(os.path.join(base, "cgroup.controllers")).split())
    enabled = set(_read(os.path.join(base, "cgroup.subtree_control")).split())
    missing = {}
    for c in V2_CONTROLLERS:
        if c not in available:
            missing[c] = (f"the {c} controller is not delegated to {base} (its "
                          "cgroup.controllers lacks it): delegate it, e.g. systemd "
                          "Delegate=cpu cpuset io memory pids")
    todo = [c for c in V2_CONTROLLERS if c in available and c not in enabled]
    if todo and _pids(base) and not _is_v2_root(base):
        # "no internal processes": a cgroup with processes can't give domain controllers to
        # children (and enabling only cpu/pids there would make it a thread root whose
        # children can't take processes at all), so move its processes into a leaf first.
        _move_procs_to_leaf(base)
    if todo:
        err = _enable_controllers(base, todo)
        if err is not None:
            now = set(_read(os.path.join(base, "cgroup.subtree_control")).split())
            for c in todo:
                if c not in now:
                    missing[c] = (f"cannot enable {c} in {base}/cgroup.subtree_control: "
                                  f"{err.strerror}")
    d = os.path.join(base, name)
    try:
        os.mkdir(d)
    except FileExistsError:
        pass
    except OSError as e:
        raise CgroupError(f"cannot create cgroup {d}: {e.strerror}") from None
    return Cgroup(name, "v2", (("", d),), dict(resources or {}), tuple(sorted(missing.items())))


def _is_v2_root(d: str) -> bool:
    return not os.path.exists(os.path.join(d, "cgroup.type"))   # only the root lacks it


def _enable_controllers(base: str, controllers: list) -> Optional[OSError]:
    last = None
    for c in controllers:
        try:
            write_value(os.path.join(base, "cgroup.subtree_control"), "+" + c)
        except OSError as e:
            last = e
    return last


def _move_procs_to_leaf(base: str) -> None:
    """The "no internal processes" rule: move what runs in `base` into base/LEAF."""
    leaf = os.path.join(base, LEAF)
    os.makedirs(leaf, exist_ok=True)
    for _ in range(10):
        pids = _pids(base)
        if not pids:
            return
        for pid in pids:
            try:
                write_value(os.path.join(leaf, "cgroup.procs"), str(pid))
            except OSError as e:
                if e.errno != errno.ESRCH:
                    raise CgroupError(f"cannot move pid {pid} out of {base} into {leaf} "
                                      f"(needed to enable controllers): {e.strerror}") from None


def below(info: CgroupInfo, cg: Cgroup) -> CgroupInfo:
    """The detect() answer for making cgroups inside `cg` (a nested linux.cgroupsPath), with
    the same hierarchies, without reading the system again."""
    dirs = cg._dirs()
    if cg.version == "v2":
        return info._replace(bases=tuple(dirs), hierarchies=((),) * len(dirs),
                             writable_base=dirs[0])
    kinds = [tuple(c for c, p in cg.paths if p == d) for d in dirs]
    return info._replace(bases=tuple(dirs), hierarchies=tuple(kinds), writable_base=dirs[0])


def _create_v1(name: str, resources: Optional[dict], bases: Sequence[str],
               hierarchies: Sequence[tuple]) -> Cgroup:
    paths, missing, have = [], {}, set()
    for b, controllers in zip(bases, hierarchies):
        if not set(controllers) & USED_V1:
            continue
        d = os.path.join(b, name)
        try:
            os.mkdir(d)
        except FileExistsError:
            pass
        except OSError as e:
            for c in controllers:
                missing[c] = f"cannot create {d}: {e.strerror}"
            continue
        if "cpuset" in controllers:
            problem = _init_cpuset(b, d)
            if problem:
                missing["cpuset"] = problem
                _rmtree_cgroup(d)
                continue
        for c in controllers:
            if c in V1_CONTROLLERS:
                paths.append((c, d))
                have.add(c)
    for c in V1_CONTROLLERS:
        if c not in have and c not in missing:
            missing[c] = f"no writable cgroup v1 {c} hierarchy for this process (needs root)"
    if not paths:
        raise CgroupError(f"could not create cgroup {name} in any of {list(bases)}: "
                          + "; ".join(sorted(set(missing.values()))))
    return Cgroup(name, "v1", tuple(paths), dict(resources or {}),
                  tuple(sorted(missing.items())))


def _init_cpuset(parent: str, d: str) -> Optional[str]:
    """A new v1 cpuset starts empty (tasks can't join): inherit the parent's cpus and mems."""
    for f in ("cpuset.cpus", "cpuset.mems"):
        try:
            if _read(os.path.join(d, f)).strip():
                continue
            value = _read(os.path.join(parent, f)).strip()
            if not value:
                return f"{parent}/{f} is empty: set it before creating cgroups below"
            write_value(os.path.join(d, f), value)
        except OSError as e:
            return f"cannot initialise {d}/{f}: {e.strerror}"
    return None
