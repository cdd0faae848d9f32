"""The one place that chooses the Python FUSE binding.

`mfusepy` (same API as fusepy, loads libfuse3 or libfuse2) is preferred when installed, then
`fusepy` (module `fuse`, needs libfuse.so.2). PYDOCKLITE_FUSE_BINDING=fusepy|mfusepy forces one.
Imported lazily: only code that really mounts pays for loading libfuse.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from .errors import MountError


@dataclass(frozen=True)
class Binding:
    name: str          # "mfusepy" | "fusepy"
    module: object     # has FUSE, Operations, FuseOSError, fuse_get_context, fuse_exit
    libfuse: int       # 2 or 3


def load() -> Binding:
    wanted = os.environ.get("PYDOCKLITE_FUSE_BINDING", "")
    order = [wanted] if wanted else ["mfusepy", "fusepy"]
    errors = []
    for name in order:
        try:
            if name == "mfusepy":
                import mfusepy as mod  # type: ignore
                ver = 3 if getattr(mod, "fuse_version_major", 2) == 3 else 2
            elif name == "fusepy":
                import fuse as mod  # type: ignore
                ver = 2
            else:
                errors.append(f"{name}: unknown binding (use fusepy or mfusepy)")
                continue
        except (ImportError, OSError, EnvironmentError) as exc:
            errors.append(f"{name}: {exc}")
            continue
        return Binding(name, mod, ver)
    raise MountError("no usable FUSE binding (" + "; ".join(errors) + "): install libfuse2 "
                     "(apt install libfuse2) or `pip install mfusepy` for libfuse3")


def available() -> str:
    """'' if a binding loads, else the reason it doesn't (for `pydocklite info`).

    Cheap when all is well: a binding module that is importable and a libfuse that dlopen
    finds answer without importing the binding (fusepy's import runs `ldconfig -p`, ~10 ms
    on every `run`); anything else gets the real load and its error message."""
    import ctypes
    import importlib.util
    wanted = os.environ.get("PYDOCKLITE_FUSE_BINDING", "")
    candidates = {"mfusepy": ("libfuse3.so.3", "libfuse.so.2"), "fusepy": ("libfuse.so.2",)}
    for name in ([wanted] if wanted in candidates else list(candidates)):
        module = "fuse" if name == "fusepy" else name
        if importlib.util.find_spec(module) is None:
            continue
        for lib in candidates[name]:
            try:
                ctypes.CDLL(lib)
                return ""
            except OSError:
                continue
    try:
        load()
    except MountError as exc:
        return str(exc)
    return ""
