"""dockerd (Debian's docker.io 20.10, started here with its own data root, exec root, pid file
and socket, --iptables=false) with ./pydocklite-runtime added as the runtime "pydocklite"."""
from __future__ import annotations

import os
import subprocess
import time
import urllib.request

import pytest

from tests.engines.conftest import needs_root, short_dir
from tests.fixtures import engines

pytestmark = [needs_root,
              pytest.mark.skipif(not engines.have("dockerd") or
                                 not os.path.exists("/usr/bin/docker"),
                                 reason="docker.io is not installed (apt-get install docker.io)")]
RT = ("--runtime", "pydocklite")


@pytest.fixture(scope="module")
def dockerd(runtime_bin, busybox_archive):
    base = short_dir("pdld-")
    engines.warm_runtime(runtime_bin, base / "home")
    with engines.Dockerd(base, runtime_bin) as d:
        d.docker("load", "-i", busybox_archive, check=True)
        yield d
        ids = d.docker("ps", "-aq").stdout.split()
        if ids:
            d.docker("rm", "-f", *ids)
    subprocess.run(["rm", "-rf", "--one-file-system", str(base)], check=False)


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 20) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.read()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_runtime_is_registered_and_run_rm_exit_code(dockerd):
    info = dockerd.docker("info", "--format", "{{json .Runtimes}}", check=True).stdout
    assert "pydocklite" in info
    r = dockerd.docker("run", "--rm", *RT, "busybox", "sh", "-c", "echo hi; exit 5")
    assert r.returncode == 5 and r.stdout.strip() == "hi", r.stderr
    r = dockerd.docker("run", "--rm", *RT, "busybox", "/no/such/program")
    assert r.returncode == 127, (r.returncode, r.stderr)


def test_detached_with_port_exec_logs_stop_rm(dockerd):
    port = _free_port()
    r = dockerd.docker("run", "-d", *RT, "--name", "web", "-p", f"127.0.0.1:{port}:8080",
                       "busybox", "sh", "-c",
                       'echo started; trap "echo stopping; exit 0" TERM; '
                       "httpd -f -p 8080 -h /etc & wait", check=True)
    cid = r.stdout.strip()
    assert b"root:x:0:0" in _get(f"http://127.0.0.1:{port}/passwd")
    r = dockerd.docker("exec", "web", "sh", "-c", "echo in-exec; cat /proc/1/cmdline", check=True)
    assert r.stdout.startswith("in-exec")
    inspect = dockerd.docker("inspect", "--format", "{{.HostConfig.Runtime}} {{.State.Pid}}",
                             "web", check=True).stdout.split()
    assert inspect[0] == "pydocklite"
    pid = int(inspect[1])
    assert cid in open(f"/proc/{pid}/cgroup").read(), "the task is in Docker's cgroupsPath"
    t0 = time.monotonic()
    dockerd.docker("stop", "web", check=True)
    assert time.monotonic() - t0 < 8, "SIGTERM reached the container's process"
    logs = dockerd.docker("logs", "web", check=True).stdout.split()
    assert logs == ["started", "stopping"], logs
    state = dockerd.docker("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}",
                           "web", check=True).stdout.split()
    assert state == ["exited", "0"]
    dockerd.docker("rm", "web", check=True)
    assert engines.kill_leftovers(cid) == [], "nothing of the container runs after rm"


def test_memory_limit_enforced_and_shown_by_stats(dockerd):
    r = dockerd.docker("run", "-d", *RT, "--name", "mem", "--memory", "32m", "busybox",
                       "sleep", "300", check=True)
    cid = r.stdout.strip()
    stats = dockerd.docker("stats", "--no-stream", "--format", "{{.MemUsage}}", "mem",
                           check=True).stdout
    assert "32MiB" in stats, stats
    with open(f"/sys/fs/cgroup/memory/docker/{cid}/memory.limit_in_bytes") as f:
        assert int(f.read()) == 32 * 1024 * 1024
    # inside, /sys/fs/cgroup shows the container's own cgroups (what JVMs & co. read)
    inside = dockerd.docker("exec", "mem", "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                            check=True).stdout
    assert int(inside) == 32 * 1024 * 1024
    dockerd.docker("rm", "-f", "mem", check=True)
    r = dockerd.docker("run", "--rm", *RT, "--memory", "32m", "--memory-swap", "32m", "busybox",
                       "sh", "-c", 'x=$(head -c 100000000 /dev/zero | tr "\\0" a); echo survived')
    assert r.returncode == 137 and "survived" not in r.stdout, (r.returncode, r.stdout)


def test_exec_with_a_terminal(dockerd):
    dockerd.docker("run", "-d", *RT, "--name", "term", "busybox", "sleep", "300", check=True)
    rc, text = engines.pty_run(["/usr/bin/docker", "-H", f"unix://{dockerd.sock}", "exec", "-it",
                                "term", "sh", "-c", "tty; [ -t 0 ] && echo stdin-is-a-tty"],
                               {**engines.ENV, "HOME": str(dockerd.base / "home")})
    assert rc == 0 and "/dev/pts/" in text and "stdin-is-a-tty" in text, text
    dockerd.docker("rm", "-f", "term", check=True)


def test_update_changes_the_limit(dockerd):
    r = dockerd.docker("run", "-d", *RT, "--name", "upd", "--memory", "64m", "busybox",
                       "sleep", "300", check=True)
    cid = r.stdout.strip()
    dockerd.docker("update", "--memory", "48m", "--memory-swap", "96m", "upd", check=True)
    with open(f"/sys/fs/cgroup/memory/docker/{cid}/memory.limit_in_bytes") as f:
        assert int(f.read()) == 48 * 1024 * 1024
    dockerd.docker("rm", "-f", "upd", check=True)
