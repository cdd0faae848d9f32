"""Build and push deliberately broken images (raw HTTP), for the pull tests."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from typing import List, Optional

import requests

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tar_of(entries: List[tarfile.TarInfo], payload: Optional[dict] = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info in entries:
            data = (payload or {}).get(info.name, b"")
            info.size = len(data) if info.isfile() else 0
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return buf.getvalue()


def entry(name: str, kind=tarfile.REGTYPE, linkname: str = "", mode: int = 0o644
          ) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode, info.mtime = kind, linkname, mode, 1700000000
    return info


def push_blob(url: str, repo: str, data: bytes) -> str:
    digest = sha(data)
    r = requests.post(f"{url}/v2/{repo}/blobs/uploads/", timeout=30)
    r.raise_for_status()
    loc = r.headers["Location"]
    if loc.startswith("/"):
        loc = url + loc
    sep = "&" if "?" in loc else "?"
    r = requests.put(f"{loc}{sep}digest={digest}", data=data, timeout=30,
                     headers={"Content-Type": "application/octet-stream"})
    r.raise_for_status()
    return digest


def push_image(url: str, repo: str, tars: List[bytes], *, diff_ids: Optional[List[str]] = None,
               sizes: Optional[List[int]] = None, tag: str = "latest") -> str:
    """Push gzip layers made from `tars`; diff_ids/sizes may be given wrong on purpose."""
    layers = [gzip.compress(t, mtime=0) for t in tars]
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids or [sha(t) for t in tars]},
    }).encode()
    descs = []
    for i, blob in enumerate(layers):
        d = push_blob(url, repo, blob)
        descs.append({"mediaType": DOCKER_LAYER, "digest": d,
                      "size": sizes[i] if sizes else len(blob)})
    cdig = push_blob(url, repo, config)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
                           "config": {"mediaType": DOCKER_CONFIG, "digest": cdig,
                                      "size": len(config)},
                           "layers": descs}).encode()
    r = requests.put(f"{url}/v2/{repo}/manifests/{tag}", data=manifest, timeout=30,
                     headers={"Content-Type": DOCKER_MANIFEST})
    r.raise_for_status()
    return sha(manifest)
