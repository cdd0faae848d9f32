"""The shim zygote's hand-over (pydocklite/shim/zygote.py) with the shim's life replaced by
a probe: a real zygote process, real fd passing; what the forked child gets is the
caller's (environment, directory, umask, settings, fds), and a caller whose process
context differs is refused."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests import unpriv

REPO = Path(__file__).resolve().parents[2]

PROBE = r"""
import json, os, resource, sys, time
from pathlib import Path
from pydocklite.settings import Settings
from pydocklite.shim import launch, zygote

def probe(settings, go_r, ready_w, exit_fd, attach, preload, make_zygote=False):
    go = os.read(go_r, 100).decode()
    mask = os.umask(0)
    os.write(ready_w, json.dumps({
        "mark": os.environ.get("PDL_MARK"), "cwd": os.getcwd(), "umask": mask,
        "runtime_dir": str(settings.runtime_dir), "data_root": str(settings.data_root),
        "insecure": list(settings.insecure_registries), "go": go, "ppid": os.getppid(),
        "exit": exit_fd is not None, "attach": len(attach or []), "preload": preload,
        "make": make_zygote}).encode() + b"\n")
    if exit_fd is not None:
        os.write(exit_fd, b"exit-fd-works\n")
    return 0

launch._shim_process = probe
rt = Path(sys.argv[1])
settings = Settings(data_root=rt / "data", config_dir=rt / "conf", runtime_dir=rt / "run",
                    insecure_registries=("reg.example:5000",))
zygote.become(settings.runtime_dir)
sock, lock = zygote.paths(settings.runtime_dir)
for _ in range(200):
    if os.path.exists(sock):
        break
    time.sleep(0.02)
out = {}

def one(tag, where=settings, **kw):
    pending = launch.fork_ahead(where, preload=True, **kw)
    pending.go("c0ffee", tag)
    out[tag] = json.loads(pending.read_ready())

os.environ["PDL_MARK"] = "first"
out["initial_umask"] = os.umask(0o022)
os.umask(out["initial_umask"])
one("first")
os.environ["PDL_MARK"] = "second"
os.chdir(str(rt))
os.umask(0o027)
r, w = os.pipe()
one("second", exit_fd=w, attach=[0, 1, 2])
os.close(w)
out["exit_fd"] = os.read(r, 100).decode()
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (soft - 1, hard))
go_r, go_w = os.pipe()
ready_r, ready_w = os.pipe()
out["other_context"] = zygote.ask(settings, [go_r, ready_w], None, 0, True)
resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
out["same_context"] = zygote.ask(settings, [go_r, ready_w], None, 0, False)
os.close(go_w)                  # no go: the child exits
os.close(ready_w)
out["no_go"] = json.loads(os.read(ready_r, 1000))["go"]
out["sock"], out["lock"] = sock, lock
# no zygote: the caller forks its shim, which is to make one; one that takes the request
# and answers nothing: the caller forks its shim with fresh pipes, no zygote made
import socket, threading
absent = settings._replace(runtime_dir=rt / "run2")
one("absent", where=absent)
mute = settings._replace(runtime_dir=rt / "run3")
os.makedirs(mute.runtime_dir)
srv = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
srv.bind(zygote.paths(mute.runtime_dir)[0])
srv.listen(4)
def swallow():
    conn, _ = srv.accept()
    conn.recv(1 << 20)
    conn.close()
threading.Thread(target=swallow, daemon=True).start()
one("mute", where=mute)
# no zygote, and a caller that starts its own (the API service): the shim is forked here
# and makes none, the caller is told
told = settings._replace(runtime_dir=rt / "run4")
one("told", where=told, zygote_absent=lambda: out.setdefault("told_called", True))
print(json.dumps(out))
"""


def zygote_pids(rt: Path) -> list:
    return [pid for pid, cmd in unpriv.processes() if "__shim-zygote" in cmd and str(rt) in cmd]


def test_child_gets_the_callers_surroundings(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO), PYDOCKLITE_SHIM_ZYGOTE_IDLE="20")
    r = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path)], env=env,
                       capture_output=True, text=True, timeout=60, cwd="/")
    zyg = zygote_pids(tmp_path)
    try:
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        assert len(zyg) == 1
        first, second = out["first"], out["second"]
        assert first["ppid"] == zyg[0] and second["ppid"] == zyg[0]
        assert (first["mark"], second["mark"]) == ("first", "second")
        assert (first["cwd"], second["cwd"]) == ("/", str(tmp_path))
        assert (first["umask"], second["umask"]) == (out["initial_umask"], 0o027)
        assert first["runtime_dir"] == str(tmp_path / "run")
        assert first["data_root"] == str(tmp_path / "data")
        assert first["insecure"] == ["reg.example:5000"]
        assert first["go"] == "c0ffee first\n" and second["go"] == "c0ffee second\n"
        assert (first["exit"], first["attach"]) == (False, 0)
        assert (second["exit"], second["attach"]) == (True, 3)
        assert out["exit_fd"] == "exit-fd-works\n"
        assert first["preload"] is True and first["make"] is False
        assert out["other_context"] == "refused"
        assert out["same_context"] == "forked" and out["no_go"] == ""
        assert out.get("told_called") is True
        for tag, make in (("absent", True), ("mute", False), ("told", False)):
            assert out[tag]["go"] == f"c0ffee {tag}\n" and out[tag]["make"] is make
            assert out[tag]["ppid"] not in zyg
        assert os.path.exists(out["sock"]) and os.path.exists(out["lock"])
        assert (tmp_path / "run").stat().st_mode & 0o777 == 0o700
    finally:
        for pid in zyg:
            os.kill(pid, 9)
