"""What the OCI runtime-tools validation suite found (bench/oci_validation.py), fixed and
kept fixed: containers without a mount namespace, linux.devices made with mknod, a uid map
that leaves host root out (the init can't reach the state dir), nested and absolute
linux.cgroupsPath. Pure planner checks first, then real containers (root ones skip when
pytest is not root; the rootless one runs as the test user)."""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pydocklite.runtime import cgroup_path  # noqa: E402
from pydocklite.runtime import plan as pl  # noqa: E402
from pydocklite.runtime.errors import RuntimeErr, SpecError  # noqa: E402
from pydocklite.runtime.spec import parse_spec  # noqa: E402
from pydocklite.runtime.spec_template import default_spec  # noqa: E402
from tests.runtime.conftest import make_root_bundle  # noqa: E402

PY = "/usr/bin/python3"


def _spec(namespaces=None, devices=None) -> dict:
    raw = default_spec(rootless=False)
    raw["root"]["path"] = "/r"
    if namespaces is not None:
        raw["linux"]["namespaces"] = [{"type": t} for t in namespaces]
    if devices is not None:
        raw["linux"]["devices"] = devices
    raw.pop("hostname", None)
    return raw


# ---- planner ------------------------------------------------------------------------------

def test_without_mount_namespace_only_chroot_and_say_what_is_skipped():
    p = pl.make_plan(parse_spec(_spec(namespaces=["pid", "ipc"])))
    assert p.rootfs_steps == (pl.Chroot("/r"),) or list(p.rootfs_steps) == [pl.Chroot("/r")]
    kinds = {type(s) for s in p.container_steps}
    assert not kinds & {pl.MaskPath, pl.ReadonlyPath, pl.RemountRootReadonly, pl.Propagation}
    assert any("no mount namespace" in w and "linux.maskedPaths" in w for w in p.warnings)


def test_devices_planned_as_nodes_with_mode_and_owner():
    devs = [{"path": "/dev/test1", "type": "c", "major": 10, "minor": 666, "fileMode": 0o660,
             "uid": 0, "gid": 5},
            {"path": "/dev/test3", "type": "p"},
            {"path": "/dev/null", "type": "c", "major": 1, "minor": 3}]
    p = pl.make_plan(parse_spec(_spec(devices=devs)))
    made = [s for s in p.rootfs_steps if isinstance(s, pl.MakeDevice)]
    assert made == [pl.MakeDevice("/dev/test1", "c", 10, 666, 0o660, 0, 5),
                    pl.MakeDevice("/dev/test3", "p", 0, 0, 0o666, None, None)]
    # /dev/null is one of the default devices, bound from the host once
    assert [s.dest for s in p.rootfs_steps if isinstance(s, pl.Device)].count("/dev/null") == 1


@pytest.mark.parametrize("dev,field", [
    ({"path": "/etc/x", "type": "c", "major": 1, "minor": 1}, "under /dev/"),
    ({"path": "/dev/x", "type": "q", "major": 1, "minor": 1}, "type must be"),
    ({"path": "/dev/x", "type": "b", "minor": 1}, "major must be"),
    ({"path": "/dev/x", "type": "c", "major": 1, "minor": 1, "fileMode": 0o70000},
     "fileMode"),
])
def test_bad_devices_are_refused_by_name(dev, field):
    with pytest.raises(SpecError, match=field):
        pl.make_plan(parse_spec(_spec(devices=[dev])))


class _FakeCgroups:
    """cgroups.create/detect over plain directories (one 'hierarchy')."""
    CgroupError = RuntimeErr

    def __init__(self, base: Path):
        self.base = base
        self.calls = []

    def detect(self, bases=None):
        class Info:
            pass
        info = Info()
        info.bases = tuple(bases) if bases else (str(self.base),)
        info.mode = "v2"
        info.reason = info.fix = ""
        return info

    def below(self, info, cg):
        return self.detect([p for _, p in cg.paths])

    def create(self, name, resources, base=None, info=None):
        if info is not None:
            base = info.bases
        bases = list(base) if isinstance(base, (list, tuple)) else [base or str(self.base)]
        self.calls.append((name, resources, tuple(bases)))
        d = os.path.join(bases[0], name)
        os.makedirs(d, exist_ok=True)

        class Cg:
            paths = (("", d),)
        return Cg()


