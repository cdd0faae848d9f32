"""Carry out the mount steps of a Plan inside the container's mount namespace.

Mount targets come from the image and the spec, so they are resolved with `secure_join`:
component by component, every symlink read and re-rooted at the rootfs, never followed by the
kernel on the host side. A link `etc -> /..//../tmp` in an image therefore lands inside the
rootfs, not in the host's /tmp.
"""
from __future__ import annotations

import errno
import os
import stat
import sys

from . import plan as pl
from . import syscalls as sc

_MAX_LINKS = 40


def secure_join(root: str, unsafe: str) -> str:
    """ROOT/UNSAFE with every symlink in UNSAFE resolved as if ROOT were '/'.

    Components that don't exist yet are appended as they are (nothing to follow).
    """
    root = root.rstrip("/") or "/"
    parts = [p for p in unsafe.split("/") if p]
    done = []
    links = 0
    while parts:
        comp = parts.pop(0)
        if comp == ".":
            continue
        if comp == "..":
            if done:
                done.pop()
            continue
        cand = os.path.join(root, *done, comp)
        try:
            st = os.lstat(cand)
        except FileNotFoundError:
            # keep walking: a later ".." may climb back into existing (linked) components
            done.append(comp)
            continue
        except NotADirectoryError:
            raise OSError(errno.ENOTDIR, f"{unsafe}: a component is not a directory") from None
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > _MAX_LINKS:
                raise OSError(errno.ELOOP, f"{unsafe}: too many levels of symbolic links")
            target = os.readlink(cand)
            if target.startswith("/"):
                done = []
            parts = [p for p in target.split("/") if p] + parts
            continue
        done.append(comp)
    return os.path.join(root, *done) if done else root


def _inside(root: str, path: str) -> bool:
    real = os.path.realpath(path)
    root = os.path.realpath(root)
    return real == root or real.startswith(root.rstrip("/") + "/")


def ensure_target(root: str, dest: str, is_dir: bool) -> str:
    """Resolve dest in root and create it (dir or empty file) if missing; returns the path."""
    path = secure_join(root, dest)
    if not os.path.lexists(path):
        parent = os.path.dirname(path)
        os.makedirs(parent, exist_ok=True)
        if is_dir:
            os.mkdir(path, 0o755)
        else:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW
                             | os.O_CLOEXEC, 0o644))
    if not _inside(root, path):
        raise OSError(errno.EXDEV, f"mount target {dest} resolves outside the rootfs")
    return path


_ST_TO_MS = ((os.ST_RDONLY, sc.MS_RDONLY), (os.ST_NOSUID, sc.MS_NOSUID),
             (os.ST_NODEV, sc.MS_NODEV), (os.ST_NOEXEC, sc.MS_NOEXEC),
             (os.ST_NOATIME, sc.MS_NOATIME), (os.ST_NODIRATIME, sc.MS_NODIRATIME),
             (getattr(os, "ST_RELATIME", 4096), sc.MS_RELATIME))
_ATIME = sc.MS_NOATIME | sc.MS_RELATIME | sc.MS_STRICTATIME | sc.MS_NODIRATIME


def _current_flags(path: str) -> int:
    f = os.statvfs(path).f_flag
    return sum(ms for st, ms in _ST_TO_MS if f & st)


def remount_bind(path: str, flags: int, warn=None) -> None:
    """Bind-remount with flags, keeping the flags the kernel locks in a user namespace.

    The atime flags of a mount inherited from the host are locked in a user namespace too:
    when changing them is refused, the rest is applied and the atime kept (told to warn)."""
    cur = _current_flags(path)
    keep = cur & (sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC | sc.MS_RDONLY)
    if not flags & _ATIME:
        keep |= cur & _ATIME
    try:
        sc.mount(None, path, None, sc.MS_BIND | sc.MS_REMOUNT | flags | keep)
    except PermissionError:
        if not flags & _ATIME or warn is None:
            raise
        # no atime flag in a remount keeps the mount's own
        sc.mount(None, path, None, sc.MS_BIND | sc.MS_REMOUNT | (flags & ~_ATIME) | keep)
        warn(f"{path}: the atime option can't be changed on a mount from the host here "
             f"(locked in a user namespace): its own atime setting is kept")


