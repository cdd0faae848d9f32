"""The runtime on a real kernel, as the unprivileged test user, with busybox bundles.

Each test builds its bundle (tests/runtime/conftest.py) from `runtime spec --rootless`'s
config and runs `python3 -m pydocklite.runtime.runc_cli` as pdltest.
"""
from __future__ import annotations

import array
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pydocklite.runtime import idmap, security  # noqa: E402
from tests import unpriv  # noqa: E402

DEFAULT_CAP_MASK = security.cap_mask(security.DEFAULT_CAPS)


def _kv(out: str) -> dict:
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def _subid_start(path: str) -> int:
    user = unpriv.test_user()
    ranges = idmap.read_subids(path, user.pw_uid)
    if not ranges:
        pytest.skip(f"{unpriv.TEST_USER} has no range in {path}")
    return ranges[0][0]


def _wait_status(rt, cid: str, want: str, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        r = rt("state", cid)
        st = json.loads(r.stdout) if r.returncode == 0 else {"status": "gone"}
        if st["status"] == want or time.monotonic() > deadline:
            return st
        time.sleep(0.05)


def _host_mounts() -> str:
    with open("/proc/self/mountinfo") as f:
        return f.read()


def test_isolation_from_inside(rt, make_bundle, cid):
    script = r"""
echo "pid=$$"
echo "hostname=$(hostname)"
echo "ifaces=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\n' ' ')"
echo "keys=$(wc -c < /proc/keys)"
echo "timer_list=$(wc -c < /proc/timer_list)"
if touch /sys/pdl-probe 2>/dev/null; then echo sys=rw; else echo sys=ro; fi
if mount -t tmpfs none /tmp 2>/dev/null; then echo mount=ok; else echo mount=denied; fi
echo "procs=$(ls -d /proc/[0-9]* | wc -l)"
echo "capeff=$(grep CapEff /proc/self/status | cut -f2)"
echo "uid=$(id -u)"
echo "pid1=$(cat /proc/1/cmdline | tr '\0' ' ')"
"""
    b = make_bundle(["sh", "-c", script], lambda c: c.update(hostname="pdl-box"))
    r = rt("run", "--bundle", b, cid)
    assert r.returncode == 0, r.stderr
    kv = _kv(r.stdout)
    assert kv["pid"] == "1"
    assert kv["hostname"] == "pdl-box"
    assert kv["ifaces"].split() == ["lo"]
    assert kv["keys"] == "0", "/proc/keys must be masked"
    assert kv["timer_list"] == "0", "/proc/timer_list must be masked"
    assert kv["sys"] == "ro"
    assert kv["mount"] == "denied"
    # sh, ls and wc at most: no host process is visible
    assert int(kv["procs"]) <= 4
    assert kv["pid1"].startswith("sh -c")
    assert int(kv["capeff"], 16) == DEFAULT_CAP_MASK
    assert kv["uid"] == "0"


def test_capabilities_as_configured_for_non_root_user(rt, make_bundle, cid):
    caps = ["CAP_CHOWN", "CAP_KILL"]

    def mutate(c):
        c["process"]["user"] = {"uid": 1000, "gid": 1000}
        c["process"]["capabilities"] = {k: caps for k in
                                        ("bounding", "effective", "permitted", "inheritable",
                                         "ambient")}
    b = make_bundle(["sh", "-c", "id -u; id -g; grep -E '^Cap(Eff|Bnd|Amb)' /proc/self/status"],
                    mutate)
    r = rt("run", "--bundle", b, cid)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split("\n")
    assert lines[0] == "1000" and lines[1] == "1000"
    got = {ln.split(":")[0]: int(ln.split()[1], 16) for ln in lines[2:] if ln}
    want = (1 << 0) | (1 << 5)
    assert got == {"CapEff": want, "CapBnd": want, "CapAmb": want}


def test_uid_mapping_root_inside_subuid_outside(rt, make_bundle, cid):
    sub = _subid_start("/etc/subuid")
    subg = _subid_start("/etc/subgid")
    b = make_bundle(["sh", "-c", "stat -c %u:%g /etc/passwd; echo x > /tmp/f; chown 1:2 /tmp/f; "
                                 "stat -c %u:%g /tmp/f; cat /proc/self/uid_map"],
                    lambda c: c["root"].update(readonly=False))
    r = rt("run", "--bundle", b, cid)
    assert r.returncode == 0, r.stderr
    out = r.stdout.split("\n")
    assert out[0] == "0:0"                   # owned by the user outside: root inside
    assert out[1] == "1:2"
    st = os.stat(b / "rootfs" / "tmp" / "f")
    assert (st.st_uid, st.st_gid) == (sub, subg + 1)   # container 1 -> first subordinate id
    assert len([ln for ln in out[2:] if ln.strip()]) == 2     # full map: self + range


def test_single_id_map_explicit(rt, make_bundle, cid):
    user = unpriv.test_user()

    def mutate(c):
        c["linux"]["uidMappings"] = [{"containerID": 0, "hostID": user.pw_uid, "size": 1}]
        c["linux"]["gidMappings"] = [{"containerID": 0, "hostID": user.pw_gid, "size": 1}]
    b = make_bundle(["sh", "-c", "cat /proc/self/uid_map; test -c /dev/pts/ptmx && echo pts"],
                    mutate)
    r = rt("run", "--bundle", b, cid)
    assert r.returncode == 0, r.stderr
    lines = [ln.split() for ln in r.stdout.splitlines()]
    assert lines[0] == ["0", str(user.pw_uid), "1"]
    assert lines[1] == ["pts"]
    assert "gid 5 is not mapped" in r.stderr      # devpts gid=5 dropped, and said so


def test_exit_code_passed_through(rt, make_bundle, cid):
    b = make_bundle(["sh", "-c", "exit 7"])
    assert rt("run", "--bundle", b, cid).returncode == 7
    b2 = make_bundle(["/no/such/program"])
    r = rt("run", "--bundle", b2, cid + "x")
    assert r.returncode == 127
    assert "/no/such/program" in r.stderr


def test_signal_forwarded_and_kill_exit_code(rt, make_bundle, cid):
    b = make_bundle(["sh", "-c", "trap 'exit 42' TERM; echo up; while :; do sleep 0.05; done"])
    p = rt.popen("run", "--bundle", b, cid, stdout=-1, stderr=-1)
    try:
        assert p.stdout.readline() == b"up\n"
        p.send_signal(signal.SIGTERM)           # run forwards it to the container's init
        assert p.wait(timeout=20) == 42
    finally:
        p.kill()
    b2 = make_bundle(["sleep", "60"])
    p = rt.popen("run", "--bundle", b2, cid + "k", stdout=-1, stderr=-1)
    try:
        assert _wait_status(rt, cid + "k", "running")["status"] == "running"
        assert rt("kill", cid + "k", "KILL").returncode == 0
        assert p.wait(timeout=20) == 128 + 9
    finally:
        p.kill()
    assert rt("state", cid + "k").returncode == 1      # run deleted it


def test_lifecycle_and_nothing_left_behind(rt, make_bundle, cid, rt_home):
    before = _host_mounts()
    b = make_bundle(["sleep", "100"])
    pid_file = rt_home / "run" / f"{cid}.pid"
    r = rt("create", "--bundle", b, "--pid-file", pid_file, cid)
    assert r.returncode == 0, r.stderr
    text = pid_file.read_text()
    assert text.isdigit(), repr(text)            # digits only, no newline
    pid = int(text)
    st = json.loads(rt("state", cid).stdout)
    assert st["status"] == "created" and st["pid"] == pid and st["id"] == cid
    assert st["bundle"] == str(b)
    assert rt("start", cid).returncode == 0
    assert json.loads(rt("state", cid).stdout)["status"] == "running"
    assert rt("start", cid).returncode == 1       # not twice
    r = rt("delete", cid)
    assert r.returncode == 1 and "running" in r.stderr
    ids = [c["id"] for c in json.loads(rt("list", "--format", "json").stdout)]
    assert cid in ids
    assert rt("kill", cid, "9").returncode == 0
    assert _wait_status(rt, cid, "stopped")["status"] == "stopped"
    assert rt("delete", cid).returncode == 0
    assert rt("state", cid).returncode == 1
    assert not (rt.root / cid).exists()
    assert not os.path.exists(f"/proc/{pid}") or b"sleep" not in \
        Path(f"/proc/{pid}/cmdline").read_bytes()
    # other jobs on the host mount things meanwhile: look for ours only
    new_lines = set(_host_mounts().splitlines()) - set(before.splitlines())
    assert not [ln for ln in new_lines if str(b) in ln or str(rt.root) in ln]


def test_delete_force_kills_everything(rt, make_bundle, cid):
    b = make_bundle(["sh", "-c", "sleep 100 & sleep 100 & wait"])
    assert rt("create", "--bundle", b, cid).returncode == 0
    assert rt("start", cid).returncode == 0
    time.sleep(0.3)
    ps = rt("ps", "--format", "json", cid)
    pids = json.loads(ps.stdout)
    assert len(pids) == 3, ps.stdout
    assert rt("delete", "--force", cid).returncode == 0
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}/cmdline") or \
            b"sleep" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    assert not (rt.root / cid).exists()


