"""POST /build: a tar context in the body, the builder's output streamed as {"stream"}
lines ending with "Successfully built <id>" (the Docker SDK finds the image id only that
way) and {"aux": {"ID"}}; a failed build is an {"error", "errorDetail"} line.

The context is hostile: it is unpacked into a fresh directory of the store with no entry
allowed outside it (no absolute names, no "..", no links leading out, no device nodes),
and the Dockerfile named by `dockerfile` must be inside it.
"""
from __future__ import annotations

import os
import tarfile

from pydocklite.api.http import HttpError

MAX_CONTEXT_ENTRIES = 1_000_000


class _Lines:
    """A text stream for the builder: each write becomes a {"stream": text} line."""

    def __init__(self, stream, quiet: bool):
        self.stream, self.quiet = stream, quiet
        self.kept = []

    def write(self, text: str) -> int:
        if text:
            if self.quiet:
                self.kept.append(text)
            else:
                self.stream.json({"stream": text})
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def _unpack(chunks, dest: str) -> None:
    """Extract the context tar (plain, gzip, bzip2 or xz) into `dest` safely."""
    import io

    class Reader(io.RawIOBase):
        def __init__(self, it):
            self.it, self.buf = iter(it), b""

        def readable(self):
            return True

        def readinto(self, b):
            while not self.buf:
                try:
                    self.buf = next(self.it)
                except StopIteration:
                    return 0
            n = min(len(b), len(self.buf))
            b[:n] = self.buf[:n]
            self.buf = self.buf[n:]
            return n
    root = os.path.realpath(dest)
    count = 0
    with tarfile.open(fileobj=io.BufferedReader(Reader(chunks), 1 << 16), mode="r|*") as tar:
        for member in tar:
            count += 1
            if count > MAX_CONTEXT_ENTRIES:
                raise HttpError(400, "build context has too many entries")
            name = member.name.lstrip("./") if member.name not in (".", "./") else ""
            parts = [p for p in name.split("/") if p not in ("", ".")]
            if member.name.startswith("/") or ".." in parts:
                raise HttpError(400, f"build context entry {member.name[:200]!r} points "
                                     "outside the context")
            if not parts:
                continue
            target = os.path.join(root, *parts)
            if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
                continue                       # devices, fifos: never made on the host
            parent = os.path.dirname(target)
            if os.path.realpath(parent) != parent or not parent.startswith(root):
                raise HttpError(400, f"build context entry {member.name[:200]!r} goes "
                                     "through a link")
            if member.islnk():
                link = [p for p in member.linkname.split("/") if p not in ("", ".")]
                if member.linkname.startswith("/") or ".." in link:
                    raise HttpError(400, f"build context hard link {member.name[:200]!r} "
                                         "points outside the context")
                src = os.path.join(root, *link)
                if os.path.lexists(target):
                    os.unlink(target)
                os.link(src, target, follow_symlinks=False)
                continue
            if member.issym():
                if os.path.lexists(target):
                    os.unlink(target)
                os.symlink(member.linkname, target)   # resolved by the builder, in the context
                continue
            if member.isdir():
                os.makedirs(target, mode=0o755, exist_ok=True)
                os.chmod(target, (member.mode & 0o777) | 0o700)
                continue
            os.makedirs(parent, exist_ok=True)
            src = tar.extractfile(member)
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(target, flags, (member.mode & 0o777) | 0o600)
            with os.fdopen(fd, "wb") as out:
                while True:
                    data = src.read(1 << 20)
                    if not data:
                        break
                    out.write(data)
            os.utime(target, (member.mtime, member.mtime), follow_symlinks=False)


def _json_map(req, name: str) -> dict:
    value = req.json_arg(name, {}) or {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise HttpError(400, f"invalid {name}: a JSON object expected")
    return {k: "" if v is None else str(v) for k, v in value.items()}


def build(ctx, req, resp):
    import shutil
    import tempfile
    from pydocklite.builder.builder import BuildOptions, Builder, source_date_epoch
    from pydocklite.builder.errors import BuildError
    from pydocklite.images import familiar
    from pydocklite.api.status import message_of
    if req.arg("remote"):
        raise HttpError(400, "remote build contexts are not supported: send the context as a "
                             "tar in the request body")
    dockerfile = req.arg("dockerfile") or "Dockerfile"
    parts = [p for p in dockerfile.split("/") if p not in ("", ".")]
    if dockerfile.startswith("/") or ".." in parts or not parts:
        raise HttpError(400, f"dockerfile {dockerfile!r} must be a path inside the context")
    network = req.arg("networkmode") or "private"
    if network not in ("private", "host", "none", "default", "bridge"):
        raise HttpError(400, f"network mode {network!r} is not supported: use default, host "
                             "or none")
    quiet = req.flag("q")
    tags = tuple(t for t in req.query.get("t", []) if t)
    layout = ctx.settings.layout
    layout.ensure()
    tmp = tempfile.mkdtemp(prefix="build-", dir=str(layout.ingest_dir))
    try:
        _unpack(req.chunks(), tmp)
        if not os.path.isfile(os.path.join(tmp, *parts)):
            raise HttpError(500, f"Cannot locate specified Dockerfile: {dockerfile}")
        opts = BuildOptions(
            context=os.path.realpath(tmp), dockerfile=os.path.join(tmp, *parts), tags=tags,
            build_args=tuple(_json_map(req, "buildargs").items()),
            target=req.arg("target") or "", no_cache=req.flag("nocache"),
            pull=req.flag("pull"), labels=tuple(_json_map(req, "labels").items()),
            network="private" if network in ("default", "bridge") else network,
            platform=req.arg("platform") or "", source_date_epoch=source_date_epoch())
        stream = resp.start_stream(200, "application/json")
        out = _Lines(stream, quiet)

        def pull(name):
            out.write(f"Pulling {name}\n")
            return ctx.images.pull(name)
        try:
            result = Builder(ctx.settings, out=out, pull=pull).build(opts)
        except (BuildError, Exception) as e:  # noqa: BLE001 - the stream has begun
            msg = message_of(e)
            if quiet and out.kept:
                stream.json({"stream": "".join(out.kept)})
            stream.json({"errorDetail": {"message": msg}, "error": msg})
            stream.close()
            return None
        short = result.image_id.split(":", 1)[-1][:12]
        stream.json({"aux": {"ID": result.image_id}})
        if quiet:
            stream.json({"stream": result.image_id + "\n"})
        else:
            out.write(f"Successfully built {short}\n")
            for tag in result.tags:
                out.write(f"Successfully tagged {familiar(tag)}\n")
        stream.close()
        ctx.events.emit("image", "build", result.image_id, {"name": ",".join(tags)})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return None


def prune(ctx, req, resp):
    return {"CachesDeleted": [], "SpaceReclaimed": 0}

