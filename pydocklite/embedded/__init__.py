"""Images shipped inside pydocklite itself.

`hello/` is an OCI image layout (oci-layout, index.json, blobs/sha256/...) that build.sh
generates from hello.c; it is not kept in git. The image service loads it into the store
so `pydocklite run --rm hello` works with no registry reachable.
"""
from __future__ import annotations

from pathlib import Path

HELLO_IMAGE_NAME = "hello"
HELLO_CANONICAL = "docker.io/library/hello:latest"   # HELLO_IMAGE_NAME normalised


def hello_layout() -> Path:
    """Path of the embedded hello image's OCI layout directory.

    Raises FileNotFoundError when it was never generated (a source checkout without ./build.sh).
    """
    path = Path(__file__).resolve().parent / "hello"
    if not (path / "index.json").is_file():
        raise FileNotFoundError(
            f"embedded hello image missing at {path}: run ./build.sh to generate it")
    return path
