"""`attach` to running containers as the unprivileged test user: output (stdout and stderr
apart), stdin, a real pty with the detach keys, the signal proxy, several clients at once,
the exit code, and the refusal for a stopped container."""
from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import time

from tests.fixtures.cli_runner import ok


def _read_until(fd: int, marker: bytes, timeout: float = 20) -> bytes:
    buf = b""
    deadline = time.monotonic() + timeout
    while marker not in buf:
        left = deadline - time.monotonic()
        assert left > 0, buf
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
    return buf


def test_output_streams_apart_and_the_exit_code(cli, busybox):
    cid = ok(cli("run", "-d", busybox, "sh", "-c",
                 "sleep 1; for i in 1 2 3; do echo out $i; echo err $i >&2; sleep 0.2; done;"
                 " exit 5")).stdout.strip()
    r = cli("attach", cid, timeout=60)
    assert r.returncode == 5, r.stderr
    assert "out 1\nout 2\nout 3\n" in r.stdout and "err" not in r.stdout
    assert "err 1\nerr 2\nerr 3\n" in r.stderr
    ok(cli("rm", cid))


def test_stdin_reaches_a_container_made_with_i(cli, busybox):
    cid = ok(cli("run", "-d", "-i", busybox, "sh", "-c", "read line; echo got $line; exit 4")
             ).stdout.strip()
    r = cli("attach", cid, input="hello there\n", timeout=60)
    assert r.returncode == 4 and "got hello there" in r.stdout, (r.stdout, r.stderr)
    # --no-stdin: nothing is sent, the output still comes
    cid2 = ok(cli("run", "-d", "-i", busybox, "sh", "-c",
                  "sleep 1; echo ready; read -t 2 line || echo no input; exit 0")).stdout.strip()
    r = cli("attach", "--no-stdin", cid2, input="ignored\n", timeout=60)
    assert r.returncode == 0 and "no input" in r.stdout, r.stdout
    ok(cli("rm", cid, cid2))


def test_a_tty_detaches_with_the_keys_and_the_container_runs_on(cli, busybox):
    cid = ok(cli("run", "-d", "-i", "-t", busybox, "sh")).stdout.strip()
    for keys, seq in ((None, b"\x10\x11"), ("ctrl-x,z", b"\x18z")):
        master, slave = pty.openpty()
        args = ["attach"] + (["--detach-keys", keys] if keys else []) + [cid]
        p = cli.popen(*args, stdin=slave, stdout=slave, stderr=slave)
        os.close(slave)
        try:
            time.sleep(1.0)
            os.write(master, b"echo hi-$((40+2))\r")
            _read_until(master, b"hi-42")
            os.write(master, seq)
            assert p.wait(timeout=20) == 0
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            os.close(master)
        state = ok(cli("inspect", "--format", "{{.State.Status}}", cid)).stdout.strip()
        assert state == "running"
    ok(cli("rm", "-f", cid))


def test_signals_are_proxied(cli, busybox):
    cid = ok(cli("run", "-d", busybox, "sh", "-c",
                 "trap 'echo got TERM; exit 3' TERM; echo armed; "
                 "while :; do sleep 0.1; done")).stdout.strip()
    p = cli.popen("attach", cid, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(2)
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 3 and b"got TERM" in out, (out, err)
    ok(cli("rm", cid))


def test_two_clients_at_once_and_the_attach_event(cli, busybox):
    cid = ok(cli("run", "-d", busybox, "sh", "-c",
                 "sleep 1.5; echo shared; sleep 0.5; exit 0")).stdout.strip()
    a = cli.popen("attach", cid, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    b = cli.popen("attach", cid, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    outs = [x.communicate(timeout=60)[0] for x in (a, b)]
    assert outs == [b"shared\n", b"shared\n"] and a.returncode == b.returncode == 0
    got = ok(cli("events", "--since", "5m", "--until", "0s", "--filter", "event=attach",
                 "--filter", f"container={cid}", "--format", "{{.Action}}")).stdout.split()
    assert got == ["attach", "attach"]
    ok(cli("rm", cid))


def test_attach_to_a_stopped_container_is_refused(cli, busybox):
    cid = ok(cli("create", busybox, "true")).stdout.strip()
    r = cli("attach", cid)
    assert r.returncode != 0 and "You cannot attach to a stopped container" in r.stderr
    r = cli("attach", "--detach-keys", "ctrl-1", cid)
    assert r.returncode == 125 and "invalid detach keys" in r.stderr
    r = cli("attach", "nosuchcontainer")
    assert r.returncode != 0 and "No such container" in r.stderr
    ok(cli("rm", cid))
