"""The real docker CLI (28.x, static) through `pydocklite system service`, as the test user:
the seed's walk-through, exit codes, a real pty, pull/push, the CI runner's sequence."""
from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request

import pytest

from tests.api.conftest import DOCKER, wait_for
from tests.fixtures.cli_runner import ok

pytestmark = pytest.mark.skipif(not os.path.exists(DOCKER), reason="no docker CLI")


def test_version_negotiation_and_info(api):
    r = ok(api.docker("version", "--format", "{{.Server.APIVersion}} {{.Client.APIVersion}}"))
    server, client = r.stdout.split()
    assert tuple(map(int, server.split("."))) >= (1, 44)
    assert client == server                     # the client downgraded to what we speak
    status, headers, body = api.request("HEAD", "/_ping")
    assert status == 200 and body == b""
    assert headers["api-version"] == server
    assert headers["ostype"] == "linux" and headers["builder-version"] == "1"
    assert headers["docker-experimental"] == "false"
    assert "no-cache" in headers["cache-control"]
    for path in ("/version", f"/v{server}/version"):
        status, headers, body = api.request("GET", path)
        assert status == 200 and headers["content-type"] == "application/json"
        doc = json.loads(body)
        assert doc["ApiVersion"] == server and doc["MinAPIVersion"]
        assert "podman" not in body.decode().lower()
    info = json.loads(api.request("GET", "/info")[2])
    assert info["Swarm"]["LocalNodeState"] == "inactive"
    status, headers, body = api.request("GET", "/v1.44/nothing/here")
    assert status == 404 and headers["content-type"] == "application/json"
    assert json.loads(body)["message"]
    status, _, body = api.request("GET", "/v1.99/version")
    assert status == 400 and b"too new" in body


def test_walkthrough(api, registry, tmp_path):
    """build (legacy), run -d -p, ps, logs -f, exec, cp both ways, inspect --format, stop,
    rm, events."""
    base = registry.ref("busybox")
    ctx = api.cli.home / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        f"FROM {base}\nRUN mkdir -p /www && echo hello-from-api > /www/index.html\n"
        'CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]\n')
    for p in (ctx, ctx / "Dockerfile"):
        os.chown(p, *_ids())
    r = ok(api.docker("build", "-t", "webapp:1", str(ctx), env={"DOCKER_BUILDKIT": "0"}))
    assert "Successfully built" in r.stdout and "Successfully tagged webapp:1" in r.stdout
    since = int(time.time())
    port = _free_port()
    cid = ok(api.docker("run", "-d", "--name", "web", "-p", f"{port}:8080", "webapp:1")
             ).stdout.strip()
    assert len(cid) == 64
    body = wait_for(lambda: _get(f"http://127.0.0.1:{port}/"), what="httpd to answer")
    assert body == "hello-from-api\n"
    ps = ok(api.docker("ps", "--format", "{{.Names}} {{.Status}} {{.Ports}}")).stdout
    assert ps.startswith("web Up") and f"{port}->8080/tcp" in ps
    logs = api.docker_popen("logs", "-f", "web", stdout=subprocess.PIPE, text=True)
    try:
        ok(api.docker("exec", "web", "sh", "-c", "echo to-the-log > /proc/1/fd/1"))
        line = logs.stdout.readline()
        assert line == "to-the-log\n"
    finally:
        logs.kill()
        logs.wait()
    assert ok(api.docker("exec", "web", "cat", "/www/index.html")).stdout == "hello-from-api\n"
    assert api.docker("exec", "web", "sh", "-c", "exit 7").returncode == 7
    host_file = api.cli.home / "in.txt"
    host_file.write_text("copied in\n")
    os.chown(host_file, *_ids())
    ok(api.docker("cp", str(host_file), "web:/tmp/"))
    assert ok(api.docker("exec", "web", "cat", "/tmp/in.txt")).stdout == "copied in\n"
    out_dir = api.cli.home / "out"
    out_dir.mkdir()
    os.chown(out_dir, *_ids())
    ok(api.docker("cp", "web:/www/index.html", str(out_dir)))
    assert (out_dir / "index.html").read_text() == "hello-from-api\n"
    fmt = ok(api.docker("inspect", "--format", "{{.State.Status}} {{.Name}} {{.Config.Image}}",
                        "web")).stdout.split()
    assert fmt == ["running", "/web", "webapp:1"]
    ok(api.docker("stop", "-t", "2", "web"))
    assert ok(api.docker("inspect", "--format", "{{.State.Status}}", "web")
              ).stdout.strip() == "exited"
    ok(api.docker("rm", "web"))
    assert "web" not in ok(api.docker("ps", "-a", "--format", "{{.Names}}")).stdout.split()
    events = ok(api.docker("events", "--since", str(since), "--until", str(int(time.time()) + 1),
                           "--filter", "container=web", "--format", "{{.Action}}")).stdout
    for action in ("create", "start", "die", "destroy"):
        assert action in events.split(), events


