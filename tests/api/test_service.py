"""`system service` itself: its socket, idle exit, socket activation, --install, TCP only on
loopback, a SIGKILL with containers running and clients attached, many clients at once,
and hostile requests (slow, huge, malformed, fuzzed): the service answers and survives."""
from __future__ import annotations

import json
import os
import random
import signal
import socket
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests import unpriv
from tests.api.conftest import DOCKER, Api, read_response, start_service, wait_for
from tests.fixtures.cli_runner import ok
from tests.fixtures.shims import ppid, shim_of, zygotes


def test_socket_mode_stale_socket_and_idle_exit(cli):
    proc, sock = start_service(cli, "--time", "1")
    assert sock == str(cli.home / "run" / "pydocklite" / "docker.sock")
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(sock)).st_mode) == 0o700
    api = Api(cli, proc, sock)
    assert api.alive()
    info = ok(cli("info")).stdout
    assert f"API socket:       unix://{sock} (listening)" in info
    # an open stream keeps it alive past --time
    s = api.connect()
    s.sendall(b"GET /events HTTP/1.1\r\nHost: d\r\n\r\n")
    time.sleep(2.5)
    assert proc.poll() is None
    s.close()
    started = time.monotonic()
    proc.wait(10)
    assert time.monotonic() - started < 5
    # a killed service leaves its socket: the next one replaces it
    proc, sock = start_service(cli, "--time", "0")
    proc.kill()
    proc.wait()
    assert os.path.exists(sock)
    proc, sock = start_service(cli, "--time", "0")
    api = Api(cli, proc, sock)
    assert api.alive()
    # a second service on a live socket is refused
    r = cli("system", "service", "--time", "0")
    assert r.returncode == 125 and "another service is listening" in r.stderr
    api.stop()


