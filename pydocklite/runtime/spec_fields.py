"""Every field of the OCI runtime-spec (config.json, up to v1.3.0) and what pydocklite does
with it: the one table that `create` checks a config against and `features` is made from.

    IMPLEMENTED  applied (limits the host can't enforce are reported by the cgroup code)
    LSM          applied where the host's LSM (AppArmor, SELinux) is enabled, refused where
                 it is not (lsm.check, from plan.make_plan)
    WARNED       not implemented; harmless to run without it, so a warning says it's ignored
                 (where runc and crun ignore or warn too)
    REFUSED      not implemented; running without it would weaken or change the container, so
                 `create` fails naming the field

Paths: "a.b" a member, "a[]" the items of a list, "a{}" an object with free keys (annotations,
sysctl...: not looked into). A field is "set" unless it is null, "", [] or {}. Properties that
are not in the runtime-spec are ignored, as the spec requires, with a warning naming them.
`check(raw)` runs at create before anything is made; it costs ~0.1 ms.
"""
from __future__ import annotations

from .errors import SpecError

IMPLEMENTED, LSM, WARNED, REFUSED = "implemented", "lsm", "warned", "refused"

_I, _L, _W, _R = IMPLEMENTED, LSM, WARNED, REFUSED
_RESOURCE_LEAVES = {
    "devices[]": _I, "devices[].allow": _I, "devices[].type": _I, "devices[].major": _I,
    "devices[].minor": _I, "devices[].access": _I,
    "memory": _I, "memory.limit": _I, "memory.reservation": _I, "memory.swap": _I,
    "memory.kernel": _I, "memory.kernelTCP": _I, "memory.swappiness": _I,
    "memory.disableOOMKiller": _I,
    "memory.useHierarchy": (_W, "hierarchical accounting is what the kernel does anyway"),
    "memory.checkBeforeUpdate": (_W, "only used by `update`, which checks anyway"),
    "cpu": _I, "cpu.shares": _I, "cpu.quota": _I, "cpu.burst": _I, "cpu.period": _I,
    "cpu.realtimeRuntime": _I, "cpu.realtimePeriod": _I, "cpu.cpus": _I, "cpu.mems": _I,
    "cpu.idle": _I,
    "blockIO": _I, "blockIO.weight": _I,
    "blockIO.leafWeight": (_R, "blkio leaf weights do not exist in current kernels"),
    "blockIO.weightDevice[]": _I, "blockIO.weightDevice[].major": _I,
    "blockIO.weightDevice[].minor": _I, "blockIO.weightDevice[].weight": _I,
    "blockIO.weightDevice[].leafWeight": (_R, "blkio leaf weights do not exist in current "
                                              "kernels"),
    "hugepageLimits[]": _I, "hugepageLimits[].pageSize": _I, "hugepageLimits[].limit": _I,
    # limits pydocklite can never enforce are refused, as runc and crun fail on them where the
    # controller is missing
    "network": (_R, "the net_cls/net_prio controllers are not supported"),
    "network.classID": (_R, "the net_cls controller is not supported"),
    "network.priorities[]": (_R, "the net_prio controller is not supported"),
    "network.priorities[].name": (_R, "the net_prio controller is not supported"),
    "network.priorities[].priority": (_R, "the net_prio controller is not supported"),
    "pids": _I, "pids.limit": _I,
    "rdma{}": (_R, "rdma limits are not supported"),
    "unified{}": _I,
}
for _k in ("throttleReadBpsDevice", "throttleWriteBpsDevice", "throttleReadIOPSDevice",
           "throttleWriteIOPSDevice"):
    for _leaf in ("[]", "[].major", "[].minor", "[].rate"):
        _RESOURCE_LEAVES[f"blockIO.{_k}{_leaf}"] = _I

