"""Containers end to end: run/ps/logs/exec/stop/rm/inspect with the built tool as the
unprivileged test user, real namespaces, real FUSE, images from the test registry."""
from __future__ import annotations

import json
import os
import pty
import select
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.fixtures.cli_runner import ok
from tests.fixtures.nshost import holdings, host_state, is_host_process

from tests import unpriv


def data_dir(home: Path) -> Path:
    return home / ".local" / "share" / "pydocklite"


def leftovers(home: Path, grace: float = 1.0) -> dict:
    """What a removed container could leak: records, snapshot dirs, processes, mounts, what
    the namespace host holds for it. A process gets `grace` seconds to finish exiting (a
    shim reaps its killed FUSE servers after the CLI has the exit code), a veth as long to
    go with its network namespace."""
    deadline = time.monotonic() + grace
    while True:
        found = _leftovers(home)
        busy = found["processes"] or any(found["host"].values())
        if not busy or time.monotonic() >= deadline:
            return found
        time.sleep(0.05)


def _leftovers(home: Path) -> dict:
    d = data_dir(home)
    containers = [p.name for p in (d / "containers").iterdir() if not p.name.startswith(".")] \
        if (d / "containers").is_dir() else []
    snaps = [p.name for p in (d / "snapshots").iterdir()
             if p.name not in ("metadata.db", "metadata.db-wal", "metadata.db-shm", "trees")] \
        if (d / "snapshots").is_dir() else []
    # shims and their servers (the namespace host stays a while, holding nothing)
    procs = [cmd for _pid, cmd in unpriv.user_processes() if str(home) in cmd
             and not is_host_process(cmd)]
    mounts = [line for line in Path("/proc/mounts").read_text().splitlines()
              if str(home) in line]
    return {"containers": containers, "snapshots": snaps, "processes": procs,
            "mounts": mounts, "host": holdings(home)}


NOTHING = {"containers": [], "snapshots": [], "processes": [], "mounts": [],
           "host": {"endpoints": [], "veths": [], "lowers": []}}


def test_hello_offline(cli):
    r = ok(cli("run", "--rm", "hello"))
    assert "Hello from pydocklite!" in r.stdout
    assert leftovers(cli.home) == NOTHING


def test_exit_codes_and_signals(cli, busybox):
    assert cli("run", "--rm", busybox, "sh", "-c", "exit 3").returncode == 3
    r = cli("run", "--rm", busybox, "no-such-command")
    assert r.returncode == 127 and "no-such-command" in r.stderr
    assert cli("run", "--rm", busybox, "/etc/passwd").returncode == 126
    ok(cli("run", "-d", "--name", "victim", busybox, "sleep", "300"))
    ok(cli("kill", "-s", "KILL", "victim"))
    assert ok(cli("wait", "victim")).stdout.strip() == "137"
    ok(cli("run", "-d", "--name", "victim2", busybox, "sh", "-c", "trap 'exit 42' USR1; "
           "while true; do sleep 0.1; done"))
    time.sleep(0.3)
    ok(cli("kill", "-s", "USR1", "victim2"))
    assert ok(cli("wait", "victim2")).stdout.strip() == "42"
    ok(cli("rm", "victim", "victim2"))
    r = cli("run", "--rm", "--no-such-flag", busybox)
    assert r.returncode == 125 and "no-such-flag" in r.stderr
    assert leftovers(cli.home) == NOTHING


def test_env_user_workdir_hostname(cli, busybox):
    r = ok(cli("run", "--rm", "-e", "FOO=bar", "-w", "/tmp", "-u", "nobody", "--hostname",
               "box1", busybox, "sh", "-c", 'echo "$FOO $(pwd) $(id -u) $(hostname)"'))
    assert r.stdout.strip() == "bar /tmp 65534 box1"
    r = ok(cli("run", "--rm", busybox, "sh", "-c", "id -u; echo $PATH; cat /proc/1/cmdline"))
    lines = r.stdout.splitlines()
    assert lines[0] == "0" and "/usr/bin" in lines[1]


