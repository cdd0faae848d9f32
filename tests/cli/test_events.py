"""`events` / `system events` as the unprivileged test user: what the commands and the shims
did, in Docker's shape and order, including containers that exit on their own (the shim
writes `die`) and a shim killed mid-run (the journal stays whole)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time

from tests import unpriv
from tests.cli.test_containers import NOTHING, leftovers
from tests.fixtures.cli_runner import ok


def journal(cli, *flags, since="5m") -> list:
    r = ok(cli("events", "--since", since, "--until", "0s", "--format", "{{json .}}", *flags))
    return [json.loads(line) for line in r.stdout.splitlines()]


def actions(events, cid) -> list:
    return [e["Action"] for e in events if e["Actor"]["ID"] == cid]


def test_run_rm_is_told_in_order(cli, busybox):
    r = cli("run", "--rm", "--name", "ev", "-l", "tier=db", busybox, "sh", "-c", "exit 3")
    assert r.returncode == 3, r.stderr
    events = journal(cli, "--filter", "container=ev")
    cid = events[0]["Actor"]["ID"]
    assert actions(events, cid) == ["create", "attach", "start", "die", "destroy"]
    die = next(e for e in events if e["Action"] == "die")
    assert die["Type"] == "container" and die["status"] == "die" and die["id"] == cid
    assert die["from"] == busybox and die["scope"] == "local"
    assert die["Actor"]["Attributes"] == {"exitCode": "3", "image": busybox, "name": "ev",
                                          "tier": "db"}
    assert die["time"] == die["timeNano"] // 10 ** 9
    assert len(cid) == 64


def test_a_container_that_exits_on_its_own_is_told(cli, busybox):
    cid = ok(cli("run", "-d", busybox, "sh", "-c", "sleep 0.3; exit 7")).stdout.strip()
    ok(cli("wait", cid))
    deadline = time.monotonic() + 10
    while "die" not in actions(journal(cli), cid):
        assert time.monotonic() < deadline, journal(cli)
        time.sleep(0.1)
    die = [e for e in journal(cli, "--filter", "event=die") if e["id"] == cid]
    assert die[0]["Actor"]["Attributes"]["exitCode"] == "7"
    ok(cli("rm", cid))
    assert actions(journal(cli), cid) == ["create", "start", "die", "destroy"]


def test_stop_kill_rename_and_the_default_line(cli, busybox):
    cid = ok(cli("run", "-d", "--name", "aa", busybox, "sleep", "60")).stdout.strip()
    ok(cli("rename", "aa", "bb"))
    ok(cli("stop", "-t", "5", "bb"))
    ok(cli("rm", "bb"))
    events = journal(cli)
    # sleep as pid 1 ignores SIGTERM: after the 5 s the stop escalates to SIGKILL
    assert actions(events, cid) == ["create", "start", "rename", "kill", "kill", "die", "stop",
                                    "destroy"]
    kills = [e["Actor"]["Attributes"]["signal"] for e in events if e["Action"] == "kill"]
    assert kills == ["15", "9"]
    rename = next(e for e in events if e["Action"] == "rename")
    assert rename["Actor"]["Attributes"]["oldName"] == "/aa"
    assert rename["Actor"]["Attributes"]["name"] == "bb"
    # after the rename the shim's own events carry the new name
    die = next(e for e in events if e["Action"] == "die")
    assert die["Actor"]["Attributes"]["name"] == "bb"
    # docker's default line: local time, type, action, id, sorted attributes
    lines = ok(cli("events", "--since", "5m", "--until", "0s", "--filter", "event=destroy")
               ).stdout.splitlines()
    assert len(lines) == 1
    stamp, kind, action, actor, attrs = lines[0].split(" ", 4)
    assert (kind, action, actor) == ("container", "destroy", cid)
    assert attrs == f"(image={busybox}, name=bb)"
    assert len(stamp.split(".")[1]) >= 10          # nine digits and the zone


def test_filters_format_and_system_events(cli, busybox):
    cid = ok(cli("create", "--name", "f1", "-l", "app=x", busybox, "true")).stdout.strip()
    ok(cli("tag", busybox, "mine:1"))
    ok(cli("rmi", "mine:1"))
    ok(cli("rm", cid))
    images = journal(cli, "--filter", "type=image")
    assert [e["Action"] for e in images][-2:] == ["tag", "untag"]
    assert images[-1]["Actor"]["Attributes"]["name"] == "mine:1"
    assert [e["Action"] for e in images][0] == "pull"       # the fixture pulled busybox
    assert actions(journal(cli, "--filter", "label=app=x"), cid) == ["create", "destroy"]
    assert journal(cli, "--filter", "label=app=y") == []
    both = journal(cli, "--filter", "event=create", "--filter", "event=destroy",
                   "--filter", "container=f1")
    assert [e["Action"] for e in both] == ["create", "destroy"]
    r = ok(cli("system", "events", "--since", "5m", "--until", "0s", "--filter",
               "container=f1", "--format", "{{.Type}} {{.Status}} {{.Actor.Attributes.name}} "
               "{{.ID}} {{.From}}"))
    assert r.stdout.splitlines() == [f"container create f1 {cid} {busybox}",
                                     f"container destroy f1 {cid} {busybox}"]


def test_bad_arguments(cli):
    r = cli("events", "--filter", "colour=red", "--until", "0s")
    assert r.returncode == 125 and "invalid filter 'colour'" in r.stderr
    r = cli("events", "--since", "yesterday-ish", "--until", "0s")
    assert r.returncode == 125 and "invalid time" in r.stderr
    r = cli("events", "--until", "0s", "--format", "{{.Nope")
    assert r.returncode == 125 and "Traceback" not in r.stderr


def test_a_follower_sees_what_another_command_does(cli, busybox):
    follower = cli.popen("events", "--filter", "type=container", "--format", "{{json .}}",
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)           # the follower is reading from now on
        ok(cli("run", "--rm", busybox, "true"))
        deadline = time.monotonic() + 20
        seen = []
        os.set_blocking(follower.stdout.fileno(), False)
        buf = ""
        while time.monotonic() < deadline and "destroy" not in seen:
            chunk = follower.stdout.read() or ""
            buf += chunk
            *lines, buf = buf.split("\n")
            seen += [json.loads(line)["Action"] for line in lines if line]
            time.sleep(0.05)
        assert seen == ["create", "attach", "start", "die", "destroy"], seen
    finally:
        # SIGTERM, not SIGINT: a suite started in the background has SIGINT ignored
        follower.send_signal(signal.SIGTERM)
        follower.wait(timeout=10)
    assert follower.returncode in (0, -signal.SIGTERM, 128 + signal.SIGTERM)


def test_a_killed_shim_leaves_a_whole_journal(cli, busybox):
    cid = ok(cli("run", "-d", busybox, "sh", "-c", "while :; do echo x; sleep 0.01; done")
             ).stdout.strip()
    shim = [pid for pid, cmd in unpriv.user_processes() if "__shim" in cmd and cid in cmd]
    os.kill(min(shim), signal.SIGKILL)
    ok(cli("rm", "-f", cid))
    path = cli.home / "run" / "pydocklite" / "events" / "journal"
    for line in path.read_bytes().splitlines():
        json.loads(line)                              # every line whole
    got = actions(journal(cli), cid)
    assert got[:2] == ["create", "start"] and got[-1] == "destroy", got
    assert leftovers(cli.home, grace=3) == NOTHING
