"""Snapshotter.sweep: a process killed between making a snapshot's directory and recording
it leaves the directory behind; the sweep deletes it once its maker is gone, and nothing
recorded or still being made."""
from __future__ import annotations

import os
import subprocess

from snapshotter.layout import StoreLayout
from snapshotter.snapshots import Snapshotter


def test_sweep_removes_only_orphans_of_dead_makers(tmp_path):
    layout = StoreLayout(tmp_path / "store").ensure()
    snap = Snapshotter(layout, "vfs")
    snap.prepare("kept", [])                       # recorded: stays
    p = subprocess.Popen(["true"])
    p.wait()                                        # a pid that no longer runs
    orphan = layout.snapshots_dir / f"5f0-{p.pid}"
    (orphan / "upper").mkdir(parents=True)
    (orphan / "upper" / "f").write_text("x")
    making = layout.snapshots_dir / f"5f1-{os.getpid()}"     # its maker runs: kept
    making.mkdir()
    assert snap.sweep() == [str(orphan)]
    assert not orphan.exists() and making.exists()
    assert snap.stat("kept").path and os.path.isdir(snap.stat("kept").path)
    assert (layout.snapshots_dir / "metadata.db").exists()
