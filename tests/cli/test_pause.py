"""`pause` / `unpause` as Docker has them: rootless without a delegated cgroup (every process
of the container stopped, forks included), and with a delegated cgroup v1 freezer."""
from __future__ import annotations

import io
import json
import os
import tarfile
import time

import pytest

from tests import unpriv
from tests.fixtures.cgroups_v1 import delegated_v1_children
from tests.fixtures.cli_runner import ok

COUNTER = ("i=0; (while :; do sleep 0.02; done) & "
           "while :; do i=$((i+1)); echo $i > /tmp/n.new; mv /tmp/n.new /tmp/n; sleep 0.02; done")


def _count(cli) -> int:
    """The counter, read with cp (which works on a paused container; exec does not)."""
    r = ok(cli("cp", "box:/tmp/n", "-", text=False))
    with tarfile.open(fileobj=io.BytesIO(r.stdout)) as tf:
        return int(tf.extractfile("n").read())


def _states(cli) -> dict:
    """Host pid -> state letter of every process of the container (its pid namespace)."""
    init = int(ok(cli("inspect", "-f", "{{.State.Pid}}", "box")).stdout)
    ns = os.readlink(f"/proc/{init}/ns/pid")
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{name}/ns/pid") != ns:
                continue
            data = open(f"/proc/{name}/stat", "rb").read()
        except OSError:
            continue
        out[int(name)] = data[data.rindex(b")") + 2:][:1].decode()
    return out


def _wait_count(cli, above: int, timeout: float = 20) -> int:
    deadline = time.monotonic() + timeout
    while True:
        r = cli("cp", "box:/tmp/n", "-", text=False)
        if r.returncode == 0:
            n = _count(cli)
            if n > above:
                return n
        assert time.monotonic() < deadline, "the counter does not advance"
        time.sleep(0.1)


@pytest.fixture
def cleanup(cli):
    """Whatever a test leaves behind (a failed assert included), `rm -f box` removes: the
    container's own processes carry no path of the test's home, the stray sweep misses them."""
    yield
    cli("unpause", "box")
    cli("rm", "-f", "box")


def _status(cli) -> dict:
    return json.loads(ok(cli("inspect", "box")).stdout)[0]["State"]


def _pause_cycle(cli):
    before = _wait_count(cli, 3)
    r = ok(cli("pause", "box"))
    assert r.stdout == "box\n"
    st = _status(cli)
    assert st["Status"] == "paused" and st["Paused"] is True and st["Running"] is True
    assert "(Paused)" in ok(cli("ps")).stdout
    frozen = _count(cli)
    time.sleep(0.5)
    assert _count(cli) == frozen >= before, "the container ran while paused"
    # Docker's errors, exit 1
    r = cli("pause", "box")
    assert r.returncode == 1 and "is already paused" in r.stderr, r.stderr
    r = cli("exec", "box", "true")
    assert r.returncode != 0 and "is paused, unpause the container before exec" in r.stderr
    assert ok(cli("unpause", "box")).stdout == "box\n"
    assert _status(cli)["Status"] == "running"
    _wait_count(cli, frozen)
    r = cli("unpause", "box")
    assert r.returncode == 1 and "is not paused" in r.stderr, r.stderr


def test_pause_without_a_cgroup_stops_every_process(cli, busybox, cleanup):
    # --user: processes of another uid than the user's (a subordinate id): only signals
    # sent from inside the container's user namespace reach them
    ok(cli("run", "-d", "--name", "box", "--user", "1000", busybox, "sh", "-c",
           "(while :; do sh -c 'sleep 0.01' & sleep 0.01; done) & " + COUNTER))
    _pause_cycle(cli)
    ok(cli("pause", "box"))
    states = _states(cli)
    assert states and set(states.values()) <= {"T", "t", "Z"}, states
    time.sleep(0.3)                         # a fork between two scans was caught too
    assert set(_states(cli).values()) <= {"T", "t", "Z"}
    # stop of a paused container: the signal is acted on once it runs again
    t0 = time.monotonic()
    ok(cli("stop", "-t", "2", "box"))
    assert time.monotonic() - t0 < 30
    assert _status(cli)["Status"] == "exited"
    r = cli("pause", "box")
    assert r.returncode == 1 and "is not running" in r.stderr
    ok(cli("rm", "box"))


def test_rm_force_of_a_paused_container(cli, busybox, cleanup):
    ok(cli("run", "-d", "--name", "box", busybox, "sh", "-c", COUNTER))
    _wait_count(cli, 1)
    ok(cli("pause", "box"))
    ok(cli("rm", "-f", "box"))
    assert cli("inspect", "box").returncode != 0


def test_info_says_how_pause_works(cli):
    out = ok(cli("info")).stdout
    assert " Pause: " in out and "SIGSTOP" in out


def test_pause_with_a_delegated_cgroup_freezes_it(cli, busybox):
    if os.geteuid() != 0:
        pytest.skip("delegating a cgroup v1 child to the test user needs root")
    user = unpriv.test_user()
    with delegated_v1_children(("memory", "pids", "cpu", "cpuacct", "freezer"), user.pw_uid,
                               user.pw_gid) as bases:
        freezer = [b for b in bases if "/freezer/" in b]
        if not freezer:
            pytest.skip("no cgroup v1 freezer hierarchy on this host")
        env = {"PYDOCKLITE_CGROUP_BASE": ":".join(bases)}
        ok(cli("run", "-d", "--name", "box", "--pids-limit", "100", busybox, "sh", "-c",
               COUNTER, env=env))
        try:
            _wait_count(cli, 3)
            ok(cli("pause", "box", env=env))
            cid = ok(cli("inspect", "-f", "{{.Id}}", "box")).stdout.strip()
            states = [os.path.join(e.path, "freezer.state") for e in os.scandir(freezer[0])
                      if e.is_dir() and cid in e.name]     # not the FUSE servers' leaf
            assert states and all(open(s).read().strip() == "FROZEN" for s in states), states
            assert _status(cli)["Status"] == "paused"
            ok(cli("unpause", "box", env=env))
            assert all(open(s).read().strip() == "THAWED" for s in states)
            ok(cli("pause", "box", env=env))
        finally:
            ok(cli("rm", "-f", "box", env=env))


def test_commit_pauses_a_running_container_and_lets_it_go_on(cli, busybox, cleanup):
    ok(cli("run", "-d", "--name", "box", busybox, "sh", "-c", COUNTER))
    try:
        n = _wait_count(cli, 1)
        image_id = ok(cli("commit", "box", "box:one")).stdout.strip()
        assert image_id.startswith("sha256:")
        assert _status(cli)["Status"] == "running"        # unpaused after the walk
        n = _wait_count(cli, n)
        ok(cli("commit", "--pause=false", "box", "box:two"))
        ok(cli("pause", "box"))
        ok(cli("commit", "box", "box:three"))              # already paused: stays paused
        assert _status(cli)["Status"] == "paused"
        ok(cli("unpause", "box"))
        _wait_count(cli, n)
        r = ok(cli("run", "--rm", "box:three", "cat", "/tmp/n"))
        assert int(r.stdout) >= n
    finally:
        ok(cli("rm", "-f", "box"))
