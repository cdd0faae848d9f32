"""/volumes: translations to the volume service (pydocklite/volumes.py)."""
from __future__ import annotations

from pydocklite.api.http import HttpError
from pydocklite.api.util import filters_arg


def _service(ctx):
    from pydocklite.volumes import VolumeService
    return VolumeService(ctx.settings)


def _filters(req) -> dict:
    from pydocklite.volumes import parse_filters
    return parse_filters(filters_arg(req))


def list_(ctx, req, resp):
    from pydocklite.volumes import volume_json
    return {"Volumes": [volume_json(v) for v in _service(ctx).list(_filters(req))],
            "Warnings": []}


def create(ctx, req, resp):
    from pydocklite.volumes import volume_json
    body = req.read_json(default={})
    for key, kind in (("Name", str), ("Driver", str), ("Labels", dict), ("DriverOpts", dict)):
        if body.get(key) is not None and not isinstance(body[key], kind):
            raise HttpError(400, f"invalid {key}: expected "
                                 f"{'a string' if kind is str else 'an object'}")
    v = _service(ctx).create(body.get("Name") or None, labels=body.get("Labels") or {},
                             options=body.get("DriverOpts") or {},
                             driver=body.get("Driver") or "local")
    resp.json(volume_json(v), status=201)
    return None


def inspect(ctx, req, resp, name):
    from pydocklite.volumes import volume_json
    return volume_json(_service(ctx).inspect(name))


def remove(ctx, req, resp, name):
    _service(ctx).remove(name, force=req.flag("force"))
    return None


def prune(ctx, req, resp):
    filters = _filters(req)
    all_volumes = filters.pop("all", ["false"])[-1].lower() in ("1", "true")
    names, freed = _service(ctx).prune(filters, all_volumes=all_volumes)
    return {"VolumesDeleted": names, "SpaceReclaimed": freed}