def test_exec_joins_the_container(rt, make_bundle, cid):
    b = make_bundle(["sh", "-c", "hostname > /tmp/h; sleep 100"],
                    lambda c: c.update(hostname="exec-box"))
    assert rt("create", "--bundle", b, cid).returncode == 0
    try:
        assert rt("start", cid).returncode == 0
        _wait_status(rt, cid, "running")
        r = rt("exec", cid, "sh", "-c", "hostname; echo $$; ls -d /proc/[0-9]* | wc -l; exit 5")
        assert r.returncode == 5, r.stderr
        host, mypid, nprocs = r.stdout.split()
        assert host == "exec-box" and mypid != "1" and int(nprocs) <= 5
    finally:
        rt("delete", "--force", cid)


def test_terminal_through_console_socket(rt, make_bundle, cid, rt_home):
    user = unpriv.test_user()
    sock_path = str(rt_home / "run" / f"{cid}.console")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(sock_path)
    os.chown(sock_path, user.pw_uid, user.pw_gid)
    srv.listen(1)
    srv.settimeout(30)

    def mutate(c):
        c["process"]["terminal"] = True
        c["process"]["consoleSize"] = {"height": 33, "width": 99}
    b = make_bundle(["sh"], mutate)
    p = rt.popen("create", "--bundle", b, "--console-socket", sock_path, cid,
                 stdout=-1, stderr=-1)
    try:
        conn, _ = srv.accept()
        fds = array.array("i")
        _msg, anc, _flags, _addr = conn.recvmsg(64, socket.CMSG_LEN(fds.itemsize))
        fds.frombytes(anc[0][2][:fds.itemsize])
        master = fds[0]
        assert p.wait(timeout=30) == 0, p.stderr.read()
        assert rt("start", cid).returncode == 0
        os.write(master, b"tty; stty size; echo done-$((6*7)); exit 3\n")
        out = _read_until(master, b"done-42", None)
        assert b"/dev/pts/0" in out and b"33 99" in out and b"done-42" in out, out
        assert _wait_status(rt, cid, "stopped")["status"] == "stopped"
        os.close(master)
    finally:
        p.kill()
        srv.close()
        rt("delete", "--force", cid)


