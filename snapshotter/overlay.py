"""Kernel overlayfs inside a user namespace, and the checks that pick a storage driver.

The `overlay` driver mounts overlayfs (kernel >= 5.11, option `userxattr`) with the read-only
FUSE merge of the image layers as its lowerdir: image data is still read lazily from the
mmap'd blobs, while every write goes to the upper dir at kernel speed. Mounting needs
CAP_SYS_ADMIN in the user namespace owning the current mount namespace — i.e. call
`mount_overlay` from inside the container's user+mount namespace (the shim does).
"""
from __future__ import annotations

import errno
import os
from collections import namedtuple
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import Sequence, Tuple

from .errors import MountError

MS_RDONLY = 1
MNT_DETACH = 2


def _libc():
    import ctypes     # not at import time: the CLI imports this module to pick a driver
    return ctypes.CDLL(None, use_errno=True)


def _errno() -> int:
    import ctypes
    return ctypes.get_errno()


def overlay_options(lowerdirs: Sequence[str], upperdir: str, workdir: str) -> Tuple[str, ...]:
    """Mount options (lowerdirs listed top first, as overlayfs wants)."""
    return (f"lowerdir={':'.join(lowerdirs)}", f"upperdir={upperdir}", f"workdir={workdir}",
            "userxattr")


def mount_overlay(target: str, options: Sequence[str]) -> None:
    data = ",".join(options).encode()
    if _libc().mount(b"overlay", str(target).encode(), b"overlay", 0, data) != 0:
        err = _errno()
        hint = ("run it inside a user+mount namespace (CAP_SYS_ADMIN there)" if err == errno.EPERM
                else "needs Linux >= 5.11 for overlayfs in a user namespace; use "
                     "--storage-driver fuse")
        raise MountError(f"overlay mount on {target} failed: {os.strerror(err)}: {hint}")


def umount(target: str) -> None:
    if _libc().umount2(str(target).encode(), MNT_DETACH) != 0:
        err = _errno()
        if err not in (errno.EINVAL, errno.ENOENT):
            raise MountError(f"cannot unmount {target}: {os.strerror(err)}")


def kernel_version() -> Tuple[int, int]:
    rel = os.uname().release.split("-")[0].split(".")
    try:
        return int(rel[0]), int(rel[1])
    except (IndexError, ValueError):
        return 0, 0


def _read_int(path: str, default: int) -> int:
    try:
        return int(Path(path).read_text().strip())
    except (OSError, ValueError):
        return default


def userns_available() -> Tuple[bool, str]:
    if _read_int("/proc/sys/user/max_user_namespaces", 1) == 0:
        return False, "user namespaces are disabled (user.max_user_namespaces = 0)"
    if _read_int("/proc/sys/kernel/unprivileged_userns_clone", 1) == 0:
        return False, "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone=0)"
    if _read_int("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", 0) == 1:
        return False, "AppArmor restricts unprivileged user namespaces"
    return True, ""


def fuse_available() -> Tuple[bool, str]:
    """Can this user serve a writable FUSE mount (fusepy/mfusepy over libfuse)?"""
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        return False, "/dev/fuse is missing or not read-writable for this user"
    from .fuse_binding import available
    why = available()
    return (not why), why


# where distributions put libfuse3's soname: finding it there spares the CLI loading ctypes
# and the library just to pick a driver (the FUSE server loads it, and says so if it can't)
_LIBFUSE3_FILES = tuple(f"{d}/libfuse3.so.3" for d in (
    "/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
    "/lib/aarch64-linux-gnu", "/usr/lib64", "/lib64", "/usr/lib", "/usr/local/lib"))


def readonly_fuse_available() -> Tuple[bool, str]:
    """Can this user serve the read-only layer view (libfuse3 low-level, else fusepy)?"""
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        return False, "/dev/fuse is missing or not read-writable for this user"
    if any(os.path.exists(p) for p in _LIBFUSE3_FILES):
        return True, "libfuse3"
    from .fuse_ll3 import load_libfuse3
    if load_libfuse3() is not None:
        return True, "libfuse3"
    ok, why = fuse_available()
    return ok, ("fusepy" if ok else why)


class DriverChoice(namedtuple("DriverChoice", "driver reason")):
    """driver: "overlay" | "fuse" | "vfs"; reason: why, for `info`. (A named tuple, not a
    dataclass: every CLI start makes these classes, and dataclasses costs ~0.5 ms each.)"""
    __slots__ = ()


def choose_driver(requested: str = "auto") -> DriverChoice:
    """Which storage driver to use here, and why (for `pydocklite info`)."""
    ro_ok, ro_how = readonly_fuse_available()
    ns_ok, ns_why = userns_available()
    major, minor = kernel_version()
    overlay_ok = (major, minor) >= (5, 11) and ns_ok
    if requested in ("auto", "overlay") and ro_ok and overlay_ok:
        fuse_ok, fuse_why = True, ""     # not needed: spare loading fusepy and libfuse2
    else:
        fuse_ok, fuse_why = fuse_available()
    if requested == "overlay":
        if not overlay_ok:
            raise MountError(f"storage driver overlay is not usable here: "
                             f"{ns_why or f'kernel {major}.{minor} < 5.11'}")
        if not ro_ok:
            raise MountError(f"storage driver overlay needs FUSE for its lower layers: {ro_how}")
        return DriverChoice("overlay", f"requested (layers served by {ro_how})")
    if requested == "fuse":
        if not fuse_ok:
            raise MountError(f"storage driver fuse is not usable here: {fuse_why}")
        return DriverChoice("fuse", "requested")
    if requested == "vfs":
        return DriverChoice("vfs", "requested")
    if requested != "auto":
        raise MountError(f"unknown storage driver {requested!r}: use auto, overlay, fuse or vfs")
    if ro_ok and overlay_ok:
        return DriverChoice("overlay", f"kernel {major}.{minor} mounts overlayfs in a user "
                                       f"namespace; image layers served read-only by FUSE "
                                       f"({ro_how})")
    if fuse_ok:
        why = ns_why or f"kernel {major}.{minor} is older than 5.11"
        return DriverChoice("fuse", f"FUSE overlay over the layers (no kernel overlay: {why})")
    return DriverChoice("vfs", f"plain copy of the layers per container (no FUSE: {fuse_why})")
