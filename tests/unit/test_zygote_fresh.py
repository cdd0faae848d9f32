"""zygote.start_fresh (pydocklite/shim/zygote.py): the API service's shim zygote, a new
interpreter on the caller's code: it serves requests like a forked one, its parent is the
caller, it runs from /, it leaves after its idle time (start_fresh then returns its
status), and with zygotes disabled none is started."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests import unpriv

REPO = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import json, os, sys, threading, time
from pathlib import Path
from pydocklite.shim import zygote
rt = Path(sys.argv[1])
out = {}
def run():
    out["status"] = zygote.start_fresh(rt)
t = threading.Thread(target=run)
t.start()
sock, lock = zygote.paths(rt)
for _ in range(300):
    if os.path.exists(sock):
        break
    time.sleep(0.02)
out["sock"] = os.path.exists(sock)
def cmdline(p):
    try:
        return open(f"/proc/{p}/cmdline", "rb").read().decode(errors="replace")
    except OSError:
        return ""
pids = [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()
        and "__shim-zygote" in cmdline(p) and str(rt) in cmdline(p)]
out["zygotes"] = len(pids)
if pids:
    z = pids[0]
    out["ppid"] = int(open(f"/proc/{z}/stat").read().rpartition(")")[2].split()[1])
    out["cwd"] = os.readlink(f"/proc/{z}/cwd")
    # a request is served (the fds are ours: no go, so the forked shim just exits)
    go_r, go_w = os.pipe()
    ready_r, ready_w = os.pipe()
    from pydocklite.settings import Settings
    settings = Settings(data_root=rt / "data", config_dir=rt / "conf", runtime_dir=rt)
    out["ask"] = zygote.ask(settings, [go_r, ready_w], None, 0, False)
    os.close(go_r); os.close(ready_w); os.close(go_w)
    out["no_go"] = os.read(ready_r, 100).decode()
t.join(30)
out["left"] = not t.is_alive()
out["me"] = os.getpid()
print(json.dumps(out))
"""


def run_script(tmp_path: Path, idle: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO), PYDOCKLITE_SHIM_ZYGOTE_IDLE=idle)
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], env=env,
                       capture_output=True, text=True, timeout=60, cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_fresh_zygote_serves_then_leaves(tmp_path):
    rt = tmp_path / "run"
    rt.mkdir(mode=0o700)
    try:
        out = run_script(rt, "1.5")
    finally:
        for pid, cmd in unpriv.processes():
            if "__shim-zygote" in cmd and str(rt) in cmd:
                os.kill(pid, 9)
    assert out["sock"] and out["zygotes"] == 1
    assert out["ppid"] == out["me"] and out["cwd"] == "/"
    assert out["ask"] == "forked" and out["no_go"] == ""
    assert out["left"] and out["status"] == 0        # idle, it left on its own


def test_disabled_starts_none(tmp_path):
    out = run_script(tmp_path, "0")
    assert out["status"] is None and out["zygotes"] == 0 and not out["sock"]
