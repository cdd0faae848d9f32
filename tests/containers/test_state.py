"""ContainerState facts -> derived status, and the on-disk ContainerStore."""
from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest

from pydocklite.state.container import (ContainerState, ZERO_TIME, human_duration, new_id,
                                        now_rfc3339, parse_rfc3339, pid_alive,
                                        process_start_time)
from pydocklite.state.names import generate_name, is_valid_name
from pydocklite.state.store import (AmbiguousReferenceError, ContainerStore, InvalidNameError,
                                    NameConflictError)
from pydocklite.errors import ContainerError, ContainerNotFoundError


@pytest.fixture
def store(tmp_path):
    s = ContainerStore(tmp_path / "containers")
    s.ensure()
    return s


def _sleeper():
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    return p, process_start_time(p.pid)


def test_process_start_time_and_pid_reuse_guard():
    me = process_start_time(os.getpid())
    assert isinstance(me, int) and me > 0
    assert pid_alive(os.getpid(), me)
    assert not pid_alive(os.getpid(), me + 1)  # same pid, other start time: a reused pid
    assert not pid_alive(0, me)
    assert process_start_time(2 ** 22 + 12345) is None


def test_zombie_counts_as_dead():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    start = None
    for _ in range(2000):
        s = process_start_time(p.pid)
        start = start or s
        if s is None:
            break
        time.sleep(0.01)
    assert process_start_time(p.pid) is None  # exited but not reaped: a zombie
    p.wait()


def test_status_derived_from_live_processes():
    init, init_start = _sleeper()
    shim, shim_start = _sleeper()
    try:
        base = ContainerState(id="a" * 64, name="web", image="nginx")
        assert base.status().state == "created"
        running = base._replace(shim_pid=shim.pid, shim_start_time=shim_start,
                                      init_pid=init.pid, init_start_time=init_start,
                                      started_at=now_rfc3339())
        st = running.status()
        assert (st.state, st.running, st.pid, st.shim_alive) == ("running", True, init.pid, True)
        assert running.human_status().startswith("Up ")
        assert running._replace(paused=True).human_status().endswith("(Paused)")
        # a recycled pid (same number, another start time) is not our init
        reused = running._replace(init_start_time=init_start - 1, exit_code=None)
        assert reused.status().state == "running"  # shim alive: it is recording the exit
        init.kill()
        init.wait()
        exited = running._replace(exit_code=137, finished_at=now_rfc3339())
        st = exited.status()
        assert (st.state, st.running, st.exit_code) == ("exited", False, 137)
        assert exited.human_status().startswith("Exited (137) ")
        assert exited.inspect_state() == {
            "Status": "exited", "Running": False, "Paused": False, "Restarting": False,
            "OOMKilled": False, "Dead": False, "Pid": 0, "ExitCode": 137, "Error": "",
            "StartedAt": exited.started_at, "FinishedAt": exited.finished_at}
        # init gone, exit not yet recorded, shim alive: still "running" until the shim writes it
        assert running.inspect_state()["Running"] is True
        restarting = exited._replace(restarting=True)
        assert restarting.status().state == "restarting"
        # the shim dies while the container was running: exited, with a clear error
        shim.kill()
        shim.wait()
        st = running.status()
        assert st.state == "exited" and st.exit_code == 255
        assert f"shim (pid {shim.pid}) died" in st.error
    finally:
        for p in (init, shim):
            p.kill()
            p.wait()


def test_init_alive_but_shim_gone_is_running_with_error():
    init, init_start = _sleeper()
    try:
        st = ContainerState(id="b" * 64, name="x", image="busybox", shim_pid=init.pid,
                            shim_start_time=init_start + 5, init_pid=init.pid,
                            init_start_time=init_start, started_at=now_rfc3339()).status()
        assert st.state == "running" and "no longer recorded" in st.error
    finally:
        init.kill()
        init.wait()


def test_dead_and_removing_words():
    base = ContainerState(id="c" * 64, name="x", image="i")
    assert base._replace(dead=True).human_status() == "Dead"
    assert base._replace(removing=True).human_status() == "Removal In Progress"
    assert base.human_status() == "Created"


def test_human_duration_like_go_units():
    assert human_duration(0.2) == "Less than a second"
    assert human_duration(1) == "1 second"
    assert human_duration(45) == "45 seconds"
    assert human_duration(90) == "About a minute"
    assert human_duration(600) == "10 minutes"
    assert human_duration(3600) == "About an hour"
    assert human_duration(5 * 3600) == "5 hours"
    assert human_duration(3 * 86400) == "3 days"
    assert human_duration(21 * 86400) == "3 weeks"


def test_times_roundtrip():
    t = now_rfc3339()
    assert t.endswith("Z") and len(t) == len("2026-11-30T09:56:11.123456789Z")
    assert abs(parse_rfc3339(t) - datetime.now(timezone.utc)) < timedelta(seconds=5)
    assert parse_rfc3339(ZERO_TIME) is None
    assert parse_rfc3339("2024-01-02T03:04:05.1+02:00").hour == 3


