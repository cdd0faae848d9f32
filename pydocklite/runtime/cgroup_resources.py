"""OCI `linux.resources` -> the cgroup file writes that enforce it (pure planning, no I/O).

`plan(resources, version)` returns a `ResourcePlan`: ordered `Write`s (controller, file, value,
and the OCI limit they serve) plus the limits this cgroup version cannot express at all, each
with the reason. cgroups.py executes the plan and adds the reasons found at run time (missing
controller, missing file, refused write).

Conversions (the same as the established runtimes):
  v2 memory.swap.max = swap - limit        (OCI `swap` is memory+swap; -1 = unlimited)
  v2 cpu.weight      = 1 + (shares - 2) * 9999 / 262142   (shares 2..262144 -> weight 1..10000)
  v2 cpu.max         = "<quota|max> <period>"             (period defaults to 100000 us)
  v2 io.weight       = 1 + (weight - 10) * 9999 / 990     (blkio 10..1000 -> io 1..10000)
  pids limit <= -1 (or 0 with no other meaning) = "max"
"""
from __future__ import annotations

from .record import record

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: typing costs ~2 ms to import on every start
    from typing import Optional


@record
class Write:
    limit: str          # the OCI setting served, e.g. "memory.limit"
    controller: str     # cgroup controller owning the file ("memory", "cpu", ...)
    file: str           # file name inside the cgroup directory
    value: str


@record
class NotApplied:
    """A requested limit that is not enforced, and why. Behaves as the pair (limit, reason)."""
    limit: str
    reason: str

    def __iter__(self):
        return iter((self.limit, self.reason))

    def __getitem__(self, i):
        return (self.limit, self.reason)[i]

    def __len__(self) -> int:
        return 2


@record
class ResourcePlan:
    writes: tuple
    not_applied: tuple


def cpu_shares_to_weight(shares: int) -> int:
    shares = min(max(int(shares), 2), 262144)
    return 1 + ((shares - 2) * 9999) // 262142


def blkio_weight_to_io_weight(weight: int) -> int:
    weight = min(max(int(weight), 10), 1000)
    return 1 + ((weight - 10) * 9999) // 990


def _num(v) -> Optional[int]:
    if v is None or isinstance(v, bool):
        return None
    if not isinstance(v, int):
        raise ValueError(f"expected an integer, got {v!r}")
    return v