def test_isolation_from_inside(cli, busybox):
    masked = [p for p in ("/proc/kcore", "/proc/keys", "/proc/timer_list") if os.path.exists(p)]
    assert masked, "no masked /proc path exists on this host to check"
    script = ("echo pid1=$(cat /proc/1/comm); ls /sys/class/net | tr '\\n' ' '; echo; "
              f"cat {' '.join(masked)} | wc -c; "
              "touch /sys/x 2>/dev/null && echo syswritable || echo sysro; "
              "mount -t tmpfs t /mnt 2>/dev/null && echo mounted || echo nomount")
    r = ok(cli("run", "--rm", "--network", "none", busybox, "sh", "-c", script))
    out = r.stdout.split("\n")
    assert out[0] == "pid1=sh"
    assert out[1].split() == ["lo"]
    assert out[2].strip() == "0"
    assert "sysro" in r.stdout and "nomount" in r.stdout
    # Docker's default seccomp profile: unshare is refused, and it can be turned off
    r = ok(cli("run", "--rm", busybox, "sh", "-c",
               "grep Seccomp: /proc/self/status; unshare -U true 2>/dev/null || echo blocked"))
    assert r.stdout.split() == ["Seccomp:", "2", "blocked"]
    r = ok(cli("run", "--rm", "--security-opt", "seccomp=unconfined", busybox,
               "grep", "Seccomp:", "/proc/self/status"))
    assert r.stdout.split() == ["Seccomp:", "0"]


def test_detached_lifecycle_ps_logs_exec_stop_rm(cli, busybox):
    cid = ok(cli("run", "-d", "--name", "tick", busybox, "sh", "-c",
                 'trap "echo bye; exit 0" TERM; i=0; while true; do echo tick $i; '
                 'i=$((i+1)); sleep 0.1; done')).stdout.strip()
    assert len(cid) == 64
    ps = ok(cli("ps")).stdout.splitlines()
    assert ps[0].split()[:3] == ["CONTAINER", "ID", "IMAGE"]
    assert cid[:12] in ps[1] and "tick" in ps[1] and "Up" in ps[1]
    assert ok(cli("ps", "-q")).stdout.strip() == cid[:12]
    assert ok(cli("ps", "--format", "{{.Names}} {{.State}}")).stdout.strip() == "tick running"
    time.sleep(0.5)
    logs = ok(cli("logs", "--tail", "2", "tick")).stdout.splitlines()
    assert len(logs) == 2 and all(l.startswith("tick ") for l in logs)
    stamped = ok(cli("logs", "-t", "--tail", "1", "tick")).stdout
    assert stamped[:4].isdigit() and "Z tick" in stamped
    r = ok(cli("exec", "-e", "X=1", "tick", "sh", "-c", "echo $X; cat /proc/1/comm"))
    assert r.stdout.split() == ["1", "sh"]
    pid = int(ok(cli("inspect", "--format", "{{.State.Pid}}", "tick")).stdout)
    assert pid > 1 and os.path.exists(f"/proc/{pid}")
    # the namespaces are reachable from outside, as with docker
    netns = os.readlink(f"/proc/{pid}/ns/net")
    r = ok(subprocess.run(unpriv.user_cmd(["nsenter", "-t", str(pid), "-U", "-n",
                                           "--preserve-credentials", "readlink",
                                           "/proc/self/ns/net"]),
                          capture_output=True, text=True, timeout=30))
    assert r.stdout.strip() == netns
    shims = [p for p in leftovers(cli.home, grace=0)["processes"] if "__shim" in p]
    # the shim (and the FUSE server it forked) are found by name and id, as with containerd
    assert shims and all("--name tick" in p and cid in p for p in shims)
    t = time.monotonic()
    ok(cli("stop", "tick"))
    assert time.monotonic() - t < 8        # the handler exits: no 10 s grace period
    assert "bye" in ok(cli("logs", "tick")).stdout
    st = json.loads(ok(cli("inspect", "tick")).stdout)[0]
    assert st["State"]["Status"] == "exited" and st["State"]["ExitCode"] == 0
    assert Path(st["ShimLogPath"]).name == "shim.log"
    assert "exited" in ok(cli("ps", "-a")).stdout.lower()
    r = cli("rm", "nope")
    assert r.returncode == 1 and "No such container" in r.stderr
    ok(cli("rm", "tick"))
    assert leftovers(cli.home) == NOTHING


