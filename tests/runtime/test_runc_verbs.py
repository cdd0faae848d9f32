"""./pydocklite-runtime (build.sh's runc-compatible executable) as an engine drives it, run as
root like containerd's shim: global flags before the verb, --log FILE --log-format json with
the error in it, pause/resume, update --resources -, events --stats, exec --process --detach
--pid-file, ps --format json, kill --all, delete of a gone container, --preserve-fds,
--version's shape, features."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from tests.fixtures.cli_runner import REPO
from tests.runtime.conftest import make_root_bundle

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runs root containers, as engines do")


@pytest.fixture
def prt(zipapp, rootfs_template):
    """run(*args, stdin=None) through ./pydocklite-runtime with its own --root and log.json;
    bundle(args, mutate) -> a root bundle with cgroupsPath /pdl-verbs-<uuid>/<n>."""
    top = Path(tempfile.mkdtemp(prefix="pdl-verbs-"))
    top.chmod(0o755)
    root = top / "state"
    log = top / "log.json"
    cg = f"pdl-verbs-{uuid.uuid4().hex[:6]}"
    binary = str(REPO / "pydocklite-runtime")
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(top)}

    class Rt:
        top_dir, cgroup_parent, log_path = top, cg, log

        def __call__(self, *args, stdin=None, timeout=60, no_python=False):
            """no_python: with the unpacked copy out of reach, so that only the sh prelude
            can answer (a call that reaches Python then fails)."""
            e = dict(env, SHIV_ROOT="/proc/no-such-dir") if no_python else env
            with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
                r = subprocess.run([binary, "--root", str(root), "--log", str(log),
                                    "--log-format", "json", *map(str, args)], env=e,
                                   stdout=out, stderr=err, timeout=timeout,
                                   input=stdin.encode() if stdin else None)
                out.seek(0)
                err.seek(0)
                return subprocess.CompletedProcess(r.args, r.returncode, out.read().decode(),
                                                   err.read().decode())

        def bundle(self, args, mutate=None) -> Path:
            def engine_like(cfg):
                cfg["linux"]["resources"] = {"pids": {"limit": 64}}
                cfg["linux"]["cgroupsPath"] = f"/{cg}/{uuid.uuid4().hex[:8]}"
                if mutate:
                    mutate(cfg)
            return make_root_bundle(top, rootfs_template, args, engine_like)

    rt = Rt()
    subprocess.run([binary, "--version"], env=env, capture_output=True, check=True)
    yield rt
    if root.is_dir():
        for cid in os.listdir(root):
            rt("delete", "--force", cid)
    for hier in Path("/sys/fs/cgroup").iterdir():
        if (hier / cg).is_dir():
            os.rmdir(hier / cg)
    shutil.rmtree(top, ignore_errors=True)


def _ok(r):
    assert r.returncode == 0, f"rc={r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


def _status(prt, cid):
    return json.loads(_ok(prt("state", cid)).stdout)["status"]


def test_version_and_features_shape(prt):
    lines = _ok(prt("--version")).stdout.splitlines()
    assert lines[0].startswith("pydocklite-runtime version ")
    assert lines[1].startswith("commit:") and lines[2].startswith("spec: 1.")
    f = json.loads(_ok(prt("features")).stdout)
    assert f["ociVersionMin"] == "1.0.0" and "prestart" in f["hooks"]


def test_lifecycle_pause_update_events_exec_ps_kill_delete(prt):
    b = prt.bundle(["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done"])
    cid = "v1"
    pid_file = prt.top_dir / "init.pid"
    _ok(prt("create", "--bundle", b, "--pid-file", pid_file, cid))
    init = int(pid_file.read_text())
    assert _status(prt, cid) == "created"
    assert prt("start", "--bogus", cid, no_python=True).returncode != 0, \
        "the prelude leaves anything unusual to Python"
    _ok(prt("start", cid, no_python=True))     # the sh prelude writes init.fifo
    assert _status(prt, cid) == "running"
    assert prt("start", cid).returncode == 1
    cgroup = json.loads((b / "config.json").read_text())["linux"]["cgroupsPath"]
    assert Path(f"/proc/{init}/cgroup").read_text().count(cgroup) >= 5, \
        "cgroupsPath in every v1 hierarchy"
    # pause / resume through the freezer
    _ok(prt("pause", cid))
    assert _status(prt, cid) == "paused"
    state = Path(f"/proc/{init}/status").read_text()
    assert "\nState:\tD" in state or "\nState:\tS" in state
    assert (Path("/sys/fs/cgroup/freezer") / cgroup.lstrip("/") / "freezer.state"
            ).read_text().strip() in ("FROZEN", "FREEZING")
    r = prt("pause", cid)
    assert r.returncode == 1 and "container not running" in r.stderr
    _ok(prt("resume", cid))
    assert _status(prt, cid) == "running"
    assert prt("resume", cid).returncode == 1
    # update from stdin, as dockerd sends it
    _ok(prt("update", "--resources", "-", cid,
            stdin=json.dumps({"memory": {"limit": 48 << 20}, "pids": {"limit": 50}})))
    mem = Path("/sys/fs/cgroup/memory") / cgroup.lstrip("/")
    assert int((mem / "memory.limit_in_bytes").read_text()) == 48 << 20
    assert (Path("/sys/fs/cgroup/pids") / cgroup.lstrip("/") / "pids.max").read_text().strip() \
        == "50"
    # events --stats: runc's stats event
    ev = json.loads(_ok(prt("events", "--stats", cid)).stdout)
    assert ev["type"] == "stats" and ev["id"] == cid
    assert ev["data"]["memory"]["usage"]["usage"] > 0
    assert ev["data"]["memory"]["usage"]["limit"] == 48 << 20
    assert ev["data"]["pids"]["current"] >= 1 and ev["data"]["pids"]["limit"] == 50
    assert ev["data"]["cpu"]["usage"]["total"] > 0
    # exec --process --detach --pid-file (containerd's exec), then ps --format json
    proc = {"args": ["sleep", "300"], "cwd": "/", "env": ["PATH=/bin"],
            "user": {"uid": 0, "gid": 0}}
    pf = prt.top_dir / "process.json"
    pf.write_text(json.dumps(proc))
    epid_file = prt.top_dir / "exec.pid"
    t0 = time.monotonic()
    _ok(prt("exec", "--process", pf, "--detach", "--pid-file", epid_file, cid))
    assert time.monotonic() - t0 < 10
    epid = int(epid_file.read_text())
    deadline = time.monotonic() + 10      # it may still be between fork and exec
    while not Path(f"/proc/{epid}/cmdline").read_bytes().startswith(b"sleep\x00300") and \
            time.monotonic() < deadline:
        time.sleep(0.02)
    assert Path(f"/proc/{epid}/cmdline").read_bytes().startswith(b"sleep\x00300")
    assert cgroup in Path(f"/proc/{epid}/cgroup").read_text(), "exec joins the cgroup"
    pids = json.loads(_ok(prt("ps", "--format", "json", cid)).stdout)
    assert init in pids and epid in pids
    r = prt("exec", cid, "sh", "-c", "echo fg; exit 3")
    assert r.returncode == 3 and r.stdout.strip() == "fg"
    # kill --all, delete, delete of the gone container
    _ok(prt("kill", "--all", cid, "9"))
    deadline = time.monotonic() + 15
    while _status(prt, cid) != "stopped" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _status(prt, cid) == "stopped"
    r = prt("kill", cid, "KILL")
    assert r.returncode == 1 and "container not running" in r.stderr
    _ok(prt("delete", cid))
    assert not mem.exists()
    r = prt("delete", cid)
    assert r.returncode == 1 and "does not exist" in r.stderr
    _ok(prt("delete", "--force", cid, no_python=True))     # answered by the sh prelude
    _ok(prt("delete", "-f", "never-existed", no_python=True))
    assert prt("delete", "never-existed", no_python=True).returncode != 0


def test_prelude_finds_the_default_root_without_root_flag(prt):
    """Podman's conmon passes no --root: the sh prelude uses the same default root as Python
    ($XDG_RUNTIME_DIR/pydocklite/runtime here)."""
    xdg = prt.top_dir / "xdg"
    xdg.mkdir(mode=0o700)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(prt.top_dir),
           "XDG_RUNTIME_DIR": str(xdg)}
    binary = str(REPO / "pydocklite-runtime")
    b = prt.bundle(["sleep", "300"])

    def call(*args, no_python=False):
        e = dict(env, SHIV_ROOT="/proc/no-such-dir") if no_python else env
        return subprocess.run([binary, *map(str, args)], env=e, capture_output=True,
                              text=True, timeout=60, stdin=subprocess.DEVNULL)
    with open(os.devnull, "w") as null, tempfile.TemporaryFile() as err:
        # the container inherits create's stdio: no pipe, or run() waits for the container
        r = subprocess.run([binary, "create", "--bundle", str(b), "dr1"], env=env,
                           stdout=null, stderr=err, timeout=60)
        err.seek(0)
        assert r.returncode == 0, err.read()
    assert (xdg / "pydocklite" / "runtime" / "dr1" / "init.fifo").exists()
    try:
        r = call("start", "dr1", no_python=True)
        assert r.returncode == 0, r.stderr
        assert json.loads(call("state", "dr1").stdout)["status"] == "running"
    finally:
        assert call("delete", "--force", "dr1").returncode == 0
    assert call("delete", "--force", "dr1", no_python=True).returncode == 0


def test_start_with_a_poststart_hook_goes_through_python(prt):
    hook_out = prt.top_dir / "poststart.out"
    hook = prt.top_dir / "hook.sh"
    hook.write_text(f"#!/bin/sh\ncat > {hook_out}\n")
    hook.chmod(0o755)
    b = prt.bundle(["sleep", "300"],
                   lambda c: c.update(hooks={"poststart": [{"path": str(hook)}]}))
    _ok(prt("create", "--bundle", b, "hk"))
    assert not (prt.top_dir / "state" / "hk" / "init.fifo").exists()
    assert prt("start", "hk", no_python=True).returncode != 0
    _ok(prt("start", "hk"))
    assert json.loads(hook_out.read_text())["id"] == "hk"
    _ok(prt("delete", "--force", "hk"))


def test_errors_go_to_log_json(prt):
    b = prt.bundle(["true"], lambda c: c["process"].update(cwd="/no/such/dir"))
    r = prt("create", "--bundle", b, "bad1")
    assert r.returncode == 1 and "/no/such/dir" in r.stderr
    lines = [json.loads(x) for x in prt.log_path.read_text().splitlines()]
    assert lines[-1]["level"] == "error" and "/no/such/dir" in lines[-1]["msg"]
    assert set(lines[-1]) == {"level", "msg", "time"}
    r = prt("start", "--bogus", "x")
    assert r.returncode == 1 and "flag provided but not defined" in r.stderr
    assert prt("state", "bad1").returncode == 1


def test_preserve_fds_and_other_fds_closed(prt):
    b = prt.bundle(["sh", "-c", "for f in 3 4 5; do [ -e /proc/$$/fd/$f ] && echo $f; done; "
                              "readlink /proc/$$/fd/3"])
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    try:
        # fds 3 and 4 in the runtime: 3 preserved, 4 not
        p = subprocess.run(
            [str(REPO / "pydocklite-runtime"), "--root", str(prt.top_dir / "state"), "run",
             "--preserve-fds", "1", "--bundle", str(b), "fds1"],
            capture_output=True, text=True, timeout=60, close_fds=False,
            preexec_fn=lambda: (os.dup2(r1, 3), os.dup2(r2, 4)),
            env={"PATH": "/usr/bin:/bin", "HOME": str(prt.top_dir)})
    finally:
        for fd in (r1, w1, r2, w2):
            os.close(fd)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.split()
    assert lines[0] == "3" and "4" not in lines and lines[-1].startswith("pipe:"), lines


def _wait_stopped(prt, cid, timeout=15):
    deadline = time.monotonic() + timeout
    while _status(prt, cid) != "stopped" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _status(prt, cid) == "stopped"


def _cgroup_dirs(prt, rel: str) -> list:
    return [str(h / rel) for h in Path("/sys/fs/cgroup").iterdir() if (h / rel).is_dir()]


def test_delete_of_a_stopped_container_without_python(prt):
    """Engines delete every container once it stopped (containerd: `delete` then `delete
    --force`; Podman: `delete --force`): the sh prelude does it from create's teardown list
    -- cgroups, then the state dir -- as api.delete would. Parents stay, as runc's do."""
    state = prt.top_dir / "state"
    for cid, verb in (("sd1", ["delete"]), ("sd2", ["delete", "--force"])):
        b = prt.bundle(["true"])
        cgroup = json.loads((b / "config.json").read_text())["linux"]["cgroupsPath"]
        _ok(prt("create", "--bundle", b, cid))
        assert len(_cgroup_dirs(prt, cgroup.lstrip("/"))) >= 5
        _ok(prt("start", cid, no_python=True))
        _wait_stopped(prt, cid)
        _ok(prt(*verb, cid, no_python=True))
        assert not (state / cid).exists()
        assert _cgroup_dirs(prt, cgroup.lstrip("/")) == []
        assert len(_cgroup_dirs(prt, prt.cgroup_parent)) >= 5
        r = prt("delete", cid)
        assert r.returncode == 1 and "does not exist" in r.stderr


