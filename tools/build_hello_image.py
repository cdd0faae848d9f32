"""Write pydocklite's embedded `hello` image as an OCI image layout directory.

Usage (build.sh runs it): python3 tools/build_hello_image.py HELLO_BINARY OUT_DIR

OUT_DIR gets `oci-layout`, `index.json` and `blobs/sha256/<hex>`: one gzip tar layer holding
`/hello` (the static program) plus the empty directories a runtime mounts over, a config
whose Cmd is ["/hello"], and an OCI manifest. Every byte is deterministic (fixed mtimes,
uid/gid 0, gzip header without name or time), so the same binary always gives the same
digests. index.json names the manifest with org.opencontainers.image.ref.name = "latest".
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import platform
import shutil
import sys
import tarfile
from pathlib import Path

MTIME = 0  # 1970-01-01: fixed so the layer digest depends only on the binary
DIRS = ("dev", "etc", "proc", "sys", "tmp")
ARCHES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le",
          "s390x": "s390x", "riscv64": "riscv64", "i686": "386"}


def _tar_layer(binary: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in DIRS:
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if name == "tmp" else 0o755
            info.mtime = MTIME
            tar.addfile(info)
        info = tarfile.TarInfo("hello")
        info.mode = 0o755
        info.size = len(binary)
        info.mtime = MTIME
        tar.addfile(info, io.BytesIO(binary))
    return buf.getvalue()


def _gzip(data: bytes) -> bytes:
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9) as gz:
        gz.write(data)
    return out.getvalue()


def _json(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _descriptor(media_type: str, data: bytes, **extra) -> dict:
    return {"mediaType": media_type, "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
            "size": len(data), **extra}


def build(binary_path: Path, out_dir: Path) -> str:
    """Write the layout to out_dir (replacing it); return the manifest digest."""
    layer_tar = _tar_layer(binary_path.read_bytes())
    layer = _gzip(layer_tar)
    arch = ARCHES.get(platform.machine(), platform.machine())
    config = _json({
        "architecture": arch,
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {"Cmd": ["/hello"], "Env": ["PATH=/"]},
        "rootfs": {"type": "layers",
                   "diff_ids": ["sha256:" + hashlib.sha256(layer_tar).hexdigest()]},
        "history": [{"created": "1970-01-01T00:00:00Z",
                     "created_by": "pydocklite build.sh: gcc -static -Os -s hello.c"}],
    })
    manifest = _json({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": _descriptor("application/vnd.oci.image.config.v1+json", config),
        "layers": [_descriptor("application/vnd.oci.image.layer.v1.tar+gzip", layer)],
    })
    index = _json({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [_descriptor(
            "application/vnd.oci.image.manifest.v1+json", manifest,
            platform={"architecture": arch, "os": "linux"},
            annotations={"org.opencontainers.image.ref.name": "latest"})],
    })
    blobs_now = {hashlib.sha256(b).hexdigest() for b in (layer, config, manifest)}
    if (out_dir / "index.json").is_file() and (out_dir / "index.json").read_bytes() == index \
            and all((out_dir / "blobs" / "sha256" / h).is_file() for h in blobs_now):
        return "sha256:" + hashlib.sha256(manifest).hexdigest()   # already up to date
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    blobs = tmp / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    for blob in (layer, config, manifest):
        (blobs / hashlib.sha256(blob).hexdigest()).write_bytes(blob)
    (tmp / "oci-layout").write_bytes(_json({"imageLayoutVersion": "1.0.0"}))
    (tmp / "index.json").write_bytes(index)
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return "sha256:" + hashlib.sha256(manifest).hexdigest()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: build_hello_image.py HELLO_BINARY OUT_DIR")
    print(build(Path(sys.argv[1]), Path(sys.argv[2])))
