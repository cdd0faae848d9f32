"""`run --init`: pydocklite's own init (pydocklite/embedded/init.c) as the container's pid 1,
mounted read-only at /dev/init; run as the unprivileged test user with a busybox image."""
from __future__ import annotations

import json
import time

import pytest

from tests.fixtures.cli_runner import ok

from pydocklite.embedded_init import packaged_init


@pytest.fixture
def busybox(cli, registry):
    if not packaged_init().is_file():
        pytest.fail(f"{packaged_init()} is missing: ./build.sh compiles it (gcc, libc6-dev)")
    ref = registry.ref("busybox")
    ok(cli("pull", "-q", ref))
    return ref


def test_init_is_pid1_and_passes_the_exit_status(cli, busybox):
    r = ok(cli("run", "--rm", "--init", busybox, "sh", "-c",
               "tr '\\0' ' ' < /proc/1/cmdline; echo; echo sh=$$; ps; "
               "touch /dev/init 2>/dev/null && echo writable || echo readonly"))
    lines = r.stdout.splitlines()
    assert lines[0].startswith("/dev/init -- sh -c "), lines[0]
    assert lines[1] != "sh=1"                     # the command is init's child, not pid 1
    ps1 = [l for l in lines if l.split()[:1] == ["1"]]
    assert ps1 and "/dev/init" in ps1[0], r.stdout
    assert lines[-1] == "readonly"
    assert cli("run", "--rm", "--init", busybox, "sh", "-c", "exit 7").returncode == 7
    assert cli("run", "--rm", "--init", busybox, "sh", "-c", "kill -KILL $$").returncode == 137
    r = cli("run", "--rm", "--init", busybox, "no-such-command")
    assert r.returncode == 127 and "no-such-command" in r.stderr
    # a non-root user in the container can execute it too
    r = ok(cli("run", "--rm", "--init", "-u", "nobody", busybox, "id", "-u"))
    assert r.stdout.strip() == "65534"


def test_init_reaps_orphaned_zombies(cli, busybox):
    # the subshell exits at once, so its `sleep` is reparented to pid 1 and exits later:
    # only a pid 1 that reaps leaves no zombie behind
    script = ("(sleep 0.2 &); sleep 1.2; "
              "for f in /proc/[0-9]*/status; do grep -q '^State:.*Z' $f 2>/dev/null && "
              "echo ZOMBIE $f; done; echo checked")
    r = ok(cli("run", "--rm", "--init", busybox, "sh", "-c", script))
    assert r.stdout.strip().splitlines()[-1] == "checked"
    assert "ZOMBIE" not in r.stdout, r.stdout
    # control (the check can see zombies): with `sleep` as pid 1, which never reaps,
    # the orphan stays a zombie
    ok(cli("run", "-d", "--name", "noinit", busybox, "sh", "-c", "(sleep 0.2 &); exec sleep 30"))
    time.sleep(1.2)
    r = ok(cli("exec", "noinit", "sh", "-c",
               "grep -l '^State:.*Z' /proc/[0-9]*/status 2>/dev/null; echo checked"))
    assert len(r.stdout.split()) == 2, r.stdout
    ok(cli("rm", "-f", "noinit"))


def test_stop_forwards_term_to_a_process_without_handler(cli, busybox):
    ok(cli("run", "-d", "--init", "--name", "sleepy", busybox, "sleep", "300"))
    deadline = time.time() + 20
    while "running" not in cli("ps", "--format", "{{.State}}").stdout:
        assert time.time() < deadline
        time.sleep(0.1)
    t = time.monotonic()
    ok(cli("stop", "sleepy"))
    took = time.monotonic() - t
    st = json.loads(ok(cli("inspect", "sleepy")).stdout)[0]
    assert st["HostConfig"]["Init"] is True
    # SIGTERM reached `sleep` (143 = 128+15); without init it is ignored and stop waits 10 s
    assert st["State"]["ExitCode"] == 143, st["State"]
    assert took < 8, f"stop took {took:.1f}s: it waited for the 10 s grace period"
    ok(cli("rm", "sleepy"))