def test_hooks_get_the_state_on_stdin(rt, make_bundle, cid, rt_home):
    out = unpriv.make_user_dir(rt_home / "hooks" / cid)

    def mutate(c):
        c["hooks"] = {
            "prestart": [{"path": "/bin/sh", "args": ["sh", "-c", f"cat > {out}/prestart"]}],
            "poststart": [{"path": "/bin/sh", "args": ["sh", "-c", f"cat > {out}/poststart"]}],
            "poststop": [{"path": "/bin/sh", "args": ["sh", "-c", f"cat > {out}/poststop"]}],
            # in the container's namespaces: before pivot_root (host path), after start
            "createContainer": [{"path": "/bin/sh",
                                 "args": ["sh", "-c", f"cat > {out}/createContainer"]}],
            "startContainer": [{"path": "/bin/sh",
                                "args": ["sh", "-c", "cat > /dev/shm/started"]}]}
    b = make_bundle(["cat", "/dev/shm/started"], mutate)
    r = rt("run", "--bundle", b, cid)
    assert r.returncode == 0, r.stderr
    started = json.loads(r.stdout)
    assert started["id"] == cid and started["pid"] > 1
    cc = json.loads((out / "createContainer").read_text())
    assert cc["id"] == cid and cc["pid"] == started["pid"]
    pre = json.loads((out / "prestart").read_text())
    assert pre["id"] == cid and pre["status"] == "created" and pre["pid"] == started["pid"]
    assert json.loads((out / "poststart").read_text())["id"] == cid
    assert json.loads((out / "poststop").read_text())["status"] == "stopped"


