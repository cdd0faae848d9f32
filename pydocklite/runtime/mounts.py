"""Carry out the mount steps of a Plan inside the container's mount namespace.

Mount targets come from the image, the spec and whatever the container (or another one
sharing a volume) puts in the rootfs, so they are never followed as strings on the host side:
each is resolved inside the rootfs by file descriptors (inroot.py: openat2 RESOLVE_IN_ROOT, or
an O_NOFOLLOW walk), created there if missing, and the mount then lands on that very fd:
move_mount(2) of a detached tree for bind mounts, with their flags (ro, nosuid...) set on the
tree before it is attached (open_tree + mount_setattr, Linux 5.12+), else mount(2) on
/proc/self/fd/N and a remount of the new mount found again and checked to be the one made.
A link `etc -> /..//../tmp` in an image therefore lands inside the rootfs, and a symlink
swapped in mid-way by a racing container cannot redirect a mount or the flags of one
(runc's CVE-2021-30465).
"""
from __future__ import annotations

import errno
import os
import stat
import sys

from . import inroot
from . import plan as pl
from . import syscalls as sc
from .bind_mount import bind, remount_bind


def _target(root_fd: int, dest: str, is_dir: bool) -> int:
    """O_PATH fd of mount target `dest` in the rootfs, created if missing; never the rootfs
    itself (a symlink to "/" would put the mount over the whole container)."""
    try:
        fd = inroot.ensure(root_fd, dest, is_dir)
    except OSError as e:
        raise OSError(e.errno, f"mount target {dest} in the rootfs: {e.strerror}") from None
    if inroot.clean(dest) and inroot.same_file(fd, root_fd):
        os.close(fd)
        raise OSError(errno.EXDEV, f"mount target {dest} resolves to the root of the "
                                   "container (a symlink to /?): refused")
    return fd


def _do_mount(root_fd: int, bundle: str, step, warn) -> None:
    if step.fstype == "bind":
        src = step.source if step.source.startswith("/") else os.path.join(bundle, step.source)
        if not os.path.exists(src):
            raise OSError(errno.ENOENT, f"bind mount source {src} for {step.dest} does not exist")
        target = _target(root_fd, step.dest, os.path.isdir(src))
        try:
            bind(root_fd, src, step.dest, target, bool(step.flags & sc.MS_REC),
                 step.remount_flags & ~(sc.MS_BIND | sc.MS_REMOUNT), warn, step.propagation)
        finally:
            os.close(target)
        return
    target = _target(root_fd, step.dest, True)
    try:
        if step.fstype in ("cgroup", "cgroup2") and \
                not os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
            _cgroup_v1_tree(root_fd, step.dest, target,
                            step.flags & ~(sc.MS_BIND | sc.MS_REC | sc.MS_REMOUNT), warn)
            return
        fstype = "cgroup2" if step.fstype == "cgroup" else step.fstype
        try:
            sc.mount(step.source or fstype, inroot.fd_path(target), fstype, step.flags,
                     step.data)
        except OSError as e:
            if step.fstype != "sysfs" or e.errno not in (errno.EPERM, errno.EACCES):
                raise OSError(e.errno, f"mount {fstype} on {step.dest}: {e.strerror}") from None
            warn(f"sysfs can't be mounted here ({e.strerror}): bind-mounting the host's /sys "
                 f"read-only on {step.dest}")
            bind(root_fd, "/sys", step.dest, target, True,
                 sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC, warn,
                 step.propagation)
            return
        if step.propagation:
            # the new file system is on the name now: found again by it (propagation only)
            top = inroot.resolve(root_fd, step.dest)
            try:
                sc.mount(None, inroot.fd_path(top), None, step.propagation)
            finally:
                os.close(top)
    finally:
        os.close(target)


def _cgroup_v1_tree(root_fd: int, dest: str, target: int, flags: int, warn) -> None:
    """A v1/hybrid host's cgroup tree as the container should see it (as runc shows it): a
    tmpfs with, for each hierarchy, a bind mount of the container's own cgroup in it, so that
    /sys/fs/cgroup/memory/memory.limit_in_bytes is the container's limit. The init is in its
    cgroups already (the parent moved the intermediate process there before the fork).
    The tmpfs goes on the target's fd; its own root is found again by name and must be a new
    mount on top of the target before anything is made in it."""
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
    sc.mount("tmpfs", inroot.fd_path(target), "tmpfs", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC,
             "mode=755")
    top = inroot.resolve(root_fd, dest)
    try:
        if inroot.mount_id(top) == inroot.mount_id(target):
            raise OSError(errno.EXDEV, f"mount target {dest} changed while it was being "
                                       "mounted (a symlink race?): refused")
        for mountpoint, src in hierarchies:
            name = os.path.basename(mountpoint)
            if "/" in name or name in (".", ".."):
                continue
            os.mkdir(name, 0o755, dir_fd=top)
            sub = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=top)
            try:
                bind(root_fd, src, f"{dest}/{name}", sub, False,
                     flags | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC, warn)
            finally:
                os.close(sub)
        if flags & sc.MS_RDONLY:
            sc.mount(None, inroot.fd_path(top), None, sc.MS_REMOUNT | sc.MS_RDONLY
                     | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)
    finally:
        os.close(top)


_DEV_TYPES = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}


