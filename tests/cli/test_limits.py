"""Resource limits through `run --memory/--pids-limit/--cpus`, enforced for real, as the
unprivileged test user:
 (a) cgroup v1 on this host: root makes a child of this test process's own cgroup in the
     memory, pids and cpu/cpuacct hierarchies and chowns it to the user, who passes those
     dirs as PYDOCKLITE_CGROUP_BASE;
 (b) without a base: a warning that names the fix, and the container still runs;
 (c) cgroup v2 in a qemu guest (../shared/tools/run-in-cg2vm.sh) in the delegated subtree.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.fixtures.cli_runner import ok

from pydocklite.runtime import cgroups
from tests import unpriv
from tests.fixtures.cgroups_v1 import delegated_v1_children

REPO = Path(__file__).resolve().parents[2]
BASE_HIERARCHIES = ("memory", "pids", "cpu", "cpuacct")


@pytest.fixture
def v1_base():
    """Children of this test process's own v1 cgroups, chowned to the test user; their
    ":"-joined paths (the PYDOCKLITE_CGROUP_BASE value)."""
    if os.geteuid() != 0:
        pytest.skip("creating a child of our own cgroup v1 for the test user needs root")
    if cgroups.detect().version not in ("v1", "hybrid"):
        pytest.skip("not a cgroup v1/hybrid host: see the cgroup v2 test")
    user = unpriv.test_user()
    with delegated_v1_children(BASE_HIERARCHIES, user.pw_uid, user.pw_gid) as made:
        yield made


def test_cgroup_base_setting(tmp_path, monkeypatch):
    from pydocklite.settings import Settings
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("PYDOCKLITE_CGROUP_BASE", raising=False)
    assert Settings.from_environment().cgroup_base == ()          # default: detect one
    (tmp_path / "pydocklite").mkdir()
    (tmp_path / "pydocklite" / "config.json").write_text(json.dumps({"cgroup-base": ["/a", "/b"]}))
    assert Settings.from_environment().cgroup_base == ("/a", "/b")
    monkeypatch.setenv("PYDOCKLITE_CGROUP_BASE", "/x:/y:")          # the environment wins
    assert Settings.from_environment().cgroup_base == ("/x", "/y")


def _subdirs(bases) -> list:
    return [e.path for d in bases for e in os.scandir(d) if e.is_dir()]


def test_v1_limits_enforced_with_a_cgroup_base(cli, busybox, v1_base):
    env = {"PYDOCKLITE_CGROUP_BASE": ":".join(v1_base)}
    # memory: a shell that grows past 32 MiB is OOM-killed (no swap limit asked: the
    # memsw limit is not written, so measure on a host without swap or with memsw)
    r = cli("run", "--name", "hog", "--memory", "32m", busybox, "sh", "-c",
            "x=$(head -c 200m /dev/zero | tr '\\0' x); echo survived ${#x}", env=env)
    assert r.returncode == 137, r
    assert "survived" not in r.stdout and "WARNING" not in r.stderr, r
    st = json.loads(ok(cli("inspect", "hog")).stdout)[0]
    assert st["State"]["OOMKilled"] is True and st["State"]["ExitCode"] == 137, st["State"]
    assert st["HostConfig"]["Memory"] == 32 << 20
    ok(cli("rm", "hog"))
    assert _subdirs(v1_base) == []
    # pids: forks fail past the limit (the inner shell counts its children until a fork
    # fails, which ends it with "can't fork"; the outer shell and it use 2 of the 10)
    r = ok(cli("run", "--rm", "--pids-limit", "10", busybox, "sh", "-c",
               "sh -c 'i=0; while [ $i -lt 50 ]; do sleep 3 & i=$((i+1)); echo $i; done' "
               "2>/tmp/err; echo inner=$?; cat /tmp/err", env=env))
    lines = r.stdout.split()
    assert lines[-1:] != ["inner=0"] and "can't fork" in r.stdout, r.stdout
    forked = int([x for x in lines if x.isdigit()][-1])
    assert forked == 8, r.stdout
    # cpu: a busy loop gets about 0.2 of a cpu (ticks of utime+stime over 2 s, at 100 Hz)
    r = ok(cli("run", "--rm", "--cpus", "0.2", busybox, "sh", "-c",
               "while :; do :; done & p=$!; sleep 2; set -- $(cat /proc/$p/stat); kill $p; "
               "echo $(( ${14} + ${15} ))", env=env))
    ticks = int(r.stdout.split()[-1])
    # the quota caps the loop (40 ticks); a loaded machine may give it less: no lower bound
    assert 0 < ticks <= 70, f"cpu quota 0.2 not enforced: {ticks} ticks in 2 s"
    assert _subdirs(v1_base) == []


def test_limits_without_a_base_warn_and_still_run(cli, busybox):
    info = cgroups.detect()
    if os.geteuid() != 0 or info.version not in ("v1", "hybrid"):
        pytest.skip("needs root (to switch to the test user) on a cgroup v1/hybrid host, "
                    "where an unprivileged user has no cgroup of its own")
    r = cli("run", "--rm", "--memory", "32m", "--pids-limit", "50", busybox, "echo", "ran")
    assert r.returncode == 0 and r.stdout == "ran\n", r
    assert "WARNING" in r.stderr and "memory, pids" in r.stderr, r.stderr
    assert "PYDOCKLITE_CGROUP_BASE" in r.stderr and "run as root" in r.stderr, r.stderr
    # inspect shows the limits asked for; the shim's log says they were not applied
    ok(cli("run", "-d", "--name", "lim", "--memory", "64m", "--pids-limit", "20", "--cpus",
           "0.5", busybox, "sleep", "30"))
    st = json.loads(ok(cli("inspect", "lim")).stdout)[0]
    h = st["HostConfig"]
    assert (h["Memory"], h["PidsLimit"], h["NanoCpus"]) == (64 << 20, 20, 500_000_000), h
    log = subprocess.run(unpriv.user_cmd(["cat", st["ShimLogPath"]]), capture_output=True,
                         text=True).stdout
    assert "not applied" in log, log
    ok(cli("rm", "-f", "lim"))
    # a base that is not writable: the warning names it
    r = cli("run", "--rm", "--memory", "32m", busybox, "true",
            env={"PYDOCKLITE_CGROUP_BASE": "/sys/fs/cgroup/memory"})
    assert r.returncode == 0 and "/sys/fs/cgroup/memory" in r.stderr, r


# ---------------------------------------------------------------- (c) cgroup v2 in a qemu guest

class _OwnedBy:
    """A tarfile stand-in that gives every entry to one uid/gid."""

    def __init__(self, tar, uid: int):
        self.tar, self.uid = tar, uid

    def addfile(self, info, fileobj=None):
        info.uid = info.gid = self.uid
        info.uname = info.gname = ""
        return self.tar.addfile(info, fileobj)


def _cg2vm_tool() -> Path:
    """tests/tools/run-in-cg2vm-userns.sh (the shared tool, entering the guest's root so that
    user namespaces work there), or PDL_CG2VM_TOOL."""
    tool = Path(os.environ.get("PDL_CG2VM_TOOL") or
                REPO / "tests" / "tools" / "run-in-cg2vm-userns.sh")
    if not tool.exists():
        pytest.skip(f"{tool} is absent (no ../shared next to the repo): cgroup v2 test skipped")
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 is not installed: cgroup v2 test skipped")
    return tool


# Runs in the guest as the test user. The store built on the host (under /tmp, visible
# read-only in the guest) is copied to a tmpfs; the guest has no FUSE module, so the
# storage driver is `vfs`, whose copy can't keep foreign owners on tmpfs (no user xattrs
# before Linux 6.6): the image's files belong to the test user (root in the container).
GUEST_SCRIPT = r'''
unshare -U true 2>/dev/null || { echo "@@NO-USERNS $(uname -r)"; exit 0; }
H=/dev/shm/h; cp -a "$SRC_HOME" $H
export HOME=$H XDG_DATA_HOME=$H/.local/share XDG_CONFIG_HOME=$H/.config XDG_RUNTIME_DIR=$H/run
mkdir -p $H/run; chmod 700 $H/run; cd $H
pdl() { /usr/bin/python3 -m pydocklite "$@"; }
pdl run --name hog --network none --memory 32m busybox sh -c \
  "x=\$(head -c 64m /dev/zero | tr '\\0' x); echo survived" 2>/dev/null
echo "@@HOG $? $(pdl inspect --format '{{.State.OOMKilled}}' hog)"
pdl rm hog >/dev/null
PYDOCKLITE_CGROUP_BASE=$CG2_DELEGATED pdl run --rm --network none --pids-limit 10 busybox \
  sh -c "sh -c 'i=0; while [ \$i -lt 50 ]; do sleep 3 & i=\$((i+1)); echo \$i; done' 2>&1" \
  | tr '\n' ' ' | sed 's/^/@@PIDS /'; echo
pdl run --rm --network none --cpus 0.2 busybox sh -c \
  'while :; do :; done & p=$!; sleep 2; set -- $(cat /proc/$p/stat); kill $p; echo "@@CPU $(( ${14} + ${15} ))"'
echo "@@LEFT $(cd $CG2_DELEGATED && find . -mindepth 1 -type d | tr '\n' ' ')"
'''


@pytest.mark.slow
def test_v2_limits_enforced_in_delegated_subtree(cli, registry):
    from tests.fixtures import images
    from tests.fixtures.oci_build import DOCKER_LAYER_GZIP, build_layer, make_image
    tool = _cg2vm_tool()
    uid = unpriv.test_user().pw_uid
    cache = images.cache_dir()
    layer = build_layer(cache, f"busybox-u{uid}-gzip", DOCKER_LAYER_GZIP, "gzip",
                        lambda tar: images._busybox_rootfs(_OwnedBy(tar, uid)))
    image = make_image(cache, f"busybox-u{uid}", [layer],
                       {"Env": [images.PATH_ENV], "Cmd": ["sh"]}, "docker")
    ref = registry.push(image, f"busybox-u{uid}")
    ok(cli("pull", "-q", ref))
    ok(cli("tag", ref, "busybox"))
    script = cli.home / "guest.sh"
    script.write_text(GUEST_SCRIPT)
    r = subprocess.run([str(tool), "/usr/bin/env", f"SRC_HOME={cli.home}",
                        f"PYTHONPATH={REPO}:{unpriv.site_packages()}",
                        "PYTHONDONTWRITEBYTECODE=1", "/bin/sh", str(script)],
                       cwd="/", capture_output=True, text=True, timeout=330,
                       env=dict(os.environ, CG2VM_TIMEOUT="300", CG2VM_UID=str(uid)))
    if r.returncode == 125 and "need qemu" in r.stderr:
        pytest.skip(f"cg2vm unavailable: {r.stderr.strip()[:200]}")
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    print(r.stdout)
    got = {line.split()[0]: line.split()[1:] for line in r.stdout.splitlines()
           if line.startswith("@@")}
    if "@@NO-USERNS" in got:
        pytest.skip(f"{tool} runs the command chrooted, where unshare(CLONE_NEWUSER) fails "
                    "with EPERM, so no rootless container can start in the guest; it needs "
                    "to enter the guest root like switch_root (mount --move into a private "
                    "mount namespace, then chroot) — or set PDL_CG2VM_TOOL to such a variant")
    assert got["@@HOG"] == ["137", "true"], r.stdout           # OOM-killed, and seen as such
    forked = [int(x) for x in got["@@PIDS"] if x.isdigit()]
    # 10 minus the shell(s): busybox's outer `sh -c` execs the inner one here (no rootfs
    # FUSE server in the guest either: the vfs driver serves nothing)
    assert forked and forked[-1] == 9 and "can't fork" in r.stdout, r.stdout
    ticks = int(got["@@CPU"][0])
    # the quota caps the loop (40 ticks); a loaded machine may give it less: no lower bound
    assert 0 < ticks <= 70, f"cpu quota 0.2 not enforced: {ticks} ticks in 2 s"
    assert got["@@LEFT"] == ["./init"], r.stdout                # no container cgroup left
