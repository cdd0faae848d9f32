"""Session-wide test set-up and the shared fixtures (logic lives in tests/fixtures/).

Fixtures:
  zipapp       Path of ./pydocklite.pyz, built once per session by ./build.sh if absent/stale
  user_home    a fresh HOME for this test, owned by the test user (pdltest), mode 0700
  cli          cli(*args, env=None, timeout=120, check=False, input=...) -> CompletedProcess:
               pydocklite run AS the test user with HOME=user_home; cli.popen(...), cli.argv(...),
               cli.environ(), cli.home. Runs the zipapp, or `python3 -m pydocklite` from this
               checkout when PDL_TEST_USE_PACKAGE=1.
  registry     session registry (plain HTTP on 127.0.0.1) holding the standard test images:
               registry.ref("busybox") -> "127.0.0.1:PORT/busybox:latest"; .url, .host,
               .digests {name: manifest digest}; names: busybox, busybox-zstd, multilayer,
               multiplatform (OCI index), multiplatform-list (Docker manifest list)
  nginx_image / debian_image   push those (debootstrap-built, cached) into `registry` and
               return their reference; need root the first time (to run debootstrap)
  image_cache  the directory of built test images (tests/fixtures/images.cache_dir())
"""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.fixtures import cli_runner, images  # noqa: E402
from tests.fixtures.registry_server import registry_available, start_registry  # noqa: E402

SESSION_ROOT = Path(os.environ.get("PDL_TEST_ROOT", "/tmp/pdlt"))


@pytest.fixture(scope="session", autouse=True)
def host_setup() -> None:
    """Run tests/setup_host.sh (test user, subuid range, /dev/fuse mode) when root."""
    if os.geteuid() == 0:
        subprocess.run(["bash", str(REPO / "tests" / "setup_host.sh")], check=True)


@pytest.fixture(scope="session")
def zipapp() -> Path:
    return cli_runner.ensure_zipapp()


@pytest.fixture(scope="session")
def pdl_session(request) -> cli_runner.Session:
    if os.environ.get("PDL_TEST_USE_PACKAGE") == "1":
        return cli_runner.Session.create(SESSION_ROOT, None)
    return cli_runner.Session.create(SESSION_ROOT, request.getfixturevalue("zipapp"))


@pytest.fixture
def user_home(request, pdl_session) -> Path:
    # Short names: unix socket paths under $XDG_RUNTIME_DIR must stay below 108 bytes.
    home = pdl_session.new_home("h%d-%d" % (os.getpid(), id(request.node) % 100000))
    yield home
    if os.environ.get("PDL_KEEP_HOMES") != "1":
        cli_runner.remove_home(home)


@pytest.fixture
def cli(pdl_session, user_home) -> cli_runner.Cli:
    return cli_runner.Cli(pdl_session, user_home)


@pytest.fixture(scope="session")
def image_cache() -> Path:
    return images.cache_dir()


@dataclass
class RegistryImages:
    server: object
    digests: Dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def host(self) -> str:
        return self.server.host

    def ref(self, name: str, tag: str = "latest") -> str:
        return f"{self.host}/{name}:{tag}"

    def push(self, image, name: str, tag: str = "latest") -> str:
        self.digests[name] = images.push(image, self.url, name, tag)
        return self.ref(name, tag)


@pytest.fixture(scope="session")
def registry(tmp_path_factory, image_cache) -> RegistryImages:
    if not registry_available():
        pytest.skip("docker-registry is not installed (apt-get install docker-registry)")
    with start_registry(tmp_path_factory.mktemp("registry")) as server:
        yield RegistryImages(server, images.push_standard(server.url, image_cache))


@pytest.fixture(scope="session")
def debian_image(registry, image_cache) -> str:
    return registry.push(images.build_debian_image(image_cache), "debian")


@pytest.fixture(scope="session")
def nginx_image(registry, image_cache) -> str:
    return registry.push(images.build_nginx_image(image_cache), "nginx")


@pytest.fixture(autouse=True)
def _no_strays(request):
    """A test that ran containers must not leave them running into the next one."""
    home = request.getfixturevalue("user_home") if "cli" in request.fixturenames else None
    yield
    if home is not None:
        subprocess.run(["pkill", "-KILL", "-f", str(home)], check=False)


@pytest.fixture
def busybox(cli, registry) -> str:
    """The standard busybox image, pulled into this test's store."""
    ref = registry.ref("busybox")
    cli_runner.ok(cli("pull", "-q", ref))
    return ref
