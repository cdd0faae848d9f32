"""containerd (Debian's 1.6, started here with its own state dirs and socket) runs containers
through containerd-shim-runc-v2 with ./pydocklite-runtime as the runc binary (`ctr run
--runc-binary`: the BinaryName a CRI runtime entry or a Kubernetes RuntimeClass hands the shim).
"""
from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests import unpriv
from tests.engines.conftest import needs_root, short_dir
from tests.fixtures import engines

pytestmark = [needs_root,
              pytest.mark.skipif(not engines.have("containerd", "ctr"),
                                 reason="containerd is not installed (apt-get install containerd)")]
IMAGE = "docker.io/library/busybox:latest"


@pytest.fixture(scope="module")
def ctrd(runtime_bin, busybox_archive):
    base = short_dir("pdlc-")
    with engines.Containerd(base) as c:
        c.namespace = "pdl" + uuid.uuid4().hex[:6]
        engines.warm_runtime(runtime_bin, base / "home")
        c.ctr("images", "import", busybox_archive, check=True)
        c.runtime = runtime_bin
        yield c
        for cid in c.ctr("containers", "ls", "-q").stdout.split():
            c.ctr("task", "kill", "-s", "SIGKILL", cid)
            c.ctr("task", "delete", "-f", cid)
            c.ctr("containers", "rm", cid)
    subprocess.run(["rm", "-rf", "--one-file-system", str(base)], check=False)


def _run(c, *args, **kw):
    return c.ctr("run", "--runc-binary", c.runtime, *args, **kw)


def _task_status(c, cid: str) -> str:
    for line in c.ctr("task", "ls").stdout.splitlines()[1:]:
        parts = line.split()
        if parts and parts[0] == cid:
            return parts[-1]
    return ""