def _do_mount(rootfs: str, bundle: str, step, warn) -> None:
    if step.fstype == "bind":
        src = step.source if step.source.startswith("/") else os.path.join(bundle, step.source)
        is_dir = os.path.isdir(src)
        if not os.path.exists(src):
            raise OSError(errno.ENOENT, f"bind mount source {src} for {step.dest} does not exist")
        target = ensure_target(rootfs, step.dest, is_dir)
        sc.mount(src, target, None, step.flags | sc.MS_BIND)
        if step.remount_flags:
            remount_bind(target, step.remount_flags & ~(sc.MS_BIND | sc.MS_REMOUNT), warn)
    elif step.fstype in ("cgroup", "cgroup2"):
        target = ensure_target(rootfs, step.dest, True)
        if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):     # pure cgroup v2 host
            sc.mount("cgroup2", target, "cgroup2", step.flags)
        else:
            cgroup_v1_tree(target, step.flags & ~(sc.MS_BIND | sc.MS_REC | sc.MS_REMOUNT))
    else:
        target = ensure_target(rootfs, step.dest, True)
        try:
            sc.mount(step.source or step.fstype, target, step.fstype, step.flags, step.data)
        except OSError as e:
            if step.fstype != "sysfs" or e.errno not in (errno.EPERM, errno.EACCES):
                raise
            warn(f"sysfs can't be mounted here ({e.strerror}): bind-mounting the host's /sys "
                 f"read-only on {step.dest}")
            sc.mount("/sys", target, None, sc.MS_BIND | sc.MS_REC)
            remount_bind(target, sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)
    if step.propagation:
        sc.mount(None, target, None, step.propagation)


def cgroup_v1_tree(target: str, flags: int) -> None:
    """A v1/hybrid host's cgroup tree as the container should see it (as runc shows it): a
    tmpfs with, for each hierarchy, a bind mount of the container's own cgroup in it, so that
    /sys/fs/cgroup/memory/memory.limit_in_bytes is the container's limit. The init is in its
    cgroups already (the parent moved the intermediate process there before the fork)."""
    own = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            parts = line.rstrip("\n").split(":", 2)
            if len(parts) == 3:
                own[frozenset(c for c in parts[1].split(",") if c)] = parts[2]
    hierarchies = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            lf, rf = left.split(), right.split()
            if len(rf) < 3 or rf[0] not in ("cgroup", "cgroup2") or \
                    not lf[4].startswith("/sys/fs/cgroup/"):
                continue
            key = frozenset() if rf[0] == "cgroup2" else \
                frozenset(o for o in rf[2].split(",") if o not in ("rw", "ro") and
                          "=" not in o or o.startswith("name="))
            path = own.get(key)
            if path is not None and path.startswith(lf[3].rstrip("/") or "/"):
                rel = path[len(lf[3].rstrip("/")):].lstrip("/")
                hierarchies.append((lf[4], os.path.join(lf[4], rel)))
    sc.mount("tmpfs", target, "tmpfs", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC, "mode=755")
    for mountpoint, src in hierarchies:
        name = os.path.basename(mountpoint)
        if "/" in name or name in (".", ".."):
            continue
        dest = os.path.join(target, name)
        os.mkdir(dest, 0o755)
        sc.mount(src, dest, None, sc.MS_BIND)
        remount_bind(dest, flags | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)
    if flags & sc.MS_RDONLY:
        sc.mount(None, target, None, sc.MS_REMOUNT | sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV
                 | sc.MS_NOEXEC)


_DEV_TYPES = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}


def _make_device(rootfs: str, step, warn) -> None:
    """mknod a linux.devices node (mode and owner as given); where the kernel refuses device
    nodes (a user namespace), bind-mount the host's node of the same path instead."""
    path = secure_join(rootfs, step.dest)
    if not _inside(rootfs, os.path.dirname(path)):
        raise OSError(errno.EXDEV, f"device {step.dest} resolves outside the rootfs")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.lexists(path):
        if os.path.isdir(path) and not os.path.islink(path):
            raise OSError(errno.EISDIR, f"linux.devices {step.dest}: a directory is there")
        os.unlink(path)
    kind = _DEV_TYPES[step.kind]
    dev = os.makedev(step.major, step.minor) if kind != stat.S_IFIFO else 0
    try:
        os.mknod(path, kind | step.mode, dev)
    except PermissionError:
        if kind == stat.S_IFIFO:
            raise
        try:
            host = os.stat(step.dest)
        except OSError:
            warn(f"device {step.dest}: device nodes can't be created here (user namespace) and "
                 f"the host has none at that path: skipped")
            return
        if stat.S_IFMT(host.st_mode) != kind or host.st_rdev != dev:
            warn(f"device {step.dest}: device nodes can't be created here (user namespace); "
                 f"the host's node at that path is another device: skipped")
            return
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o644))
        sc.mount(step.dest, path, None, sc.MS_BIND)
        return
    os.chmod(path, step.mode)      # mknod's mode went through the umask
    if step.uid is not None or step.gid is not None:
        os.lchown(path, -1 if step.uid is None else step.uid,
                  -1 if step.gid is None else step.gid)


