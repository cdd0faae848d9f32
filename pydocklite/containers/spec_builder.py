"""Turn an image config plus `run` flags into an OCI runtime spec (config.json), as Docker does.

Pure: no I/O. The user name -> uid lookup is given the image's /etc/passwd and /etc/group text.
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import Dict, List, Optional, Tuple

from pydocklite.containers.options import RunOptions
from pydocklite.errors import UsageError

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Docker's default capability set.
DEFAULT_CAPS = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
)
ALL_CAPS = DEFAULT_CAPS + (
    "CAP_DAC_READ_SEARCH", "CAP_LINUX_IMMUTABLE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_LEASE", "CAP_AUDIT_CONTROL", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)
MASKED_PATHS = (
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
    "/sys/firmware", "/sys/devices/virtual/powercap",
)
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
ULIMIT_NAMES = {
    "core": "RLIMIT_CORE", "cpu": "RLIMIT_CPU", "data": "RLIMIT_DATA", "fsize": "RLIMIT_FSIZE",
    "locks": "RLIMIT_LOCKS", "memlock": "RLIMIT_MEMLOCK", "msgqueue": "RLIMIT_MSGQUEUE",
    "nice": "RLIMIT_NICE", "nofile": "RLIMIT_NOFILE", "nproc": "RLIMIT_NPROC",
    "rss": "RLIMIT_RSS", "rtprio": "RLIMIT_RTPRIO", "rttime": "RLIMIT_RTTIME",
    "sigpending": "RLIMIT_SIGPENDING", "stack": "RLIMIT_STACK",
}


def command_line(image_cfg: dict, opts: RunOptions) -> List[str]:
    """Docker's rules: --entrypoint replaces Entrypoint (and drops the image Cmd);
    a command given on the line replaces Cmd."""
    entry = image_cfg.get("Entrypoint") or []
    cmd = image_cfg.get("Cmd") or []
    if opts.entrypoint is not None:
        entry = [opts.entrypoint] if opts.entrypoint else []
        cmd = []
    if opts.command:
        cmd = list(opts.command)
    args = list(entry) + list(cmd)
    if not args:
        raise UsageError("no command specified: give one after the image name or set "
                         "CMD/ENTRYPOINT in the image")
    return args


def merge_env(image_env: List[str], flags: Tuple[str, ...]) -> List[str]:
    env: Dict[str, str] = {}
    for item in list(image_env or []) + list(flags):
        key, sep, value = item.partition("=")
        if not key:
            raise UsageError(f"invalid environment variable: '{item}'")
        env[key] = value if sep else env.get(key, "")
    env.setdefault("PATH", DEFAULT_PATH)
    return [f"{k}={v}" for k, v in env.items()]


def resolve_user(spec: str, passwd: str, group: str) -> Tuple[int, int, List[int]]:
    """'', 'name', 'uid', 'name:group', 'uid:gid' -> (uid, gid, additional gids)."""
    if not spec:
        spec = "0"
    user, _, grp = spec.partition(":")
    users = _parse_db(passwd)
    groups = _parse_db(group)
    uid = gid = None
    home_gid = None
    if user.isdigit():
        uid = int(user)
        for fields in users:
            if len(fields) > 3 and fields[2] == user:
                home_gid = _int(fields[3])
                break
    else:
        for fields in users:
            if fields[0] == user and len(fields) > 3:
                uid, home_gid = _int(fields[2]), _int(fields[3])
                break
        if uid is None:
            raise UsageError(f"unable to find user {user}: no matching entries in passwd file")
    if grp:
        if grp.isdigit():
            gid = int(grp)
        else:
            for fields in groups:
                if fields[0] == grp and len(fields) > 2:
                    gid = _int(fields[2])
                    break
            if gid is None:
                raise UsageError(f"unable to find group {grp}: no matching entries in group file")
    else:
        gid = home_gid if home_gid is not None else 0
    name = user
    if user.isdigit():
        for fields in users:
            if len(fields) > 2 and fields[2] == user:
                name = fields[0]
                break
    extra = sorted({_int(f[2]) for f in groups
                    if len(f) > 3 and name in f[3].split(",") and _int(f[2]) != gid})
    return uid, gid, extra


def _parse_db(text: str) -> List[List[str]]:
    return [line.split(":") for line in (text or "").splitlines()
            if line and not line.startswith("#")]


def _int(s: str) -> int:
    try:
        return int(s)
    except ValueError:
        return 0


def capabilities(opts: RunOptions) -> List[str]:
    caps = list(ALL_CAPS if opts.privileged else DEFAULT_CAPS)

    def norm(c: str) -> str:
        c = c.upper()
        return c if c.startswith("CAP_") else "CAP_" + c

    for c in opts.cap_add:
        if c.upper() == "ALL":
            caps = list(ALL_CAPS)
        elif norm(c) not in caps:
            if norm(c) not in ALL_CAPS:
                raise UsageError(f"unknown capability: \"{c}\"")
            caps.append(norm(c))
    for c in opts.cap_drop:
        if c.upper() == "ALL":
            caps = []
        else:
            caps = [x for x in caps if x != norm(c)]
    return caps


def rlimits(opts: RunOptions) -> List[dict]:
    out = []
    for item in opts.ulimits:
        name, _, values = item.partition("=")
        if name not in ULIMIT_NAMES or not values:
            raise UsageError(f"invalid ulimit '{item}': use NAME=SOFT[:HARD], e.g. nofile=1024:2048")
        soft, _, hard = values.partition(":")
        try:
            s = int(soft)
            h = int(hard) if hard else s
        except ValueError:
            raise UsageError(f"invalid ulimit '{item}': values must be numbers") from None
        out.append({"type": ULIMIT_NAMES[name], "soft": s, "hard": h})
    return out


def resources(opts: RunOptions) -> dict:
    res: dict = {}
    if opts.memory is not None:
        mem = {"limit": opts.memory}
        if opts.memory_swap is not None:
            mem["swap"] = opts.memory_swap
        res["memory"] = mem
    elif opts.memory_swap is not None:
        raise UsageError("--memory-swap needs --memory as well")
    if opts.cpus is not None:
        if opts.cpus <= 0:
            raise UsageError(f"invalid --cpus {opts.cpus}: must be more than 0")
        res["cpu"] = {"quota": int(opts.cpus * 100000), "period": 100000}
    if opts.pids_limit is not None and opts.pids_limit > 0:
        res["pids"] = {"limit": opts.pids_limit}
    return res


def build_spec(image_cfg: dict, opts: RunOptions, *, container_id: str, rootfs: str,
               passwd: str = "", group: str = "", hostname: Optional[str] = None,
               extra_mounts: Optional[List[dict]] = None) -> dict:
    """image_cfg is the image config's "config" object (Env, Cmd, Entrypoint...)."""
    args = command_line(image_cfg, opts)
    if opts.init:
        args = ["/dev/init", "--"] + args
    uid, gid, extra_gids = resolve_user(opts.user if opts.user is not None
                                        else image_cfg.get("User", ""), passwd, group)
    caps = capabilities(opts)
    host = opts.hostname or hostname or container_id[:12]
    env = merge_env(image_cfg.get("Env") or [], opts.env)
    if not any(e.startswith("HOSTNAME=") for e in env):
        env.insert(0, f"HOSTNAME={host}")
    if opts.tty and not any(e.startswith("TERM=") for e in env):
        env.append("TERM=xterm")
    namespaces = [{"type": t} for t in ("pid", "ipc", "uts", "mount", "cgroup")]
    if opts.network != "host":
        namespaces.append({"type": "network"})
    mounts = [
        {"destination": "/proc", "type": "proc", "source": "proc",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
    ]
    for m in list(extra_mounts or []):
        mounts.append(m)
    for m in opts.mounts:
        if m.kind == "tmpfs":
            mounts.append({"destination": m.target, "type": "tmpfs", "source": "tmpfs",
                           "options": ["nosuid", "nodev"] + list(m.options)})
        else:
            options = ["rbind"] + (["ro"] if m.readonly else ["rw"]) + list(m.options)
            mounts.append({"destination": m.target, "type": "bind", "source": m.source,
                           "options": options})
    spec = {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": opts.tty,
            "user": {"uid": uid, "gid": gid, "additionalGids": extra_gids},
            "args": args,
            "env": env,
            "cwd": opts.workdir or image_cfg.get("WorkingDir") or "/",
            "capabilities": {k: list(caps) for k in ("bounding", "effective", "permitted")},
            "rlimits": rlimits(opts),
            "noNewPrivileges": False,
        },
        "root": {"path": rootfs, "readonly": opts.read_only},
        "hostname": host,
        "mounts": mounts,
        "annotations": {"io.pydocklite.container.id": container_id},
        "linux": {
            "namespaces": namespaces,
            "resources": resources(opts),
            "maskedPaths": [] if opts.privileged else list(MASKED_PATHS),
            "readonlyPaths": [] if opts.privileged else list(READONLY_PATHS),
        },
    }
    if uid != 0:
        spec["process"]["capabilities"] = {"bounding": list(caps)}
    if not opts.privileged and opts.extra.get("seccomp") != "unconfined":
        # Docker's default: an allowlist that follows the capabilities granted
        from pydocklite.runtime.seccomp_default import default_profile
        spec["linux"]["seccomp"] = default_profile(capabilities=caps)
    if opts.extra.get("no_new_privileges"):
        spec["process"]["noNewPrivileges"] = True
    profile, process_label, mount_label = lsm_settings(opts)
    if profile:
        spec["process"]["apparmorProfile"] = profile
    if process_label:
        spec["process"]["selinuxLabel"] = process_label
        spec["linux"]["mountLabel"] = mount_label
    noop = opts.extra.get("seccomp_noop")
    if noop:
        # these syscalls succeed without doing anything (a build's RUN with one mapped id:
        # chown and the setuid family fail there, and package managers would stop)
        sec = spec["linux"].get("seccomp") or {"defaultAction": "SCMP_ACT_ALLOW",
                                               "syscalls": []}
        sec["syscalls"] = [{"names": list(noop), "action": "SCMP_ACT_ERRNO",
                            "errnoRet": 0}] + list(sec.get("syscalls") or [])
        spec["linux"]["seccomp"] = sec
    return spec


# Docker's container SELinux contexts (the container-selinux policy's types)
_PROCESS_LABEL = {"user": "system_u", "role": "system_r", "type": "container_t", "level": "s0"}
_MOUNT_LABEL = {"user": "system_u", "role": "object_r", "type": "container_file_t",
                "level": "s0"}


def lsm_settings(opts) -> tuple:
    """(AppArmor profile, SELinux process label, SELinux mount label) asked for with
    --security-opt apparmor=/label= ("" where not asked): the label's parts given replace
    Docker's default container context's; the mount label shares the level."""
    profile = opts.extra.get("apparmor") or ""
    parts = dict(opts.extra.get("label") or ())
    if not parts:
        return profile, "", ""
    proc = ":".join(parts.get(k, _PROCESS_LABEL[k]) for k in _PROCESS_LABEL)
    mount = ":".join(parts.get("level", _MOUNT_LABEL[k]) if k == "level" else _MOUNT_LABEL[k]
                     for k in _MOUNT_LABEL)
    return profile, proc, mount