def test_rm_running_needs_force(cli, busybox):
    ok(cli("run", "-d", "--name", "sleeper", busybox, "sleep", "300"))
    r = cli("rm", "sleeper")
    assert r.returncode == 1 and "running" in r.stderr
    ok(cli("rm", "-f", "sleeper"))
    assert leftovers(cli.home) == NOTHING


def test_bind_mounts_and_volumes(cli, busybox):
    host = cli.home / "share"
    host.mkdir()
    os.chown(host, unpriv.test_user().pw_uid, unpriv.test_user().pw_gid)
    (host / "in.txt").write_text("from host\n")
    r = ok(cli("run", "--rm", "-v", f"{host}:/data", busybox, "sh", "-c",
               "cat /data/in.txt; echo from ctr > /data/out.txt"))
    assert r.stdout == "from host\n"
    assert (host / "out.txt").read_text() == "from ctr\n"
    r = cli("run", "--rm", "-v", f"{host}:/data:ro", busybox, "sh", "-c",
            "echo x > /data/y 2>/dev/null && echo wrote || echo refused")
    assert r.stdout.strip() == "refused" and not (host / "y").exists()
    ok(cli("run", "--name", "v1", "-v", "myvol:/vol", busybox, "sh", "-c",
           "echo kept > /vol/f"))
    ok(cli("rm", "v1"))
    r = ok(cli("run", "--rm", "-v", "myvol:/vol", busybox, "cat", "/vol/f"))
    assert r.stdout == "kept\n"


def test_restart_policy_on_failure(cli, busybox):
    ok(cli("run", "-d", "--name", "flaky", "--restart", "on-failure:2", busybox,
           "sh", "-c", "echo run; exit 1"))
    deadline = time.time() + 30
    while time.time() < deadline:
        st = json.loads(ok(cli("inspect", "flaky")).stdout)[0]
        if st["State"]["Status"] == "exited" and st["ShimPid"] == 0:
            break
        time.sleep(0.2)
    assert st["RestartCount"] == 2 and st["State"]["ExitCode"] == 1
    assert ok(cli("logs", "flaky")).stdout.count("run") == 3
    ok(cli("rm", "flaky"))


def test_interactive_tty(cli, busybox):
    pid, fd = pty.fork()
    if pid == 0:
        os.execvpe(cli.argv("run", "--rm", "-it", busybox, "sh")[0],
                   cli.argv("run", "--rm", "-it", busybox, "sh"), cli.environ())
    out = b""

    def read_until(needle: bytes, timeout: float = 30) -> bytes:
        nonlocal out
        deadline = time.time() + timeout
        while needle not in out and time.time() < deadline:
            r, _, _ = select.select([fd], [], [], 0.2)
            if r:
                try:
                    out += os.read(fd, 4096)
                except OSError:
                    break
        return out
    read_until(b"# ")            # the shell flushes typeahead when it sets up line editing
    os.write(fd, b"tty; echo MARK$((40+2))\n")
    assert b"MARK42" in read_until(b"MARK42")
    assert b"/dev/pts/" in out
    os.write(fd, b"exit 5\n")
    read_until(b"never", timeout=3)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 5


