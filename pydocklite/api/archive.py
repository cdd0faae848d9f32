"""/containers/{id}/archive: HEAD (stat), GET (a tar of a path), PUT (extract a tar into a
directory): translations to the container files service (containers/fs_access.py, whose
confined helper does the work inside the container)."""
from __future__ import annotations

import base64
import json

from pydocklite.api.http import HttpError


def _path(req) -> str:
    path = req.arg("path")
    if not path:
        raise HttpError(400, "archive needs ?path=PATH")
    return path


def _stat_header(ctx, ref: str, path: str) -> tuple:
    from pydocklite.containers.fs_access import docker_path_stat, stat_path
    st = docker_path_stat(stat_path(ctx.settings, ref, path))
    return ("X-Docker-Container-Path-Stat", base64.b64encode(json.dumps(st).encode()).decode())


def stat(ctx, req, resp, id):
    resp.send(200, b"", headers=[_stat_header(ctx, id, _path(req))])
    return None


def get(ctx, req, resp, id):
    from pydocklite.containers.fs_access import open_archive
    path = _path(req)
    header = _stat_header(ctx, id, path)
    with open_archive(ctx.settings, id, path) as tar:
        stream = resp.start_stream(200, "application/x-tar", headers=[header])
        while True:
            chunk = tar.read(1 << 20)
            if not chunk:
                break
            stream.write(chunk)
    stream.close()
    return None


def put(ctx, req, resp, id):
    from pydocklite.containers.fs_access import put_tar
    chunks = req.chunks()

    def feed(write):
        for chunk in chunks:
            write(chunk)
    put_tar(ctx.settings, id, _path(req), feed,
            copy_ids=req.flag("copyUIDGID"))
    resp.send(200)
    return None