def test_relative_cgroups_path_is_nested(tmp_path):
    fake = _FakeCgroups(tmp_path)
    (tmp_path / "a").mkdir()
    warnings = []
    cg = cgroup_path.create(fake, "a/b/c", "x", {"pids": {"limit": 5}}, None, warnings)
    assert cg.paths == (("", str(tmp_path / "a" / "b" / "c")),)
    assert [c[0] for c in fake.calls] == ["a", "b", "c"]
    assert fake.calls[-1] == ("c", {"pids": {"limit": 5}}, (str(tmp_path / "a" / "b"),))
    assert warnings == []


def test_systemd_notation_expanded_and_dotdot_refused(tmp_path):
    """slice:prefix:name (engines with --systemd-cgroup): the directories systemd would make."""
    sp = cgroup_path.systemd_path
    assert sp("system.slice:cri-containerd:abc") == "/system.slice/cri-containerd-abc.scope"
    assert sp("kubepods-besteffort-pod1.slice:cri-containerd:abc") == \
        "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/" \
        "cri-containerd-abc.scope"
    assert sp(":docker:abc") == "/system.slice/docker-abc.scope"
    for bad in ("system.slice:x", "notaslice:p:n", "system.slice:p:"):
        with pytest.raises(RuntimeErr):
            sp(bad)
    fake = _FakeCgroups(tmp_path)
    cg = cgroup_path.create(fake, "system.slice:pdl:abc", "x", {}, [str(tmp_path)], [])
    assert cg.paths[0][1] == str(tmp_path / "system.slice" / "pdl-abc.scope")
    cg = cgroup_path.create(fake, "", "cid1", {}, None, [])
    assert cg.paths[0][1] == str(tmp_path / "pydocklite-cid1")
    with pytest.raises(RuntimeErr, match="without . or .."):
        cgroup_path.create(fake, "a/../../etc", "x", {}, None, [])


# ---- real containers ----------------------------------------------------------------------

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (runs root containers)")


@pytest.fixture
def root_env(rootfs_template):
    """(run(args...), bundle(config mutate) -> dir, state root) for containers run by root."""
    top = Path(tempfile.mkdtemp(prefix="pdl-oci-"))
    top.chmod(0o755)                   # a container's root may be another host uid
    state_root = top / "state"
    state_root.mkdir(mode=0o700)       # like /run/pydocklite/runtime: closed to others
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONDONTWRITEBYTECODE="1")

    def run(*args, timeout=60):
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            r = subprocess.run([PY, "-m", "pydocklite.runtime.runc_cli", "--root",
                                str(state_root), *map(str, args)], env=env, stdout=out,
                               stderr=err, timeout=timeout)
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(r.args, r.returncode, out.read().decode(),
                                               err.read().decode())

    def bundle(args, mutate=None) -> Path:
        return make_root_bundle(top, rootfs_template, args, mutate)

    yield run, bundle, state_root
    for cid in os.listdir(state_root):
        run("delete", "--force", cid)
    for line in reversed(open("/proc/self/mountinfo").read().splitlines()):
        mp = line.split()[4]
        if mp.startswith(str(top)):
            subprocess.run(["umount", "-l", mp], check=False)
    shutil.rmtree(top, ignore_errors=True)


