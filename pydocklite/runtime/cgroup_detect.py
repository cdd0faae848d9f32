"""Which cgroups can this process use? Reads /proc/self/mountinfo and /proc/self/cgroup.

detect(base=None) -> CgroupInfo:
  version   "v2" (unified only), "hybrid" (v1 controllers + a cgroup2 mount), "v1", "none"
  mode      the driver create() will use: "v2", "v1", or "" when nothing is usable
  bases     directories create() puts container cgroups under (v2: one; v1: one per hierarchy)
  hierarchies  the controllers of each base's hierarchy (v1), () for a cgroup2 base
  reason/fix  when nothing (or not everything) is usable: why, and the exact fix
"""
from __future__ import annotations

import os

from .record import record

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: typing costs ~2 ms to import on every start
    from typing import Optional, Sequence, Union

SYSTEMD_FIX = (
    "on a cgroup v2 host run pydocklite inside a delegated systemd scope: "
    "`systemd-run --user --scope -p Delegate=yes pydocklite ...` (needs the user's systemd: "
    "`loginctl enable-linger $USER`); to delegate memory and cpu as well, as root: "
    "`mkdir -p /etc/systemd/system/user@.service.d && printf '[Service]\\nDelegate=cpu cpuset "
    "io memory pids\\n' > /etc/systemd/system/user@.service.d/delegate.conf && "
    "systemctl daemon-reload`")


KNOWN_V1 = frozenset(("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "net_cls",
                      "net_prio", "blkio", "perf_event", "hugetlb", "pids", "rdma", "misc"))


LEAF = "pydocklite-leaf"    # where create() moves processes out of a v2 base (see cgroups.py)

# v1 hierarchies pydocklite uses (a base is made only in hierarchies holding one of them)
# (all of them: an engine reads a container's metrics through /proc/PID/cgroup, so its cgroupsPath
# is made in every hierarchy, as runc does, even where pydocklite writes no limit)
USED_V1 = frozenset(("memory", "cpu", "cpuacct", "cpuset", "pids", "blkio", "freezer", "hugetlb",
                     "devices", "net_cls", "net_prio", "perf_event", "rdma", "misc"))


@record
class Mount:
    mountpoint: str
    root: str                  # the cgroup path mounted there ("/" normally)
    fstype: str                # "cgroup" or "cgroup2"
    controllers: tuple         # v1: controllers of the hierarchy (name=... excluded)


@record
class CgroupInfo:
    version: str
    mode: str
    root: str                  # the cgroup filesystem root (/sys/fs/cgroup)
    current: str               # our v2 cgroup path ("0::" line), else the v1 memory cgroup
    current_v1: tuple          # ((controllers "cpu,cpuacct", path), ...) from /proc/self/cgroup
    writable_base: Optional[str]   # first of bases (contract name), None if nothing usable
    bases: tuple
    hierarchies: tuple         # per base: its hierarchy's v1 controllers (() on cgroup2)
    controllers: tuple         # controllers usable below the bases
    reason: str
    fix: str


def _unescape(s: str) -> str:
    return s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n") \
            .replace("\\134", "\\")


def cgroup_mounts(mountinfo: str = "/proc/self/mountinfo") -> list:
    out = []
    with open(mountinfo) as f:
        for line in f:
            left, _, right = line.partition(" - ")
            lf, rf = left.split(), right.split()
            if len(lf) < 5 or len(rf) < 3 or rf[0] not in ("cgroup", "cgroup2"):
                continue
            ctl = tuple(o for o in rf[2].split(",") if o in KNOWN_V1) if rf[0] == "cgroup" else ()
            out.append(Mount(_unescape(lf[4]), _unescape(lf[3]), rf[0], ctl))
    return out


def own_cgroups(path: str = "/proc/self/cgroup") -> list:
    """[(controllers tuple, cgroup path)]; v2 is ((), path)."""
    out = []
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split(":", 2)
            if len(parts) == 3:
                ctl = tuple(c for c in parts[1].split(",") if c and "=" not in c)
                if parts[1] and not ctl:
                    continue            # name=systemd and friends
                out.append((ctl, parts[2]))
    return out


def _dir_of(mount: Mount, cgpath: str) -> Optional[str]:
    root = mount.root.rstrip("/")
    if root and not (cgpath == root or cgpath.startswith(root + "/")):
        return None
    d = os.path.normpath(os.path.join(mount.mountpoint, cgpath[len(root):].lstrip("/")))
    return d if os.path.isdir(d) else None


def hierarchy_of(directory: str, mounts: Optional[list] = None, resolved: bool = False
                 ) -> tuple:
    """Controllers of the cgroup hierarchy holding `directory` (() for cgroup2 / unknown);
    resolved: the path has no symbolic link (realpath'd already)."""
    if not resolved:
        directory = os.path.realpath(directory)
    best = None
    for m in mounts if mounts is not None else cgroup_mounts():
        mp = m.mountpoint.rstrip("/") or "/"
        if directory == mp or directory.startswith(mp + "/"):
            if best is None or len(mp) > len(best.mountpoint):
                best = m
    return best.controllers if best is not None and best.fstype == "cgroup" else ()


