"""Podman 4.3 with `--runtime ./pydocklite-runtime`: rootful (its own storage, run root, tmp dir;
conmon) and rootless as the test user (a confined home, tests/fixtures/podman.py). Podman passes
--log-format=json only to runtimes listed in runtime_supports_json: ours is listed."""
from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests import unpriv
from tests.engines.conftest import needs_root, short_dir
from tests.fixtures import engines
from tests.fixtures.podman import configure_podman

pytestmark = [needs_root,
              pytest.mark.skipif(not engines.have("podman", "conmon"),
                                 reason="podman is not installed (apt-get install podman)")]


class RootPodman:
    def __init__(self, base: Path, runtime: str):
        (base / "tmp").mkdir(exist_ok=True)
        self.base, self.runtime = base, runtime
        self.env = engines.podman_root_conf(base)

    def __call__(self, *args, check: bool = False, timeout: float = 120):
        r = subprocess.run(["podman", "--runtime", self.runtime, *map(str, args)],
                           env=self.env, capture_output=True, text=True, timeout=timeout)
        if check:
            assert r.returncode == 0, f"podman {args}: rc={r.returncode}\n{r.stdout}{r.stderr}"
        return r


class UserPodman:
    def __init__(self, home: Path, runtime: str):
        self.home, self.runtime = home, runtime

    def __call__(self, *args, check: bool = False, timeout: float = 120):
        r = unpriv.run_as_user(["podman", "--runtime", self.runtime, *map(str, args)],
                               self.home, timeout=timeout)
        if check:
            assert r.returncode == 0, f"podman {args}: rc={r.returncode}\n{r.stdout}{r.stderr}"
        return r


@pytest.fixture(scope="module")
def root_podman(runtime_bin, busybox_archive):
    base = short_dir("pdlp-")
    pm = RootPodman(base, runtime_bin)
    engines.warm_runtime(runtime_bin, base / "home")
    pm("load", "-i", busybox_archive, check=True)
    yield pm
    pm("rm", "-a", "-f")
    pm("system", "reset", "-f")
    engines.kill_leftovers(str(base))
    subprocess.run(["rm", "-rf", "--one-file-system", str(base)], check=False)


@pytest.fixture(scope="module")
def user_podman(runtime_bin, busybox_archive, tmp_path_factory):
    home = unpriv.make_user_dir(short_dir("pdlu-") / "h")
    configure_podman(home)
    conf = home / ".config" / "containers" / "containers.conf"
    conf.write_text(conf.read_text() + 'runtime_supports_json = ["crun", "runc", "kata", '
                                       '"runsc", "pydocklite-runtime"]\n')
    archive = home / "busybox.tar"
    shutil.copy2(busybox_archive, archive)
    subprocess.run(["chown", unpriv.TEST_USER, str(archive)], check=True)
    pm = UserPodman(home, runtime_bin)
    pm("load", "-i", archive, check=True)
    yield pm
    pm("rm", "-a", "-f")
    pm("system", "reset", "-f")
    for pid, cmd in unpriv.user_processes():
        if str(home) in cmd:
            subprocess.run(["kill", "-9", str(pid)], check=False)
    subprocess.run(["rm", "-rf", "--one-file-system", str(home.parent)], check=False)


def _lifecycle(pm, network: tuple) -> None:
    r = pm("run", "--rm", *network, "busybox", "sh", "-c", "echo hi; id -u; exit 6")
    assert r.returncode == 6 and r.stdout.split() == ["hi", "0"], (r.returncode, r.stderr)
    r = pm("run", "-d", *network, "--name", "pw", "busybox", "sh", "-c",
           'trap "exit 0" TERM; while :; do sleep 0.1; done', check=True)
    cid = r.stdout.strip()
    r = pm("exec", "pw", "sh", "-c", "echo in-exec; exit 3")
    assert r.returncode == 3 and r.stdout.strip() == "in-exec", r.stderr
    t0 = time.monotonic()
    pm("stop", "pw", check=True)
    assert time.monotonic() - t0 < 8, "SIGTERM reached the container"
    state = pm("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}} {{.OCIRuntime}}",
               "pw", check=True).stdout.split()
    assert state[:2] == ["exited", "0"] and state[2].endswith("pydocklite-runtime"), state
    pm("rm", "pw", check=True)
    assert engines.kill_leftovers(cid) == []
    r = pm("run", "--rm", *network, "busybox", "/no/such/program")
    assert r.returncode == 127, (r.returncode, r.stderr)


def test_rootful_run_exec_stop(root_podman):
    _lifecycle(root_podman, ("--network", "none"))


def test_rootless_run_exec_stop(user_podman):
    _lifecycle(user_podman, ())
