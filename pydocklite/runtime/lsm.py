"""Linux security modules: which ones this host enforces, and labelling the container's exec.

    host = detect()               # HostLsm(apparmor, selinux, apparmor_profiles, names)
    check(profile, label, mount_label, host)   # by plan.make_plan: refuse what it cannot apply
    fd = open_exec_attr(kind)     # in the init, before pivot_root (the host's /proc)
    set_exec_label(fd, kind, v)   # just before the capability drop: applies at execve

A setting for an LSM the host doesn't enforce is refused, never dropped: a container asked
to be confined must not run unconfined (runc refuses SELinux labels the same way, and fails on
the AppArmor write; we say which setting and why before anything is created).
AppArmor takes "exec PROFILE" on /proc/self/attr/apparmor/exec (kernel >= 5.8, the LSM-stacking
interface) or /proc/self/attr/exec; SELinux takes the context on /proc/self/attr/exec.
"""
from __future__ import annotations

import os

from .errors import SpecError
from .record import Record

_AA_ENABLED = "/sys/module/apparmor/parameters/enabled"
_AA_FS = "/sys/kernel/security/apparmor"
_SELINUX_FS = ("/sys/fs/selinux", "/selinux")
_LSM_LIST = "/sys/kernel/security/lsm"


class HostLsm(Record):
    # apparmor_profiles: names of the loaded profiles, or None when they can't be read
    # names: the kernel's active LSM list (/sys/kernel/security/lsm) or () when unreadable
    __slots__ = ("apparmor", "selinux", "apparmor_profiles", "names")


NONE = HostLsm(False, False, None, ())


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def apparmor_enabled() -> bool:
    """As runc and the AppArmor library decide: the module says Y and its fs is there."""
    return _read(_AA_ENABLED).startswith("Y") and os.path.isdir(_AA_FS)


def selinux_enabled() -> bool:
    """selinuxfs is mounted (libselinux's test) and the policy is loaded (enforce exists)."""
    return any(os.path.exists(os.path.join(d, "enforce")) for d in _SELINUX_FS)


def _profiles():
    text = _read(os.path.join(_AA_FS, "profiles"))
    if not text:
        return None
    # lines "NAME (enforce)"; a name may contain spaces, the mode is the last word
    return frozenset(line.rsplit(" (", 1)[0] for line in text.splitlines() if line)


def detect() -> HostLsm:
    aa = apparmor_enabled()
    names = tuple(n for n in _read(_LSM_LIST).strip().split(",") if n)
    return HostLsm(aa, selinux_enabled(), _profiles() if aa else None, names)


def describe(host: HostLsm) -> str:
    """One line for `info`: which LSMs confine containers here."""
    on = [n for n, yes in (("AppArmor", host.apparmor), ("SELinux", host.selinux)) if yes]
    listed = f" (kernel LSMs: {', '.join(host.names)})" if host.names else ""
    if not on:
        return ("none: neither AppArmor nor SELinux is enabled, so containers asking for a "
                "profile or label (--security-opt apparmor=/label=) are refused" + listed)
    return ", ".join(on) + listed


def check(apparmor_profile: str, selinux_label: str, mount_label: str, host: HostLsm) -> None:
    """Refuse settings this host can't apply (SpecError naming the setting and the fix)."""
    if apparmor_profile:
        if not host.apparmor:
            raise SpecError(f"config.json: process.apparmorProfile \"{apparmor_profile}\" is "
                            f"specified, but AppArmor is disabled or not supported on this "
                            f"host: refusing to run the container unconfined (remove the "
                            f"setting, or run it on a host with AppArmor enabled)")
        if host.apparmor_profiles is not None and \
                apparmor_profile not in host.apparmor_profiles and \
                apparmor_profile != "unconfined":
            raise SpecError(f"config.json: process.apparmorProfile \"{apparmor_profile}\": no "
                            f"such AppArmor profile is loaded on this host (load it with "
                            f"apparmor_parser, see {_AA_FS}/profiles)")
    for name, value in (("process.selinuxLabel", selinux_label),
                        ("linux.mountLabel", mount_label)):
        if value and not host.selinux:
            raise SpecError(f"config.json: {name} \"{value}\" is specified, but SELinux is "
                            f"disabled or not supported on this host: refusing to run the "
                            f"container unlabelled (remove the setting, or run it on a host "
                            f"with SELinux enabled)")


# mount types that take an SELinux context= option (bind mounts keep their source's labels;
# proc, sysfs and cgroup filesystems have fixed ones)
_NO_CONTEXT = frozenset(("bind", "proc", "sysfs", "cgroup", "cgroup2"))


def mount_data(fstype: str, data: str, mount_label: str) -> str:
    """The mount's data string with the SELinux context added where the type takes one."""
    if not mount_label or fstype in _NO_CONTEXT:
        return data
    ctx = f'context="{mount_label}"'
    return f"{data},{ctx}" if data else ctx


def open_exec_attr(kind: str) -> int:
    """fd of this process's exec-label attribute for `kind` ("apparmor" or "selinux"), opened
    while the host's /proc is still visible (the init calls it before pivot_root)."""
    paths = ("/proc/self/attr/apparmor/exec", "/proc/self/attr/exec") if kind == "apparmor" \
        else ("/proc/self/attr/exec",)
    last = None
    for p in paths:
        try:
            return os.open(p, os.O_WRONLY | os.O_CLOEXEC)
        except OSError as e:
            last = e
    raise OSError(last.errno, f"{paths[-1]}: {last.strerror}")


def set_exec_label(fd: int, kind: str, value: str) -> None:
    """Label the next execve of this process (AppArmor profile or SELinux context)."""
    data = (f"exec {value}" if kind == "apparmor" else value).encode()
    try:
        os.write(fd, data)
    except OSError as e:
        what = "AppArmor profile" if kind == "apparmor" else "SELinux label"
        raise OSError(e.errno, f"cannot apply the {what} \"{value}\": {e.strerror}") from None
    finally:
        os.close(fd)
