"""pydocklite.runtime.cgroups: the OCI resources planner (pure) and real enforcement.

Real enforcement, run as the unprivileged test user:
 (a) cgroup v1 on this host: root makes a child of the test process's OWN cgroup in each
     hierarchy and chowns it to the user, who creates the container cgroup below it;
 (b) cgroup v2 in a qemu guest (../shared/tools/run-in-cg2vm.sh) in the delegated subtree.
Both run this file as a script (`--probe [BASE...]`), which prints one JSON object.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pydocklite.runtime import cgroup_detect, cgroups  # noqa: E402
from pydocklite.runtime.cgroup_resources import (NotApplied, blkio_weight_to_io_weight,  # noqa: E402
                                                 cpu_shares_to_weight, plan)

MEM_LIMIT = 32 << 20
PIDS_LIMIT = 12
PROBE_RESOURCES = {"memory": {"limit": MEM_LIMIT, "swap": MEM_LIMIT},
                   "pids": {"limit": PIDS_LIMIT},
                   "cpu": {"quota": 20000, "period": 100000, "shares": 512}}


# ---------------------------------------------------------------- the probe (runs as the user)

def _in_cgroup(cg, fn) -> tuple:
    """Fork; the child joins cg and runs fn (its return value is the exit code)."""
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        try:
            cg.add_pid(os.getpid())
            os._exit(fn())
        except BaseException as e:  # noqa: BLE001 - report anything from the child
            print("child error:", repr(e), file=sys.stderr, flush=True)
            os._exit(99)
    _, status, rusage = os.wait4(pid, 0)
    return status, rusage


def _hog() -> int:
    chunks = [b"\x01" * (1 << 20) for _ in range(128)]
    return 0 if chunks else 1


def _forker() -> int:
    kids = []
    try:
        for _ in range(40):
            p = os.fork()
            if p == 0:
                time.sleep(30)
                os._exit(0)
            kids.append(p)
    except OSError:
        pass
    for p in kids:
        os.kill(p, signal.SIGKILL)
        os.waitpid(p, 0)
    return min(len(kids), 100)


def _spin() -> int:
    end = time.monotonic() + 1.5
    while time.monotonic() < end:
        pass
    return 0


def probe(bases: list) -> dict:
    bases = [d for b in bases for d in b.split(":")]
    info = cgroups.detect(bases or None)
    cg = cgroups.create(f"pdl-probe-{os.getpid()}", PROBE_RESOURCES,
                        base=":".join(bases) if bases else None)
    out = {"uid": os.getuid(), "mode": info.mode, "version": info.version,
           "paths": [list(p) for p in cg.paths],
           "not_applied": [list(x) for x in cg.apply()]}
    st, _ = _in_cgroup(cg, _hog)
    out["hog_killed"] = os.WIFSIGNALED(st) and os.WTERMSIG(st) == signal.SIGKILL
    st, _ = _in_cgroup(cg, _forker)
    out["forked"] = os.WEXITSTATUS(st) if os.WIFEXITED(st) else -1
    t0 = time.monotonic()
    st, ru = _in_cgroup(cg, _spin)
    wall = time.monotonic() - t0
    out["cpu_ratio"] = (ru.ru_utime + ru.ru_stime) / wall
    # stats and kill_all with live processes inside
    r, w = os.pipe()
    sleepers = []
    for _ in range(3):
        pid = os.fork()
        if pid == 0:
            os.close(r)
            cg.add_pid(os.getpid())
            os.write(w, b"x")
            time.sleep(60)
            os._exit(0)
        sleepers.append(pid)
    os.close(w)
    got = b""
    while len(got) < 3:
        chunk = os.read(r, 3)
        if not chunk:
            raise RuntimeError("a sleeper died before joining the cgroup")
        got += chunk
    s = cg.stats()
    out["stats"] = {"memory_usage": s.memory_usage, "memory_limit": s.memory_limit,
                    "cpu_usage_ns": s.cpu_usage_ns, "pids_current": s.pids_current,
                    "pids_limit": s.pids_limit}
    out["pids_before_kill"] = len(cg.pids())
    if cg.version == "v2":          # freeze/thaw (cgroup.freeze; v1 would need the freezer)
        cg.freeze()
        events = ""
        for _ in range(200):
            with open(os.path.join(cg.path, "cgroup.events")) as f:
                events = f.read()
            if "frozen 1" in events:
                break
            time.sleep(0.01)
        out["frozen"] = "frozen 1" in events
        cg.thaw()
    again = cgroups.attach(cg.paths)           # as another process would, from saved paths
    again.kill_all()
    for pid in sleepers:
        _, st = os.waitpid(pid, 0)
        out.setdefault("sleepers_killed", []).append(os.WIFSIGNALED(st))
    cg.destroy()
    out["left_after_destroy"] = [p for _, p in cg.paths if os.path.exists(p)]
    return out


def check_probe(out: dict, version: str) -> None:
    assert out["uid"] != 0, out
    assert out["mode"] == version, out
    assert out["not_applied"] == [], out
    assert out["hog_killed"], f"a process past memory.limit was not OOM-killed: {out}"
    assert 0 < out["forked"] < PIDS_LIMIT, f"fork did not fail at pids.max: {out}"
    # the quota caps the share (a loaded machine may give it less: no lower bound)
    assert 0 < out["cpu_ratio"] < 0.35, f"cpu quota 0.2 not enforced: {out}"
    s = out["stats"]
    assert s["memory_limit"] == MEM_LIMIT and s["pids_limit"] == PIDS_LIMIT, out
    assert s["pids_current"] == 3 and out["pids_before_kill"] == 3, out
    assert s["memory_usage"] > 0 and s["cpu_usage_ns"] > 0, out
    assert out["sleepers_killed"] == [True, True, True], out
    assert out["left_after_destroy"] == [], out
    assert out.get("frozen", True), out


if __name__ == "__main__" and sys.argv[1:2] == ["--probe"]:
    args = sys.argv[2:]
    if args == ["self"]:    # our own cgroup as the base: exercises the no-internal-process move
        v2 = next(p for c, p in cgroup_detect.own_cgroups() if not c)
        args = [os.path.join("/sys/fs/cgroup", v2.lstrip("/"))]
    print(json.dumps(probe(args)), flush=True)
    sys.exit(0)

import pytest  # noqa: E402

from tests.unpriv import make_user_dir, python_as_user  # noqa: E402
from tests.unpriv import test_user as _test_user  # noqa: E402


# ---------------------------------------------------------------- planner (pure)

def test_conversions():
    assert cpu_shares_to_weight(2) == 1
    assert cpu_shares_to_weight(262144) == 10000
    assert cpu_shares_to_weight(1024) == 39
    assert blkio_weight_to_io_weight(10) == 1 and blkio_weight_to_io_weight(1000) == 10000
    assert blkio_weight_to_io_weight(500) == 4950


def _files(p):
    return {w.file: w.value for w in p.writes}


def test_plan_v2():
    p = plan({"memory": {"limit": 100, "swap": 300, "reservation": 50, "kernel": 1,
                         "swappiness": 10},
              "cpu": {"shares": 1024, "quota": 50000, "period": 200000, "cpus": "0-1",
                      "mems": "0"},
              "pids": {"limit": 7}, "blockIO": {"weight": 500},
              "unified": {"memory.high": "90"}}, "v2")
    assert _files(p) == {"memory.max": "100", "memory.swap.max": "200", "memory.low": "50",
                         "cpu.weight": "39", "cpu.max": "50000 200000", "cpuset.cpus": "0-1",
                         "cpuset.mems": "0", "pids.max": "7", "io.weight": "4950",
                         "memory.high": "90"}
    assert {n.limit for n in p.not_applied} == {"memory.kernel", "memory.swappiness"}
    assert _files(plan({"memory": {"limit": -1, "swap": -1}, "cpu": {"quota": -1},
                        "pids": {"limit": -1}}, "v2")) == {
        "memory.max": "max", "memory.swap.max": "max", "cpu.max": "max 100000", "pids.max": "max"}
    bad = plan({"memory": {"limit": 300, "swap": 100}}, "v2")
    assert [n.limit for n in bad.not_applied] == ["memory.swap"]
    limit, reason = bad.not_applied[0]          # unpacks as (limit, reason)
    assert "below the memory limit" in reason


def test_plan_v1():
    p = plan({"memory": {"limit": 100, "swap": 300, "reservation": 50},
              "cpu": {"shares": 1024, "quota": 50000, "period": 200000},
              "pids": {"limit": 7}, "unified": {"memory.high": "1"}}, "v1")
    assert _files(p) == {"memory.limit_in_bytes": "100", "memory.memsw.limit_in_bytes": "300",
                         "memory.soft_limit_in_bytes": "50", "cpu.shares": "1024",
                         "cpu.cfs_quota_us": "50000", "cpu.cfs_period_us": "200000",
                         "pids.max": "7"}
    assert [n.limit for n in p.not_applied] == ["unified.memory.high"]


def test_plan_rejects_bad_types():
    with pytest.raises(ValueError, match="linux.resources"):
        plan({"memory": {"limit": "lots"}}, "v2")


def test_not_applied_is_frozen():
    n = NotApplied("pids.limit", "why")
    with pytest.raises(Exception):
        n.limit = "x"
    assert tuple(n) == ("pids.limit", "why") and (n[0], n[1]) == ("pids.limit", "why")
    assert len(n) == 2


def test_parse_mountinfo_and_proc_cgroup(tmp_path):
    mi = tmp_path / "mountinfo"
    mi.write_text(
        "30 25 0:26 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755\n"
        "31 30 0:27 / /sys/fs/cgroup/unified rw shared:10 - cgroup2 cgroup2 rw,nsdelegate\n"
        "35 30 0:31 / /sys/fs/cgroup/cpu,cpuacct rw shared:15 - cgroup cgroup rw,cpu,cpuacct\n"
        "36 30 0:32 /a /sys/fs/cgroup/memory rw shared:16 - cgroup cgroup rw,memory\n"
        "37 30 0:33 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n")
    ms = cgroup_detect.cgroup_mounts(str(mi))
    assert [(m.mountpoint, m.fstype, m.controllers) for m in ms] == [
        ("/sys/fs/cgroup/unified", "cgroup2", ()),
        ("/sys/fs/cgroup/cpu,cpuacct", "cgroup", ("cpu", "cpuacct")),
        ("/sys/fs/cgroup/memory", "cgroup", ("memory",)),
        ("/sys/fs/cgroup/systemd", "cgroup", ())]
    assert ms[2].root == "/a"
    assert cgroup_detect.hierarchy_of("/sys/fs/cgroup/cpu,cpuacct/x", ms) == ("cpu", "cpuacct")
    pc = tmp_path / "cgroup"
    pc.write_text("12:pids:/p\n4:cpu,cpuacct:/c\n1:name=systemd:/s\n0::/u\n")
    assert cgroup_detect.own_cgroups(str(pc)) == [(("pids",), "/p"), (("cpu", "cpuacct"), "/c"),
                                                  ((), "/u")]


def test_detect_matches_this_host():
    info = cgroups.detect()
    kinds = {m.fstype for m in cgroup_detect.cgroup_mounts()}
    assert info.version in ("v1", "v2", "hybrid", "none")
    assert ("cgroup2" in kinds) == (info.version in ("v2", "hybrid"))
    if info.mode:
        assert info.writable_base == info.bases[0] and os.path.isdir(info.bases[0])
    else:
        assert info.reason and info.fix and info.writable_base is None


def test_unprivileged_on_v1_host_gets_reason_and_fix(tmp_path):
    if os.geteuid() != 0 or cgroups.detect().version not in ("v1", "hybrid"):
        pytest.skip("needs root (to switch to the test user) on a cgroup v1/hybrid host")
    home = make_user_dir(tmp_path / "home")
    code = ("from pydocklite.runtime import cgroups\n"
            "i = cgroups.detect(); print(i.mode or '-'); print(i.fix)\n"
            "try:\n    cgroups.create('x', {})\nexcept cgroups.CgroupError as e:\n"
            "    print('ERR', e)\n")
    r = python_as_user(["-c", code], home)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "-" and "run as root" in lines[1]
    assert lines[-1].startswith("ERR no cgroup available for container x")


def test_create_rejects_bad_names():
    for bad in ("", "a/b", "..", cgroups.LEAF):
        with pytest.raises(cgroups.CgroupError):
            cgroups.create(bad, {})


# ---------------------------------------------------------------- (a) cgroup v1 on this host

V1_HIERARCHIES = ("memory", "pids", "cpu", "cpuacct", "cpuset")


@pytest.fixture
def v1_user_bases():
    """Children of this test process's own v1 cgroups, chowned to the test user."""
    from tests.fixtures.cgroups_v1 import delegated_v1_children
    user = _test_user()
    with delegated_v1_children(V1_HIERARCHIES, user.pw_uid, user.pw_gid) as made:
        yield made