def test_kill_cli_mid_run_and_kill_shim(cli, busybox):
    p = cli.popen("run", "--name", "survivor", busybox, "sh", "-c",
                  "echo started; sleep 300", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 30
    while time.time() < deadline and "Up" not in cli("ps", "--format", "{{.Status}}").stdout:
        time.sleep(0.1)
    p.kill()
    p.wait()
    assert ok(cli("ps", "--format", "{{.Names}} {{.State}}")).stdout.strip() == \
        "survivor running"
    shim = json.loads(ok(cli("inspect", "survivor")).stdout)[0]["ShimPid"]
    assert shim > 0
    os.kill(shim, signal.SIGKILL)
    time.sleep(0.3)
    ok(cli("rm", "-f", "survivor"))
    assert leftovers(cli.home) == NOTHING


def test_failed_run_leaves_no_waiting_shim(cli, busybox):
    """`run` forks its shim before it creates the container: when creating fails (no such
    image, a bad flag value found late), the waiting shim must go away with the CLI."""
    def waiting(marker: str) -> list:
        # (a process may exit between the listing of /proc and its stat: user_processes
        # skips it)
        return [pid for pid, cmd in unpriv.user_processes() if marker in cmd]
    r = cli("run", "--pull", "never", "--name", "neverstarted", busybox + "-nosuch", "true")
    assert r.returncode == 125 and "No such image" in r.stderr
    r = cli("run", "-d", "--rm", "--restart", "always", "--name", "neverstarted", busybox,
            "true")
    assert r.returncode != 0 and "--restart and --rm" in r.stderr
    deadline = time.time() + 5
    while waiting("neverstarted") and time.time() < deadline:
        time.sleep(0.05)
    assert not waiting("neverstarted")
    assert ok(cli("ps", "-a", "-q")).stdout == ""
    assert leftovers(cli.home) == NOTHING


def test_many_containers_at_once(cli, busybox):
    procs = [cli.popen("run", "-d", "--name", f"m{i}", busybox, "sleep", "300",
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(20)]
    for p in procs:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
    names = ok(cli("ps", "--format", "{{.Names}}")).stdout.split()
    assert sorted(names) == sorted(f"m{i}" for i in range(20))
    ok(cli("rm", "-f", *[f"m{i}" for i in range(20)], timeout=300))
    assert leftovers(cli.home) == NOTHING


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_nginx_published_port(cli, nginx_image):
    ok(cli("pull", "-q", nginx_image))
    port = _free_port()
    cid = ok(cli("run", "-d", "-p", f"{port}:80", "--name", "web", nginx_image)).stdout.strip()
    body = None
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as resp:
                body = resp.read()
                break
        except OSError:
            time.sleep(0.1)
    assert body is not None and b"nginx" in body.lower()
    assert ok(cli("port", "web")).stdout.strip() == f"80/tcp -> 127.0.0.1:{port}"
    time.sleep(0.2)
    assert "GET / HTTP/1.1" in ok(cli("logs", "web")).stdout
    t = time.monotonic()
    ok(cli("stop", "web"))
    assert time.monotonic() - t < 8        # nginx exits on SIGTERM: no 10 s grace period
    ok(cli("rm", cid))
    assert leftovers(cli.home) == NOTHING


def test_rmi_refused_while_a_container_uses_it(cli, busybox):
    ok(cli("create", "--name", "holder", busybox, "true"))
    # the image's /etc/passwd and /etc/group, read for USER names, are kept per image...
    image_id = ok(cli("image", "inspect", "--format", "{{.Id}}", busybox)).stdout.strip()
    cached = data_dir(cli.home) / "image-files" / f"{image_id.partition(':')[2]}.json"
    assert "root:x:0:0" in json.loads(cached.read_text())["/etc/passwd"]
    r = cli("rmi", busybox)
    assert r.returncode == 1 and "container" in r.stderr
    ok(cli("rm", "holder"))
    ok(cli("rmi", busybox))
    assert not cached.exists()          # ...and go with it


def test_privileged_host_port_is_a_clear_error(cli, busybox):
    start = int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    if start <= 80:
        pytest.skip(f"this host lets users bind port 80 (ip_unprivileged_port_start={start})")
    r = cli("run", "-d", "-p", "80:80", busybox, "sleep", "1")
    assert r.returncode == 125 and "ip_unprivileged_port_start" in r.stderr


def test_cp_both_ways_top_stats(cli, busybox):
    ok(cli("run", "-d", "--name", "box", busybox, "sh", "-c",
           "mkdir -p /srv/d/e && echo deep > /srv/d/e/f && echo one > /srv/one && "
           "ln -s /etc/passwd /srv/abs && ln -s one /srv/rel && touch /srv/ready && "
           "sleep 300"))
    deadline = time.time() + 20
    while cli("exec", "box", "test", "-e", "/srv/ready").returncode != 0:
        assert time.time() < deadline
        time.sleep(0.1)
    out = cli.home / "out"
    out.mkdir()
    os.chown(out, unpriv.test_user().pw_uid, unpriv.test_user().pw_gid)
    ok(cli("cp", "box:/srv/one", str(out / "renamed.txt")))
    assert (out / "renamed.txt").read_text() == "one\n"
    ok(cli("cp", "box:/srv/d", str(out)))
    assert (out / "d" / "e" / "f").read_text() == "deep\n"
    r = ok(cli("cp", "box:/srv/abs", str(out)))
    # a link that would lead outside the destination on the host is not made, and said so
    assert not os.path.lexists(out / "abs")
    assert "skipped abs: symbolic link to /etc/passwd, outside the destination" in r.stderr
    ok(cli("cp", "box:/srv/rel", str(out)))
    assert os.readlink(out / "rel") == "one"              # copied as a link, not followed
    (out / "in.txt").write_text("from host\n")
    os.chown(out / "in.txt", unpriv.test_user().pw_uid, unpriv.test_user().pw_gid)
    ok(cli("cp", str(out / "in.txt"), "box:/srv/"))
    assert ok(cli("exec", "box", "cat", "/srv/in.txt")).stdout == "from host\n"
    top = ok(cli("top", "box")).stdout.splitlines()
    assert top[0].split()[:2] == ["UID", "PID"] and "sleep 300" in top[1]
    stats = ok(cli("stats", "--no-stream")).stdout.splitlines()
    assert stats[0].startswith("CONTAINER ID") and "box" in stats[1]
    ok(cli("rm", "-f", "box"))
    assert leftovers(cli.home) == NOTHING


@pytest.mark.parametrize("driver", ["overlay", "fuse"])
def test_killed_fuse_server_is_noticed_and_upper_kept(cli, busybox, driver):
    """overlay: the image's lower, shared with the image's other containers, is served by
    one FUSE server of the namespace host; fuse: the container's own writable FUSE mount,
    served by the shim's child. Either killed: said in inspect, ENOTCONN inside, the
    container's own files intact."""
    ok(cli("--storage-driver", driver, "run", "-d", "--name", "fz", busybox, "sh", "-c",
           "echo precious > /root/mine; sleep 300"))
    st = json.loads(ok(cli("inspect", "fz")).stdout)[0]
    shim = st["ShimPid"]
    deadline = time.time() + 20
    while cli("exec", "fz", "cat", "/root/mine").stdout != "precious\n":
        assert time.time() < deadline
        time.sleep(0.1)
    if driver == "fuse":
        # the rootfs servers are the shim's children (reparented to it as a subreaper)
        servers = [int(p) for p in os.listdir("/proc") if p.isdigit() and
                   _ppid(int(p)) == shim and "__shim" in _cmdline(int(p))]
    else:
        servers = [lw["pid"] for lw in host_state(cli.home)["lowers"].values()]
    assert len(servers) == 1, "no FUSE server found"
    os.kill(servers[0], signal.SIGKILL)
    deadline = time.time() + 20
    while "FUSE server" not in json.loads(ok(cli("inspect", "fz")).stdout)[0]["State"]["Error"]:
        assert time.time() < deadline, "the shim did not record the dead FUSE server"
        time.sleep(0.1)
    r = cli("exec", "fz", "ls", "/bin")
    assert r.returncode != 0                       # the lower layers are gone (ENOTCONN)
    uppers = list((data_dir(cli.home) / "snapshots").glob("*/upper/root/mine"))
    assert len(uppers) == 1
    r = subprocess.run(unpriv.user_cmd(["cat", str(uppers[0])]), capture_output=True, text=True)
    assert r.stdout == "precious\n"                # the container's own data is intact
    if driver == "overlay":
        # a restart gets a new shared lower, and the files back
        ok(cli("restart", "-t", "0", "fz"))
        assert ok(cli("exec", "fz", "cat", "/root/mine")).stdout == "precious\n"
        ok(cli("exec", "fz", "ls", "/bin"))
    ok(cli("rm", "-f", "fz"))
    assert leftovers(cli.home) == NOTHING


def _ppid(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
