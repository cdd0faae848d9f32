"""The pure planner: Spec -> Plan, the ordered steps the executor carries out.

Nothing here touches the system beyond reading the Spec (and, for defaults, the id maps it is
given), so every decision — which namespaces, which mounts with which flags, what replaces a
mount the kernel refuses in a user namespace — is unit-tested without root.

Phases, each run by a different process of the executor (process.py):
  Plan.userns / join / unshare_flags : the intermediate child, before forking the init
  Plan.rootfs_steps                  : the init, in its mount namespace, before pivot_root
  Plan.container_steps               : the init, after pivot_root (paths are container paths)
  Plan.proc                          : the process to exec (user, caps, rlimits...)
"""
from __future__ import annotations

from . import syscalls as sc
from .errors import SpecError
from .record import Record
from .spec import Spec, namespace


class UserNs(Record):
    __slots__ = ("path", "uid_maps", "gid_maps")


class Propagation(Record):
    __slots__ = ("target", "flags")       # target "/" = the whole tree


class BindRootfs(Record):
    __slots__ = ("path",)


class MountStep(Record):
    __slots__ = ("dest", "fstype", "source", "flags", "data", "remount_flags", "propagation",
                 "is_dir", "fallback")


class Device(Record):
    __slots__ = ("dest", "host_path")


class MakeDevice(Record):
    __slots__ = ("dest", "kind", "major", "minor", "mode", "uid", "gid")


class Symlink(Record):
    __slots__ = ("target", "link")


class PivotRoot(Record):
    __slots__ = ("rootfs",)


class Chroot(Record):
    __slots__ = ("rootfs",)      # no mount namespace of its own: no mounts, no pivot_root


class RemountRootReadonly(Record):
    __slots__ = ()


class Sysctl(Record):
    __slots__ = ("key", "value")


class MaskPath(Record):
    __slots__ = ("path",)


class ReadonlyPath(Record):
    __slots__ = ("path",)


class Hostname(Record):
    __slots__ = ("name",)


class Domainname(Record):
    __slots__ = ("name",)


class LoopbackUp(Record):
    __slots__ = ()


class ProcessPlan(Record):
    __slots__ = ("args", "env", "cwd", "uid", "gid", "additional_gids", "umask", "rlimits",
                 "caps", "no_new_privileges", "oom_score_adj", "seccomp", "terminal",
                 "console_size", "apparmor_profile", "selinux_label", "personality")


class Plan(Record):
    __slots__ = ("userns", "join", "unshare_flags", "rootfs_steps", "container_steps", "proc",
                 "new_pid_ns", "new_net_ns", "warnings")

# option -> (flags to set, flags to clear)
_FLAG_OPTS = {
    "ro": (sc.MS_RDONLY, 0), "rw": (0, sc.MS_RDONLY),
    "nosuid": (sc.MS_NOSUID, 0), "suid": (0, sc.MS_NOSUID),
    "nodev": (sc.MS_NODEV, 0), "dev": (0, sc.MS_NODEV),
    "noexec": (sc.MS_NOEXEC, 0), "exec": (0, sc.MS_NOEXEC),
    "sync": (sc.MS_SYNCHRONOUS, 0), "async": (0, sc.MS_SYNCHRONOUS),
    "dirsync": (sc.MS_DIRSYNC, 0), "remount": (sc.MS_REMOUNT, 0),
    "mand": (sc.MS_MANDLOCK, 0), "nomand": (0, sc.MS_MANDLOCK),
    "noatime": (sc.MS_NOATIME, 0), "atime": (0, sc.MS_NOATIME),
    "nodiratime": (sc.MS_NODIRATIME, 0), "diratime": (0, sc.MS_NODIRATIME),
    "relatime": (sc.MS_RELATIME, 0), "norelatime": (0, sc.MS_RELATIME),
    "strictatime": (sc.MS_STRICTATIME, 0), "nostrictatime": (0, sc.MS_STRICTATIME),
    "nosymfollow": (sc.MS_NOSYMFOLLOW, 0),
    "bind": (sc.MS_BIND, 0), "rbind": (sc.MS_BIND | sc.MS_REC, 0),
}
PROPAGATION_OPTS = {
    "private": sc.MS_PRIVATE, "rprivate": sc.MS_PRIVATE | sc.MS_REC,
    "shared": sc.MS_SHARED, "rshared": sc.MS_SHARED | sc.MS_REC,
    "slave": sc.MS_SLAVE, "rslave": sc.MS_SLAVE | sc.MS_REC,
    "unbindable": sc.MS_UNBINDABLE, "runbindable": sc.MS_UNBINDABLE | sc.MS_REC,
}
_IGNORED_OPTS = {"defaults", "auto", "noauto", "user", "nouser"}
# options of mount extensions pydocklite does not implement: warned (tmpcopyup only changes
# what a tmpfs starts with) or refused (an idmapped mount changes who owns the files)
_WARNED_OPTS = {"tmpcopyup": "the tmpfs starts empty instead of with a copy of the directory "
                             "it covers"}
