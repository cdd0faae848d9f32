"""Thin ctypes wrappers over the Linux syscalls Python's os module lacks.

Every wrapper raises OSError(errno, message naming the call and its argument) on failure.
Constants are the x86_64/aarch64 generic values from the kernel uapi headers.
"""
from __future__ import annotations

import ctypes
import os

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWTIME = 0x00000080

NS_FLAGS = {"mount": CLONE_NEWNS, "cgroup": CLONE_NEWCGROUP, "uts": CLONE_NEWUTS,
            "ipc": CLONE_NEWIPC, "user": CLONE_NEWUSER, "pid": CLONE_NEWPID,
            "network": CLONE_NEWNET, "time": CLONE_NEWTIME}
# names of the entries in /proc/PID/ns/
NS_PROC_NAMES = {"mount": "mnt", "cgroup": "cgroup", "uts": "uts", "ipc": "ipc",
                 "user": "user", "pid": "pid", "network": "net", "time": "time"}

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOSYMFOLLOW = 256
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_SILENT = 32768
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MNT_DETACH = 2

PR_SET_PDEATHSIG = 1
PR_SET_KEEPCAPS = 8
PR_SET_NAME = 15
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4

_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}
_SYS_SETNS = {"x86_64": 308, "aarch64": 268}


# one handle to the C library, configured once (a constant, not state)
_LIBC = ctypes.CDLL(None, use_errno=True)
_LIBC.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p]
_LIBC.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
_LIBC.syscall.restype = ctypes.c_long


def _libc():
    return _LIBC


def _check(ret: int, what: str) -> int:
    if ret == -1:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")
    return ret


def _b(s) -> bytes:
    if s is None:
        return None
    return s if isinstance(s, bytes) else os.fsencode(s)


def unshare(flags: int) -> None:
    _check(_libc().unshare(ctypes.c_int(flags)), f"unshare(0x{flags:x})")


def close_fds_except(keep) -> None:
    """In a forked child: close every inherited fd not in `keep` (listed from /proc/self/fd:
    the host's, so call it before entering another mount namespace)."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass   # the fd of the listdir itself, already gone


def setns(fd: int, nstype: int = 0) -> None:
    _check(_libc().setns(ctypes.c_int(fd), ctypes.c_int(nstype)), f"setns(fd {fd})")


def mount(source, target, fstype, flags: int = 0, data=None) -> None:
    ret = _LIBC.mount(_b(source), _b(target), _b(fstype), flags, _b(data))
    _check(ret, f"mount {fstype or ''} {source or ''} on {target} (flags 0x{flags:x}"
                f"{', ' + data if isinstance(data, str) and data else ''})")


def umount2(target, flags: int = 0) -> None:
    _check(_libc().umount2(_b(target), ctypes.c_int(flags)), f"umount {target}")


def pivot_root(new_root, put_old) -> None:
    nr = _SYS_PIVOT_ROOT.get(os.uname().machine)
    libc = _libc()
    if nr is None:
        _check(libc.pivot_root(_b(new_root), _b(put_old)), f"pivot_root {new_root}")
        return
    ret = libc.syscall(ctypes.c_long(nr), ctypes.c_char_p(_b(new_root)),
                       ctypes.c_char_p(_b(put_old)))
    _check(ret, f"pivot_root {new_root}")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return _check(_LIBC.prctl(option, arg2, arg3, arg4, arg5), f"prctl({option})")


class _Rlimit(ctypes.Structure):
    _fields_ = [("cur", ctypes.c_uint64), ("max", ctypes.c_uint64)]


RLIM_INFINITY = (1 << 64) - 1


def getrlimit(resource: int) -> tuple:
    """(soft, hard) of this process (RLIM_INFINITY = 2**64-1). The `resource` module is a
    shared library to load; ctypes is loaded already."""
    r = _Rlimit()
    _check(_LIBC.prlimit(0, resource, None, ctypes.byref(r)), f"getrlimit({resource})")
    return r.cur, r.max


def setrlimit(resource: int, soft: int, hard: int) -> None:
    r = _Rlimit(soft & RLIM_INFINITY, hard & RLIM_INFINITY)
    _check(_LIBC.prlimit(0, resource, ctypes.byref(r), None), f"setrlimit({resource})")


def sethostname(name: str) -> None:
    b = name.encode()
    _check(_libc().sethostname(b, ctypes.c_size_t(len(b))), f"sethostname {name!r}")


def setdomainname(name: str) -> None:
    b = name.encode()
    _check(_libc().setdomainname(b, ctypes.c_size_t(len(b))), f"setdomainname {name!r}")


def personality(persona: int) -> int:
    return _check(_libc().personality(ctypes.c_ulong(persona)), f"personality(0x{persona:x})")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


_CAP_V3 = 0x20080522


def capget() -> tuple:
    """(effective, permitted, inheritable) of this thread, as 64-bit masks."""
    hdr = _CapHeader(_CAP_V3, 0)
    data = (_CapData * 2)()
    _check(_libc().capget(ctypes.byref(hdr), data), "capget")
    return tuple(getattr(data[0], f) | (getattr(data[1], f) << 32)
                 for f in ("effective", "permitted", "inheritable"))


def capset(effective: int, permitted: int, inheritable: int) -> None:
    hdr = _CapHeader(_CAP_V3, 0)
    data = (_CapData * 2)()
    for i in range(2):
        data[i].effective = (effective >> (32 * i)) & 0xFFFFFFFF
        data[i].permitted = (permitted >> (32 * i)) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> (32 * i)) & 0xFFFFFFFF
    _check(_libc().capset(ctypes.byref(hdr), data), "capset")


def setgroups_deny(pid) -> None:
    """Write 'deny' to /proc/PID/setgroups (needed before an unprivileged gid_map)."""
    with open(f"/proc/{pid}/setgroups", "w") as f:
        f.write("deny")
