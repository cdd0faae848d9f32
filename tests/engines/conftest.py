"""Fixtures for the engine tests: ./pydocklite-runtime as the OCI runtime of containerd, dockerd
and Podman, each started by the tests as root with private state dirs (tests/fixtures/
engines.py) and stopped by pid. Containers under a root engine run without a user namespace,
as they do under runc."""
from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest

from tests.fixtures import engines, images
from tests.fixtures.cli_runner import REPO

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="engines run as root in the tests")


@pytest.fixture(scope="session")
def runtime_bin(zipapp):
    """A world-readable copy of ./pydocklite-runtime (build.sh writes it beside the zipapp):
    the test user's rootless Podman runs it too, from outside the clone."""
    src = REPO / "pydocklite-runtime"
    assert src.exists(), "build.sh did not write ./pydocklite-runtime"
    d = short_dir("pdlrt-")
    d.chmod(0o755)
    dst = d / "pydocklite-runtime"
    shutil.copy2(src, dst)
    dst.chmod(0o755)
    yield str(dst)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def busybox_archive(image_cache, tmp_path_factory) -> Path:
    """The test busybox image as a docker-archive (ctr, docker and podman all load it)."""
    d = tmp_path_factory.mktemp("archive")
    d.chmod(0o755)
    path = engines.docker_archive(images.build_busybox_image(image_cache),
                                  d / "busybox.tar", "busybox:latest")
    path.chmod(0o644)
    return path


def short_dir(prefix: str) -> Path:
    """A short private directory (unix socket paths < 108 bytes)."""
    p = Path("/tmp") / f"{prefix}{uuid.uuid4().hex[:6]}"
    p.mkdir(mode=0o711)
    return p