def test_tcp_only_on_loopback_with_a_warning(cli):
    r = cli("system", "service", "tcp://0.0.0.0:2375", timeout=30)
    assert r.returncode == 125 and "loopback" in r.stderr
    proc = cli.popen("system", "service", "--time", "0", "tcp://127.0.0.1:0",
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("DOCKER_HOST=tcp://127.0.0.1:")
        port = int(line.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"GET /_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n")
            assert read_response(s)[0] == 200
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert "WARNING" in err and "every user" in err


def test_socket_activation_and_install(cli):
    """--install writes the unit pair; a service started the way systemd does it (the
    listening socket as fd 3, LISTEN_PID/LISTEN_FDS) serves on that socket."""
    r = ok(cli("system", "service", "--install"))
    units = cli.home / ".config" / "systemd" / "user"
    sock_unit = (units / "pydocklite.socket").read_text()
    svc_unit = (units / "pydocklite.service").read_text()
    assert "ListenStream=%t/pydocklite/docker.sock" in sock_unit and "SocketMode=0600" in sock_unit
    assert "system service --time" in svc_unit and "KillMode=process" in svc_unit
    if cli.session.prefix[0].endswith(".pyz"):
        # started through the zipapp's sh header, the unit still names the zipapp itself
        assert f"ExecStart={unpriv.SYSTEM_PYTHON} {cli.session.prefix[0]} system service" \
            in svc_unit, svc_unit
    assert "systemctl --user enable --now pydocklite.socket" in r.stdout
    path = cli.home / "run" / "activated.sock"
    prog = ("import os, socket, sys\n"
            f"s = socket.socket(socket.AF_UNIX); s.bind({str(path)!r}); s.listen(8)\n"
            "os.dup2(s.fileno(), 3); os.set_inheritable(3, True)\n"
            "os.environ.update(LISTEN_FDS='1', LISTEN_PID=str(os.getpid()))\n"
            "os.execv(sys.argv[1], sys.argv[1:])\n")
    argv = unpriv.user_cmd([unpriv.SYSTEM_PYTHON, "-c", prog, *cli.session.prefix[:1],
                            *cli.session.prefix[1:], "system", "service", "--time", "0"]) \
        if cli.session.prefix[0].endswith(".pyz") else None
    if argv is None:
        argv = unpriv.user_cmd([unpriv.SYSTEM_PYTHON, "-c", prog, unpriv.SYSTEM_PYTHON, "-m",
                                "pydocklite", "system", "service", "--time", "0"])
    else:
        argv = unpriv.user_cmd([unpriv.SYSTEM_PYTHON, "-c", prog, unpriv.SYSTEM_PYTHON,
                                cli.session.prefix[0], "system", "service", "--time", "0"])
    proc = subprocess.Popen(argv, env=cli.environ(), stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().startswith("DOCKER_HOST=")
        api = Api(cli, proc, str(path))
        assert api.alive()
    finally:
        proc.terminate()
        proc.wait(10)


def test_sigkill_with_running_containers_and_attached_clients(api, busybox):
    ok(api.docker("run", "-d", "--name", "keeper", busybox, "sh", "-c",
                  "while true; do echo tick; sleep 0.2; done"))
    logs = api.docker_popen("logs", "-f", "keeper", stdout=subprocess.PIPE, text=True)
    attached = api.docker_popen("run", "--name", "attached", busybox, "sh", "-c",
                                "while true; do echo tock; sleep 0.2; done",
                                stdout=subprocess.PIPE, text=True)
    assert logs.stdout.readline() == "tick\n"
    assert attached.stdout.readline() == "tock\n"
    api.proc.send_signal(signal.SIGKILL)
    api.proc.wait()
    # the clients see their streams end
    logs.wait(20)
    attached.wait(20)
    # the containers run on
    states = {p: open(f"/proc/{p}/comm").read() for p, _ in unpriv.user_processes()
              if os.path.exists(f"/proc/{p}/comm")}
    assert any("sh" in c for c in states.values())
    proc, sock = start_service(api.cli, "--time", "0")
    again = Api(api.cli, proc, sock)
    try:
        r = ok(again.docker("ps", "--format", "{{.Names}} {{.State}}"))
        assert sorted(r.stdout.split("\n")[:2]) == ["attached running", "keeper running"]
        assert "tock" in ok(again.docker("logs", "--tail", "3", "attached")).stdout
        ok(again.docker("stop", "-t", "1", "keeper", "attached"))
        ok(again.docker("rm", "keeper", "attached"))
        assert ok(again.docker("ps", "-aq")).stdout == ""
    finally:
        again.stop()


def test_many_clients_at_once(api, busybox):
    """50 `docker ps` and 10 `logs -f` at once: none waits for another."""
    ok(api.docker("run", "-d", "--name", "talker", busybox, "sh", "-c",
                  "while true; do echo x; sleep 0.1; done"))
    followers = [api.docker_popen("logs", "-f", "talker", stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL) for _ in range(10)]
    try:
        for f in followers:
            assert f.stdout.readline() == b"x\n"
        results = []
        started = time.monotonic()

        def one():
            results.append(api.docker("ps", "-q", timeout=60).returncode)
        threads = [threading.Thread(target=one) for _ in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == [0] * 50
        assert time.monotonic() - started < 45
        for f in followers:
            assert f.poll() is None          # still following
    finally:
        for f in followers:
            f.kill()
            f.wait()
    ok(api.docker("rm", "-f", "talker"))


def test_hostile_requests(api):
    # a client that never finishes its request head gets 408 in bounded time
    slow = api.connect(timeout=30)
    slow.sendall(b"GET /_ping HTTP/1.1\r\nHost: d\r\n")
    started = time.monotonic()
    assert api.alive()                       # others are served meanwhile
    status, _, body = read_response(slow)
    assert status == 408 and time.monotonic() - started < 20
    slow.close()
    # huge header, huge body, bad JSON, wrong types, unknown fields
    status, headers, body = api.request("GET", "/_ping", headers={"X-Big": "a" * 200_000})
    assert status == 400 and headers["content-type"] == "application/json"
    status, _, body = api.request("POST", "/containers/create", body=b"{" * 10 + b"x" * 10,
                                  headers={"Content-Length": str(50 * 1024 * 1024)},
                                  timeout=10)
    assert status == 413
    status, _, body = api.request("POST", "/containers/create", body=b"{not json")
    assert status == 400 and json.loads(body)["message"].startswith("invalid JSON")
    status, _, body = api.request("POST", "/containers/create", body={"Image": 42})
    assert status == 400 and "Image" in json.loads(body)["message"]
    status, _, body = api.request("POST", "/containers/create",
                                  body={"Image": "busybox", "HostConfig": {"Binds": "x"}})
    assert status == 400
    status, _, body = api.request("POST", "/containers/create",
                                  body={"Image": "nothing-here:1", "Whatever": [1, 2]})
    assert status == 404 and b"No such image" in body
    status, _, _ = api.request("GET", "/containers/json?filters=%7Bbad")
    assert status == 400
    status, _, _ = api.request("GET", "/containers/json?limit=abc")
    assert status == 400
    # fuzz: random bytes, random request lines, truncated bodies
    rng = random.Random(1116)
    for i in range(150):
        with api.connect(timeout=15) as s:
            kind = i % 3
            if kind == 0:
                data = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 400)))
            elif kind == 1:
                method = rng.choice(["GET", "POST", "PUT", "DELETE", "HEAD", "BREW", ""])
                path = rng.choice(["/containers/%s/json", "/images/%s/json", "/exec/%s/start",
                                   "/containers/create?name=%s", "/build?t=%s",
                                   "/volumes/%s", "/networks/%s", "/%s"]) % rng.choice(
                    ["x", "..", "%00", "a" * 300, "../../etc", "%ff%fe", "?&=;"])
                data = f"{method} {path} HTTP/1.1\r\nHost: d\r\nContent-Length: 3\r\n\r\n{{}}"\
                    .encode()
            else:
                body = json.dumps({"Image": rng.choice([None, 1, [], {}, "x" * 50]),
                                   "HostConfig": rng.choice([None, [], "y", {"PortBindings":
                                                                              {"80": "z"}}])})
                data = (f"POST /containers/create HTTP/1.1\r\nHost: d\r\nContent-Length: "
                        f"{len(body) + rng.randint(-5, 0)}\r\nConnection: close\r\n\r\n"
                        f"{body}").encode()
            try:
                s.sendall(data)
                s.shutdown(socket.SHUT_WR)
                s.recv(65536)
            except OSError:
                pass
    assert api.alive()
    assert api.proc.poll() is None
    ok(api.docker("ps"))