class _Planner:
    def __init__(self, version: str):
        self.v2 = version == "v2"
        self.writes: list = []
        self.skipped: list = []

    def w(self, limit: str, controller: str, file: str, value) -> None:
        self.writes.append(Write(limit, controller, file, str(value)))

    def no(self, limit: str, reason: str) -> None:
        self.skipped.append(NotApplied(limit, reason))

    def memory(self, m: dict) -> None:
        limit, swap = _num(m.get("limit")), _num(m.get("swap"))
        res = _num(m.get("reservation"))
        if self.v2:
            if limit is not None:
                self.w("memory.limit", "memory", "memory.max", "max" if limit < 0 else limit)
            if swap is not None and swap != 0:
                if swap < 0:
                    self.w("memory.swap", "memory", "memory.swap.max", "max")
                elif limit is None or limit < 0:
                    self.no("memory.swap", "memory+swap needs memory.limit as well on cgroup v2")
                elif swap < limit:
                    self.no("memory.swap", f"memory+swap ({swap}) is below the memory limit "
                                           f"({limit}): set swap >= limit")
                else:
                    self.w("memory.swap", "memory", "memory.swap.max", swap - limit)
            if res is not None:
                self.w("memory.reservation", "memory", "memory.low", "max" if res < 0 else res)
            for key in ("kernel", "kernelTCP"):
                if m.get(key) is not None:
                    self.no(f"memory.{key}", "kernel memory limits do not exist on cgroup v2")
            if m.get("swappiness") is not None:
                self.no("memory.swappiness", "cgroup v2 has no per-cgroup swappiness")
            if m.get("disableOOMKiller"):
                self.no("memory.disableOOMKiller", "cgroup v2 cannot disable the OOM killer")
            return
        if limit is not None:
            self.w("memory.limit", "memory", "memory.limit_in_bytes", -1 if limit < 0 else limit)
        if swap is not None and swap != 0:
            if limit is not None and 0 <= swap < limit:
                self.no("memory.swap", f"memory+swap ({swap}) is below the memory limit "
                                       f"({limit}): set swap >= limit")
            else:
                self.w("memory.swap", "memory", "memory.memsw.limit_in_bytes",
                       -1 if swap < 0 else swap)
        if res is not None:
            self.w("memory.reservation", "memory", "memory.soft_limit_in_bytes",
                   -1 if res < 0 else res)
        if m.get("kernel") is not None:
            self.w("memory.kernel", "memory", "memory.kmem.limit_in_bytes", _num(m["kernel"]))
        if m.get("kernelTCP") is not None:
            self.w("memory.kernelTCP", "memory", "memory.kmem.tcp.limit_in_bytes",
                   _num(m["kernelTCP"]))
        if m.get("swappiness") is not None and 0 <= _num(m["swappiness"]) <= 100:
            self.w("memory.swappiness", "memory", "memory.swappiness", m["swappiness"])
        if m.get("disableOOMKiller"):
            self.w("memory.disableOOMKiller", "memory", "memory.oom_control", 1)

    def cpu(self, c: dict) -> None:
        shares, quota, period = _num(c.get("shares")), _num(c.get("quota")), _num(c.get("period"))
        burst = _num(c.get("burst"))
        if self.v2:
            if shares:
                self.w("cpu.shares", "cpu", "cpu.weight", cpu_shares_to_weight(shares))
            if quota or period:
                q = quota if quota is not None and quota > 0 else "max"
                self.w("cpu.quota", "cpu", "cpu.max", f"{q} {period or 100000}")
            if burst is not None:
                self.w("cpu.burst", "cpu", "cpu.max.burst", burst)
            for key in ("realtimeRuntime", "realtimePeriod"):
                if c.get(key):
                    self.no(f"cpu.{key}", "realtime CPU limits do not exist on cgroup v2")
        else:
            if shares:
                self.w("cpu.shares", "cpu", "cpu.shares", shares)
            if period:   # period before quota; the executor retries the other order if refused
                self.w("cpu.period", "cpu", "cpu.cfs_period_us", period)
            if quota is not None and quota != 0:
                self.w("cpu.quota", "cpu", "cpu.cfs_quota_us", quota if quota > 0 else -1)
            if burst is not None:
                self.w("cpu.burst", "cpu", "cpu.cfs_burst_us", burst)
            if c.get("realtimePeriod"):
                self.w("cpu.realtimePeriod", "cpu", "cpu.rt_period_us", c["realtimePeriod"])
            if c.get("realtimeRuntime"):
                self.w("cpu.realtimeRuntime", "cpu", "cpu.rt_runtime_us", c["realtimeRuntime"])
        if c.get("cpus"):
            self.w("cpu.cpus", "cpuset", "cpuset.cpus", c["cpus"])
        if c.get("mems"):
            self.w("cpu.mems", "cpuset", "cpuset.mems", c["mems"])
        if c.get("idle") is not None:
            self.w("cpu.idle", "cpu", "cpu.idle", _num(c["idle"]))

    def pids(self, p: dict) -> None:
        limit = _num(p.get("limit"))
        if limit is not None and limit != 0:
            self.w("pids.limit", "pids", "pids.max", "max" if limit < 0 else limit)

    def block_io(self, b: dict) -> None:
        weight = _num(b.get("weight"))
        if weight:
            if self.v2:
                self.w("blockIO.weight", "io", "io.weight", blkio_weight_to_io_weight(weight))
            else:
                self.w("blockIO.weight", "blkio", "blkio.weight", weight)
        if b.get("leafWeight"):
            self.no("blockIO.leafWeight", "leaf weights are not supported by current kernels")
        for d in b.get("weightDevice") or []:
            dev = f"{d['major']}:{d['minor']}"
            if d.get("weight"):
                if self.v2:
                    self.w("blockIO.weightDevice", "io", "io.weight",
                           f"{dev} {blkio_weight_to_io_weight(d['weight'])}")
                else:
                    self.w("blockIO.weightDevice", "blkio", "blkio.weight_device",
                           f"{dev} {d['weight']}")
        for key, v1file, v2key in (("throttleReadBpsDevice", "read_bps_device", "rbps"),
                                   ("throttleWriteBpsDevice", "write_bps_device", "wbps"),
                                   ("throttleReadIOPSDevice", "read_iops_device", "riops"),
                                   ("throttleWriteIOPSDevice", "write_iops_device", "wiops")):
            for d in b.get(key) or []:
                dev, rate = f"{d['major']}:{d['minor']}", _num(d.get("rate"))
                if self.v2:
                    self.w(f"blockIO.{key}", "io", "io.max", f"{dev} {v2key}={rate or 'max'}")
                else:
                    self.w(f"blockIO.{key}", "blkio", f"blkio.throttle.{v1file}", f"{dev} {rate}")

    def hugepages(self, items: list) -> None:
        for h in items:
            size, limit = h.get("pageSize"), _num(h.get("limit"))
            if not size or limit is None:
                continue
            f = f"hugetlb.{size}.max" if self.v2 else f"hugetlb.{size}.limit_in_bytes"
            self.w(f"hugepageLimits.{size}", "hugetlb", f, limit)

    def devices(self, rules: list) -> None:
        """Device access rules, in order (v1 devices controller), then the devices every
        container gets (the runtime-spec's default devices and new ptys), as runc does."""
        if self.v2:
            self.no("devices", "device rules need an eBPF program on cgroup v2, which "
                               "pydocklite does not load: device access is not restricted")
            return
        if not isinstance(rules, list):
            raise ValueError("devices must be a list")
        for r in rules:
            allow = r.get("allow")
            if not isinstance(allow, bool):
                raise ValueError(f"devices[].allow must be a boolean in {r!r}")
            kind = r.get("type") or "a"
            access = r.get("access") or "rwm"
            if kind not in ("a", "c", "b") or not access or set(access) - set("rwm"):
                raise ValueError(f"devices[] rule {r!r}: type a/c/b, access of r, w, m")
            nums = [_num(r.get(k)) for k in ("major", "minor")]
            ids = ":".join("*" if n is None or n < 0 else str(n) for n in nums)
            self.w("devices", "devices", "devices.allow" if allow else "devices.deny",
                   f"{kind} {ids} {access}")
        for rule in DEFAULT_ALLOWED_DEVICES:
            self.w("devices", "devices", "devices.allow", rule)

    def unified(self, u: dict) -> None:
        for key, value in u.items():
            if not self.v2:
                self.no(f"unified.{key}", "'unified' settings need cgroup v2")
            elif "/" in key or key.startswith(".") or "." not in key:
                self.no(f"unified.{key}", f"{key!r} is not a cgroup interface file name")
            else:
                self.w(f"unified.{key}", key.split(".", 1)[0], key, value)


