"""`update` as the unprivileged test user: new limits on a running container's cgroup (v1,
delegated by root as tests/fixtures/cgroups_v1 does), kept for its next start, the restart
policy the shim reads at the next exit, and Docker's refusals and warnings."""
from __future__ import annotations

import json
import os
import time

import pytest

from tests.cli.test_limits import v1_base  # noqa: F401 (the fixture: delegated v1 cgroups)
from tests.fixtures.cli_runner import ok
from pydocklite.runtime import cgroups


def _host_config(cli, cid: str) -> dict:
    return json.loads(ok(cli("inspect", cid)).stdout)[0]["HostConfig"]


def _cgroup_file(bases, name: str, cid: str) -> str:
    """The container's own cgroup file (the runtime names the dir pydocklite-<id>; its FUSE
    servers' leaf and other containers' dirs are elsewhere)."""
    for base in bases:
        for dirpath, _, files in os.walk(base):
            if name in files and os.path.basename(dirpath) == f"pydocklite-{cid}":
                with open(os.path.join(dirpath, name)) as f:
                    return f.read().strip()
    raise AssertionError(f"no cgroup of {cid[:12]} with {name} under {bases}")


def test_limits_on_a_running_container(cli, busybox, v1_base):
    env = {"PYDOCKLITE_CGROUP_BASE": ":".join(v1_base)}
    cid = ok(cli("run", "-d", "--memory", "64m", "--pids-limit", "50", busybox, "sleep", "300",
                 env=env)).stdout.strip()
    assert _cgroup_file(v1_base, "pids.max", cid) == "50"
    r = ok(cli("update", "--memory", "32m", "--pids-limit", "4", "--cpus", "0.5", cid, env=env))
    assert r.stdout == f"{cid}\n" and "WARNING" not in r.stderr, r.stderr
    h = _host_config(cli, cid)
    assert (h["Memory"], h["PidsLimit"], h["NanoCpus"]) == (32 << 20, 4, 500_000_000), h
    assert _cgroup_file(v1_base, "memory.limit_in_bytes", cid) == str(32 << 20)
    assert _cgroup_file(v1_base, "pids.max", cid) == "4"
    assert _cgroup_file(v1_base, "cpu.cfs_quota_us", cid) == "50000"
    # enforced: the fifth process can't be forked (sleep 300, the shell, its children)
    r = cli("exec", cid, "sh", "-c", "sleep 5 & sleep 5 & sleep 5 & sleep 5 & echo forked")
    assert "forked" not in r.stdout, r
    # kept for the next start
    ok(cli("restart", "-t", "1", cid, env=env))
    assert _cgroup_file(v1_base, "pids.max", cid) == "4"
    ok(cli("rm", "-f", cid))


def test_a_running_container_without_a_cgroup_gets_them_at_its_next_start(cli, busybox,
                                                                            v1_base):
    env = {"PYDOCKLITE_CGROUP_BASE": ":".join(v1_base)}
    cid = ok(cli("run", "-d", busybox, "sleep", "300", env=env)).stdout.strip()
    r = ok(cli("update", "--pids-limit", "7", cid, env=env))
    assert "next start" in r.stderr, r.stderr
    ok(cli("restart", "-t", "1", cid, env=env))
    assert _cgroup_file(v1_base, "pids.max", cid) == "7"
    ok(cli("rm", "-f", cid))


def test_restart_policy(cli, busybox):
    cid = ok(cli("create", busybox, "sh", "-c", "sleep 0.3; exit 3")).stdout.strip()
    ok(cli("update", "--restart", "on-failure:2", cid))
    assert _host_config(cli, cid)["RestartPolicy"] == {"Name": "on-failure",
                                                       "MaximumRetryCount": 2}
    ok(cli("start", cid))
    assert ok(cli("wait", cid)).stdout.strip() == "3"
    deadline = time.monotonic() + 30
    while True:                      # the shim restarted it twice, then gave up
        st = json.loads(ok(cli("inspect", cid)).stdout)[0]
        if st["RestartCount"] == 2 and st["State"]["Status"] == "exited":
            break
        assert time.monotonic() < deadline, st["State"]
        time.sleep(0.2)
    # a policy changed while it runs applies at its next exit
    ok(cli("update", "--restart", "always", cid))
    ok(cli("start", cid))
    time.sleep(2)
    ok(cli("update", "--restart", "no", cid))
    ok(cli("wait", cid))
    time.sleep(1.5)
    st = json.loads(ok(cli("inspect", cid)).stdout)[0]["State"]
    assert st["Status"] == "exited" and not st["Restarting"], st
    ok(cli("rm", cid))


def test_refusals(cli, busybox):
    cid = ok(cli("create", "--rm", busybox, "true")).stdout.strip()
    r = cli("update", "--restart", "always", cid)
    assert r.returncode == 1 and "AutoRemove is enabled" in r.stderr
    r = cli("update", cid)
    assert r.returncode == 1 and "one or more flags" in r.stderr
    r = cli("update", "--memory", "lots", cid)
    assert r.returncode == 125 and "invalid size" in r.stderr
    r = cli("update", "--restart", "sometimes", cid)
    assert r.returncode == 1 and "invalid restart policy" in r.stderr
    r = cli("update", "--memory", "64m", "--memory-swap", "32m", cid)
    assert r.returncode == 1 and "memoryswap" in r.stderr
    r = cli("update", "--memory", "1m", cid)      # the API's rule too (one check, in update)
    assert r.returncode == 1 and "Minimum memory limit allowed is 6MB" in r.stderr
    r = cli("update", "--pids-limit", "9", "nosuchcontainer")
    assert r.returncode == 1 and "No such container" in r.stderr
    ok(cli("rm", cid))


def test_without_a_delegated_cgroup_it_warns_as_run_does(cli, busybox):
    if os.geteuid() != 0 or cgroups.detect().version not in ("v1", "hybrid"):
        pytest.skip("needs root (to switch to the test user) on a cgroup v1/hybrid host")
    cid = ok(cli("run", "-d", busybox, "sleep", "300")).stdout.strip()
    r = ok(cli("update", "--memory", "32m", cid))
    assert "WARNING: the memory controller(s) are not delegated" in r.stderr, r.stderr
    assert "PYDOCKLITE_CGROUP_BASE" in r.stderr
    assert _host_config(cli, cid)["Memory"] == 32 << 20
    ok(cli("rm", "-f", cid))