def _pivot(rootfs: str) -> None:
    os.chdir(rootfs)
    sc.pivot_root(".", ".")
    sc.mount(None, ".", None, sc.MS_SLAVE | sc.MS_REC)
    sc.umount2(".", sc.MNT_DETACH)
    os.chdir("/")


def run_rootfs_steps(steps, bundle: str, warn) -> None:
    """Execute the pre-pivot_root steps (propagation, rootfs bind, mounts, /dev, pivot)."""
    rootfs = None
    for step in steps:
        t = type(step)
        if t is pl.Propagation:
            sc.mount(None, step.target, None, step.flags)
        elif t is pl.BindRootfs:
            rootfs = step.path
            sc.mount(rootfs, rootfs, None, sc.MS_BIND | sc.MS_REC)
        elif t is pl.MountStep:
            _do_mount(rootfs, bundle, step, warn)
        elif t is pl.Device:
            if not os.path.exists(step.host_path):
                warn(f"device {step.host_path} does not exist on the host: skipped")
                continue
            target = ensure_target(rootfs, step.dest, False)
            sc.mount(step.host_path, target, None, sc.MS_BIND)
        elif t is pl.MakeDevice:
            _make_device(rootfs, step, warn)
        elif t is pl.Symlink:
            link = secure_join(rootfs, step.link)
            if not os.path.lexists(link):
                os.symlink(step.target, link)
        elif t is pl.PivotRoot:
            _pivot(step.rootfs)
        elif t is pl.Chroot:
            os.chroot(step.rootfs)
            os.chdir("/")
        else:
            raise TypeError(f"unknown rootfs step {step!r}")


def _loopback_up() -> None:
    """SIOCGIFFLAGS / SIOCSIFFLAGS |= IFF_UP on lo, through syscalls (no socket, fcntl or
    struct module to load into the init for one ioctl). struct ifreq: the name in 16 bytes,
    then the union (short ifr_flags first), 40 bytes in all."""
    fd = sc.socket(2, 2)                # AF_INET, SOCK_DGRAM
    try:
        req = sc.char_array(b"lo".ljust(40, b"\0"))
        sc.ioctl(fd, 0x8913, req)                              # SIOCGIFFLAGS
        flags = int.from_bytes(bytes(req)[16:18], sys.byteorder) | 1     # IFF_UP
        sc.ioctl(fd, 0x8914, sc.char_array(b"lo".ljust(16, b"\0") +     # SIOCSIFFLAGS
                                            flags.to_bytes(2, sys.byteorder) + bytes(22)))
    finally:
        os.close(fd)


def _mask(path: str) -> None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        sc.mount("tmpfs", path, "tmpfs", sc.MS_RDONLY)
    else:
        sc.mount("/dev/null", path, None, sc.MS_BIND)


def _readonly(path: str) -> None:
    if not os.path.exists(path):
        return
    sc.mount(path, path, None, sc.MS_BIND | sc.MS_REC)
    remount_bind(path, sc.MS_RDONLY)


def run_container_steps(steps, warn) -> None:
    """Execute the post-pivot_root steps (paths are container paths now)."""
    for step in steps:
        t = type(step)
        if t is pl.LoopbackUp:
            try:
                _loopback_up()
            except OSError as e:
                warn(f"could not bring up lo: {e}")
        elif t is pl.Sysctl:
            path = "/proc/sys/" + step.key.replace(".", "/")
            try:
                with open(path, "w") as f:
                    f.write(step.value)
            except OSError as e:
                raise OSError(e.errno, f"sysctl {step.key}={step.value}: {e.strerror}") from None
        elif t is pl.MaskPath:
            _mask(step.path)
        elif t is pl.ReadonlyPath:
            _readonly(step.path)
        elif t is pl.RemountRootReadonly:
            remount_bind("/", sc.MS_RDONLY)
        elif t is pl.Propagation:
            sc.mount(None, step.target, None, step.flags)
        elif t is pl.Hostname:
            sc.sethostname(step.name)
        elif t is pl.Domainname:
            sc.setdomainname(step.name)
        else:
            raise TypeError(f"unknown container step {step!r}")
