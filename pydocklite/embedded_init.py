"""The container init shipped inside pydocklite (`run --init` mounts it at /dev/init).

build.sh compiles pydocklite/embedded/init.c into pydocklite/embedded/init (a static
program, not kept in git). `init_binary(runtime_layout)` returns a path to bind-mount.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

INIT_PATH_IN_CONTAINER = "/dev/init"


def packaged_init() -> Path:
    """Where the init binary sits in the package (source checkout or extracted zipapp)."""
    return Path(__file__).resolve().parent / "embedded" / "init"


def init_binary(runtime_layout) -> Path:
    """An executable copy of the embedded init, for a read-only bind mount.

    The packaged file is used as is when it is executable; otherwise (an extraction that
    lost the mode bits) it is copied once into the runtime directory with mode 0755.
    Raises FileNotFoundError (naming the fix) when it was never built.
    """
    src = packaged_init()
    if not src.is_file():
        raise FileNotFoundError(
            f"the container init is missing at {src}: run ./build.sh to compile it "
            "(needs gcc and libc6-dev), or run without --init")
    if os.access(src, os.X_OK) and os.stat(src).st_mode & 0o005 == 0o005:
        return src
    runtime_layout.ensure()
    dest = runtime_layout.init_copy
    if dest.is_file() and dest.stat().st_size == src.stat().st_size and \
            os.access(dest, os.X_OK):
        return dest
    tmp = dest.with_name(f".init.{os.getpid()}")
    shutil.copyfile(src, tmp)
    os.chmod(tmp, 0o755)
    os.replace(tmp, dest)
    return dest
