"""Thin wrappers over the Linux syscalls Python's os module lacks, through the C library.

Every wrapper raises OSError(errno, message naming the call and its argument) on failure.
Constants are the x86_64/aarch64 generic values from the kernel uapi headers.

The foreign calls go through `_ctypes` (ctypes' C core) with the few C types they need
declared here: `import ctypes` costs ~5 ms of CPU (its Python layer builds dozens of types
and a libffi closure), and every container create, init and exec pays for this module.
"""
from __future__ import annotations

import _ctypes
import os
import sys

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


class _Int(_ctypes._SimpleCData):
    _type_ = "i"


class _ULong(_ctypes._SimpleCData):
    _type_ = "L"


class _Long(_ctypes._SimpleCData):
    _type_ = "l"


class _CharP(_ctypes._SimpleCData):
    _type_ = "z"            # bytes or None (NULL)


class _VoidP(_ctypes._SimpleCData):
    _type_ = "P"            # an address, a C array or byref(), or None


class _Char(_ctypes._SimpleCData):
    _type_ = "c"


class _IntFunc(_ctypes.CFuncPtr):
    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
    _restype_ = _Int


class _LongFunc(_ctypes.CFuncPtr):
    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
    _restype_ = _Long


class _CLibrary:
    """The C library already linked into the interpreter (dlopen(NULL)); ctypes' CFuncPtr
    finds a symbol through an object's _handle."""
    _handle = _ctypes.dlopen(None, 0)


def _func(name: str, argtypes: tuple, func_type=_IntFunc):
    f = func_type((name, _CLibrary))
    f.argtypes = argtypes
    return f


_UL4 = (_ULong,) * 4
_mount = _func("mount", (_CharP, _CharP, _CharP, _ULong, _CharP))
_umount2 = _func("umount2", (_CharP, _Int))
_unshare = _func("unshare", (_Int,))
_setns = _func("setns", (_Int, _Int))
_prctl = _func("prctl", (_Int,) + _UL4)
_prlimit = _func("prlimit", (_Int, _Int, _VoidP, _VoidP))
_sethostname = _func("sethostname", (_CharP, _ULong))
_setdomainname = _func("setdomainname", (_CharP, _ULong))
_personality = _func("personality", (_ULong,))
_capget = _func("capget", (_VoidP, _VoidP))
_capset = _func("capset", (_VoidP, _VoidP))
_syscall = _LongFunc(("syscall", _CLibrary))     # variadic: each argument given as a long
_ioctl = _func("ioctl", (_Int, _ULong, _VoidP))
_socket = _func("socket", (_Int, _Int, _Int))


def char_array(data: bytes):
    """A C char array holding `data` (mutable, for the kernel to fill or read); pass it as a
    pointer argument, read it back with bytes(arr), take its address with address_of(arr)."""
    return (_Char * max(len(data), 1)).from_buffer_copy(data or b"\0")


def address_of(arr) -> int:
    return _ctypes.addressof(arr)


def syscall(nr: int, *args) -> int:
    """syscall(2); each argument an integer, bytes (passed as a NUL-terminated string) or a
    char_array() (by address, for structs): -1 with get_errno() set on failure."""
    keep = []
    vals = []
    for a in args:
        if isinstance(a, bytes):
            a = char_array(a + b"\0")
            keep.append(a)
        vals.append(_Long(address_of(a) if isinstance(a, _ctypes.Array) else a))
    return _syscall(_Long(nr), *vals)


def get_errno() -> int:
    return _ctypes.get_errno()


def _check(ret: int, what: str) -> int:
    if ret == -1:
        e = _ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")
    return ret


def _b(s) -> bytes:
    if s is None:
        return None
    return s if isinstance(s, bytes) else os.fsencode(s)


def unshare(flags: int) -> None:
    _check(_unshare(flags), f"unshare(0x{flags:x})")


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
    _check(_setns(fd, nstype), f"setns(fd {fd})")


def mount(source, target, fstype, flags: int = 0, data=None) -> None:
    ret = _mount(_b(source), _b(target), _b(fstype), flags, _b(data))
    _check(ret, f"mount {fstype or ''} {source or ''} on {target} (flags 0x{flags:x}"
                f"{', ' + data if isinstance(data, str) and data else ''})")


def umount2(target, flags: int = 0) -> None:
    _check(_umount2(_b(target), flags), f"umount {target}")


def pivot_root(new_root, put_old) -> None:
    nr = _SYS_PIVOT_ROOT.get(os.uname().machine)
    if nr is None:
        _check(_func("pivot_root", (_CharP, _CharP))(_b(new_root), _b(put_old)),
               f"pivot_root {new_root}")
        return
    _check(syscall(nr, _b(new_root), _b(put_old)), f"pivot_root {new_root}")


def ioctl(fd: int, request: int, arg) -> int:
    """ioctl(2) with a char_array() argument (read and/or filled by the kernel)."""
    return _check(_ioctl(fd, request, arg), f"ioctl(fd {fd}, 0x{request:x})")


def socket(family: int, kind: int) -> int:
    """A socket's fd (close-on-exec): for an ioctl, without the `socket` module."""
    return _check(_socket(family, kind | os.O_CLOEXEC, 0), f"socket({family}, {kind})")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return _check(_prctl(option, arg2, arg3, arg4, arg5), f"prctl({option})")


