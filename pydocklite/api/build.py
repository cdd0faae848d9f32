"""POST /build: a tar context in the body, the builder's output streamed as {"stream"}
lines ending with "Successfully built <id>" (the Docker SDK finds the image id only that
way) and {"aux": {"ID"}}; a failed build is an {"error", "errorDetail"} line.

The context is hostile: it is unpacked into a fresh directory of the store with no entry
allowed outside it (no absolute names, no "..", no links leading out, no device nodes),
and the Dockerfile named by `dockerfile` must be inside it.
"""
from __future__ import annotations

import os

from pydocklite.api.http import HttpError


class _Lines:
    """A text stream for the builder: each write becomes a {"stream": text} event."""

    def __init__(self, emit, quiet: bool):
        self.emit, self.quiet = emit, quiet
        self.kept = []

    def write(self, text: str) -> int:
        if text:
            if self.quiet:
                self.kept.append(text)
            else:
                self.emit({"stream": text})
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def _unpack(chunks, dest: str) -> None:
    """Extract the context tar (plain or gzip) into `dest` with the one safe extractor:
    nothing lands outside it, no link leads out, no device is made."""
    import zlib
    from pydocklite.tar_extract import extract_stream
    it = iter(chunks)
    state = {"buf": b"", "z": None, "first": True}

    def read(n: int) -> bytes:
        while not state["buf"]:
            try:
                data = next(it)
            except StopIteration:
                if state["z"] is not None:
                    tail, state["z"] = state["z"].flush(), None
                    state["buf"] = tail
                    if tail:
                        break
                return b""
            if state["first"]:
                state["first"] = False
                if data[:2] == b"\x1f\x8b":
                    state["z"] = zlib.decompressobj(16 + zlib.MAX_WBITS)
            state["buf"] = state["z"].decompress(data) if state["z"] is not None else data
        out, state["buf"] = state["buf"][:n], state["buf"][n:]
        return out
    fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        extract_stream(read, fd, what="build context")
    finally:
        os.close(fd)


def _json_map(req, name: str) -> dict:
    value = req.json_arg(name, {}) or {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise HttpError(400, f"invalid {name}: a JSON object expected")
    return {k: "" if v is None else str(v) for k, v in value.items()}


def build(ctx, req, resp):
    import shutil
    import tempfile
    from pydocklite.images import familiar
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
        wanted = dict(
            context=os.path.realpath(tmp), dockerfile=os.path.join(tmp, *parts), tags=tags,
            build_args=tuple(_json_map(req, "buildargs").items()),
            target=req.arg("target") or "", no_cache=req.flag("nocache"),
            pull=req.flag("pull"), labels=tuple(_json_map(req, "labels").items()),
            network="private" if network in ("default", "bridge") else network,
            platform=req.arg("platform") or "")
        settings = ctx.settings

        def build_it(emit):
            # the builder is imported in the worker only: the service stays small
            from pydocklite.builder.builder import BuildOptions, Builder, source_date_epoch
            from pydocklite.builder.errors import BuildError
            from pydocklite.images import ImageService
            opts = BuildOptions(source_date_epoch=source_date_epoch(), **wanted)
            out = _Lines(emit, quiet)

            def pull(name, ref=None):   # ref: `name` as the builder parsed it (once)
                out.write(f"Pulling {name}\n")
                return ImageService(settings).pull(ref or name)
            try:
                result = Builder(settings, out=out, pull=pull).build(opts)
            except BuildError:
                if quiet and out.kept:
                    emit({"stream": "".join(out.kept)})
                raise
            return {"id": result.image_id, "tags": list(result.tags)}
        from pydocklite.api.images import _relay
        stream = resp.start_stream(200, "application/json")
        result = _relay(stream, build_it)
        if result is None:
            return None
        stream.json({"aux": {"ID": result["id"]}})
        if quiet:
            stream.json({"stream": result["id"] + "\n"})
        else:
            stream.json({"stream": f"Successfully built {result['id'].split(':', 1)[-1][:12]}\n"})
            for tag in result["tags"]:
                stream.json({"stream": f"Successfully tagged {familiar(tag)}\n"})
        stream.close()
        from pydocklite.api.events import emit_image
        emit_image(ctx, "build", result["id"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return None


def prune(ctx, req, resp):
    return {"CachesDeleted": [], "SpaceReclaimed": 0}

