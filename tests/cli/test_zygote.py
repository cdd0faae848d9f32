"""The shim zygote (pydocklite/shim/zygote.py) with the built tool as the unprivileged test
user: shims forked by one per-user process, each with its own caller's surroundings; a
caller whose process context differs is not served by it; killed, idle, disabled, or sent
junk, it leaves every container working."""
from __future__ import annotations

import os
import re
import resource
import signal
import socket
import time
from pathlib import Path

from tests.fixtures.cli_runner import ok
from tests.fixtures.shims import ppid, shim_of, zygotes

from tests import unpriv


def wait_for(check, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got or time.monotonic() >= deadline:
            return got
        time.sleep(0.05)


def run_d(cli, busybox, name: str, **kw) -> int:
    ok(cli("run", "-d", "--name", name, busybox, "sleep", "300", **kw))
    return shim_of(cli, name)


def zygote_files(home: Path) -> list:
    return sorted(p.name for p in (home / "run" / "pydocklite").glob("shim-zygote-*"))


def test_shims_forked_by_one_zygote_with_callers_surroundings(cli, busybox):
    first = run_d(cli, busybox, "z1")            # forked by the CLI; it makes the zygote
    zyg = wait_for(lambda: zygotes(cli.home))
    assert len(zyg) == 1 and ppid(first) != zyg[0]
    # the next shims are the zygote's children, each with its own caller's directory and
    # umask, not the first caller's (the environment: tests/unit/test_zygote.py; the shim's
    # title overwrites what /proc shows of it)
    workdir = cli.home / "elsewhere"
    unpriv.make_user_dir(workdir)
    second = run_d(cli, busybox, "z2", cwd=str(workdir), preexec_fn=lambda: os.umask(0o027))
    third = run_d(cli, busybox, "z3")
    assert ppid(second) == zyg[0] and ppid(third) == zyg[0]
    assert os.readlink(f"/proc/{second}/cwd") == str(workdir)
    assert os.readlink(f"/proc/{third}/cwd") == str(cli.home)
    assert "Umask:\t0022" in Path(f"/proc/{third}/status").read_text()
    assert "Umask:\t0027" in Path(f"/proc/{second}/status").read_text()
    for name in ("z1", "z2", "z3"):
        assert ok(cli("exec", name, "echo", "up")).stdout == "up\n"
    # killed: the containers it forked keep running; the next run makes a new one
    os.kill(zyg[0], signal.SIGKILL)
    assert wait_for(lambda: not zygotes(cli.home))
    assert ok(cli("exec", "z2", "echo", "still")).stdout == "still\n"
    run_d(cli, busybox, "z4")
    new = wait_for(lambda: zygotes(cli.home))
    assert new and new != zyg
    assert ppid(run_d(cli, busybox, "z5")) == new[0]
    ok(cli("rm", "-f", "z1", "z2", "z3", "z4", "z5"))
    assert ok(cli("ps", "-aq")).stdout == ""


def test_a_failed_run_makes_none(cli, busybox):
    """A run that fails before its container exists starts nothing that lingers."""
    r = cli("run", "--rm", "--pull", "never", busybox + "-nosuch", "true")
    assert r.returncode == 125 and "No such image" in r.stderr
    time.sleep(0.5)
    assert zygotes(cli.home) == [] and zygote_files(cli.home) == []
    ok(cli("run", "--rm", busybox, "true"))
    assert wait_for(lambda: zygotes(cli.home))


def test_other_process_context_is_not_served(cli, busybox):
    """What a fork inherits and a request can't carry (here the open-files limit) must be
    the caller's: a caller with another is not served by the zygote."""
    run_d(cli, busybox, "c1")
    zyg = wait_for(lambda: zygotes(cli.home))
    assert zyg and ppid(run_d(cli, busybox, "c2")) == zyg[0]

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (200, 200))
    r = ok(cli("run", "--rm", busybox, "sh", "-c", "ulimit -n", preexec_fn=low_limit))
    assert r.stdout.strip() == "200"
    shim = run_d(cli, busybox, "c3", preexec_fn=low_limit)
    assert ppid(shim) != zyg[0]
    assert re.search(r"^Max open files\s+200\s+200\s", Path(f"/proc/{shim}/limits").read_text(),
                     re.M)
    assert zygotes(cli.home) == zyg
    ok(cli("rm", "-f", "c1", "c2", "c3"))


def test_zygote_idles_out_and_can_be_turned_off(cli, busybox):
    env = {"PYDOCKLITE_SHIM_ZYGOTE_IDLE": "1"}
    run_d(cli, busybox, "i1", env=env)
    zyg = wait_for(lambda: zygotes(cli.home))
    assert zyg and ppid(run_d(cli, busybox, "i2", env=env)) == zyg[0]
    assert len(zygote_files(cli.home)) == 2           # its socket and lock
    assert wait_for(lambda: not zygotes(cli.home), timeout=10)
    assert zygote_files(cli.home) == []
    assert ok(cli("exec", "i2", "echo", "orphan")).stdout == "orphan\n"
    ok(cli("rm", "-f", "i1", "i2"))
    off = {"PYDOCKLITE_SHIM_ZYGOTE_IDLE": "0"}
    run_d(cli, busybox, "o1", env=off)
    shim = run_d(cli, busybox, "o2", env=off)
    time.sleep(0.5)
    assert zygotes(cli.home) == [] and zygote_files(cli.home) == []
    assert ok(cli("exec", "o2", "echo", "plain")).stdout == "plain\n" and shim > 0
    ok(cli("rm", "-f", "o1", "o2"))


JUNK = r"""
import array, os, socket, sys
path = sys.argv[1]
def send(payload, fds=()):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.connect(path)
    s.settimeout(5)
    try:
        socket.send_fds(s, [payload], list(fds)) if fds else s.send(payload)
        print(repr(s.recv(4096)))
    except OSError as e:
        print("error", e)
    s.close()
r, w = os.pipe()
send(b"not json")
send(b'{"ctx": "another context", "settings": {}}', [r, w])
send(b"[1, 2, 3]", [r])
send(b'{"ctx": 1, "exit": true, "attach": 9}', [r, w, r, w, r, w, r, w])
send(b"\x00" * 200000)
print("done")
"""


def test_junk_requests_leave_it_serving(cli, busybox):
    """A peer that sends junk (of our uid: only such a peer gets an answer) gets nothing
    forked, and the zygote goes on serving; a peer of another uid is not answered."""
    run_d(cli, busybox, "j1")
    zyg = wait_for(lambda: zygotes(cli.home))
    assert zyg
    sock = [p for p in zygote_files(cli.home) if p.endswith(".sock")]
    assert len(sock) == 1
    path = cli.home / "run" / "pydocklite" / sock[0]
    r = unpriv.python_as_user(["-c", JUNK, str(path)], cli.home, capture_output=True,
                              text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.rstrip().endswith("done"), r.stderr
    assert "pid" not in r.stdout
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:   # root: not our uid
        s.connect(str(path))
        s.settimeout(5)
        s.send(b"{}")
        assert s.recv(4096) == b""
    before = {pid for pid, _ in unpriv.user_processes()}
    assert zygotes(cli.home) == zyg
    assert ppid(run_d(cli, busybox, "j2")) == zyg[0]
    # nothing was forked for the junk: the only new processes are j2's
    new = [cmd for pid, cmd in unpriv.user_processes() if pid not in before]
    assert all("j2" in cmd or "__shim" not in cmd for cmd in new), new
    ok(cli("rm", "-f", "j1", "j2"))
