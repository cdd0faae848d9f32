"""runtime/syscalls.py's C calls (through _ctypes, without the ctypes package): each wrapper
against what the kernel reports by other means."""
from __future__ import annotations

import os
import resource
import subprocess
import sys

import pytest

from pydocklite.runtime import syscalls as sc


def test_ctypes_package_is_not_imported():
    code = ("import sys; from pydocklite.runtime import syscalls, process, plan, security; "
            "print('ctypes' in sys.modules)")
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(
                             os.path.abspath(__file__)))), check=True).stdout
    assert out.strip() == "False"


def test_rlimits_read_and_written():
    want = resource.getrlimit(resource.RLIMIT_NOFILE)
    inf = (1 << 64) - 1
    assert sc.getrlimit(resource.RLIMIT_NOFILE) == tuple(
        inf if v == resource.RLIM_INFINITY else v for v in want)
    pid = os.fork()
    if pid == 0:
        try:
            sc.setrlimit(resource.RLIMIT_NOFILE, 100, want[1])
            os._exit(0 if resource.getrlimit(resource.RLIMIT_NOFILE) == (100, want[1]) else 3)
        finally:
            os._exit(2)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


def test_capabilities_and_prctl():
    eff, perm, inh = sc.capget()
    status = dict(line.split(":", 1) for line in open("/proc/self/status"))
    assert eff == int(status["CapEff"], 16) and perm == int(status["CapPrm"], 16)
    assert inh == int(status["CapInh"], 16)
    sc.capset(eff, perm, inh)          # the same sets: allowed to anyone
    assert sc.capget() == (eff, perm, inh)
    assert sc.prctl(sc.PR_CAPBSET_READ, 0) in (0, 1)
    pid = os.fork()
    if pid == 0:
        try:
            name = sc.char_array(b"pdl-ffi-test\0")
            sc.prctl(sc.PR_SET_NAME, sc.address_of(name))
            with open("/proc/self/comm") as f:
                os._exit(0 if f.read().strip() == "pdl-ffi-test" else 3)
        finally:
            os._exit(2)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


def test_errors_name_the_call():
    with pytest.raises(OSError, match=r"mount tmpfs none on /no/such/dir") as e:
        sc.mount("none", "/no/such/dir", "tmpfs", 0, "size=1m")
    assert e.value.errno in (1, 2)       # EPERM unprivileged, ENOENT as root
    with pytest.raises(OSError, match=r"setns\(fd 9999\)"):
        sc.setns(9999, 0)
    with pytest.raises(OSError, match="pivot_root /no/such"):
        sc.pivot_root("/no/such", "/no/such/old")


@pytest.mark.skipif(os.geteuid() != 0, reason="a uts namespace needs CAP_SYS_ADMIN")
def test_unshare_and_hostname():
    pid = os.fork()
    if pid == 0:
        try:
            sc.unshare(sc.CLONE_NEWUTS)
            sc.sethostname("pdl-ffi")
            sc.setdomainname("pdl-dom")
            os._exit(0 if os.uname().nodename == "pdl-ffi" else 3)
        finally:
            os._exit(2)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


def test_openat2_resolves_in_root(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "f").write_text("inside")
    (tmp_path / "up").symlink_to("/../../etc")       # absolute: re-rooted at tmp_path
    root = os.open(tmp_path, os.O_PATH | os.O_DIRECTORY)
    try:
        fd = sc.openat2(root, "up/f", os.O_RDONLY | os.O_CLOEXEC,
                        sc.RESOLVE_IN_ROOT | sc.RESOLVE_NO_MAGICLINKS)
        try:
            assert os.read(fd, 100) == b"inside"
        finally:
            os.close(fd)
        with pytest.raises(OSError, match="openat2 nothing"):
            sc.openat2(root, "nothing", os.O_RDONLY, sc.RESOLVE_IN_ROOT)
    finally:
        os.close(root)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts need CAP_SYS_ADMIN")
def test_a_bind_mount_by_fd(tmp_path):
    """open_tree + mount_setattr + move_mount (bind_mount.bind's calls), in a private mount
    namespace: the copy is read-only from the start."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f").write_text("x")
    (tmp_path / "dst").mkdir()
    pid = os.fork()
    if pid == 0:
        try:
            sc.unshare(sc.CLONE_NEWNS)
            sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
            tree = sc.open_tree(-100, str(tmp_path / "src"), sc.OPEN_TREE_CLONE | os.O_CLOEXEC)
            sc.mount_setattr(tree, sc.MOUNT_ATTR_RDONLY)
            target = os.open(tmp_path / "dst", os.O_PATH | os.O_CLOEXEC)
            sc.move_mount(tree, target)
            ok = open(tmp_path / "dst" / "f").read() == "x"
            try:
                open(tmp_path / "dst" / "g", "w")
                ok = False
            except OSError as e:
                ok = ok and e.errno == 30            # EROFS
            os._exit(0 if ok else 3)
        finally:
            os._exit(2)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