FIELDS = {
    "ociVersion": _I,
    "root": _I, "root.path": _I, "root.readonly": _I,
    "mounts[]": _I, "mounts[].destination": _I, "mounts[].source": _I, "mounts[].type": _I,
    "mounts[].options": _I,
    "mounts[].uidMappings": (_R, "idmapped mounts are not supported"),
    "mounts[].gidMappings": (_R, "idmapped mounts are not supported"),
    "process": _I, "process.terminal": _I, "process.consoleSize": _I,
    "process.consoleSize.height": _I, "process.consoleSize.width": _I, "process.cwd": _I,
    "process.env": _I, "process.args": _I,
    "process.commandLine": (_W, "Windows only"),
    "process.rlimits[]": _I, "process.rlimits[].type": _I, "process.rlimits[].soft": _I,
    "process.rlimits[].hard": _I,
    "process.apparmorProfile": _L, "process.selinuxLabel": _L,
    "process.capabilities": _I, "process.capabilities.bounding": _I,
    "process.capabilities.effective": _I, "process.capabilities.inheritable": _I,
    "process.capabilities.permitted": _I, "process.capabilities.ambient": _I,
    "process.noNewPrivileges": _I, "process.oomScoreAdj": _I,
    "process.scheduler": (_R, "scheduling policies are not supported"),
    "process.ioPriority": (_R, "I/O priorities are not supported"),
    "process.execCPUAffinity": (_R, "exec CPU affinity is not supported"),
    "process.user": _I, "process.user.uid": _I, "process.user.gid": _I,
    "process.user.umask": _I, "process.user.additionalGids": _I,
    "process.user.username": (_W, "Windows only"),
    "hostname": _I, "domainname": _I,
    "annotations{}": _I,
    "linux": _I,
    "linux.namespaces[]": _I, "linux.namespaces[].type": _I, "linux.namespaces[].path": _I,
    "linux.uidMappings[]": _I, "linux.uidMappings[].containerID": _I,
    "linux.uidMappings[].hostID": _I, "linux.uidMappings[].size": _I,
    "linux.gidMappings[]": _I, "linux.gidMappings[].containerID": _I,
    "linux.gidMappings[].hostID": _I, "linux.gidMappings[].size": _I,
    "linux.timeOffsets{}": (_R, "time namespace offsets are not supported"),
    "linux.devices[]": _I, "linux.devices[].type": _I, "linux.devices[].path": _I,
    "linux.devices[].major": _I, "linux.devices[].minor": _I, "linux.devices[].fileMode": _I,
    "linux.devices[].uid": _I, "linux.devices[].gid": _I,
    "linux.netDevices{}": (_R, "moving network devices into the container is not supported"),
    "linux.cgroupsPath": _I,
    "linux.rootfsPropagation": _I,
    "linux.resources": _I,
    "linux.intelRdt": (_R, "Intel RDT (resctrl) is not supported"),
    "linux.sysctl{}": _I,
    "linux.seccomp": _I, "linux.seccomp.defaultAction": _I, "linux.seccomp.defaultErrnoRet": _I,
    "linux.seccomp.architectures": _I, "linux.seccomp.flags": _I,
    "linux.seccomp.listenerPath": (_R, "seccomp user notification is not supported"),
    "linux.seccomp.listenerMetadata": (_R, "seccomp user notification is not supported"),
    "linux.seccomp.syscalls[]": _I, "linux.seccomp.syscalls[].names": _I,
    "linux.seccomp.syscalls[].action": _I, "linux.seccomp.syscalls[].errnoRet": _I,
    "linux.seccomp.syscalls[].args[]": _I, "linux.seccomp.syscalls[].args[].index": _I,
    "linux.seccomp.syscalls[].args[].value": _I,
    "linux.seccomp.syscalls[].args[].valueTwo": _I,
    "linux.seccomp.syscalls[].args[].op": _I,
    "linux.maskedPaths": _I, "linux.readonlyPaths": _I,
    "linux.mountLabel": _L,
    "linux.personality": _I, "linux.personality.domain": _I, "linux.personality.flags": _I,
    "linux.memoryPolicy": (_R, "NUMA memory policies are not supported"),
    "solaris{}": (_W, "Solaris only"),
    "windows{}": (_W, "Windows only"),
    "zos{}": (_W, "z/OS only"),
    "vm{}": (_R, "pydocklite runs containers, not virtual machines"),
}
FIELDS.update({"linux.resources." + k: v for k, v in _RESOURCE_LEAVES.items()})
# hook entries: the same four fields in each phase
HOOKS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart",
         "poststop")
FIELDS["hooks"] = _I
for _h in HOOKS:
    for _leaf in ("[]", "[].path", "[].args", "[].env", "[].timeout"):
        FIELDS[f"hooks.{_h}{_leaf}"] = _I

OCI_VERSION_MIN = "1.0.0"
OCI_VERSION_MAX = "1.3.0"          # the runtime-spec whose fields FIELDS lists