def _wait_stopped(run, cid: str, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        st = json.loads(run("state", cid).stdout)
        if st["status"] == "stopped" or time.monotonic() > deadline:
            return st
        time.sleep(0.05)


@needs_root
def test_uid_map_without_host_root_create_and_start(root_env):
    """The init runs as host uid 1000 here: it must not need the (0700) state dir."""
    run, bundle, _ = root_env

    def userns(c):
        c["linux"]["namespaces"].append({"type": "user"})
        c["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 1000, "size": 2000}]
        c["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 1000, "size": 3000}]
    b = bundle(["sh", "-c", "id -u > /tmp/out; cat /proc/self/uid_map >> /tmp/out"], userns)
    subprocess.run(["chown", "-R", "-h", "1000:1000", str(b / "rootfs")], check=True)
    cid = "u" + uuid.uuid4().hex[:8]
    r = run("create", "--bundle", b, cid)
    assert r.returncode == 0, r.stderr
    assert run("start", cid).returncode == 0
    assert _wait_stopped(run, cid)["status"] == "stopped"
    out = (b / "rootfs" / "tmp" / "out").read_text().split()
    assert out[:4] == ["0", "0", "1000", "2000"], out
    assert run("delete", cid).returncode == 0


@needs_root
def test_devices_are_made_with_mode_and_owner(root_env):
    run, bundle, _ = root_env
    b = bundle(["sh", "-c", "stat -c '%F %t:%T %a %u:%g' /dev/mydev /dev/myfifo"],
               lambda c: c["linux"].update(devices=[
                   {"path": "/dev/mydev", "type": "c", "major": 1, "minor": 3,
                    "fileMode": 0o640, "uid": 0, "gid": 5},
                   {"path": "/dev/myfifo", "type": "p", "fileMode": 0o600}]))
    r = run("run", "--bundle", b, "d" + uuid.uuid4().hex[:8])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "character special file 1:3 640 0:5", lines
    assert lines[1].startswith("fifo") and " 600 " in lines[1], lines


@needs_root
def test_no_mount_namespace_chroots_and_leaves_host_mounts_alone(root_env):
    run, bundle, _ = root_env
    def no_mnt(c):
        c.pop("hostname", None)
        c["linux"].update(namespaces=[{"type": "pid"}], maskedPaths=[], readonlyPaths=[])
    b = bundle(["sh", "-c", "ls /; cat /marker"], no_mnt)
    (b / "rootfs" / "marker").write_text("inside\n")
    before = open("/proc/self/mountinfo").read().count(str(b))
    r = run("run", "--bundle", b, "n" + uuid.uuid4().hex[:8])
    assert r.returncode == 0, r.stderr
    assert "inside" in r.stdout and "config.json" not in r.stdout
    assert "no mount namespace" in r.stderr
    assert open("/proc/self/mountinfo").read().count(str(b)) == before


def _v1_memory_root():
    for line in open("/proc/self/mountinfo"):
        left, _, right = line.partition(" - ")
        if right.split()[0] == "cgroup" and "memory" in right.split()[2].split(","):
            return left.split()[4]
    return None


@needs_root
@pytest.mark.parametrize("cgpath", ["pdltest-rel-{u}/a/c", "/pdltest-abs-{u}/c"])
def test_cgroups_path_nested_and_absolute_removed_parents_kept(root_env, cgpath):
    mem = _v1_memory_root()
    if mem is None:
        pytest.skip("no cgroup v1 memory hierarchy here (cgroup v2 is tested in the VM)")
    run, bundle, _ = root_env
    cgpath = cgpath.format(u=uuid.uuid4().hex[:6])
    b = bundle(["sleep", "30"], lambda c: c["linux"].update(
        cgroupsPath=cgpath, resources={"memory": {"limit": 64 << 20}}))
    cid = "g" + uuid.uuid4().hex[:8]
    r = run("create", "--bundle", b, cid)
    assert r.returncode == 0, r.stderr
    pid = json.loads(run("state", cid).stdout)["pid"]
    mine = next(line.split(":", 2)[2].strip() for line in open(f"/proc/{pid}/cgroup")
                if "memory" in line.split(":")[1].split(","))
    if cgpath.startswith("/"):
        assert mine == cgpath
    else:
        assert mine.endswith("/" + cgpath)
    d = os.path.join(mem, mine.lstrip("/"))
    assert open(os.path.join(d, "memory.limit_in_bytes")).read().strip() == str(64 << 20)
    parts = cgpath.strip("/").split("/")[:-1]
    try:
        assert run("delete", "--force", cid).returncode == 0
        assert not os.path.exists(d), "the container's cgroup left behind"
        # as runc: the parents stay (shared by an engine's containers; removing them raced
        # the next create)
        assert os.path.isdir(os.path.dirname(d))
    finally:
        from pydocklite.runtime import cgroup_detect
        bases = set(cgroup_detect.detect().bases) | {m.mountpoint for m in
                                                    cgroup_detect.cgroup_mounts()}
        for base in bases:
            for k in range(len(parts), 0, -1):
                p = os.path.join(base, *parts[:k])
                if os.path.isdir(p):
                    os.rmdir(p)


def test_rootless_device_bound_from_the_host(rt, make_bundle, cid):
    """In a user namespace mknod is refused: the host's node of that path is bound."""
    if not os.path.exists("/dev/kmsg") or not stat.S_ISCHR(os.stat("/dev/kmsg").st_mode):
        pytest.skip("no /dev/kmsg character device on this host")
    b = make_bundle(["stat", "-c", "%F %t:%T", "/dev/kmsg"],
                    lambda c: c["linux"].update(devices=[
                        {"path": "/dev/kmsg", "type": "c", "major": 1, "minor": 11}]))
    r = rt("run", "--bundle", b, cid)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "character special file 1:b", r.stdout


def test_device_rules_planned_in_order_then_defaults():
    from pydocklite.runtime.cgroup_resources import DEFAULT_ALLOWED_DEVICES, plan
    p = plan({"devices": [{"allow": False, "access": "rwm"},
                          {"allow": True, "type": "c", "major": 10, "minor": 229,
                           "access": "rw"}]}, "v1")
    got = [(w.file, w.value) for w in p.writes]
    assert got[:2] == [("devices.deny", "a *:* rwm"), ("devices.allow", "c 10:229 rw")]
    assert [v for _, v in got[2:]] == list(DEFAULT_ALLOWED_DEVICES)
    v2 = plan({"devices": [{"allow": False, "access": "rwm"}]}, "v2")
    assert not v2.writes and v2.not_applied[0][0] == "devices"
    with pytest.raises(ValueError, match="access of r, w, m"):
        plan({"devices": [{"allow": True, "type": "c", "access": "x"}]}, "v1")


def _v1_has(controller: str) -> bool:
    for line in open("/proc/self/mountinfo"):
        right = line.partition(" - ")[2].split()
        if right and right[0] == "cgroup" and controller in right[2].split(","):
            return True
    return False


@needs_root
@pytest.mark.parametrize("rules,want", [
    ([{"allow": False, "access": "rwm"}], ["null-ok", "tun-denied"]),
    ([{"allow": False, "access": "rwm"},
      {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rw"}],
     ["null-ok", "tun-ok"]),
])
def test_device_rules_enforced_for_root_containers(root_env, rules, want):
    if not _v1_has("devices"):
        pytest.skip("no cgroup v1 devices hierarchy here (v2 would need eBPF)")
    if not os.path.exists("/dev/net/tun"):
        pytest.skip("no /dev/net/tun on this host")
    run, bundle, _ = root_env
    b = bundle(["sh", "-c", "echo x > /dev/null && echo null-ok; "
                            "(exec 3<>/dev/mytun) 2>/dev/null && echo tun-ok || echo tun-denied"],
               lambda c: c["linux"].update(
                   devices=[{"path": "/dev/mytun", "type": "c", "major": 10, "minor": 200}],
                   resources={"devices": rules}))
    r = run("run", "--bundle", b, "v" + uuid.uuid4().hex[:8])
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == want, r.stdout + r.stderr


def test_failing_poststart_and_poststop_hooks_warn_and_the_rest_run(rt, make_bundle, cid,
                                                                    rt_home):
    """runtime-spec lifecycle: a failed poststart/poststop hook is a warning; the remaining
    hooks and the lifecycle go on as if it had succeeded."""
    from tests import unpriv
    out = unpriv.make_user_dir(rt_home / "hookfail" / cid)

    def mutate(c):
        c["hooks"] = {
            "poststart": [{"path": "/bin/false"},
                          {"path": "/bin/sh", "args": ["sh", "-c", f"echo ps > {out}/poststart"]}],
            "poststop": [{"path": "/bin/false"},
                         {"path": "/bin/sh", "args": ["sh", "-c", f"echo pt > {out}/poststop"]}]}
    b = make_bundle(["sleep", "30"], mutate)
    r = rt("create", "--bundle", b, cid)
    assert r.returncode == 0, r.stderr
    r = rt("start", cid)
    assert r.returncode == 0, r.stderr
    assert "poststart hook /bin/false failed" in r.stderr and "ignored" in r.stderr
    assert (out / "poststart").read_text() == "ps\n"
    assert json.loads(rt("state", cid).stdout)["status"] == "running"
    r = rt("delete", "--force", cid)
    assert r.returncode == 0, r.stderr
    assert "poststop hook /bin/false failed" in r.stderr
    assert (out / "poststop").read_text() == "pt\n"
    assert rt("state", cid).returncode != 0


def test_delete_of_a_created_container_is_refused_without_force(rt, make_bundle, cid):
    """runtime-spec delete: not stopped -> an error and no effect (created counts)."""
    b = make_bundle(["true"])
    assert rt("create", "--bundle", b, cid).returncode == 0
    r = rt("delete", cid)
    assert r.returncode == 1 and "created, not stopped" in r.stderr and "--force" in r.stderr
    assert json.loads(rt("state", cid).stdout)["status"] == "created"
    assert rt("delete", "--force", cid).returncode == 0
    assert rt("state", cid).returncode == 1


@pytest.mark.parametrize("version,ok", [("1.0.2", True), ("1.3.0", True), ("1.0.2-dev", True),
                                        ("1.1.0+build.5", True), ("invalid", False),
                                        ("1.0", False), ("2.0.0", False)])
def test_oci_version_checked(version, ok):
    raw = _spec()
    raw["ociVersion"] = version
    if ok:
        assert parse_spec(raw).oci_version == version
    else:
        with pytest.raises(SpecError, match="ociVersion"):
            parse_spec(raw)