_REFUSED_OPTS = ("idmap", "ridmap")
# flags a bind mount keeps through a read-only remount
_REMOUNT_KEEP = (sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC | sc.MS_NOATIME
                 | sc.MS_NODIRATIME | sc.MS_RELATIME | sc.MS_STRICTATIME | sc.MS_NOSYMFOLLOW)

DEFAULT_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
DEV_LINKS = (("/proc/self/fd", "/dev/fd"), ("/proc/self/fd/0", "/dev/stdin"),
             ("/proc/self/fd/1", "/dev/stdout"), ("/proc/self/fd/2", "/dev/stderr"),
             ("/proc/kcore", "/dev/core"))


def parse_options(options) -> tuple:
    """(flags, propagation flags, data string) from OCI mount options."""
    flags = 0
    prop = 0
    data = []
    for opt in options:
        if opt in _FLAG_OPTS:
            setf, clr = _FLAG_OPTS[opt]
            flags = (flags | setf) & ~clr
        elif opt in PROPAGATION_OPTS:
            prop |= PROPAGATION_OPTS[opt]
        elif opt in _IGNORED_OPTS:
            continue
        else:
            data.append(opt)
    return flags, prop, ",".join(data)


def _gid_mapped(maps, gid: int) -> bool:
    return any(m.container_id <= gid < m.container_id + m.size for m in maps)


def _plan_mount(m, userns, new_net: bool, new_ipc: bool, warnings: list,
                mount_label: str = "") -> MountStep:
    for opt in m.options:
        if opt in _REFUSED_OPTS:
            raise SpecError(f"config.json: mount {m.destination}: option {opt!r} (an idmapped "
                            f"mount) is not supported by pydocklite: remove it")
        if opt in _WARNED_OPTS:
            warnings.append(f"mount {m.destination}: option {opt!r} is not supported and is "
                            f"ignored: {_WARNED_OPTS[opt]}")
    flags, prop, data = parse_options(o for o in m.options if o not in _WARNED_OPTS)
    fstype = m.type
    source = m.source
    fallback = None
    if fstype == "bind" or flags & sc.MS_BIND:
        flags |= sc.MS_BIND
        fstype = "bind"
    elif fstype == "sysfs" and userns is not None and not new_net:
        # sysfs can only be mounted in a user namespace that owns the network namespace
        fstype, source = "bind", "/sys"
        flags |= sc.MS_BIND | sc.MS_REC
    elif fstype == "mqueue" and userns is not None and not new_ipc:
        fstype, source = "bind", "/dev/mqueue"
        flags |= sc.MS_BIND | sc.MS_REC
    elif fstype in ("cgroup", "cgroup2") and userns is not None:
        # cgroup hierarchies can't be mounted from a user namespace on v1/hybrid hosts:
        # show the host's tree read-only instead (what runc does rootless)
        fstype, source = "bind", "/sys/fs/cgroup"
        flags |= sc.MS_BIND | sc.MS_REC | sc.MS_RDONLY
    elif fstype == "devpts" and userns is not None:
        opts = []
        for o in data.split(","):
            if o.startswith("gid=") and o[4:].isdigit() and \
                    not _gid_mapped(userns.gid_maps, int(o[4:])):
                warnings.append(f"devpts on {m.destination}: gid {o[4:]} is not mapped in the "
                                f"user namespace, using the default group for ttys")
                continue
            if o:
                opts.append(o)
        data = ",".join(opts)
    remount = 0
    if fstype == "bind":
        # a bind mount ignores its flags: they take effect in a second, remount pass
        extra = flags & _REMOUNT_KEEP
        if extra:
            remount = sc.MS_BIND | sc.MS_REMOUNT | extra
        flags &= sc.MS_BIND | sc.MS_REC
    is_dir = fstype != "bind" or None      # None: bind target kind follows the source
    if mount_label:
        from . import lsm
        data = lsm.mount_data(fstype, data, mount_label)
    return MountStep(m.destination, fstype, source, flags, data, remount, prop, is_dir, fallback)