def test_rlimit_above_hard_limit_is_clamped_with_a_message(rt, make_bundle, cid):
    import resource
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    r0 = unpriv.run_as_user(["sh", "-c", "ulimit -Hn"], rt.home)
    user_hard = int(r0.stdout)
    want = user_hard * 4 if hard != resource.RLIM_INFINITY else 1 << 30

    def mutate(c):
        c["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "hard": want, "soft": want}]
    b = make_bundle(["sh", "-c", "ulimit -Hn; ulimit -Sn"], mutate)
    r = rt("run", "--bundle", b, cid)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(user_hard), str(user_hard)]
    assert "RLIMIT_NOFILE" in r.stderr and "clamped" in r.stderr


def test_seccomp_default_profile_blocks_unshare(rt, make_bundle, cid):
    from pydocklite.runtime.seccomp_default import default_profile

    def mutate(c):
        c["linux"]["seccomp"] = default_profile(c["process"]["capabilities"]["bounding"])
    b = make_bundle(["sh", "-c", "grep Seccomp: /proc/self/status; unshare -U true && echo "
                                 "unshared || echo blocked"], mutate)
    r = rt("run", "--bundle", b, cid)
    assert r.returncode == 0, r.stderr
    assert "Seccomp:\t2" in r.stdout and "blocked" in r.stdout


# ---- bad input: a clear one-line message, exit 1, nothing left behind ----------------

def _assert_clean_failure(rt, r, cid, *needles):
    assert r.returncode == 1, (r.stdout, r.stderr)
    err = r.stderr.strip()
    assert err.count("\n") == 0, err
    for n in needles:
        assert n in err, err
    assert rt("state", cid).returncode == 1
    assert not (rt.root / cid).exists()


def test_unknown_fields_are_tolerated(rt, make_bundle, cid):
    """The runtime-spec says unknown properties are ignored: we do, and say so
    (runtime-spec fields pydocklite doesn't implement: tests/runtime/test_spec_fields.py)."""
    def mutate(c):
        c["someFutureField"] = {"x": 1}
        c["process"]["futureKnob"] = True
    b = make_bundle(["true"], mutate)
    r = rt("run", "--bundle", b, cid)
    assert r.returncode == 0, r.stderr
    assert "unknown properties ignored" in r.stderr
    assert "process.futureKnob" in r.stderr and "someFutureField" in r.stderr


@pytest.mark.parametrize("mutate,field", [
    (lambda c: c["process"].update(args="sh"), "process.args"),
    (lambda c: c["linux"].update(namespaces="pid"), "linux.namespaces"),
    (lambda c: c["process"]["user"].update(uid="0"), "process.user.uid"),
    (lambda c: c["mounts"][0].update(options="ro"), "mounts[0].options"),
])
def test_wrong_types_name_the_field(rt, make_bundle, cid, mutate, field):
    b = make_bundle(["true"], mutate)
    _assert_clean_failure(rt, rt("run", "--bundle", b, cid), cid, field)


def test_missing_rootfs(rt, make_bundle, cid):
    b = make_bundle(["true"], copy_rootfs=False)
    _assert_clean_failure(rt, rt("create", "--bundle", b, cid), cid, "root.path")


