"""/containers/{id}/archive: HEAD (stat), GET (a tar of a path), PUT (extract a tar into a
directory), all inside the container's namespaces (containers.procs)."""
from __future__ import annotations

import base64
import json

from pydocklite.api.http import HttpError


def _running(ctx, ref: str):
    state = ctx.containers.store.get(ref)
    if not state.status().running:
        raise HttpError(409, f"container {state.id[:12]} is not running: copying needs a "
                             "running container here")
    return state


def _path(req) -> str:
    path = req.arg("path")
    if not path:
        raise HttpError(400, "archive needs ?path=PATH")
    return path if path.startswith("/") else "/" + path


def _stat_header(ctx, state, path: str) -> tuple:
    from pydocklite.containers.procs import path_stat
    try:
        st = path_stat(state.init_pid, path)
    except FileNotFoundError:
        raise HttpError(404, f"Could not find the file {path} in container "
                             f"{state.name}") from None
    return ("X-Docker-Container-Path-Stat",
            base64.b64encode(json.dumps(st).encode()).decode())


def stat(ctx, req, resp, id):
    state = _running(ctx, id)
    header = _stat_header(ctx, state, _path(req))
    resp.send(200, b"", headers=[header])
    return None


def get(ctx, req, resp, id):
    from pydocklite.containers.procs import tar_stream
    state = _running(ctx, id)
    path = _path(req)
    header = _stat_header(ctx, state, path)
    stream = resp.start_stream(200, "application/x-tar", headers=[header])
    for chunk in tar_stream(state.init_pid, path):
        stream.write(chunk)
    stream.close()
    return None


def put(ctx, req, resp, id):
    from pydocklite.containers.procs import untar_into
    state = _running(ctx, id)
    path = _path(req)
    try:
        untar_into(state.init_pid, path, req.chunks())
    except FileNotFoundError as e:
        raise HttpError(404, str(e)) from None
    except OSError as e:
        raise HttpError(400, f"could not extract the archive into {path}: {e}") from None
    resp.send(200)
    return None