_DEVICE_KINDS = ("c", "u", "b", "p")


def _plan_device(d) -> MakeDevice:
    """A linux.devices entry: the node to create (mknod; in a user namespace, where the
    kernel refuses device nodes, the host's node of that path is bind-mounted instead)."""
    path = d.get("path") if isinstance(d, dict) else None
    if not isinstance(path, str) or not path.startswith("/dev/") or ".." in path.split("/"):
        raise SpecError(f"config.json: linux.devices entry {d!r}: path must be under /dev/")
    kind = d.get("type")
    if kind not in _DEVICE_KINDS:
        raise SpecError(f"config.json: linux.devices {path}: type must be one of c, u, b, p")
    nums = []
    for k in ("major", "minor"):
        v = d.get(k, 0 if kind == "p" else None)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise SpecError(f"config.json: linux.devices {path}: {k} must be a number >= 0")
        nums.append(v)
    mode = d.get("fileMode", 0o666)
    if not isinstance(mode, int) or isinstance(mode, bool) or not 0 <= mode <= 0o7777:
        raise SpecError(f"config.json: linux.devices {path}: fileMode must be permission "
                        f"bits (0 to 0o7777)")
    ids = []
    for k in ("uid", "gid"):
        v = d.get(k)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
            raise SpecError(f"config.json: linux.devices {path}: {k} must be a number >= 0")
        ids.append(v)
    return MakeDevice(path, kind, nums[0], nums[1], mode, ids[0], ids[1])


def _no_mount_ns_warnings(spec: Spec, warnings: list) -> None:
    lx = spec.linux
    skipped = [name for name, present in (
        ("mounts", spec.mounts), ("linux.maskedPaths", lx.masked_paths),
        ("linux.readonlyPaths", lx.readonly_paths), ("root.readonly", spec.root.readonly),
        ("linux.rootfsPropagation", lx.rootfs_propagation)) if present]
    if skipped:
        warnings.append(f"no mount namespace in linux.namespaces: the container shares the "
                        f"runtime's mounts and is only chrooted to its rootfs; not applied "
                        f"(they would change the host's mounts): {', '.join(skipped)}; add "
                        f"{{\"type\": \"mount\"}} to apply them")


def needs_lsm(spec: Spec) -> bool:
    """Does the spec ask for an LSM setting (then make_plan needs lsm.detect()'s answer)?"""
    p = spec.process
    return bool(spec.linux.mount_label or (p is not None and (p.apparmor_profile or
                                                              p.selinux_label)))