def test_ids_are_64_hex_and_short_id_not_numeric():
    for _ in range(50):
        cid = new_id()
        assert len(cid) == 64 and int(cid, 16) >= 0 and not cid[:12].isdigit()


def test_names():
    for i in range(30):
        n = generate_name(i % 2)
        assert is_valid_name(n) and "_" in n
    assert not is_valid_name("-bad") and not is_valid_name("a") and is_valid_name("web.1_x-y")


def test_create_load_update_list_remove(store):
    s1 = store.create(ContainerState(id="", name="web", image="nginx",
                                     config={"Cmd": ["nginx"]}))
    assert len(s1.id) == 64 and s1.name == "web" and s1.created != ZERO_TIME
    s2 = store.create(ContainerState(id="", name="", image="busybox"))
    assert is_valid_name(s2.name)
    assert store.load(s1.id) == s1
    raw = json.loads(store.state_path(s1.id).read_text())
    assert raw["config"] == {"Cmd": ["nginx"]} and raw["schema"] == 1
    assert [s.id for s in store.list()] == [s2.id, s1.id]  # newest first
    new = store.update(s1.id, lambda s: s._replace(exit_code=3))
    assert store.load(s1.id).exit_code == 3 == new.exit_code
    assert store.get("web").id == s1.id and store.get("/web").id == s1.id
    store.remove(s1.id)
    with pytest.raises(ContainerNotFoundError, match="No such container: web"):
        store.get("web")
    assert [s.id for s in store.list()] == [s2.id]
    # the name is free again
    assert store.create(ContainerState(id="", name="web", image="nginx")).name == "web"
    assert not any(p.name.endswith(".tmp") for p in store.root.rglob("*"))


def test_name_conflict_and_invalid(store):
    a = store.create(ContainerState(id="", name="web", image="nginx"))
    with pytest.raises(NameConflictError, match=f'"/web" is already in use by container "{a.id}"'):
        store.create(ContainerState(id="", name="web", image="nginx"))
    with pytest.raises(InvalidNameError):
        store.create(ContainerState(id="", name="bad name", image="nginx"))
    assert len(store.list()) == 1


def test_stale_name_link_is_reclaimed(store):
    a = store.create(ContainerState(id="", name="web", image="nginx"))
    import shutil
    shutil.rmtree(store.container_dir(a.id))  # a crash left only the name link
    b = store.create(ContainerState(id="", name="web", image="nginx"))
    assert store.get("web").id == b.id


def test_lookup_by_prefix_and_ambiguity(store):
    a = store.create(ContainerState(id="abc1" + "0" * 60, name="one", image="i"))
    b = store.create(ContainerState(id="abc2" + "0" * 60, name="two", image="i"))
    assert store.resolve("abc1") == a.id
    assert store.resolve(b.id) == b.id
    with pytest.raises(AmbiguousReferenceError, match='prefix "abc"'):
        store.resolve("abc")
    with pytest.raises(ContainerNotFoundError, match="No such container: zzz"):
        store.resolve("zzz")
    # an exact name wins over an id prefix
    c = store.create(ContainerState(id="", name="abc", image="i"))
    assert store.resolve("abc") == c.id


def test_rename(store):
    a = store.create(ContainerState(id="", name="old", image="i"))
    store.create(ContainerState(id="", name="taken", image="i"))
    with pytest.raises(NameConflictError):
        store.rename("old", "taken")
    assert store.rename("old", "new").name == "new"
    assert store.get("new").id == a.id
    with pytest.raises(ContainerNotFoundError):
        store.get("old")
    with pytest.raises(ContainerError, match="same name"):
        store.rename("new", "new")


def test_corrupt_state_is_reported(store):
    a = store.create(ContainerState(id="", name="xx", image="i"))
    store.state_path(a.id).write_text("{not json")
    with pytest.raises(ContainerError, match="unreadable state.json"):
        store.load(a.id)
    assert store.list() == []


def _race(root, name, barrier, results):
    store = ContainerStore(root)
    barrier.wait()
    try:
        store.create(ContainerState(id="", name=name, image="i"))
        results.put("won")
    except NameConflictError:
        results.put("lost")


def test_processes_racing_for_one_name_exactly_one_wins(tmp_path):
    root = tmp_path / "containers"
    ctx = multiprocessing.get_context("fork")
    for round_ in range(5):
        n = 4
        barrier, results = ctx.Barrier(n), ctx.Queue()
        procs = [ctx.Process(target=_race, args=(root, f"name{round_}", barrier, results))
                 for _ in range(n)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(30)
            assert p.exitcode == 0
        outcomes = sorted(results.get(timeout=5) for _ in range(n))
        assert outcomes == ["lost"] * (n - 1) + ["won"]
    assert len(ContainerStore(root).list()) == 5


def test_concurrent_updates_are_not_lost(store):
    a = store.create(ContainerState(id="", name="cc", image="i"))
    ctx = multiprocessing.get_context("fork")

    def bump():
        s = ContainerStore(store.root)
        for _ in range(25):
            s.update(a.id, lambda st: st._replace(restart_count=st.restart_count + 1))

    procs = [ctx.Process(target=bump) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert store.load(a.id).restart_count == 100
