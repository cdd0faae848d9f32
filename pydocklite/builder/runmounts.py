"""RUN --mount: type=cache (a directory kept between builds), type=bind (from the context,
read-only unless rw), type=tmpfs. Pure parsing into `RunMount`; the builder turns them into
the container's mounts. Cache contents never enter the image's layers, as in BuildKit.

A `rw` bind gets a throw-away copy of its part of the context (what .dockerignore lets
through; symlinks copied as symlinks), deleted after the step: as in BuildKit, what the
command writes there is discarded, and the user's context is never written to.
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


def to_mappings(mounts: Sequence[RunMount], cache_root, context_fs, scratch_root,
                scratch: List[str]) -> List[object]:
    """containers.options.Mapping values for the RUN container; the throw-away copies made
    for rw binds are added to `scratch` (the caller deletes them after the step)."""
    import os
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
            entry = context_fs.follow(rel)
            if entry is None:
                raise BuildError(f"RUN --mount: {m.source!r} is not in the build context")
            if m.readonly:
                out.append(Mapping("bind", context_fs.host_path(rel), m.target, True))
                continue
            scratch_root.mkdir(parents=True, exist_ok=True)
            top = scratch_root / f"rw-{os.urandom(8).hex()}"
            top.mkdir(mode=0o755)
            scratch.append(str(top))
            copy_out(context_fs, rel, entry, top / "src")
            out.append(Mapping("bind", str(top / "src"), m.target, False))
        else:
            out.append(Mapping("tmpfs", "", m.target))
    return out


def copy_out(fs, rel: str, entry, dest) -> None:
    """A copy of context path `rel` (a directory's visible tree, or one file) at `dest`."""
    import os
    from pydocklite.builder.context import DIR, REG, SYMLINK
    todo = [(rel, entry, str(dest))]
    dirs = []                                 # their modes are set last (0555 dirs fill too)
    while todo:
        src, e, path = todo.pop()
        if e.type == DIR:
            os.mkdir(path, 0o700)
            dirs.append((path, e.mode))
            for name in fs.listdir(src):
                child = f"{src}/{name}" if src else name
                ce = fs.stat(child)
                if ce is not None:
                    todo.append((child, ce, os.path.join(path, name)))
        elif e.type == SYMLINK:
            os.symlink(e.linkname, path)
        elif e.type == REG:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as f:
                for b in fs.chunks(src):
                    f.write(b)
            os.chmod(path, e.mode)
    for path, mode in reversed(dirs):
        os.chmod(path, mode)