def make_plan(spec: Spec, default_maps=None, host_lsm=None) -> Plan:
    """Plan the container of `spec`. default_maps: (uid_maps, gid_maps) used when the spec
    creates a user namespace without mappings (rootless: from idmap.default_mappings()).
    host_lsm: lsm.HostLsm, what the host enforces (lsm.detect(); needed when needs_lsm):
    AppArmor and SELinux settings the host can't apply are refused here."""
    if spec.process is None:
        raise SpecError("config.json: process is required to run a container")
    lx = spec.linux
    if needs_lsm(spec):         # lsm's module is loaded only then (container start path)
        from . import lsm
        lsm.check(spec.process.apparmor_profile, spec.process.selinux_label, lx.mount_label,
                  host_lsm or lsm.NONE)
    warnings = []
    user = namespace(spec, "user")
    userns = None
    if user is not None:
        uid_maps, gid_maps = lx.uid_mappings, lx.gid_mappings
        if not user.path and (not uid_maps or not gid_maps):
            if default_maps is None:
                raise SpecError("config.json: linux.uidMappings and gidMappings are required "
                                "with a new user namespace")
            uid_maps = uid_maps or default_maps[0]
            gid_maps = gid_maps or default_maps[1]
        userns = UserNs(user.path, tuple(uid_maps), tuple(gid_maps))
    join = []
    flags = 0
    for ns in lx.namespaces:
        if ns.type == "user":
            continue
        if ns.path:
            join.append((ns.type, ns.path))
        else:
            flags |= sc.NS_FLAGS[ns.type]
    # joining the mount namespace last keeps the other ns paths resolvable
    join.sort(key=lambda t: t[0] == "mount")
    uts = namespace(spec, "uts")
    if (spec.hostname or spec.domainname) and uts is None:
        raise SpecError("config.json: hostname/domainname need a private uts namespace: add "
                        "{\"type\": \"uts\"} to linux.namespaces")
    new_net = bool(flags & sc.CLONE_NEWNET)
    new_ipc = bool(flags & sc.CLONE_NEWIPC)

    rootfs = spec.root.path
    own_mnt = namespace(spec, "mount") is not None
    if not own_mnt:
        _no_mount_ns_warnings(spec, warnings)
    # never let our mounts propagate back to the host: start from rslave (rprivate when asked),
    # apply a shared/unbindable rootfsPropagation only after pivot_root
    first = sc.MS_PRIVATE | sc.MS_REC if lx.rootfs_propagation in ("private", "rprivate") \
        else sc.MS_SLAVE | sc.MS_REC
    rootfs_steps = [Propagation("/", first),
                    BindRootfs(rootfs)]
    dev_mounted = False
    for m in spec.mounts:
        rootfs_steps.append(_plan_mount(m, userns, new_net, new_ipc, warnings, lx.mount_label))
        if m.destination.rstrip("/") == "/dev":
            dev_mounted = True
    if dev_mounted:
        for name in DEFAULT_DEVICES:
            rootfs_steps.append(Device(f"/dev/{name}", f"/dev/{name}"))
    for d in lx.devices:
        step = _plan_device(d)
        if step.dest[5:] not in DEFAULT_DEVICES or not dev_mounted:
            rootfs_steps.append(step)
    if dev_mounted:
        for target, link in DEV_LINKS:
            rootfs_steps.append(Symlink(target, link))
        if any(m.type == "devpts" and m.destination == "/dev/pts" for m in spec.mounts):
            rootfs_steps.append(Symlink("pts/ptmx", "/dev/ptmx"))
    rootfs_steps.append(PivotRoot(rootfs))
    if not own_mnt:
        # the container shares the runtime's mount namespace (runtime-spec: an unlisted
        # namespace is inherited): mounting there would change the host, so only chroot
        rootfs_steps = [Chroot(rootfs)]

    container_steps = []
    if flags & sc.CLONE_NEWNET:
        container_steps.append(LoopbackUp())
    for k in sorted(lx.sysctl):
        container_steps.append(Sysctl(k, lx.sysctl[k]))
    if own_mnt:
        for p in lx.masked_paths:
            container_steps.append(MaskPath(p))
        for p in lx.readonly_paths:
            container_steps.append(ReadonlyPath(p))
        if spec.root.readonly:
            container_steps.append(RemountRootReadonly())
        if lx.rootfs_propagation:
            container_steps.append(Propagation("/", PROPAGATION_OPTS[lx.rootfs_propagation]))
    if spec.hostname:
        container_steps.append(Hostname(spec.hostname))
    if spec.domainname:
        container_steps.append(Domainname(spec.domainname))

    p = spec.process
    if userns is not None and not userns.path:
        if not _gid_mapped(userns.uid_maps, p.user.uid):
            raise SpecError(f"config.json: process.user.uid {p.user.uid} is not mapped by "
                            f"linux.uidMappings")
        if not _gid_mapped(userns.gid_maps, p.user.gid):
            raise SpecError(f"config.json: process.user.gid {p.user.gid} is not mapped by "
                            f"linux.gidMappings")
    proc = ProcessPlan(args=p.args, env=p.env, cwd=p.cwd, uid=p.user.uid, gid=p.user.gid,
                       additional_gids=p.user.additional_gids, umask=p.user.umask,
                       rlimits=p.rlimits, caps=p.capabilities,
                       no_new_privileges=p.no_new_privileges, oom_score_adj=p.oom_score_adj,
                       seccomp=lx.seccomp, terminal=p.terminal, console_size=p.console_size,
                       apparmor_profile=p.apparmor_profile, selinux_label=p.selinux_label,
                       personality=lx.personality)
    return Plan(userns=userns, join=tuple(join), unshare_flags=flags,
                rootfs_steps=tuple(rootfs_steps), container_steps=tuple(container_steps),
                proc=proc, new_pid_ns=bool(flags & sc.CLONE_NEWPID), new_net_ns=new_net,
                warnings=tuple(warnings))
