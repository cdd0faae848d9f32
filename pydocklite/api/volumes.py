"""/volumes: thin handlers over the volumes service (pydocklite/volumes.py), the same one the
`volume` verbs call: names checked as dockerd checks them, volumes in use refused, prune
anonymous-only unless `all=true` (API 1.42+), Docker's JSON shapes. Errors map through
api/status.py (VolumeNotFoundError 404, VolumeInUseError 409, bad names and options 400).
"""
from __future__ import annotations

from pydocklite.api.http import HttpError
from pydocklite.api.util import filters_arg


def _service(ctx):
    from pydocklite.volumes import VolumeService
    return VolumeService(ctx.settings)


def _strings(value, what: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise HttpError(400, f"invalid {what}: expected an object")
    return {str(k): str(v) for k, v in value.items()}


def list_(ctx, req, resp):
    from pydocklite.volumes import parse_filters, volume_json
    vols = _service(ctx).list(parse_filters(filters_arg(req)))
    return {"Volumes": [volume_json(v) for v in vols], "Warnings": []}


def create(ctx, req, resp):
    from pydocklite.volumes import volume_json
    body = req.read_json(default={})
    name = body.get("Name") or None
    if name is not None and not isinstance(name, str):
        raise HttpError(400, "invalid Name: expected a string")
    driver = body.get("Driver") or "local"
    v = _service(ctx).create(name, _strings(body.get("Labels"), "Labels"),
                             _strings(body.get("DriverOpts"), "DriverOpts"), str(driver))
    resp.json(volume_json(v), status=201)
    return None


def inspect(ctx, req, resp, name):
    from pydocklite.volumes import volume_json
    return volume_json(_service(ctx).inspect(name))


def remove(ctx, req, resp, name):
    _service(ctx).remove(name, force=req.flag("force"))
    return None


def prune(ctx, req, resp):
    from pydocklite.volumes import parse_filters
    filters = filters_arg(req)
    everything = any(f.lower() in ("all=true", "all=1") for f in filters)
    names, freed = _service(ctx).prune(parse_filters([f for f in filters
                                                      if not f.startswith("all=")]),
                                       all_volumes=everything)
    return {"VolumesDeleted": names, "SpaceReclaimed": freed}
