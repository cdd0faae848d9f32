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