def _parent(root_fd: int, path: str, what: str):
    """(O_PATH fd of the directory holding `path`, its last name), inside the rootfs."""
    rel = inroot.clean(path)
    if not rel:
        raise OSError(errno.EINVAL, f"{what} {path}: not a file name")
    head, _, name = rel.rpartition("/")
    return inroot.ensure(root_fd, head, True), name


def _make_device(root_fd: int, step, warn) -> None:
    """mknod a linux.devices node (mode and owner as given); where the kernel refuses device
    nodes (a user namespace), bind-mount the host's node of the same path instead."""
    parent, name = _parent(root_fd, step.dest, "device")
    try:
        try:
            st = os.lstat(name, dir_fd=parent)
        except FileNotFoundError:
            st = None
        if st is not None:
            if stat.S_ISDIR(st.st_mode):
                raise OSError(errno.EISDIR, f"linux.devices {step.dest}: a directory is there")
            os.unlink(name, dir_fd=parent)
        kind = _DEV_TYPES[step.kind]
        dev = os.makedev(step.major, step.minor) if kind != stat.S_IFIFO else 0
        try:
            os.mknod(name, kind | step.mode, dev, dir_fd=parent)
        except PermissionError:
            if kind == stat.S_IFIFO:
                raise
            try:
                host = os.stat(step.dest)
            except OSError:
                warn(f"device {step.dest}: device nodes can't be created here (user namespace) "
                     f"and the host has none at that path: skipped")
                return
            if stat.S_IFMT(host.st_mode) != kind or host.st_rdev != dev:
                warn(f"device {step.dest}: device nodes can't be created here (user namespace); "
                     f"the host's node at that path is another device: skipped")
                return
            os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW
                             | os.O_CLOEXEC, 0o644, dir_fd=parent))
            target = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
            try:
                bind(root_fd, step.dest, step.dest, target, False, 0, warn)
            finally:
                os.close(target)
            return
        node = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        try:
            os.chmod(inroot.fd_path(node), step.mode)      # mknod's mode went through the umask
            if step.uid is not None or step.gid is not None:
                os.chown(inroot.fd_path(node), -1 if step.uid is None else step.uid,
                         -1 if step.gid is None else step.gid)
        finally:
            os.close(node)
    finally:
        os.close(parent)


def _symlink(root_fd: int, step) -> None:
    parent, name = _parent(root_fd, step.link, "symlink")
    try:
        try:
            os.symlink(step.target, name, dir_fd=parent)
        except FileExistsError:
            pass
    finally:
        os.close(parent)


def _pivot(rootfs: str) -> None:
    os.chdir(rootfs)
    sc.pivot_root(".", ".")
    sc.mount(None, ".", None, sc.MS_SLAVE | sc.MS_REC)
    sc.umount2(".", sc.MNT_DETACH)
    os.chdir("/")


def run_rootfs_steps(steps, bundle: str, warn) -> None:
    """Execute the pre-pivot_root steps (propagation, rootfs bind, mounts, /dev, pivot)."""
    root_fd = None
    try:
        for step in steps:
            t = type(step)
            if t is pl.Propagation:
                sc.mount(None, step.target, None, step.flags)
            elif t is pl.BindRootfs:
                sc.mount(step.path, step.path, None, sc.MS_BIND | sc.MS_REC)
                root_fd = inroot.open_root(step.path)       # the bind just made
            elif t is pl.MountStep:
                _do_mount(root_fd, bundle, step, warn)
            elif t is pl.Device:
                if not os.path.exists(step.host_path):
                    warn(f"device {step.host_path} does not exist on the host: skipped")
                    continue
                target = _target(root_fd, step.dest, False)
                try:
                    bind(root_fd, step.host_path, step.dest, target, False, 0, warn)
                finally:
                    os.close(target)
            elif t is pl.MakeDevice:
                _make_device(root_fd, step, warn)
            elif t is pl.Symlink:
                _symlink(root_fd, step)
            elif t is pl.PivotRoot:
                _pivot(step.rootfs)
            elif t is pl.Chroot:
                os.chroot(step.rootfs)
                os.chdir("/")
            else:
                raise TypeError(f"unknown rootfs step {step!r}")
    finally:
        if root_fd is not None:
            os.close(root_fd)


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


def _mask(root_fd: int, path: str) -> None:
    try:
        target = inroot.resolve(root_fd, path)
    except (FileNotFoundError, NotADirectoryError):
        return
    try:
        if stat.S_ISDIR(os.fstat(target).st_mode):
            sc.mount("tmpfs", inroot.fd_path(target), "tmpfs", sc.MS_RDONLY)
        else:
            bind(root_fd, "/dev/null", path, target, False, 0, None)
    finally:
        os.close(target)


def _readonly(root_fd: int, path: str, warn) -> None:
    try:
        target = inroot.resolve(root_fd, path)
    except (FileNotFoundError, NotADirectoryError):
        return
    try:        # a read-only copy of the mount that is there, put over it
        bind(root_fd, target, path, target, True, sc.MS_RDONLY, warn)
    finally:
        os.close(target)


def run_container_steps(steps, warn) -> None:
    """Execute the post-pivot_root steps (paths are container paths now, still resolved by
    fds: a volume is shared with other containers)."""
    root_fd = inroot.open_root("/")
    try:
        _container_steps(root_fd, steps, warn)
    finally:
        os.close(root_fd)


def _container_steps(root_fd: int, steps, warn) -> None:
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
            _mask(root_fd, step.path)
        elif t is pl.ReadonlyPath:
            _readonly(root_fd, step.path, warn)
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
