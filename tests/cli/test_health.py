"""Health checks as the unprivileged test user: run by the container's shim as an exec,
State.Health in inspect, the ps status, health_status events, the image's HEALTHCHECK and
the flags that override it; no thread at all for a container without one."""
from __future__ import annotations

import json
import os
import time

from tests import unpriv
from tests.cli.test_containers import NOTHING, leftovers
from tests.fixtures.cli_runner import ok


def inspect(cli, cid: str) -> dict:
    return json.loads(ok(cli("inspect", cid)).stdout)[0]


def wait_for(cli, cid: str, status: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        got = inspect(cli, cid)
        if (got["State"].get("Health") or {}).get("Status") == status:
            return got
        assert time.monotonic() < deadline, got["State"]
        time.sleep(0.1)


def ps_status(cli, cid: str) -> str:
    return ok(cli("ps", "--filter", f"id={cid}", "--format", "{{.Status}}")).stdout.strip()


def test_unhealthy_then_healthy(cli, busybox):
    cid = ok(cli("run", "-d", "--health-cmd", "cat /tmp/ok", "--health-interval", "300ms",
                 "--health-retries", "2", busybox, "sleep", "60")).stdout.strip()
    first = inspect(cli, cid)
    assert first["Config"]["Healthcheck"] == {"Test": ["CMD-SHELL", "cat /tmp/ok"],
                                              "Interval": 300_000_000, "Retries": 2}
    assert first["State"]["Health"]["Status"] == "starting"
    assert ps_status(cli, cid).endswith("(health: starting)")
    bad = wait_for(cli, cid, "unhealthy")
    health = bad["State"]["Health"]
    assert health["FailingStreak"] >= 2
    last = health["Log"][-1]
    assert last["ExitCode"] == 1 and "No such file" in last["Output"]
    assert last["Start"] <= last["End"]
    assert ps_status(cli, cid).endswith("(unhealthy)")
    ok(cli("exec", cid, "touch", "/tmp/ok"))
    good = wait_for(cli, cid, "healthy")
    assert good["State"]["Health"]["FailingStreak"] == 0
    assert good["State"]["Health"]["Log"][-1]["ExitCode"] == 0
    assert len(good["State"]["Health"]["Log"]) <= 5
    assert ps_status(cli, cid).endswith("(healthy)")
    r = ok(cli("events", "--since", "5m", "--until", "0s", "--filter", f"container={cid}",
               "--filter", "event=health_status", "--format", "{{.Action}}"))
    assert r.stdout.split("\n")[:2] == ["health_status: unhealthy", "health_status: healthy"]
    ok(cli("rm", "-f", cid))
    assert leftovers(cli.home, grace=3) == NOTHING


def test_a_hanging_check_times_out_and_is_killed(cli, busybox):
    cid = ok(cli("run", "-d", "--health-cmd", "sleep 7", "--health-timeout", "300ms",
                 "--health-interval", "3s", "--health-retries", "1", busybox, "sleep", "60")
             ).stdout.strip()
    bad = wait_for(cli, cid, "unhealthy")
    last = bad["State"]["Health"]["Log"][-1]
    assert last["ExitCode"] == -1 and "exceeded timeout (0.3s)" in last["Output"]
    # the killed check left no sleep behind in the container (the next one starts 3 s on)
    top = ok(cli("exec", cid, "ps", "-o", "args")).stdout
    assert "sleep 7" not in top, top
    ok(cli("rm", "-f", cid))
    assert leftovers(cli.home, grace=3) == NOTHING


def test_failures_in_the_start_period_do_not_count(cli, busybox):
    cid = ok(cli("run", "-d", "--health-cmd", "false", "--health-interval", "200ms",
                 "--health-start-period", "60s", "--health-start-interval", "200ms",
                 "--health-retries", "1", busybox, "sleep", "60")).stdout.strip()
    deadline = time.monotonic() + 20
    while len((inspect(cli, cid)["State"]["Health"]).get("Log") or []) < 3:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    health = inspect(cli, cid)["State"]["Health"]
    assert health["Status"] == "starting" and health["FailingStreak"] == 0, health
    ok(cli("rm", "-f", cid))


def test_image_healthcheck_and_no_healthcheck(cli, busybox):
    ctx = cli.home / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        f"FROM {busybox}\nHEALTHCHECK --interval=200ms --retries=1 CMD [\"true\"]\n")
    os.system(f"chown -R {unpriv.test_user().pw_uid} {ctx}")
    ok(cli("build", "-q", "-t", "hc", str(ctx)))
    cid = ok(cli("run", "-d", "hc", "sleep", "60")).stdout.strip()
    good = wait_for(cli, cid, "healthy")
    assert good["Config"]["Healthcheck"]["Test"] == ["CMD", "true"]
    off = ok(cli("run", "-d", "--no-healthcheck", "hc", "sleep", "60")).stdout.strip()
    info = inspect(cli, off)
    assert info["Config"]["Healthcheck"]["Test"] == ["NONE"]
    assert "Health" not in info["State"]
    assert "(" not in ps_status(cli, off)
    # a flag overrides one field of the image's check, the rest stays the image's
    mixed = ok(cli("run", "-d", "--health-retries", "7", "hc", "sleep", "60")).stdout.strip()
    hc = inspect(cli, mixed)["Config"]["Healthcheck"]
    assert hc["Test"] == ["CMD", "true"] and hc["Retries"] == 7 and hc["Interval"] == 200_000_000
    ok(cli("rm", "-f", cid, off, mixed))


def test_no_thread_without_a_check(cli, busybox):
    plain = ok(cli("run", "-d", busybox, "sleep", "60")).stdout.strip()
    checked = ok(cli("run", "-d", "--health-cmd", "true", "--health-interval", "1h", busybox,
                     "sleep", "60")).stdout.strip()

    def threads(cid: str) -> int:
        st = inspect(cli, cid)
        return len(os.listdir(f"/proc/{st['ShimPid']}/task"))
    assert threads(checked) == threads(plain) + 1
    ok(cli("rm", "-f", plain, checked))


def test_bad_health_flags(cli, busybox):
    r = cli("run", "--health-interval", "soon", busybox, "true")
    assert r.returncode == 125 and "invalid duration" in r.stderr
    r = cli("create", "--no-healthcheck", "--health-cmd", "true", busybox)
    assert r.returncode == 125 and "--no-healthcheck conflicts" in r.stderr
    r = cli("create", "--health-interval", "10us", "--health-cmd", "true", busybox)
    assert r.returncode == 125 and "less than 1ms" in r.stderr
    assert ok(cli("ps", "-aq")).stdout == ""
