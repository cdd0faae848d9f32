"""RUN --mount: type=cache (a directory kept between builds), type=bind (from the context,
read-only unless rw), type=tmpfs. Pure parsing into `RunMount`; the builder turns them into
the container's mounts. Cache contents never enter the image's layers, as in BuildKit.
"""
from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass
from typing import List, Sequence

from pydocklite.builder.errors import BuildError


@dataclass(frozen=True)
class RunMount:
    type: str            # "cache" | "bind" | "tmpfs"
    target: str          # absolute path in the container
    source: str = ""     # bind: path in the context
    id: str = ""         # cache: the cache's name (default: the target)
    readonly: bool = False


def parse_mount(text: str, workdir: str = "/") -> RunMount:
    fields = {}
    for part in text.split(","):
        k, eq, v = part.partition("=")
        k = k.strip().lower()
        fields[k] = v if eq else "true"
    kind = fields.pop("type", "bind")
    target = fields.pop("target", fields.pop("dst", fields.pop("destination", "")))
    if not target:
        raise BuildError(f"RUN --mount={text}: target= is required")
    target = posixpath.normpath(posixpath.join(workdir, target))
    ro = fields.pop("readonly", fields.pop("ro", "false")) == "true"
    rw = fields.pop("rw", fields.pop("readwrite", "false")) == "true"
    if kind == "cache":
        mount = RunMount("cache", target, id=fields.pop("id", target), readonly=ro)
        for ignored in ("sharing", "mode", "uid", "gid", "from", "source", "src"):
            fields.pop(ignored, None)
    elif kind == "bind":
        if "from" in fields:
            raise BuildError(f"RUN --mount={text}: from= is not supported by pydocklite yet: "
                             "COPY --from the files in a step before")
        mount = RunMount("bind", target, source=fields.pop("source", fields.pop("src", ".")),
                         readonly=not rw)
    elif kind == "tmpfs":
        fields.pop("size", None)
        mount = RunMount("tmpfs", target)
    else:
        raise BuildError(f"RUN --mount={text}: type={kind} is not supported: use cache, bind "
                         "or tmpfs")
    if fields:
        raise BuildError(f"RUN --mount={text}: unknown option(s) {', '.join(sorted(fields))}")
    return mount


def cache_dir_name(mount: RunMount) -> str:
    return hashlib.sha256(mount.id.encode()).hexdigest()[:24]


def to_mappings(mounts: Sequence[RunMount], cache_root, context_fs) -> List[object]:
    """containers.options.Mapping values for the RUN container."""
    from pydocklite.builder.context import clean_rel
    from pydocklite.containers.options import Mapping
    out = []
    for m in mounts:
        if m.type == "cache":
            d = cache_root / cache_dir_name(m)
            d.mkdir(parents=True, exist_ok=True)
            out.append(Mapping("bind", str(d), m.target, m.readonly))
        elif m.type == "bind":
            rel = clean_rel(m.source, "RUN --mount")
            if context_fs.follow(rel) is None:
                raise BuildError(f"RUN --mount: {m.source!r} is not in the build context")
            out.append(Mapping("bind", context_fs.host_path(rel), m.target, m.readonly))
        else:
            out.append(Mapping("tmpfs", "", m.target))
    return out
