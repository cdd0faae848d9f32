"""Fixtures for the registry/ tests: real docker-registry processes (plain, basic auth, bearer
token, TLS), a fault proxy, and a small image pusher built on our own client."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import sys
import tarfile
import types
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import pytest

_REPO = str(Path(__file__).resolve().parents[2])
if _REPO not in sys.path:  # so `tests.fixtures` imports however pytest was started
    sys.path.insert(0, _REPO)

from tests.fixtures.registry_server import FaultProxy, registry_available, start_registry

USER, PASSWORD = "alice", "wonderland"

needs_registry = pytest.mark.skipif(not registry_available(),
                                    reason="docker-registry binary not installed")


def make_layer(files: dict) -> "tuple[bytes, str]":
    """A gzip'd tar with `files` {name: bytes}; returns (blob, diff_id)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1700000000
            tar.addfile(info, io.BytesIO(data))
    tar_bytes = raw.getvalue()
    blob = gzip.compress(tar_bytes, mtime=0)
    return blob, "sha256:" + hashlib.sha256(tar_bytes).hexdigest()


@dataclass
class PushedImage:
    ref: str
    manifest_digest: str
    manifest_raw: bytes
    config_raw: bytes
    layers: List[bytes]


def push_test_image(client, repo_ref: str, tag: str = "latest", arch: str = "amd64",
                    variant: str = "", n_layers: int = 2, seed: str = "x",
                    wrong_diff_ids: bool = False, layer_size_delta: int = 0,
                    media_type: Optional[str] = None) -> PushedImage:
    """Push a small image with our client; returns what was pushed."""
    from registry.model import (OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST, Descriptor,
                                build_manifest, sha256_digest)
    layers, diff_ids, descs = [], [], []
    for i in range(n_layers):
        blob, diff_id = make_layer({f"file{i}.txt": f"{seed}-{arch}-{i}\n".encode() * 50})
        layers.append(blob)
        diff_ids.append(diff_id)
        client.upload_blob(f"{repo_ref}:{tag}", blob)
        descs.append(Descriptor(OCI_LAYER_GZIP, sha256_digest(blob), len(blob) + layer_size_delta))
    if wrong_diff_ids:
        diff_ids = diff_ids[:-1]
    config = {"architecture": arch, "os": "linux", "rootfs": {"type": "layers",
                                                               "diff_ids": diff_ids},
              "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"], "WorkingDir": "/",
                         "ExposedPorts": {"80/tcp": {}}, "Labels": {"seed": seed}}}
    if variant:
        config["variant"] = variant
    config_raw = json.dumps(config).encode()
    client.upload_blob(f"{repo_ref}:{tag}", config_raw)
    raw = build_manifest(Descriptor(OCI_CONFIG, sha256_digest(config_raw), len(config_raw)),
                         descs, media_type or OCI_MANIFEST)
    digest = client.put_manifest(f"{repo_ref}:{tag}", raw)
    return PushedImage(f"{repo_ref}:{tag}", digest, raw, config_raw, layers)


@pytest.fixture(scope="session")
def plain_registry(tmp_path_factory):
    if not registry_available():
        pytest.skip("docker-registry binary not installed")
    with start_registry(tmp_path_factory.mktemp("reg-plain")) as reg:
        yield reg


@pytest.fixture(scope="session")
def basic_registry(tmp_path_factory):
    if not registry_available():
        pytest.skip("docker-registry binary not installed")
    with start_registry(tmp_path_factory.mktemp("reg-basic"), auth="basic",
                        users={USER: PASSWORD}) as reg:
        yield reg


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory):
    if not registry_available():
        pytest.skip("docker-registry binary not installed")
    with start_registry(tmp_path_factory.mktemp("reg-token"), auth="token",
                        users={USER: PASSWORD}) as reg:
        yield reg


@pytest.fixture(scope="session")
def tls_registry(tmp_path_factory):
    if not registry_available():
        pytest.skip("docker-registry binary not installed")
    with start_registry(tmp_path_factory.mktemp("reg-tls"), tls=True) as reg:
        yield reg


@pytest.fixture
def fault_proxy(plain_registry):
    with FaultProxy(plain_registry.url) as proxy:
        yield proxy


@pytest.fixture
def client():
    from registry.client import RegistryClient
    c = RegistryClient(auth=False, backoff=0.01, certs_dirs=[])
    yield c
    c.close()


@pytest.fixture(scope="session")
def helpers():
    """Test helpers as a namespace (test modules here are not a package, so no imports)."""
    return types.SimpleNamespace(USER=USER, PASSWORD=PASSWORD, make_layer=make_layer,
                                 push_test_image=push_test_image)