def test_client_gone_mid_attach_leaves_nothing_stuck(api, busybox):
    ok(api.docker("create", "--name", "waiter", busybox, "sh", "-c", "sleep 0.5; echo late"))
    s = api.connect()
    s.sendall(b"POST /containers/waiter/attach?stream=1&stdout=1 HTTP/1.1\r\nHost: d\r\n"
              b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
    status, _, _ = read_response(s)
    assert status == 101
    s.close()
    # the service notices; a start afterwards works and the container runs to its end
    time.sleep(0.5)
    ok(api.docker("start", "waiter"))
    assert ok(api.docker("wait", "waiter")).stdout.strip() == "0"
    assert "late" in ok(api.docker("logs", "waiter")).stdout
    ok(api.docker("rm", "waiter"))


@pytest.mark.skipif(not os.path.exists(DOCKER), reason="no docker CLI")
def test_service_ctrl_c_does_not_reach_containers(cli, busybox):
    # the service as a terminal's foreground job: its own process group, which Ctrl-C hits
    proc, sock = start_service(cli, "--time", "0", start_new_session=True)
    api = Api(cli, proc, sock)
    ok(api.docker("run", "-d", "--name", "survivor", busybox, "sleep", "300"))
    ok(api.docker("exec", "-d", "survivor", "sleep", "200"))
    os.killpg(proc.pid, signal.SIGINT)
    proc.wait(20)
    proc, sock = start_service(cli, "--time", "0")
    api = Api(cli, proc, sock)
    try:
        wait_for(api.alive, what="the restarted service")
        assert ok(api.docker("inspect", "--format", "{{.State.Status}}", "survivor")
                  ).stdout.strip() == "running"
        assert "sleep 200" in ok(api.docker("top", "survivor")).stdout
        ok(api.docker("rm", "-f", "survivor"))
    finally:
        api.stop()


def _children(pid: int) -> list:
    out = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append((int(p), fields[0]))
    return out


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_shims_from_a_fresh_zygote_reaped_and_idle_threads_bounded(api, busybox):
    """The service's first shim is its own child (forked once, reaped by a thread); the
    service then starts a shim zygote as a new interpreter (its child, not a fork of it:
    it doesn't carry the service's heap), which forks the next shims. Every shim is
    reaped when it exits, none is left a zombie; the threads that served connections wait
    for the next ones, no more than IDLE_WORKERS of them."""
    pid = api.proc.pid
    assert not zygotes(api.cli.home)
    # modules named like the stdlib's in the service's working directory: the zygote, a
    # new interpreter, never imports them
    marker = api.cli.home / "hostile-module-imported"
    for mod in ("json", "selectors", "threading", "signal", "fcntl"):
        (api.cli.home / f"{mod}.py").write_text(
            f"open({str(marker)!r}, 'w').close()\nraise ImportError('hostile')\n")
    ok(api.docker("run", "--rm", busybox, "true"))
    [zyg] = wait_for(lambda: zygotes(api.cli.home), what="the zygote the service started")
    assert ppid(zyg) == pid
    # up once it listens (a new interpreter importing what a shim runs: ~0.2 s here)
    wait_for(lambda: list((api.cli.home / "run" / "pydocklite").glob("shim-zygote-*.sock")),
             what="the zygote's socket")
    # a fork of the service would hold at least the service's pages; a new interpreter
    # with the shim's modules holds about half of them
    assert _rss_kb(zyg) < _rss_kb(pid), (_rss_kb(zyg), _rss_kb(pid))
    for _ in range(2):
        ok(api.docker("run", "--rm", busybox, "true"))
    ok(api.docker("run", "-d", "--name", "stays", busybox, "sleep", "300"))
    shim = shim_of(api.cli, "stays")
    assert ppid(shim) == zyg
    assert "__shim" in Path(f"/proc/{shim}/cmdline").read_text()
    # the --rm ones' shims finish their clean-up after the client has its answer
    # (and the one that stays, busy for a moment after the start's answer, then asleep)
    wait_for(lambda: _children(pid) == [(zyg, "S")],
             what="the service's own shim reaped, only the zygote left its child")
    wait_for(lambda: _children(zyg) == [(shim, "S")],
             what="the zygote's --rm shims reaped, the other one asleep")
    for _ in range(20):
        ok(api.docker("ps"))
    threads = len(os.listdir(f"/proc/{pid}/task"))
    # the main thread, <= 8 idle connection threads, the zygote's reaper
    assert threads <= 1 + 8 + 1, threads
    ok(api.docker("rm", "-f", "stays"))
    wait_for(lambda: not _children(zyg), what="every shim reaped")
    assert not marker.exists()


def test_no_zygote_when_disabled(cli, busybox):
    """PYDOCKLITE_SHIM_ZYGOTE_IDLE=0: the service forks every shim itself."""
    proc, sock = start_service(cli, "--time", "0", env={"PYDOCKLITE_SHIM_ZYGOTE_IDLE": "0"})
    api = Api(cli, proc, sock)
    try:
        for _ in range(2):
            ok(api.docker("run", "--rm", busybox, "true"))
        ok(api.docker("run", "-d", "--name", "own", busybox, "sleep", "300"))
        assert ppid(shim_of(api.cli, "own")) == proc.pid
        assert not zygotes(cli.home)
        ok(api.docker("rm", "-f", "own"))
        wait_for(lambda: not _children(proc.pid), what="every shim reaped")
    finally:
        api.stop()