def test_id_mapping_not_owned(rt, make_bundle, cid):
    user = unpriv.test_user()

    def mutate(c):
        c["linux"]["uidMappings"] = [{"containerID": 0, "hostID": user.pw_uid, "size": 1},
                                     {"containerID": 1, "hostID": 5000, "size": 100}]
    b = make_bundle(["true"], mutate)
    _assert_clean_failure(rt, rt("create", "--bundle", b, cid), cid, "5000", "don't own")


def test_mount_target_symlink_cannot_escape(rt, make_bundle, cid, rt_home):
    outside = unpriv.make_user_dir(rt_home / "outside" / cid)

    def mutate(c):
        c["mounts"].append({"destination": "/evil/sub", "type": "tmpfs", "source": "tmpfs"})
        c["mounts"].append({"destination": "/rel/sub2", "type": "tmpfs", "source": "tmpfs"})
        c["mounts"].append({"destination": "/etc/hostname-bind", "type": "bind",
                            "source": "/etc/hostname", "options": ["rbind", "ro"]})
    b = make_bundle(["sh", "-c", "echo ok; test -d /evil/sub && test -d /rel/sub2 && echo in"],
                    mutate)
    rootfs = b / "rootfs"
    os.symlink(str(outside), rootfs / "evil")                        # absolute, host path
    os.symlink("../../../../../../../../" + str(outside).lstrip("/"), rootfs / "rel")
    os.lchown(rootfs / "evil", unpriv.test_user().pw_uid, -1)
    r = rt("run", "--bundle", b, cid)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["ok", "in"]
    assert os.listdir(outside) == []                  # nothing created on the host side
    # the targets were created inside the rootfs, at the link's in-rootfs meaning
    inside = rootfs / str(outside).lstrip("/")
    assert (inside / "sub").is_dir() and (inside / "sub2").is_dir()


def test_library_prepare_rootfs_hook_runs_inside_user_and_mount_ns(rt, make_bundle, cid,
                                                                     rt_home, rootfs_template):
    """The shim's hook point: mount the rootfs (FUSE in real life; a bind here) from inside
    the container's user+mount namespaces before pivot_root; the host never sees it."""
    b = make_bundle(["sh", "-c", "cat /marker; cat /proc/self/uid_map | wc -l"],
                    copy_rootfs=False)
    (b / "rootfs").mkdir()
    src = b / "src"
    import subprocess
    subprocess.run(["cp", "-a", str(rootfs_template), str(src)], check=True)
    (src / "marker").write_text("from-the-hook\n")
    subprocess.run(["chown", "-R", "-h", f"{unpriv.TEST_USER}:", str(b)], check=True)
    script = f"""
import os, sys
from pydocklite.runtime import api, syscalls as sc
seen = []
def hook(rootfs):
    seen.append(open('/proc/self/uid_map').read().split())
    sc.mount({str(src)!r}, rootfs, None, sc.MS_BIND | sc.MS_REC)
code = api.run({str(b)!r}, {cid!r}, {str(rt.root)!r}, prepare_rootfs=hook)
sys.exit(code)
"""
    before = _host_mounts()
    r = unpriv.python_as_user(["-c", script], rt.home)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["from-the-hook", "2"]
    new_lines = set(_host_mounts().splitlines()) - set(before.splitlines())
    assert not [ln for ln in new_lines if str(b) in ln]


def _read_until(fd: int, needle: bytes, proc, timeout: float = 30) -> bytes:
    import select
    out = b""
    deadline = time.monotonic() + timeout
    while needle not in out and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if not ready:
            if proc is not None and proc.poll() is not None:
                break
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    return out


