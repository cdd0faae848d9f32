"""Process credentials: capabilities, user/groups, rlimits, no_new_privs, oom score, seccomp.

`apply_credentials` then, after the wait for `start`, `apply_final`; in
this order (each step needs the privileges the next one drops):
rlimits -> oom_score_adj -> bounding set -> keep caps -> groups/gid/uid -> capset -> ambient
-> no_new_privs -> seccomp (before the uid switch when no_new_privs is off: installing a
filter then needs CAP_SYS_ADMIN, which the switch drops).
"""
from __future__ import annotations

import os

from . import syscalls as sc

CAPS = ("CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
        "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
        "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
        "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
        "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
        "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
        "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
        "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
        "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE")
CAP_NUMBERS = {name: i for i, name in enumerate(CAPS)}

# Docker's default capability set
DEFAULT_CAPS = ("CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
                "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
                "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE")

RLIMITS = {"RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3,
           "RLIMIT_CORE": 4, "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7,
           "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9, "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11,
           "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13, "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15}


def last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):
        return len(CAPS) - 1


def cap_mask(names, warn=None) -> int:
    """Bit mask of capability names; unknown names or caps this kernel lacks are skipped."""
    mask = 0
    top = last_cap()
    for n in names:
        num = CAP_NUMBERS.get(n.upper() if n.upper().startswith("CAP_") else "CAP_" + n.upper())
        if num is None or num > top:
            if warn:
                warn(f"capability {n} is unknown to this kernel: ignored")
            continue
        mask |= 1 << num
    return mask


def mask_names(mask: int) -> list:
    return [name for i, name in enumerate(CAPS) if mask & (1 << i)]


def _set_rlimits(rlimits, warn) -> None:
    inf = sc.RLIM_INFINITY
    for r in rlimits:
        num = RLIMITS.get(r.type)
        if num is None:
            raise ValueError(f"process.rlimits: unknown type {r.type!r}")
        soft, hard = r.soft & inf, r.hard & inf       # -1 means unlimited too
        try:
            sc.setrlimit(num, soft, hard)
            continue
        except OSError:
            pass
        cur_hard = sc.getrlimit(num)[1]
        new_hard = hard if cur_hard == inf or (hard != inf and hard <= cur_hard) else cur_hard
        new_soft = soft if (soft != inf and soft <= new_hard) or new_hard == inf else new_hard
        sc.setrlimit(num, new_soft, new_hard)
        warn(f"{r.type} soft={soft} hard={hard} exceeds the hard limit this user may set "
             f"({cur_hard}): clamped to soft={new_soft} hard={new_hard}")


def preload(proc, cache_dir: str = "") -> dict:
    """Import and compile now what the steps below need: after pivot_root/setns the host's
    Python library is out of reach, only modules already in sys.modules can be used.
    Returns the context for apply_credentials/apply_final (the compiled seccomp filter).
    cache_dir: where compiled seccomp filters are kept (seccomp_load), "" = no cache."""
    ctx = {"bpf": None}
    for kind, value in (("apparmor", proc.apparmor_profile), ("selinux", proc.selinux_label)):
        if value:
            from . import lsm
            ctx[kind] = lsm.open_exec_attr(kind)
    if proc.seccomp:
        try:
            from . import seccomp_load
        except ImportError:
            return ctx
        ctx["bpf"], ctx["flags"] = seccomp_load.compiled(proc.seccomp, cache_dir)
    return ctx


def _oom_score_adj(value: int) -> None:
    with open("/proc/self/oom_score_adj", "w") as f:
        f.write(str(value))


def _seccomp(ctx: dict, warn) -> None:
    if ctx.get("bpf") is None:
        warn("linux.seccomp is set but pydocklite.runtime.seccomp is not available: no "
             "seccomp filter installed")
        return
    from . import seccomp_load      # already imported by preload()
    seccomp_load.install(ctx["bpf"], ctx.get("flags", 0), no_new_privs=False)


def apply_credentials(proc, warn, ctx: dict) -> None:
    """Everything but the last step: rlimits, oom score, bounding set, ids, capabilities
    (and seccomp when no_new_privs is off, as it then needs CAP_SYS_ADMIN).
    First the LSM exec labels (opened by preload) and the personality, as runc does."""
    for kind, value in (("apparmor", proc.apparmor_profile), ("selinux", proc.selinux_label)):
        if value:
            from . import lsm      # imported by preload()
            lsm.set_exec_label(ctx.pop(kind), kind, value)
    if proc.personality is not None:
        sc.personality(proc.personality)
    if proc.rlimits:
        _set_rlimits(proc.rlimits, warn)
    if proc.oom_score_adj is not None:
        try:
            _oom_score_adj(proc.oom_score_adj)
        except OSError as e:
            warn(f"oomScoreAdj {proc.oom_score_adj} not applied: {e.strerror} (lowering it "
                 f"needs CAP_SYS_RESOURCE on the host)")
    caps = proc.caps
    if caps is not None:
        bounding = cap_mask(caps.bounding, warn)
        for i in range(last_cap() + 1):
            if not bounding & (1 << i):
                sc.prctl(sc.PR_CAPBSET_DROP, i)
    if proc.seccomp and not proc.no_new_privileges:
        _seccomp(ctx, warn)
    sc.prctl(sc.PR_SET_KEEPCAPS, 1)
    if _can_setgroups():
        os.setgroups(list(proc.additional_gids))
    elif proc.additional_gids:
        warn("process.user.additionalGids ignored: setgroups is denied in this user namespace "
             "(single-id map)")
    os.setresgid(proc.gid, proc.gid, proc.gid)
    os.setresuid(proc.uid, proc.uid, proc.uid)
    if caps is not None:
        sc.capset(cap_mask(caps.effective), cap_mask(caps.permitted),
                  cap_mask(caps.inheritable))
        # the kernel only allows ambient caps that are permitted and inheritable
        ambient = cap_mask(caps.ambient) & cap_mask(caps.permitted) & cap_mask(caps.inheritable)
        for i in range(last_cap() + 1):
            if ambient & (1 << i):
                sc.prctl(sc.PR_CAP_AMBIENT, sc.PR_CAP_AMBIENT_RAISE, i)
    sc.prctl(sc.PR_SET_KEEPCAPS, 0)


def apply_final(proc, warn, ctx: dict) -> None:
    """Right before exec: no_new_privs, then the seccomp filter that needs it."""
    if proc.no_new_privileges:
        sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1)
        if proc.seccomp:
            _seccomp(ctx, warn)


def _can_setgroups() -> bool:
    try:
        with open("/proc/self/setgroups") as f:
            return f.read().strip() != "deny"
    except OSError:
        return True