RLIM_INFINITY = (1 << 64) - 1


def _u64s(*values) -> bytes:
    """A struct of __u64 fields (rlimit64, open_how, mount_attr) as bytes."""
    return b"".join((v & RLIM_INFINITY).to_bytes(8, sys.byteorder) for v in values)


def getrlimit(resource: int) -> tuple:
    """(soft, hard) of this process (RLIM_INFINITY = 2**64-1). The `resource` module is a
    shared library to load; the C library is at hand already."""
    r = char_array(bytes(16))
    _check(_prlimit(0, resource, None, r), f"getrlimit({resource})")
    raw = bytes(r)
    return int.from_bytes(raw[:8], sys.byteorder), int.from_bytes(raw[8:], sys.byteorder)


def setrlimit(resource: int, soft: int, hard: int) -> None:
    _check(_prlimit(0, resource, char_array(_u64s(soft, hard)), None),
           f"setrlimit({resource})")


def sethostname(name: str) -> None:
    b = name.encode()
    _check(_sethostname(b, len(b)), f"sethostname {name!r}")


def setdomainname(name: str) -> None:
    b = name.encode()
    _check(_setdomainname(b, len(b)), f"setdomainname {name!r}")


def personality(persona: int) -> int:
    return _check(_personality(persona), f"personality(0x{persona:x})")


_CAP_V3 = 0x20080522


def _cap_header() -> object:
    # struct __user_cap_header_struct {u32 version; int pid}: pid 0 = this thread
    return char_array(_CAP_V3.to_bytes(4, sys.byteorder) + bytes(4))


def capget() -> tuple:
    """(effective, permitted, inheritable) of this thread, as 64-bit masks."""
    data = char_array(bytes(24))    # 2 x struct {u32 effective, permitted, inheritable}
    _check(_capget(_cap_header(), data), "capget")
    raw = bytes(data)
    words = [int.from_bytes(raw[i:i + 4], sys.byteorder) for i in range(0, 24, 4)]
    return tuple(words[k] | (words[3 + k] << 32) for k in range(3))


def capset(effective: int, permitted: int, inheritable: int) -> None:
    data = b"".join(((v >> (32 * i)) & 0xFFFFFFFF).to_bytes(4, sys.byteorder)
                    for i in range(2) for v in (effective, permitted, inheritable))
    _check(_capset(_cap_header(), char_array(data)), "capset")


def setgroups_deny(pid) -> None:
    """Write 'deny' to /proc/PID/setgroups (needed before an unprivileged gid_map)."""
    with open(f"/proc/{pid}/setgroups", "w") as f:
        f.write("deny")


# --- by file descriptor: openat2 and the new mount API (same numbers on x86_64 and aarch64) --
_SYS_OPENAT2 = 437
_SYS_OPEN_TREE = 428
_SYS_MOVE_MOUNT = 429
_SYS_MOUNT_SETATTR = 442

RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
OPEN_TREE_CLONE = 1
MOVE_MOUNT_F_EMPTY_PATH = 0x04
MOVE_MOUNT_T_EMPTY_PATH = 0x40
MOUNT_ATTR_RDONLY = 0x01
MOUNT_ATTR_NOSUID = 0x02
MOUNT_ATTR_NODEV = 0x04
MOUNT_ATTR_NOEXEC = 0x08
MOUNT_ATTR__ATIME = 0x70
MOUNT_ATTR_NOATIME = 0x10
MOUNT_ATTR_STRICTATIME = 0x20
MOUNT_ATTR_NODIRATIME = 0x80


def openat2(dirfd: int, path, flags: int, resolve: int, mode: int = 0) -> int:
    """openat2(2); OSError(ENOSYS) on kernels before 5.6."""
    how = char_array(_u64s(flags, mode, resolve))         # struct open_how
    ret = syscall(_SYS_OPENAT2, dirfd, _b(path), how, 24)
    return _check(ret, f"openat2 {os.fsdecode(_b(path))}")


def open_tree(dirfd: int, path, flags: int) -> int:
    """open_tree(2) (5.2): with OPEN_TREE_CLONE, a detached copy of the mount at path."""
    ret = syscall(_SYS_OPEN_TREE, dirfd, _b(path), flags)
    return _check(ret, f"open_tree {os.fsdecode(_b(path))}")


def mount_setattr(fd: int, attr_set: int, attr_clr: int = 0, propagation: int = 0,
                  recursive: bool = False) -> None:
    """mount_setattr(2) (5.12) on the mount (tree) behind `fd` (AT_EMPTY_PATH)."""
    attr = char_array(_u64s(attr_set, attr_clr, propagation, 0))     # struct mount_attr
    ret = syscall(_SYS_MOUNT_SETATTR, fd, b"", AT_EMPTY_PATH | (AT_RECURSIVE if recursive
                                                                  else 0), attr, 32)
    _check(ret, f"mount_setattr(set 0x{attr_set:x}, clear 0x{attr_clr:x})")


def move_mount(from_fd: int, to_fd: int) -> None:
    """move_mount(2) (5.2): attach the detached mount `from_fd` on the directory or file
    `to_fd` is open on (both by fd: no path is walked)."""
    ret = syscall(_SYS_MOVE_MOUNT, from_fd, b"", to_fd, b"",
                  MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH)
    _check(ret, "move_mount")
