"""/volumes: named volumes as `run -v NAME:/path` makes them (STORE/volumes/NAME/_data).

A stop-gap until the engine's volume service (issue 10) lands; then these handlers call
it. Names are checked as Docker checks them, so a name can't reach outside the store.
"""
from __future__ import annotations

import os
import re
import time

from pydocklite.api.http import HttpError
from pydocklite.api.util import filter_values, filters_arg

_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")


def _root(ctx):
    return ctx.settings.layout.root / "volumes"


def _check(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name) or len(name) > 255:
        raise HttpError(400, f"invalid volume name {str(name)[:64]!r}: only "
                             "[a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    return name


def _json(ctx, name: str) -> dict:
    path = _root(ctx) / name
    data = path / "_data"
    if not data.is_dir():
        raise HttpError(404, f"get {name}: no such volume")
    labels = {}
    try:
        import json
        labels = json.loads((path / "labels.json").read_text())
    except (OSError, ValueError):
        pass
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(path.stat().st_mtime))
    return {"Name": name, "Driver": "local", "Mountpoint": str(data), "CreatedAt": created,
            "Labels": labels or None, "Scope": "local", "Options": None}


def _used(ctx) -> set:
    used = set()
    for s in ctx.containers.store.list():
        for m in s.config.get("Mounts", []):
            src = m.get("source", "")
            if src.startswith(str(_root(ctx)) + "/"):
                used.add(src[len(str(_root(ctx))) + 1:].split("/", 1)[0])
    return used


def list_(ctx, req, resp):
    filters = filters_arg(req)
    root = _root(ctx)
    names = sorted(n for n in os.listdir(root) if _NAME.match(n)) if root.is_dir() else []
    out = []
    used = _used(ctx) if filter_values(filters, "dangling") else set()
    for n in names:
        try:
            v = _json(ctx, n)
        except HttpError:
            continue
        ok = True
        for d in filter_values(filters, "dangling"):
            ok &= (n not in used) == (d.lower() in ("true", "1"))
        for want in filter_values(filters, "name"):
            ok &= want in n
        for lbl in filter_values(filters, "label"):
            k, eq, val = lbl.partition("=")
            have = v["Labels"] or {}
            ok &= k in have and (not eq or have[k] == val)
        if ok:
            out.append(v)
    return {"Volumes": out, "Warnings": []}


def create(ctx, req, resp):
    import json
    body = req.read_json(default={})
    name = body.get("Name") or os.urandom(32).hex()
    _check(name)
    driver = body.get("Driver") or "local"
    if driver != "local":
        raise HttpError(400, f"volume driver {driver!r} is not supported: use local")
    labels = body.get("Labels") or {}
    if not isinstance(labels, dict):
        raise HttpError(400, "invalid Labels: expected an object")
    path = _root(ctx) / name
    (path / "_data").mkdir(parents=True, exist_ok=True)
    if labels:
        from pydocklite.atomic import atomic_write_json
        atomic_write_json(path / "labels.json", labels)
    del json
    resp.json(_json(ctx, name), status=201)
    return None


def inspect(ctx, req, resp, name):
    return _json(ctx, _check(name))


def remove(ctx, req, resp, name):
    _check(name)
    _json(ctx, name)
    if name in _used(ctx) and not req.flag("force"):
        raise HttpError(409, f"remove {name}: volume is in use: remove its containers first")
    from pydocklite.userns_exec import rmtree_as_root
    rmtree_as_root(str(_root(ctx) / name))
    return None


def prune(ctx, req, resp):
    from pydocklite.userns_exec import rmtree_as_root
    used = _used(ctx)
    gone = []
    for v in list_(ctx, req, resp)["Volumes"]:
        if v["Name"] not in used:
            rmtree_as_root(str(_root(ctx) / v["Name"]))
            gone.append(v["Name"])
    return {"VolumesDeleted": gone, "SpaceReclaimed": 0}