def test_prelude_leaves_live_processes_and_hooks_to_python(prt):
    """What the prelude can't do alone goes to Python: a running container (delete refused,
    or --force kills it), processes left in a stopped container's cgroup (killed), a
    poststop hook (run)."""
    state = prt.top_dir / "state"
    b = prt.bundle(["sleep", "300"])
    _ok(prt("create", "--bundle", b, "lv1"))
    _ok(prt("start", "lv1", no_python=True))
    assert prt("delete", "lv1", no_python=True).returncode != 0
    r = prt("delete", "lv1")
    assert r.returncode == 1 and "not stopped" in r.stderr
    _ok(prt("delete", "--force", "lv1"))
    assert not (state / "lv1").exists()
    # no pid namespace: a background process outlives the init, in the container's cgroup
    b = prt.bundle(["sh", "-c", "sleep 300 & echo $! > /tmp/bg; exit 0"],
                   lambda c: c["linux"].update(namespaces=[
                       n for n in c["linux"]["namespaces"] if n["type"] != "pid"]))
    cgroup = json.loads((b / "config.json").read_text())["linux"]["cgroupsPath"]
    _ok(prt("create", "--bundle", b, "lv2"))
    _ok(prt("start", "lv2", no_python=True))
    _wait_stopped(prt, "lv2")
    pids = Path("/sys/fs/cgroup/pids", cgroup.lstrip("/"), "cgroup.procs").read_text().split()
    assert len(pids) == 1, pids
    assert prt("delete", "lv2", no_python=True).returncode != 0
    assert (state / "lv2").exists() and _cgroup_dirs(prt, cgroup.lstrip("/"))
    _ok(prt("delete", "lv2"))
    assert not Path(f"/proc/{pids[0]}").exists() or \
        Path(f"/proc/{pids[0]}/stat").read_text().split(") ")[1][0] in "ZX"
    assert _cgroup_dirs(prt, cgroup.lstrip("/")) == [] and not (state / "lv2").exists()
    # a poststop hook: Python runs it
    out = prt.top_dir / "poststop.out"
    hook = prt.top_dir / "poststop.sh"
    hook.write_text(f"#!/bin/sh\ncat > {out}\n")
    hook.chmod(0o755)
    b = prt.bundle(["true"], lambda c: c.update(hooks={"poststop": [{"path": str(hook)}]}))
    _ok(prt("create", "--bundle", b, "lv3"))
    _ok(prt("start", "lv3", no_python=True))
    _wait_stopped(prt, "lv3")
    assert prt("delete", "lv3", no_python=True).returncode != 0
    _ok(prt("delete", "lv3"))
    assert json.loads(out.read_text())["id"] == "lv3" and not (state / "lv3").exists()