def _owned_writable(d: str, uid: int) -> bool:
    try:
        return os.stat(d).st_uid == uid and os.access(d, os.W_OK) and \
            os.access(os.path.join(d, "cgroup.procs"), os.W_OK)
    except OSError:
        return False


def _v2_base(mount: Mount, cgpath: str, uid: int) -> Optional[str]:
    own = _dir_of(mount, cgpath)
    if own is None:
        return None
    if os.path.basename(own) == LEAF:    # moved there by an earlier create(): base is above
        own = os.path.dirname(own)
    if uid == 0:
        return own
    top, d = None, own
    while True:            # the topmost ancestor we own on our path is the delegated root
        if _owned_writable(d, uid):
            top = d
        elif top is not None:
            break
        if d.rstrip("/") == mount.mountpoint.rstrip("/"):
            break
        d = os.path.dirname(d)
    if top is not None:
        return top
    user = os.path.join(mount.mountpoint, "user.slice", f"user-{uid}.slice",
                        f"user@{uid}.service")
    return user if _owned_writable(user, uid) else None


def _controllers_v2(base: str) -> tuple:
    try:
        with open(os.path.join(base, "cgroup.controllers")) as f:
            return tuple(f.read().split())
    except OSError:
        return ()


def detect(base: Union[str, Sequence[str], None] = None) -> CgroupInfo:
    """Inspect this host and process. `base`: use these dir(s) instead of looking for one
    (a list, or one string with ":" between dirs, e.g. from a --cgroup-base flag)."""
    mounts = cgroup_mounts()
    own = own_cgroups()
    uid = os.geteuid()
    v1_mounts = [m for m in mounts if m.fstype == "cgroup" and set(m.controllers) & USED_V1]
    v2_mounts = [m for m in mounts if m.fstype == "cgroup2"]
    version = ("hybrid" if v1_mounts and v2_mounts else "v1" if v1_mounts
               else "v2" if v2_mounts else "none")
    v2path = next((p for c, p in own if not c), "/")
    v1own = tuple((",".join(c), p) for c, p in own if c)
    current = v2path if version == "v2" else next(
        (p for c, p in own if "memory" in c), v2path)
    root = "/sys/fs/cgroup"

    def info(mode, bases, controllers, reason="", fix="", hierarchies=None):
        bases = tuple(bases)
        return CgroupInfo(version, mode, root, current, v1own, bases[0] if bases else None,
                          bases, tuple(hierarchies or ((),) * len(bases)), tuple(controllers),
                          reason, fix)

    if base is not None:
        dirs = base.split(os.pathsep) if isinstance(base, str) else list(base)
        dirs = [d for d in dirs if d]
        dirs = [os.path.realpath(d) for d in dirs]
        bad = [d for d in dirs if not os.path.isdir(d) or not os.access(d, os.W_OK)]
        if bad or not dirs:
            return info("", (), (), f"cgroup base {bad or dirs} is missing or not writable "
                        f"by uid {uid}.", "create it and chown it to this user, or omit base")
        kinds = [hierarchy_of(d, mounts, resolved=True) for d in dirs]
        if len(dirs) == 1 and not kinds[0]:
            return info("v2", dirs, _controllers_v2(dirs[0]))
        ctl = sorted({c for k in kinds for c in k})
        return info("v1", [d for d, k in zip(dirs, kinds) if k], ctl,
                    hierarchies=[k for k in kinds if k])

    if version == "v2":
        b = _v2_base(v2_mounts[0], v2path, uid)
        if b is None:
            return info("", (), (), f"cgroup v2: uid {uid} owns no cgroup on the path of "
                        f"{v2path} and no user@{uid}.service is delegated, so limits can't "
                        "be enforced.", SYSTEMD_FIX)
        ctl = _controllers_v2(b)
        wanted = ("cpu", "memory", "pids")
        lacking = [c for c in wanted if c not in ctl]
        if lacking:
            return info("v2", [b], ctl, f"cgroup v2 base {b} lacks the {', '.join(lacking)} "
                        "controller(s): those limits won't be enforced.", SYSTEMD_FIX)
        return info("v2", [b], ctl)

    if v1_mounts:
        bases, ctl, kinds = [], [], []
        for m in v1_mounts:
            path = next((p for c, p in own if set(c) == set(m.controllers)), None)
            d = _dir_of(m, path) if path is not None else None
            if d and (uid == 0 or _owned_writable(d, uid)):
                if d not in bases:
                    bases.append(d)
                    kinds.append(m.controllers)
                    ctl += list(m.controllers)
        if bases:
            return info("v1", bases, sorted(set(ctl)), hierarchies=kinds)
        return info("", (), (), f"cgroup {version} host: cgroup v1 controllers can't be "
                    f"delegated to an unprivileged user (uid {uid}), so limits can't be "
                    "enforced.", "run as root, or boot with systemd.unified_cgroup_hierarchy=1 "
                    "(pure cgroup v2) and then " + SYSTEMD_FIX + "; or have root create a child "
                    "of this process's cgroup in each hierarchy, chown it to you and pass it "
                    "as the base")
    return info("", (), (), "no cgroup filesystem is mounted.",
                "mount cgroup2 at /sys/fs/cgroup")