def test_run_with_terminal_relays_the_pty_in_the_foreground(rt, make_bundle, cid):
    """`run` of a terminal: true bundle without --console-socket (runc's foreground mode):
    our stdin/stdout are relayed to the container's pty."""
    import pty
    b = make_bundle(["sh", "-c", "tty; read x; echo got-$x; exit 4"],
                    lambda c: c["process"].update(terminal=True))
    master, slave = pty.openpty()
    p = rt.popen("run", "--bundle", b, cid, stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    try:
        out = _read_until(master, b"/dev/pts/0", p)
        os.write(master, b"relay\n")
        out += _read_until(master, b"got-relay", p)
        assert p.wait(timeout=30) == 4, out
        assert b"got-relay" in out and b"/dev/pts/0" in out, out
    finally:
        p.kill()
        os.close(master)


def test_exec_with_tty(rt, make_bundle, cid):
    import pty
    b = make_bundle(["sleep", "100"])
    assert rt("create", "--bundle", b, cid).returncode == 0
    try:
        assert rt("start", cid).returncode == 0
        master, slave = pty.openpty()
        p = rt.popen("exec", "-t", cid, "sh", "-c", "tty; read x; echo exec-$x; exit 6",
                     stdin=slave, stdout=slave, stderr=slave)
        os.close(slave)
        try:
            out = _read_until(master, b"/dev/pts/", p)
            os.write(master, b"tty-ok\n")
            out += _read_until(master, b"exec-tty-ok", p)
            assert p.wait(timeout=30) == 6, out
            assert b"/dev/pts/" in out and b"exec-tty-ok" in out, out
        finally:
            p.kill()
            os.close(master)
    finally:
        rt("delete", "--force", cid)


def test_run_detached_kill_by_name_and_errors(rt, make_bundle, cid):
    b = make_bundle(["sh", "-c", "trap 'exit 0' USR1; while :; do sleep 0.05; done"])
    r = rt("run", "-d", "--bundle", b, cid, stdout=-3, stderr=-3, capture_output=False)
    assert r.returncode == 0
    try:
        assert _wait_status(rt, cid, "running")["status"] == "running"
        r = rt("kill", cid, "NOSUCHSIG")
        assert r.returncode == 1 and "unknown signal" in r.stderr
        assert rt("kill", cid, "USR1").returncode == 0          # a name without SIG
        assert _wait_status(rt, cid, "stopped")["status"] == "stopped"
        r = rt("exec", cid, "true")
        assert r.returncode == 1 and "stopped" in r.stderr
        r = rt("kill", cid, "SIGTERM")
        assert r.returncode == 1 and "stopped" in r.stderr
    finally:
        assert rt("delete", cid).returncode == 0
    r = rt("delete", cid)
    assert r.returncode == 1 and "does not exist" in r.stderr
    r = rt("state", "bad/id")
    assert r.returncode == 1 and "invalid container id" in r.stderr


def test_library_create_joins_a_user_namespace_made_ahead(rt, make_bundle, cid):
    """api.create(made_userns=PATH): the shim makes the user namespace (and its id maps)
    while the CLI prepares the container; the runtime joins it instead of making one."""
    b = make_bundle(["sh", "-c", "cat /proc/self/uid_map | wc -l; id -u"])
    script = f"""
import os, sys, time
from pydocklite.runtime import api, idmap, syscalls as sc
keep_r, keep_w = os.pipe()
ready_r, ready_w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(keep_w)
    sc.unshare(sc.CLONE_NEWUSER)
    os.write(ready_w, b"1")
    os.read(keep_r, 1)
    os._exit(0)
os.close(keep_r)
assert os.read(ready_r, 1) == b"1"
uid_maps, gid_maps, _ = idmap.default_mappings()
idmap.start(pid, uid_maps, gid_maps)()
made = f"/proc/{{pid}}/ns/user"
want = os.readlink(made)
created = api.create({str(b)!r}, {cid!r}, root={str(rt.root)!r}, made_userns=made)
os.kill(pid, 9)                        # the holder may go: the container holds the ns
os.waitpid(pid, 0)
got = os.readlink(f"/proc/{{created.pid}}/ns/user")
api.start({cid!r}, root={str(rt.root)!r})
deadline = time.time() + 20
while api.state({cid!r}, root={str(rt.root)!r})["status"] != "stopped":
    assert time.time() < deadline
    time.sleep(0.02)
api.delete({cid!r}, root={str(rt.root)!r})
print("same" if got == want else f"different {{got}} {{want}}")
"""
    r = unpriv.python_as_user(["-c", script], rt.home)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["2", "0", "same"], r.stdout