def test_v1_limits_enforced_for_unprivileged_user(v1_user_bases, tmp_path):
    home = make_user_dir(tmp_path / "home")
    # half the bases as one ":"-joined string (the form a flag or env var gives)
    half = len(v1_user_bases) // 2
    bases = [":".join(v1_user_bases[:half])] + v1_user_bases[half:]
    r = python_as_user([str(Path(__file__)), "--probe", *bases], home, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    print(out)
    check_probe(out, "v1")
    # the container cgroup was made below each chowned base, nowhere else
    assert {os.path.dirname(p) for _, p in out["paths"]} <= set(v1_user_bases)
    for d in v1_user_bases:
        assert os.listdir(d) and not [e for e in os.scandir(d) if e.is_dir()]


# ---------------------------------------------------------------- (b) cgroup v2 in a qemu guest

def _cg2vm() -> Path:
    tool = REPO.parent / "shared" / "tools" / "run-in-cg2vm.sh"
    if not tool.exists():   # a clone without ../shared: the repo's variant of the same tool
        tool = REPO / "tests" / "tools" / "run-in-cg2vm-userns.sh"
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 is not installed: cgroup v2 test skipped")
    return tool


@pytest.mark.slow
def test_v2_limits_enforced_in_delegated_subtree():
    import subprocess
    import sysconfig
    tool = _cg2vm()
    pypath = f"{REPO}:{sysconfig.get_paths()['purelib']}"
    me = f"/usr/bin/python3 {Path(__file__)} --probe"
    r = subprocess.run([str(tool), "/usr/bin/env", f"PYTHONPATH={pypath}",
                        "PYTHONDONTWRITEBYTECODE=1", "/bin/sh", "-c",
                        f"{me} && cat /proc/self/cgroup && {me} self && cat /proc/self/cgroup"],
                       cwd=str(REPO), capture_output=True, text=True, timeout=330,
                       env=dict(os.environ, CG2VM_TIMEOUT="300"))
    if r.returncode == 125 and "need qemu" in r.stderr:
        pytest.skip(f"cg2vm unavailable: {r.stderr.strip()[:200]}")
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    lines = r.stdout.strip().splitlines()
    print(lines)
    delegated, own = json.loads(lines[0]), json.loads(lines[2])
    for out in (delegated, own):
        check_probe(out, "v2")
        assert out["version"] == "v2" and out["frozen"] is True
    # (1) the delegated subtree found by detect(); the process stays in .../init
    assert delegated["paths"][0][1].startswith("/sys/fs/cgroup/cg2vm.slice/pdl-probe-"), delegated
    assert lines[1] == "0::/cg2vm.slice/init"
    # (2) base = our own (populated) cgroup: we were moved into its leaf to enable controllers
    assert own["paths"][0][1].startswith("/sys/fs/cgroup/cg2vm.slice/init/pdl-probe-"), own
    assert lines[3] == f"0::/cg2vm.slice/init/{cgroups.LEAF}"