def test_run_exit_codes_and_streams(api, busybox):
    r = api.docker("run", "--rm", busybox, "sh", "-c", "echo out; echo err >&2; exit 3")
    assert r.returncode == 3 and r.stdout == "out\n" and r.stderr.strip().endswith("err")
    assert api.docker("run", "--rm", busybox, "no-such-command").returncode == 127
    r = api.docker("run", "-i", "--rm", busybox, "sh", "-c", "cat; echo done",
                   input="from stdin\n")
    assert r.returncode == 0 and r.stdout == "from stdin\ndone\n"
    assert "No such image" in api.docker("create", "--pull", "never", "nothing-here:1").stderr
    # --rm removed it; nothing left
    assert ok(api.docker("ps", "-aq")).stdout == ""


def test_run_and_exec_in_a_real_pty(api, busybox):
    """`docker run -it` and `exec -it` under script(1): a terminal of the right size,
    exit codes through."""
    script = "stty size; echo marker-$((6*7)); exit 5"
    cmd = (f"stty cols 91 rows 27; {DOCKER} run -it --rm {busybox} sh -c '{script}'")
    r = _in_pty(api, cmd)
    assert r.returncode == 5, r.stdout
    out = r.stdout.replace("\r", "")
    assert "27 91" in out and "marker-42" in out
    ok(api.docker("run", "-d", "--name", "box", busybox, "sleep", "300"))
    r = _in_pty(api, f"{DOCKER} exec -it box sh -c 'tty; exit 4'")
    assert r.returncode == 4 and "/dev/pts/" in r.stdout
    ok(api.docker("rm", "-f", "box"))


def test_pull_tag_push(api, registry):
    src = registry.ref("busybox")
    r = ok(api.docker("pull", src))
    assert "Status: Downloaded newer image" in r.stdout and "Pull complete" in r.stdout
    target = f"{registry.host}/api-pushed:v1"
    ok(api.docker("tag", src, target))
    r = ok(api.docker("push", target))
    assert "digest: sha256:" in r.stdout
    ok(api.docker("rmi", target))
    ok(api.docker("rmi", src))
    assert ok(api.docker("images", "-q")).stdout.strip() == ""
    ok(api.docker("pull", target))
    assert ok(api.docker("run", "--rm", target, "echo", "pushed-and-back")
              ).stdout == "pushed-and-back\n"
    r = api.docker("pull", f"{registry.host}/no-such-image:latest")
    assert r.returncode != 0 and ("not found" in r.stderr or "unknown" in r.stderr)


def test_ci_runner_sequence(api, busybox):
    """What a CI runner does for job and service containers."""
    version = ok(api.docker("version", "--format", "{{.Server.APIVersion}}")).stdout.strip()
    assert version >= "1.44"
    work = api.cli.home / "work"
    work.mkdir()
    os.chown(work, *_ids())
    port = _free_port()
    cid = ok(api.docker("create", "--name", "job1", "--label", "runner=ci", "--workdir",
                        "/__w", "-p", f"{port}:80", "-e", "CI=true", "-v", f"{work}:/__w",
                        "--entrypoint", "tail", busybox, "-f", "/dev/null")).stdout.strip()
    ok(api.docker("start", cid))
    r = ok(api.docker("ps", "--all", "--filter", f"id={cid}", "--filter", "status=running",
                      "--no-trunc", "--format", "{{.ID}} {{.Status}}"))
    assert r.stdout.startswith(cid + " Up")
    assert ok(api.docker("port", cid)).stdout.strip().endswith(f":{port}")
    health = ok(api.docker("inspect", "--format",
                           "{{if .Config.Healthcheck}}{{print .State.Health.Status}}{{end}}",
                           cid)).stdout.strip()
    assert health == ""
    r = ok(api.docker("exec", "-i", "--workdir", "/__w", "-e", "STEP=build", cid, "sh", "-c",
                      "pwd; echo $CI $STEP; cat > out.txt", input="job output\n"))
    assert r.stdout == "/__w\ntrue build\n"
    assert (work / "out.txt").read_text() == "job output\n"
    ok(api.docker("exec", cid, "sh", "-c", "echo step-log > /proc/1/fd/1"))
    assert "step-log" in ok(api.docker("logs", "--details", cid)).stdout
    ok(api.docker("rm", "--force", cid))
    assert ok(api.docker("ps", "-aq")).stdout == ""


def _in_pty(api, command: str):
    from tests import unpriv
    shell = f"cd {api.cli.home}; {command}"
    argv = unpriv.user_cmd(["script", "-qefc", shell, "/dev/null"])
    env = unpriv.user_env(api.cli.home, {**dict(api.cli.session.env), **api.env()})
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


def _ids():
    from tests import unpriv
    u = unpriv.test_user()
    return u.pw_uid, u.pw_gid


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.read().decode()
    except OSError:
        return None