def treatment(path: str) -> tuple:
    """(treatment, note) for a table path; KeyError when not in the table."""
    v = FIELDS[path]
    return (v, "") if isinstance(v, str) else v


def _is_set(v) -> bool:
    return v is not None and v != "" and v != [] and v != {}


def _walk(obj, prefix: str, out: list) -> None:
    """(path, value) of each member below obj, lists as "[]", free-key maps not entered."""
    for key, value in obj.items():
        path = f"{prefix}.{key}" if prefix else key
        if path + "{}" in FIELDS:
            out.append((path + "{}", value))
            continue
        if isinstance(value, list) and path + "[]" in FIELDS:
            for item in value:
                out.append((path + "[]", item))
                if isinstance(item, dict):
                    _walk(item, path + "[]", out)
            continue
        out.append((path, value))
        if isinstance(value, dict):
            _walk(value, path, out)


def check(raw: dict, prefix: str = "") -> list:
    """Check a decoded config.json (or, with prefix "process", a process.json) against the
    table: raise SpecError for the first REFUSED field that is set; return the warnings for
    WARNED fields that are set and for properties the runtime-spec doesn't define."""
    found = []
    _walk(raw, prefix, found)
    warnings = []
    unknown = []
    for path, value in found:
        entry = FIELDS.get(path)
        if entry is None:
            if not path.endswith("[]"):
                unknown.append(path)
            continue
        kind, note = (entry, "") if isinstance(entry, str) else entry
        if kind == IMPLEMENTED or kind == LSM or not _is_set(value):
            continue
        name = path.replace("{}", "")
        if kind == REFUSED:
            raise SpecError(f"config.json: {name} is set, but {note}: pydocklite refuses "
                            f"to run a container without it (remove the setting)")
        warnings.append(f"config.json: {name} is ignored ({note})")
    if unknown:
        warnings.append(f"config.json: unknown properties ignored (not in the runtime-spec "
                        f"{OCI_VERSION_MAX}): {', '.join(sorted(set(unknown))[:10])}")
    return warnings


def features() -> dict:
    """The runtime-spec features document (`pydocklite runtime features`), from the table and
    the option/name tables of the modules that implement them."""
    from . import plan, security, seccomp
    from .spec import NAMESPACE_TYPES
    mount_opts = set(plan._FLAG_OPTS) | set(plan.PROPAGATION_OPTS) | plan._IGNORED_OPTS
    if treatment("mounts[].uidMappings")[0] == IMPLEMENTED:
        mount_opts |= set(plan._REFUSED_OPTS)
    actions = [a for a in ("SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL",
                           "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG",
                           "SCMP_ACT_NOTIFY", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP")
               if _seccomp_action_ok(seccomp, a)]
    return {
        "ociVersionMin": OCI_VERSION_MIN,
        "ociVersionMax": OCI_VERSION_MAX,
        "hooks": [h for h in HOOKS if treatment(f"hooks.{h}[]")[0] == IMPLEMENTED],
        "mountOptions": sorted(mount_opts),
        "linux": {
            "namespaces": sorted(NAMESPACE_TYPES),
            "capabilities": list(security.CAPS),
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False,
                       "rdma": treatment("linux.resources.rdma{}")[0] == IMPLEMENTED},
            "seccomp": {"enabled": True, "actions": actions,
                        "operators": sorted(seccomp.OPS),
                        "archs": sorted(seccomp.SCMP_ARCH),
                        "knownFlags": sorted(seccomp.FLAGS),
                        "supportedFlags": sorted(seccomp.FLAGS)},
            "apparmor": {"enabled": treatment("process.apparmorProfile")[0] != REFUSED},
            "selinux": {"enabled": treatment("process.selinuxLabel")[0] != REFUSED},
            "intelRdt": {"enabled": treatment("linux.intelRdt")[0] == IMPLEMENTED},
            "mountExtensions": {"idmap": {
                "enabled": treatment("mounts[].uidMappings")[0] == IMPLEMENTED}},
        },
        "annotations": {"io.github.pydocklite.version": _version()},
    }


def _seccomp_action_ok(seccomp, action: str) -> bool:
    try:
        seccomp.action_value(action, None, "features")
        return True
    except Exception:  # noqa: BLE001 - SeccompError: the action is refused
        return False


def _version() -> str:
    try:
        from pydocklite import __version__
        return __version__
    except ImportError:
        return "unknown"
