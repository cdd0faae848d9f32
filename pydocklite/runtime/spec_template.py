"""`spec`: a starting config.json, like `runc spec` (rootless: user namespace, full subuid map)."""
from __future__ import annotations

import os

from .security import DEFAULT_CAPS
from .state import OCI_VERSION

MASKED_PATHS = ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
                "/proc/scsi"]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


def default_spec(rootless: bool = False, args=("sh",), terminal: bool = True) -> dict:
    caps = list(DEFAULT_CAPS)
    spec = {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": terminal,
            "user": {"uid": 0, "gid": 0},
            "args": list(args),
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "TERM=xterm"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "pydocklite",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620",
                         "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
        ],
        "linux": {
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
        },
    }
    if rootless:
        from . import idmap
        u, g, _warn = idmap.default_mappings()
        spec["linux"]["namespaces"].append({"type": "user"})
        spec["linux"]["uidMappings"] = [{"containerID": m.container_id, "hostID": m.host_id,
                                         "size": m.size} for m in u]
        spec["linux"]["gidMappings"] = [{"containerID": m.container_id, "hostID": m.host_id,
                                         "size": m.size} for m in g]
        if len(g) == 1:   # single-id map: devpts can't use the unmapped tty group
            spec["mounts"][2]["options"].remove("gid=5")
    else:
        spec["linux"]["namespaces"].append({"type": "cgroup"})
        spec["mounts"].append({"destination": "/sys/fs/cgroup", "type": "cgroup",
                               "source": "cgroup",
                               "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]})
    return spec


def write_spec(bundle: str, rootless: bool) -> str:
    import json
    path = os.path.join(bundle, "config.json")
    if os.path.exists(path):
        raise FileExistsError(f"{path} already exists: remove it first")
    with open(path, "w") as f:
        json.dump(default_spec(rootless), f, indent=2)
        f.write("\n")
    return path