def test_attach_to_a_running_container_and_health(api, busybox):
    """`docker attach` to a running container goes through its shim's attach socket (stdin
    in, output out, the exit code at the end); a health check given at create runs."""
    ok(api.docker("run", "-d", "-i", "--name", "att", busybox, "sh", "-c",
                  "read x; echo got-$x; exit 3"))
    r = api.docker("attach", "att", input="hello\n", timeout=60)
    assert "got-hello" in r.stdout and r.returncode == 3, (r.stdout, r.stderr)
    ok(api.docker("rm", "att"))
    ok(api.docker("run", "-d", "--name", "hc", "--health-cmd", "true", "--health-interval",
                  "1s", busybox, "sleep", "300"))
    status = wait_for(lambda: ok(api.docker("inspect", "--format", "{{.State.Health.Status}}",
                                            "hc")).stdout.strip() == "healthy",
                      timeout=30, what="the container to be healthy")
    assert status
    assert "(healthy)" in ok(api.docker("ps", "--format", "{{.Status}}")).stdout
    ok(api.docker("rm", "-f", "hc"))


def test_pause_update_diff_export(api, busybox):
    """The verbs the engine had and the API answered 501 for: pause/unpause, update, diff
    (GET /changes), export, through the docker CLI as a user runs them."""
    import tarfile
    ok(api.docker("run", "-d", "--name", "pz", busybox, "sh", "-c",
                  "echo made > /made.txt; rm /bin/true; exec sleep 300"))
    wait_for(lambda: api.docker("exec", "pz", "test", "-f", "/made.txt").returncode == 0,
             what="the container's first write")
    ok(api.docker("pause", "pz"))
    state = json.loads(ok(api.docker("inspect", "pz")).stdout)[0]["State"]
    assert state["Status"] == "paused" and state["Paused"] is True
    r = api.docker("pause", "pz")
    assert r.returncode == 1 and "is already paused" in r.stderr
    ok(api.docker("unpause", "pz"))
    assert json.loads(ok(api.docker("inspect", "pz")).stdout)[0]["State"]["Status"] == "running"

    ok(api.docker("update", "--memory", "64m", "--memory-swap", "128m", "--pids-limit", "50",
                  "--restart", "on-failure:2", "pz"))
    host = json.loads(ok(api.docker("inspect", "pz")).stdout)[0]["HostConfig"]
    assert host["Memory"] == 64 << 20 and host["MemorySwap"] == 128 << 20
    assert host["PidsLimit"] == 50
    assert host["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
    status, _, body = api.request("POST", "/v1.44/containers/pz/update",
                                  body={"CpuShares": 512})
    assert status == 200 and "CpuShares" in json.loads(body)["Warnings"][0]
    r = api.docker("update", "--memory", "64m", "nothing-here")
    assert r.returncode == 1 and "No such container" in r.stderr

    lines = ok(api.docker("diff", "pz")).stdout.splitlines()
    assert "A /made.txt" in lines and "D /bin/true" in lines and "C /bin" in lines
    assert not any(line.endswith("/etc/hosts") for line in lines)   # a mount point
    ok(api.docker("create", "--name", "untouched", busybox, "true"))
    status, _, body = api.request("GET", "/v1.44/containers/untouched/changes")
    assert status == 200 and json.loads(body) is None            # dockerd's null, not []
    assert ok(api.docker("diff", "untouched")).stdout == ""
    ok(api.docker("rm", "untouched"))

    out = api.cli.home / "pz.tar"
    ok(api.docker("export", "-o", str(out), "pz"))
    with tarfile.open(out) as tf:
        names = set(tf.getnames())
        assert "made.txt" in names and "bin/sh" in names and "bin/true" not in names
        assert tf.extractfile("made.txt").read() == b"made\n"
    ok(api.docker("rm", "-f", "pz"))
    r = api.docker("pause", "pz")
    assert r.returncode == 1 and "No such container" in r.stderr


def test_logs_larger_than_one_send(api, busybox):
    """`docker logs` of more output than one send of the body (api/containers.LOGS_BATCH:
    the frames are gathered): every line, each on its stream, in order; --tail and
    --timestamps through the same path."""
    script = ("i=0; while [ $i -lt 6000 ]; do echo \"out $i $(printf %060d 0)\"; "
              "echo \"err $i\" >&2; i=$((i+1)); done")
    ok(api.docker("run", "--name", "chatty", busybox, "sh", "-c", script))
    r = ok(api.docker("logs", "chatty"))
    pad = "0" * 60
    assert r.stdout.splitlines() == [f"out {i} {pad}" for i in range(6000)]
    assert r.stderr.splitlines() == [f"err {i}" for i in range(6000)]
    assert len(r.stdout) > 400_000                        # more than LOGS_BATCH
    # the last 3 entries of the log, whichever streams they came from (the two pipes
    # interleave as they were read)
    r = ok(api.docker("logs", "--tail", "3", "chatty"))
    out, err = r.stdout.splitlines(), r.stderr.splitlines()
    assert len(out) + len(err) == 3
    assert out == [f"out {i} {pad}" for i in range(6000 - len(out), 6000)]
    assert err == [f"err {i}" for i in range(6000 - len(err), 6000)]
    lines = ok(api.docker("logs", "--timestamps", "chatty")).stdout.splitlines()
    assert len(lines) == 6000
    assert all(ln.split(" ", 1)[1] == f"out {i} {pad}" and ln[:4].isdigit()
               for i, ln in enumerate(lines))
    ok(api.docker("rm", "chatty"))
