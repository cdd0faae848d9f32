"""A new snapshot store opened by many processes at once (20 `run -d` on a fresh home):
each of them finds the table, none is told the database is locked.

The table used to be made after the switch to WAL, which writes the file's first page at
once: a process that saw a non-empty file took it as set up and found no table."""
from __future__ import annotations

import multiprocessing
import traceback
import types

from snapshotter.snapshots import Snapshotter

PROCESSES = 16
ROUNDS = 12


def _open_and_walk(root: str, go, results) -> None:
    go.wait()
    try:
        snap = Snapshotter(types.SimpleNamespace(snapshots_dir=root))
        results.put(("ok", len(snap.walk())))
    except Exception:  # noqa: BLE001 - the failure is what the test reports
        results.put(("failed", traceback.format_exc().splitlines()[-1]))


def test_a_new_store_opened_by_many_processes_at_once(tmp_path):
    ctx = multiprocessing.get_context("fork")
    failures = []
    for r in range(ROUNDS):
        root = str(tmp_path / f"store{r}")
        go, results = ctx.Event(), ctx.Queue()
        procs = [ctx.Process(target=_open_and_walk, args=(root, go, results))
                 for _ in range(PROCESSES)]
        for p in procs:
            p.start()
        go.set()
        got = [results.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(timeout=60)
        failures += [what for status, what in got if status != "ok"]
        assert all(what == 0 for status, what in got if status == "ok")
    assert failures == [], failures
