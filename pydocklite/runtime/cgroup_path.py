"""Where a container's cgroup goes: linux.cgroupsPath as the runtime-spec reads it.

    ""                  pydocklite-<id> under the usable base (cgroups.detect())
    "a/b/c" (relative)  a/b/c under that base, the parents made as needed
    "/a/b/c" (absolute) a/b/c under each hierarchy's mount point (v1: every hierarchy we use,
                        v2: the cgroup2 mount); when those aren't writable (rootless), under
                        the usable base instead, with a warning
    "slice:prefix:name" systemd's notation (engines given --systemd-cgroup): we don't drive
                        systemd, the directories are the ones systemd would make:
                        /<slice, expanded>/<prefix>-<name>.scope, as an absolute path
An explicit base (api.create(cgroup_base=...)) stands for both roots.

create(...) -> Cgroup. The parents are made as needed and left in place when the container
goes, as runc leaves them: they are shared (an engine puts all its containers under one), and
removing the last user's parent raced the next container's create (which found its base gone)
while costing every container a mkdir and an rmdir per hierarchy.
"""
from __future__ import annotations

import os

from .errors import RuntimeErr


def _roots(cgroups) -> list:
    """Mount points of the hierarchies create() would use on this host."""
    from .cgroup_detect import USED_V1, cgroup_mounts
    info = cgroups.detect()
    mounts = cgroup_mounts()
    if info.mode == "v1":
        return [m.mountpoint for m in mounts if m.fstype == "cgroup" and
                set(m.controllers) & USED_V1]
    if info.mode == "v2":
        return [m.mountpoint for m in mounts if m.fstype == "cgroup2"][:1]
    return []


def systemd_path(cgroups_path: str) -> str:
    """"system.slice:cri-containerd:ID" -> "/system.slice/cri-containerd-ID.scope" (a slice
    "a-b.slice" nests as /a.slice/a-b.slice, as systemd does; "" means system.slice)."""
    parts = cgroups_path.split(":")
    if len(parts) != 3 or not parts[2]:
        raise RuntimeErr(f"linux.cgroupsPath {cgroups_path!r}: the systemd form is "
                         f"slice:prefix:name")
    slice_, prefix, name = parts
    slice_ = slice_ or "system.slice"
    if not slice_.endswith(".slice") or "/" in slice_ or "/" in prefix or "/" in name:
        raise RuntimeErr(f"linux.cgroupsPath {cgroups_path!r}: {slice_!r} is not a slice name")
    dirs = []
    if slice_ != "-.slice":
        words = slice_[:-len(".slice")].split("-")
        dirs = ["-".join(words[:i]) + ".slice" for i in range(1, len(words) + 1)]
    unit = name if name.endswith((".scope", ".slice")) else \
        f"{prefix}-{name}.scope" if prefix else f"{name}.scope"
    return "/" + "/".join(dirs + [unit])


def create(cgroups, cgroups_path: str, cid: str, resources: dict, base, warnings: list):
    """The container's cgroup (cgroups.create) at the place cgroups_path names."""
    if ":" in cgroups_path:
        cgroups_path = systemd_path(cgroups_path)
    if not cgroups_path:
        return cgroups.create(f"pydocklite-{cid}", resources, base=base or None)
    parts = [p for p in cgroups_path.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise RuntimeErr(f"linux.cgroupsPath {cgroups_path!r}: use a path without . or .. "
                         f"components")
    bases = base or None
    if cgroups_path.startswith("/") and bases is None:
        roots = _roots(cgroups)
        if roots and all(os.access(r, os.W_OK) for r in roots):
            bases = roots
        else:
            warnings.append(f"linux.cgroupsPath {cgroups_path}: the cgroup mount point is not "
                            f"writable by this user, placed under the delegated cgroup instead")
    if len(parts) == 1:
        return cgroups.create(parts[0], resources, base=bases)
    info = cgroups.detect(bases)        # once: each level below is derived from it
    if not info.bases:
        raise cgroups.CgroupError(f"no cgroup available for {cgroups_path}: {info.reason} "
                                  f"{info.fix}".strip())
    for p in parts[:-1]:
        info = cgroups.below(info, cgroups.create(p, None, info=info))
    return cgroups.create(parts[-1], resources, info=info)
