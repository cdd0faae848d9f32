"""pydocklite.runtime.seccomp: the compiler (checked with a BPF interpreter) and real filters.

The real checks run this file as a script (`--real`) in a fresh process, as root and as the
unprivileged test user (who can install filters only with no_new_privs, which install() sets).
"""
from __future__ import annotations

import ctypes
import errno
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pydocklite.runtime import seccomp, seccomp_bpf as B, seccomp_default  # noqa: E402
from pydocklite.runtime.syscall_table import AARCH64, I386, TABLES, X86_64  # noqa: E402

CLONE_NEWUSER = 0x10000000
CLONE_NEWNS = 0x00020000
THREAD_FLAGS = 0x3D0F00       # what glibc passes for pthread_create
EPERM = B.RET_ERRNO | errno.EPERM
ENOSYS = B.RET_ERRNO | errno.ENOSYS


# ---------------------------------------------------------------- real filters (child process)

def _in_child(fn) -> tuple:
    """Fork; the child installs a filter via fn and reports a JSON dict through a pipe."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            data = json.dumps(fn()).encode()
        except BaseException as e:  # noqa: BLE001
            data = json.dumps({"error": repr(e)}).encode()
        os.write(w, data)
        os._exit(0)
    os.close(w)
    chunks = []
    while True:
        c = os.read(r, 65536)
        if not c:
            break
        chunks.append(c)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    return status, (json.loads(b"".join(chunks)) if chunks else None)


def _err(fn) -> str:
    try:
        fn()
        return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))


def _default_filter_child() -> dict:
    libc = ctypes.CDLL(None, use_errno=True)

    def call(f, *a):
        def go():
            if f(*a) != 0:
                e = ctypes.get_errno()
                raise OSError(e, os.strerror(e))
        return go
    seccomp.install(seccomp.compile_filter(seccomp.default_profile()))
    out = {
        "unshare_user": _err(call(libc.unshare, CLONE_NEWUSER)),
        "unshare_ns": _err(call(libc.unshare, CLONE_NEWNS)),
        "mount": _err(call(libc.mount, b"none", b"/tmp", b"tmpfs", 0, None)),
        "keyctl": _err(call(libc.syscall, X86_64["keyctl"] if os.uname().machine == "x86_64"
                            else AARCH64["keyctl"], 0, 0, 0, 0)),
        "vsock": _err(lambda: socket.socket(40, socket.SOCK_STREAM)),
        "getpid": os.getpid() > 0,
    }
    path = f"/tmp/pdl-seccomp-{os.getpid()}"
    with open(path, "w") as f:
        f.write("hello")
    with open(path) as f:
        out["readback"] = f.read()
    os.unlink(path)
    seen = []
    t = threading.Thread(target=lambda: seen.append(threading.get_ident()))
    t.start()
    t.join()
    out["thread"] = len(seen) == 1
    out["subprocess"] = subprocess.run(["/bin/echo", "hi"], capture_output=True).stdout.decode()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.close()
    out["inet_socket"] = True
    return out


def _errno_ret_child() -> dict:
    prof = {"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42}]}
    seccomp.install(seccomp.compile_filter(prof))
    return {"getcwd": _err(os.getcwd), "getpid": os.getpid() > 0}


def _kill_child() -> dict:
    prof = {"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_KILL_PROCESS"}]}
    seccomp.install(seccomp.compile_filter(prof))
    os.getcwd()
    return {"survived": True}


def real_checks() -> dict:
    st1, default = _in_child(_default_filter_child)
    st2, errno_ret = _in_child(_errno_ret_child)
    st3, killed = _in_child(_kill_child)
    return {"uid": os.getuid(), "default": default, "errno_ret": errno_ret,
            "statuses": [st1, st2],
            "kill_signal": os.WTERMSIG(st3) if os.WIFSIGNALED(st3) else None, "killed": killed}


if __name__ == "__main__" and sys.argv[1:] == ["--real"]:
    print(json.dumps(real_checks()), flush=True)
    sys.exit(0)

import pytest  # noqa: E402

from tests.unpriv import make_user_dir, python_as_user  # noqa: E402


def _check_real(out: dict) -> None:
    d = out["default"]
    assert "error" not in d, d
    assert d["unshare_user"] == "EPERM" and d["unshare_ns"] == "EPERM", d
    assert d["mount"] == "EPERM" and d["keyctl"] == "EPERM" and d["vsock"] == "EPERM", d
    assert d["getpid"] and d["readback"] == "hello" and d["thread"], d
    assert d["subprocess"] == "hi\n" and d["inet_socket"], d
    assert out["errno_ret"] == {"getcwd": "ENOMSG", "getpid": True}, out
    assert out["statuses"] == [0, 0], out
    assert out["kill_signal"] == signal.SIGSYS and out["killed"] is None, out


@pytest.mark.skipif(seccomp.native_arch() not in TABLES, reason="no syscall table for this arch")
def test_real_filters_as_current_user():
    r = subprocess.run([sys.executable, str(Path(__file__)), "--real"], capture_output=True,
                       text=True, timeout=60, cwd=str(REPO))
    assert r.returncode == 0, r.stderr
    _check_real(json.loads(r.stdout.splitlines()[-1]))


def test_real_filters_as_unprivileged_user(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("switching to the test user needs root")
    home = make_user_dir(tmp_path / "home")
    r = python_as_user([str(Path(__file__)), "--real"], home, timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.splitlines()[-1])
    assert out["uid"] != 0
    _check_real(out)


# ---------------------------------------------------------------- compiler, via the interpreter

def run(bpf: bytes, name: str, args=(), arch: str = "x86_64") -> int:
    nr = TABLES[arch][name]
    return B.run(bpf, B.seccomp_data(nr, seccomp.AUDIT_ARCH[arch], args))


@pytest.fixture(scope="module")
def default_bpf():
    return seccomp.compile_filter(seccomp.default_profile(kernel="6.1.0"), arch="x86_64")


def test_default_profile_names_are_real_syscalls():
    prof = seccomp.default_profile(capabilities=list(seccomp_default.BY_CAPABILITY))
    known = set().union(*[set(t) for t in TABLES.values()])
    names = [n for sc in prof["syscalls"] for n in sc["names"]]
    assert not [n for n in names if n not in known]
    assert len(names) > 300


def test_default_allows_ordinary_and_refuses_dangerous(default_bpf):
    for name in ("read", "write", "openat", "close", "mmap", "getpid", "execve", "wait4",
                 "futex", "rt_sigaction", "epoll_wait", "socketpair", "fchmodat2", "chroot",
                 "ptrace", "getrandom", "exit_group", "uname"):
        assert run(default_bpf, name) == B.RET_ALLOW, name
    for name in ("unshare", "setns", "mount", "umount2", "pivot_root", "keyctl", "add_key",
                 "request_key", "kexec_load", "kexec_file_load", "bpf", "init_module",
                 "finit_module", "delete_module", "reboot", "swapon", "swapoff", "acct",
                 "settimeofday", "clock_settime", "perf_event_open", "open_by_handle_at",
                 "userfaultfd", "io_uring_setup", "iopl", "ioperm", "syslog", "vhangup",
                 "kcmp", "fsopen", "move_mount", "uselib", "_sysctl", "lookup_dcookie"):
        assert run(default_bpf, name) == EPERM, name


def test_default_argument_rules(default_bpf):
    assert run(default_bpf, "clone", [THREAD_FLAGS]) == B.RET_ALLOW
    assert run(default_bpf, "clone", [signal.SIGCHLD]) == B.RET_ALLOW
    assert run(default_bpf, "clone", [CLONE_NEWUSER | signal.SIGCHLD]) == EPERM
    assert run(default_bpf, "clone", [0x40000000]) == EPERM          # CLONE_NEWNET
    assert run(default_bpf, "clone3") == ENOSYS
    for p in (0, 8, 0x20000, 0x20008, 0xFFFFFFFF):
        assert run(default_bpf, "personality", [p]) == B.RET_ALLOW, hex(p)
    for p in (1, 0x0400000, 0x1_0000_0000):                            # e.g. READ_IMPLIES_EXEC
        assert run(default_bpf, "personality", [p]) == EPERM, hex(p)
    assert run(default_bpf, "socket", [socket.AF_INET]) == B.RET_ALLOW
    assert run(default_bpf, "socket", [40]) == EPERM


def test_default_arches(default_bpf):
    # x32 ABI numbers, foreign arches, unknown numbers
    assert B.run(default_bpf, B.seccomp_data(0x40000000 | 39, seccomp.AUDIT_ARCH["x86_64"])) \
        != B.RET_ALLOW
    assert B.run(default_bpf, B.seccomp_data(0, 0x40000028)) == B.RET_KILL_PROCESS   # ARM
    assert B.run(default_bpf, B.seccomp_data(5000, seccomp.AUDIT_ARCH["x86_64"])) == EPERM
    assert run(default_bpf, "read", arch="i386") == B.RET_ALLOW                     # compat
    assert run(default_bpf, "mount", arch="i386") == EPERM
    assert run(default_bpf, "clone", [CLONE_NEWUSER], arch="i386") == EPERM
    assert run(default_bpf, "read", arch="aarch64") == B.RET_KILL_PROCESS           # not listed
    arm = seccomp.compile_filter(seccomp.default_profile(arch="aarch64"), arch="aarch64")
    assert run(arm, "read", arch="aarch64") == B.RET_ALLOW
    assert run(arm, "unshare", arch="aarch64") == EPERM
    assert run(arm, "clone", [CLONE_NEWUSER], arch="aarch64") == EPERM
    assert run(arm, "clone", [THREAD_FLAGS], arch="aarch64") == B.RET_ALLOW
    assert AARCH64["openat"] == 56 and X86_64["openat"] == 257 and I386["openat"] == 295


def test_capabilities_and_kernel_change_the_default():
    admin = seccomp.compile_filter(seccomp.default_profile(
        capabilities=list(seccomp_default.DEFAULT_CAPABILITIES) + ["SYS_ADMIN"], kernel="6.1"),
        arch="x86_64")
    assert run(admin, "mount") == B.RET_ALLOW and run(admin, "unshare") == B.RET_ALLOW
    assert run(admin, "clone", [CLONE_NEWUSER]) == B.RET_ALLOW
    assert run(admin, "clone3") == B.RET_ALLOW
    old = seccomp.compile_filter(seccomp.default_profile(kernel="4.4.0"), arch="x86_64")
    assert run(old, "ptrace") == EPERM
    nochroot = seccomp.compile_filter(seccomp.default_profile(capabilities=[]), arch="x86_64")
    assert run(nochroot, "chroot") == EPERM


OPS = {"SCMP_CMP_NE": lambda a, v, t: a != v, "SCMP_CMP_LT": lambda a, v, t: a < v,
       "SCMP_CMP_LE": lambda a, v, t: a <= v, "SCMP_CMP_EQ": lambda a, v, t: a == v,
       "SCMP_CMP_GE": lambda a, v, t: a >= v, "SCMP_CMP_GT": lambda a, v, t: a > v,
       "SCMP_CMP_MASKED_EQ": lambda a, v, t: (a & v) == t}


@pytest.mark.parametrize("op", sorted(OPS))
def test_64bit_argument_comparisons(op):
    rnd = random.Random(op)
    edges = [0, 1, 0xFFFFFFFF, 0x1_0000_0000, 0x1_0000_0001, 0xFFFFFFFF_FFFFFFFF,
             0x7FFFFFFF_FFFFFFFF, 0x80000000_00000000, 0x12345678_9ABCDEF0]
    for value in edges + [rnd.getrandbits(64) for _ in range(4)]:
        two = value & 0xF0F0F0F0_F0F0F0F0
        prof = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
            {"names": ["read"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 3, "value": value, "valueTwo": two, "op": op}]}]}
        bpf = seccomp.compile_filter(prof, arch="x86_64")
        probes = edges + [value, value - 1 if value else 0, (value + 1) & seccomp.U64,
                          value ^ (1 << 32), value ^ 1, two] + \
            [rnd.getrandbits(64) for _ in range(8)]
        for a in probes:
            want = B.RET_ALLOW if OPS[op](a, value, two) else EPERM
            got = run(bpf, "read", [0, 0, 0, a])
            assert got == want, (op, hex(value), hex(a))


def test_rule_semantics():
    prof = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["write"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5,
         "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                  {"index": 2, "value": 100, "op": "SCMP_CMP_GT"}]},       # AND
        {"names": ["read"], "action": "SCMP_ACT_ERRNO",
         "args": [{"index": 0, "value": 3, "op": "SCMP_CMP_EQ"},
                  {"index": 0, "value": 4, "op": "SCMP_CMP_EQ"}]},         # same index: OR
        {"names": ["getcwd"], "action": "SCMP_ACT_TRAP"},
        {"names": ["dup"], "action": "SCMP_ACT_LOG"},
        {"names": ["close"], "action": "SCMP_ACT_ERRNO",
         "args": [{"index": 0, "value": 9, "op": "SCMP_CMP_EQ"}]},
        {"names": ["close"], "action": "SCMP_ACT_KILL"},                   # fallback for close
        {"names": ["no_such_syscall"], "action": "SCMP_ACT_KILL"},
    ]}
    bpf = seccomp.compile_filter(prof, arch="x86_64")
    assert run(bpf, "write", [1, 0, 101]) == B.RET_ERRNO | 5
    assert run(bpf, "write", [1, 0, 100]) == B.RET_ALLOW
    assert run(bpf, "write", [2, 0, 101]) == B.RET_ALLOW
    assert run(bpf, "read", [3]) == EPERM and run(bpf, "read", [4]) == EPERM
    assert run(bpf, "read", [5]) == B.RET_ALLOW
    assert run(bpf, "getcwd") == B.RET_TRAP and run(bpf, "dup") == B.RET_LOG
    assert run(bpf, "close", [9]) == EPERM and run(bpf, "close", [8]) == B.RET_KILL_THREAD
    # permissive default: x32 numbers must not slip through
    assert B.run(bpf, B.seccomp_data(0x40000000 | 1, seccomp.AUDIT_ARCH["x86_64"])) == \
        B.RET_KILL_PROCESS


def test_long_jumps_are_trampolined():
    names = sorted(X86_64, key=X86_64.get)[:330]
    prof = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": [n], "action": "SCMP_ACT_ERRNO", "errnoRet": 1 + i % 100,
         "args": [{"index": 1, "value": i, "op": "SCMP_CMP_EQ"}]} for i, n in enumerate(names)]}
    bpf = seccomp.compile_filter(prof, arch="x86_64")
    assert 2000 < len(bpf) // 8 <= B.MAX_INSNS
    for i, n in enumerate(names):
        assert run(bpf, n, [0, i]) == B.RET_ERRNO | (1 + i % 100), n
        assert run(bpf, n, [0, i + 1]) == B.RET_ALLOW, n


def test_assembler_checks():
    with pytest.raises(B.AssembleError, match="undefined"):
        B.assemble([B.jump(B.BPF_JEQ, 1, "a", "b"), B.Label("a"), B.ret(0)])
    with pytest.raises(B.AssembleError, match="backward"):
        B.assemble([B.Label("a"), B.ret(0), B.ja("a")])


@pytest.mark.parametrize("bad,msg", [
    ({}, "defaultAction"),
    ({"defaultAction": "SCMP_ACT_NOPE"}, "unknown action"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": [], "action": "SCMP_ACT_KILL"}]},
     "names"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action":
      "SCMP_ACT_KILL", "args": [{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]}]}, "index"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action":
      "SCMP_ACT_KILL", "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_FOO"}]}]}, "operator"),
    ({"defaultAction": "SCMP_ACT_NOTIFY"}, "listener"),
])
def test_invalid_profiles(bad, msg):
    with pytest.raises(seccomp.SeccompError, match=msg):
        seccomp.compile_filter(bad, arch="x86_64")


def test_filter_flags():
    assert seccomp.filter_flags({"flags": ["SECCOMP_FILTER_FLAG_LOG"]}) == 2
    with pytest.raises(seccomp.SeccompError, match="unknown flag"):
        seccomp.filter_flags({"flags": ["X"]})


# ---------------------------------------------------------------- cross-check with libseccomp

def _libseccomp():
    from pydocklite.runtime import seccomp_libseccomp as L
    if not L.available():
        pytest.skip("libseccomp is not installed: no cross-check")
    if seccomp.native_arch() != "x86_64":
        pytest.skip("the cross-check tables below are for x86_64")
    return L


def test_default_profile_matches_libseccomp():
    """Same profile, two compilers: every syscall number x a few argument vectors must get the
    same verdict, on x86_64 and i386 (x32 differs on purpose: we deny it, libseccomp allows)."""
    import ctypes
    L = _libseccomp()
    lib = L._lib()
    lib.seccomp_syscall_resolve_name_arch.argtypes = [ctypes.c_uint32, ctypes.c_char_p]
    prof = seccomp.default_profile(kernel="6.1")
    ours, theirs = seccomp.compile_filter(prof, "x86_64"), L.compile_filter(prof, "x86_64")
    argsets = [[0], [THREAD_FLAGS], [CLONE_NEWUSER | 17], [8], [0xFFFFFFFF], [1], [40], [2],
               [0x1_0000_0000]]
    compared = 0
    for arch in ("x86_64", "i386"):
        names = {v: k for k, v in TABLES[arch].items()}
        for nr in list(range(0, 480)) + [0xFFFFFFFF]:
            n = names.get(nr)
            if n and lib.seccomp_syscall_resolve_name_arch(L.ARCH_TOKENS[arch], n.encode()) < 0:
                continue        # newer than this libseccomp: it can't name it
            for a in argsets:
                d = B.seccomp_data(nr, seccomp.AUDIT_ARCH[arch], a)
                assert B.run(ours, d) == B.run(theirs, d), (arch, nr, n, a)
                compared += 1
    assert compared > 7000


@pytest.mark.parametrize("op", sorted(OPS))
def test_comparisons_match_libseccomp(op):
    L = _libseccomp()
    rnd = random.Random(op + "lib")
    edges = [0, 1, 0xFFFFFFFF, 0x1_0000_0000, 0x1_0000_0001, 0xFFFFFFFF_FFFFFFFF,
             0x7FFFFFFF_FFFFFFFF, 0x80000000_00000000]
    for v in edges + [rnd.getrandbits(64) for _ in range(3)]:
        prof = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
            {"names": ["read"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 3, "value": v, "valueTwo": v & 0xF0F0F0F0_F0F0F0F0, "op": op}]}]}
        ours, theirs = seccomp.compile_filter(prof, "x86_64"), L.compile_filter(prof, "x86_64")
        for a in edges + [v, (v + 1) & seccomp.U64, (v - 1) & seccomp.U64, v ^ (1 << 32)] + \
                [rnd.getrandbits(64) for _ in range(5)]:
            d = B.seccomp_data(X86_64["read"], seccomp.AUDIT_ARCH["x86_64"], [0, 0, 0, a])
            assert B.run(ours, d) == B.run(theirs, d), (op, hex(v), hex(a))


# ---------------------------------------------------------------- the compiled-filter cache

def test_compiled_filters_are_cached_and_bad_cache_files_ignored(tmp_path):
    from pydocklite.runtime import seccomp_load
    prof = seccomp_default.default_profile()
    arch = seccomp.native_arch()
    want = seccomp.compile_filter(prof, arch), seccomp.filter_flags(prof)
    assert seccomp_load.compiled(prof, str(tmp_path)) == want          # compiled, stored
    key = seccomp_load.cache_key(prof, arch)
    stored = tmp_path / key
    assert stored.stat().st_size == 4 + len(want[0])
    assert seccomp_load.load_cached(str(tmp_path), key) == want
    assert seccomp_load.compiled(prof, str(tmp_path)) == want          # from the cache
    # another profile, another key; a torn file is compiled anew (and rewritten)
    other = dict(prof, defaultAction="SCMP_ACT_KILL")
    assert seccomp_load.cache_key(other, arch) != key
    stored.write_bytes(stored.read_bytes()[:-3])
    assert seccomp_load.load_cached(str(tmp_path), key) is None
    assert seccomp_load.compiled(prof, str(tmp_path)) == want
    assert stored.stat().st_size == 4 + len(want[0])
    # no cache dir: just compiled
    assert seccomp_load.compiled(prof) == want
