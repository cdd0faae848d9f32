"""Issue 10, class 8 (container part): commands racing on one container, as real processes
of the unprivileged test user. One life lock per container (ContainerStore.operation)
means two `start`s, or a `start` and an `rm`, can't both act; every state file is
written atomically, so a CLI killed at any moment leaves nothing torn."""
from __future__ import annotations

import json
import random
import signal
import subprocess
import time

from tests import unpriv
from tests.cli.test_containers import NOTHING, data_dir, leftovers
from tests.fixtures.cli_runner import ok


def _shims(cid: str) -> list:
    """The shims of container `cid` (not the FUSE servers they fork, which share the title)."""
    titled = {pid: cmd for pid, cmd in unpriv.user_processes()
              if "__shim" in cmd and cid in cmd}
    return [cmd for pid, cmd in titled.items() if _ppid(pid) not in titled]


def _ppid(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rpartition(")")[2].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def _run_all(cli, *commands) -> list:
    """Start every command at once; [(rc, stdout, stderr)] in order."""
    procs = [cli.popen(*c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for c in commands]
    out = []
    for p in procs:
        so, se = p.communicate(timeout=120)
        out.append((p.returncode, so, se))
    return out


def _inspect(cli, cid: str) -> dict:
    return json.loads(ok(cli("inspect", cid)).stdout)[0]


def test_concurrent_starts_start_the_container_once(cli, busybox):
    cid = ok(cli("create", busybox, "sleep", "60")).stdout.strip()
    results = _run_all(cli, *[("start", cid)] * 4)
    # docker: a start of a running container is no error (the daemon answers 304)
    assert [r[0] for r in results] == [0] * 4, results
    state = _inspect(cli, cid)["State"]
    assert state["Status"] == "running" and state["Error"] == "", state
    assert len(_shims(cid)) == 1, _shims(cid)
    ok(cli("rm", "-f", cid))
    assert leftovers(cli.home) == NOTHING


def test_start_racing_rm_ends_in_one_coherent_outcome(cli, busybox):
    seen = set()
    for _ in range(4):
        cid = ok(cli("create", busybox, "sleep", "60")).stdout.strip()
        (s_rc, _, s_err), (r_rc, _, r_err) = _run_all(cli, ("start", cid), ("rm", cid))
        if r_rc == 0:               # rm went first: start finds nothing, nothing is left
            assert s_rc != 0 and "No such container" in s_err, s_err
            assert leftovers(cli.home) == NOTHING
            seen.add("rm first")
        else:                       # start went first: rm refuses a running container
            assert s_rc == 0 and "running" in r_err, (s_err, r_err)
            assert _inspect(cli, cid)["State"]["Status"] == "running"
            assert len(_shims(cid)) == 1
            ok(cli("rm", "-f", cid))
            seen.add("start first")
    assert seen, "no round finished"


def test_start_racing_rm_force_leaves_nothing(cli, busybox):
    for _ in range(3):
        cid = ok(cli("create", busybox, "sleep", "60")).stdout.strip()
        (_, _, s_err), (r_rc, _, r_err) = _run_all(cli, ("start", cid), ("rm", "-f", cid))
        assert r_rc == 0, r_err
        assert leftovers(cli.home, grace=3) == NOTHING, (s_err, r_err)


def test_concurrent_rms_remove_once(cli, busybox):
    cid = ok(cli("run", "-d", busybox, "sleep", "60")).stdout.strip()
    results = _run_all(cli, *[("rm", "-f", cid)] * 3)
    codes = sorted(r[0] for r in results)
    assert codes[0] == 0 and all(c in (0, 1) for c in codes), results
    for rc, _, err in results:
        assert rc == 0 or "No such container" in err, err
    assert leftovers(cli.home, grace=3) == NOTHING


def test_stop_racing_restart_policy(cli, busybox):
    """A container that keeps dying under --restart always, stopped while its shim backs
    off: the shim must not start it again after the stop returned."""
    cid = ok(cli("run", "-d", "--restart", "always", busybox, "sh", "-c", "sleep 0.1; exit 3")
             ).stdout.strip()
    deadline = time.monotonic() + 30
    while True:                 # wait for a back-off long enough to stop the container in
        state = _inspect(cli, cid)
        if state["State"]["Restarting"] and state["RestartCount"] >= 3:
            break
        assert time.monotonic() < deadline, state["State"]
        time.sleep(0.05)
    ok(cli("stop", "-t", "1", cid))
    stopped = _inspect(cli, cid)
    time.sleep(2.5)
    after = _inspect(cli, cid)
    state = after["State"]
    assert state["Status"] == "exited" and not state["Restarting"], state
    # not started once more after the stop returned
    assert (after["RestartCount"], state["StartedAt"]) == \
        (stopped["RestartCount"], stopped["State"]["StartedAt"])
    assert _shims(cid) == []
    ok(cli("rm", cid))
    assert leftovers(cli.home) == NOTHING


def test_a_cli_killed_at_any_moment_leaves_no_torn_file(cli, busybox):
    """SIGKILL `create` at random moments: each record the killed commands left is whole
    (its state.json, config.json and shim.json parse, or are absent), `ps -a` and `inspect`
    work, and `rm -f` clears them all."""
    rng = random.Random(11)
    for _ in range(8):
        p = cli.popen("create", busybox, "sh", stdout=subprocess.DEVNULL,
                      stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.05, 0.6))
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
    containers = data_dir(cli.home) / "containers"
    for d in (p for p in containers.iterdir() if not p.name.startswith(".")):
        for name in ("state.json", "config.json", "shim.json"):
            f = d / name
            if f.exists():
                json.loads(f.read_text())        # whole, or not there at all
    ids = ok(cli("ps", "-aq", "--no-trunc")).stdout.split()
    for cid in ids:
        ok(cli("inspect", cid))
    if ids:
        ok(cli("rm", "-f", *ids))
    assert leftovers(cli.home) == NOTHING
