"""The test images themselves, checked against independent tools (skopeo, umoci), so other
tests can trust what tests/fixtures/images.py says about them (MULTILAYER_EXPECTED...)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tests.fixtures import images


def _tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        pytest.skip(f"{name} is not installed")
    return path


def _skopeo_inspect(registry, name: str, *extra: str) -> dict:
    """`skopeo inspect` JSON (or the raw manifest with extra=("--raw",))."""
    r = subprocess.run([_tool("skopeo"), "inspect", "--tls-verify=false", *extra,
                        f"docker://{registry.ref(name)}"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_images_are_deterministic(tmp_path, image_cache):
    """A fresh cache rebuilds byte-identical blobs (digests are stable across runs)."""
    for build in (images.build_busybox_image, images.build_multilayer_image,
                  images.build_busybox_zstd_image):
        assert build(tmp_path).manifest_digest == build(image_cache).manifest_digest


def test_registry_serves_the_standard_images(registry):
    busybox = _skopeo_inspect(registry, "busybox")
    assert busybox["Digest"] == registry.digests["busybox"]
    assert len(busybox["Layers"]) == 1
    multi = _skopeo_inspect(registry, "multilayer")
    assert len(multi["Layers"]) == 3 and multi["Layers"][0] == busybox["Layers"][0]
    zstd = _skopeo_inspect(registry, "busybox-zstd")
    assert zstd["Layers"] != busybox["Layers"]
    raw = _skopeo_inspect(registry, "busybox-zstd", "--raw")
    assert raw["layers"][0]["mediaType"] == images.OCI_LAYER["zstd"]
    for name in ("multiplatform", "multiplatform-list"):
        for arch in ("amd64", "arm64"):
            got = _skopeo_inspect(registry, name, "--override-arch", arch)
            assert got["Architecture"] == arch


def test_manifest_media_types(image_cache):
    assert images.build_busybox_image(image_cache).manifest.media_type == images.DOCKER_MANIFEST
    assert images.build_multilayer_image(image_cache).manifest.media_type == images.OCI_MANIFEST
    index = images.build_multiplatform_index(image_cache)
    doc = json.loads(index.manifest.path.read_bytes())
    assert doc["mediaType"] == images.OCI_INDEX
    assert [m["platform"]["architecture"] for m in doc["manifests"]] == ["amd64", "arm64"]


def test_multilayer_merge_matches_expected(registry, tmp_path):
    """umoci applies the layers (whiteout, opaque dir) the way MULTILAYER_EXPECTED says."""
    skopeo, umoci = _tool("skopeo"), _tool("umoci")
    layout = tmp_path / "oci"
    r = subprocess.run([skopeo, "copy", "--src-tls-verify=false",
                        f"docker://{registry.ref('multilayer')}", f"oci:{layout}:ml"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([umoci, "unpack", "--rootless", "--image", f"{layout}:ml",
                        str(tmp_path / "bundle")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    root = tmp_path / "bundle" / "rootfs"
    exp = images.MULTILAYER_EXPECTED
    for path, data in exp["files"].items():
        assert (root / path).read_bytes() == data, path
    for path, target in exp["symlinks"].items():
        assert os.readlink(root / path) == target
    for path, mode in exp["modes"].items():
        assert (root / path).stat().st_mode & 0o7777 == mode
    for path in exp["absent"]:
        assert not os.path.lexists(root / path), path
    assert os.readlink(root / "bin" / "sh") == "/bin/busybox"
    assert (root / "bin" / "busybox").is_file() and not (root / "bin" / "busybox").is_symlink()


@pytest.mark.slow
def test_nginx_image_is_configured_like_dockers(nginx_image, registry, image_cache):
    """debootstrap-built nginx: config as Docker's nginx image, logs to the container's stdio."""
    config = _skopeo_inspect(registry, "nginx", "--config")["config"]
    assert config["Cmd"] == ["nginx", "-g", "daemon off;"]
    assert config["ExposedPorts"] == {"80/tcp": {}}
    assert config["StopSignal"] == "SIGQUIT"
    import tarfile
    (layer,) = images.build_nginx_image(image_cache).layers
    with tarfile.open(layer.blob.path, "r:gz") as tar:
        links = {m.name: m.linkname for m in tar if m.name.startswith("var/log/nginx/")
                 and m.issym()}
        assert links == {"var/log/nginx/access.log": "/dev/stdout",
                         "var/log/nginx/error.log": "/dev/stderr"}