# mknod of any node (using one still needs a rule), /dev/null zero full random urandom tty
# console ptmx, and the ptys of the container's devpts
DEFAULT_ALLOWED_DEVICES = ("c *:* m", "b *:* m", "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm",
                           "c 1:8 rwm", "c 1:9 rwm", "c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm",
                           "c 136:* rwm")


def plan(resources: Optional[dict], version: str) -> ResourcePlan:
    """Plan the writes for OCI `linux.resources` on cgroup `version` ("v1" or "v2")."""
    p = _Planner(version)
    r = resources or {}
    try:
        if r.get("memory"):
            p.memory(r["memory"])
        if r.get("cpu"):
            p.cpu(r["cpu"])
        if r.get("pids"):
            p.pids(r["pids"])
        if r.get("blockIO"):
            p.block_io(r["blockIO"])
        if r.get("hugepageLimits"):
            p.hugepages(r["hugepageLimits"])
        if r.get("unified"):
            p.unified(r["unified"])
        if r.get("devices"):
            p.devices(r["devices"])
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"linux.resources: {e}") from None
    if r.get("network"):
        p.no("network", "net_cls/net_prio are not supported by pydocklite")
    if r.get("rdma"):
        p.no("rdma", "rdma limits are not supported by pydocklite")
    return ResourcePlan(tuple(p.writes), tuple(p.skipped))