def _wait_status(c, cid: str, want: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = _task_status(c, cid)
        if got == want:
            return got
        time.sleep(0.1)
    return _task_status(c, cid)


def _leftovers(c, cid: str) -> list:
    """What a removed task could leave: the runtime's state dir, cgroup dirs, processes."""
    out = []
    state = Path("/run/containerd/runc") / c.namespace / cid
    if state.exists():
        out.append(str(state))
    for hier in Path("/sys/fs/cgroup").iterdir():
        if (hier / c.namespace / cid).exists():
            out.append(str(hier / c.namespace / cid))
    out += [cmd for _pid, cmd in unpriv.processes() if f"/{c.namespace}/{cid}" in cmd]
    return out


def test_run_rm_exit_code_and_output(ctrd):
    r = _run(ctrd, "--rm", IMAGE, "c-exit", "sh", "-c", "echo out-line; echo err-line >&2; "
             "cat /proc/1/cmdline | tr '\\0' ' '; exit 3")
    assert r.returncode == 3, r.stderr
    assert r.stdout.splitlines()[0] == "out-line" and "err-line" in r.stderr
    assert "sh -c" in r.stdout, "the process is pid 1 of its own pid namespace"
    r = _run(ctrd, "--rm", IMAGE, "c-true", "true")
    assert r.returncode == 0, r.stderr
    r = _run(ctrd, "--rm", IMAGE, "c-missing", "/no/such/program")
    assert r.returncode != 0 and "no/such/program" in r.stderr, (r.returncode, r.stderr)
    for cid in ("c-exit", "c-true", "c-missing"):
        assert _leftovers(ctrd, cid) == []


def test_run_with_a_terminal(ctrd):
    rc, text = engines.pty_run(["ctr", "--address", str(ctrd.sock), "-n", ctrd.namespace, "run",
                                "--rm", "-t", "--runc-binary", ctrd.runtime, IMAGE, "c-tty",
                                "sh", "-c", "tty; [ -t 0 ] && echo stdin-is-a-tty; exit 0"],
                               engines.ENV)
    assert rc == 0, text
    assert "/dev/pts/0" in text and "stdin-is-a-tty" in text, text


def test_exec_ps_metrics_pause_resume_kill_delete(ctrd):
    cid = "c-life"
    r = _run(ctrd, "-d", IMAGE, cid, "sh", "-c",
             'trap "exit 7" TERM; while :; do sleep 0.1; done')
    assert r.returncode == 0, r.stderr
    assert _wait_status(ctrd, cid, "RUNNING") == "RUNNING"
    r = ctrd.ctr("task", "exec", "--exec-id", "e1", cid, "sh", "-c", "echo exec-ok; exit 4")
    assert r.returncode == 4 and r.stdout.strip() == "exec-ok", (r.returncode, r.stderr)
    ps = ctrd.ctr("task", "ps", cid, check=True).stdout.splitlines()
    assert ps[0].split()[0] == "PID" and len(ps) >= 2, ps
    init = int(ps[1].split()[0])
    assert Path(f"/proc/{init}/cgroup").read_text().count(f"/{ctrd.namespace}/{cid}") >= 5, \
        "the task is in its cgroupsPath in every v1 hierarchy"
    m = ctrd.ctr("task", "metrics", cid, check=True).stdout
    usage = [line for line in m.splitlines() if line.startswith("memory.usage_in_bytes")]
    assert usage and int(usage[0].split()[-1]) > 0, m
    ctrd.ctr("task", "pause", cid, check=True)
    assert _wait_status(ctrd, cid, "PAUSED") == "PAUSED"
    ctrd.ctr("task", "resume", cid, check=True)
    assert _wait_status(ctrd, cid, "RUNNING") == "RUNNING"
    ctrd.ctr("task", "kill", "-s", "SIGTERM", cid, check=True)
    assert _wait_status(ctrd, cid, "STOPPED") == "STOPPED"
    r = ctrd.ctr("task", "delete", cid, check=True)
    assert "7" in r.stdout or r.returncode == 0
    ctrd.ctr("containers", "rm", cid, check=True)
    assert _leftovers(ctrd, cid) == []


def test_kill_all_and_exec_detached_processes_reaped(ctrd):
    cid = "c-all"
    _run(ctrd, "-d", IMAGE, cid, "sleep", "300", check=True)
    assert _wait_status(ctrd, cid, "RUNNING") == "RUNNING"
    ctrd.ctr("task", "exec", "-d", "--exec-id", "bg", cid, "sleep", "300", check=True)
    assert len(ctrd.ctr("task", "ps", cid, check=True).stdout.splitlines()) >= 3
    ctrd.ctr("task", "kill", "-a", "-s", "SIGKILL", cid, check=True)
    assert _wait_status(ctrd, cid, "STOPPED") == "STOPPED"
    ctrd.ctr("task", "delete", cid, check=True)
    ctrd.ctr("containers", "rm", cid, check=True)
    assert _leftovers(ctrd, cid) == []


def test_memory_limit_is_enforced(ctrd):
    limit = 32 * 1024 * 1024
    cid = "c-mem"
    _run(ctrd, "-d", "--memory-limit", limit, IMAGE, cid, "sleep", "300", check=True)
    assert _wait_status(ctrd, cid, "RUNNING") == "RUNNING"
    f = Path("/sys/fs/cgroup/memory") / ctrd.namespace / cid / "memory.limit_in_bytes"
    assert int(f.read_text()) == limit
    r = ctrd.ctr("task", "exec", "--exec-id", "hog", cid, "sh", "-c",
                 'x=$(head -c 100000000 /dev/zero | tr "\\0" a); echo survived')
    assert "survived" not in r.stdout and r.returncode != 0, (r.returncode, r.stdout)
    ctrd.ctr("task", "kill", "-s", "SIGKILL", cid)
    _wait_status(ctrd, cid, "STOPPED")
    ctrd.ctr("task", "delete", cid, check=True)
    ctrd.ctr("containers", "rm", cid, check=True)
    r = _run(ctrd, "--rm", "--memory-limit", limit, IMAGE, "c-oom", "sh", "-c",
             'x=$(head -c 100000000 /dev/zero | tr "\\0" a); echo survived')
    assert "survived" not in r.stdout and r.returncode == 137, (r.returncode, r.stdout)
    assert _leftovers(ctrd, cid) == [] and _leftovers(ctrd, "c-oom") == []


def test_errors_reach_the_user_through_log_json(ctrd):
    """A create the runtime refuses: containerd shows our message (read from log.json)."""
    r = _run(ctrd, "--rm", "--cwd", "/no/such/dir", IMAGE, "c-err", "true")
    assert r.returncode != 0
    assert "/no/such/dir" in r.stderr, r.stderr
    ctrd.ctr("containers", "rm", "c-err")
    assert _leftovers(ctrd, "c-err") == []
