"""/networks: the networks `run` has (bridge = the private network each container gets,
host, none) and user-defined ones accepted as names, so that Compose's <project>_default
works.

A stop-gap until the networks service (issue 12) gives them bridges and DNS: until then a
container on a user-defined network gets the private network and inspect shows the
network's name. Kept in STORE/api-networks.json (atomic replace, a file lock).
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import time

from pydocklite.api.http import HttpError
from pydocklite.api.util import filter_values, filters_arg

BUILTIN = {"bridge": "bridge", "host": "host", "none": "null"}
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")


def _path(ctx):
    return ctx.settings.layout.root / "api-networks.json"


def _load(ctx) -> dict:
    try:
        data = json.loads(_path(ctx).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _locked(ctx):
    ctx.settings.layout.root.mkdir(parents=True, exist_ok=True)
    fd = os.open(str(_path(ctx)) + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _builtin(name: str) -> dict:
    import hashlib
    return {"Name": name, "Id": hashlib.sha256(name.encode()).hexdigest(),
            "Created": "0001-01-01T00:00:00Z",
            "Scope": "local", "Driver": BUILTIN[name], "EnableIPv6": False,
            "IPAM": {"Driver": "default", "Options": None, "Config": []}, "Internal": False,
            "Attachable": False, "Ingress": False, "ConfigFrom": {"Network": ""},
            "ConfigOnly": False, "Containers": {}, "Options": {}, "Labels": {}}


def _all(ctx) -> list:
    return [_builtin(n) for n in BUILTIN] + list(_load(ctx).values())


def _find(ctx, ref: str) -> dict:
    nets = _all(ctx)
    for n in nets:
        if n["Name"] == ref or n["Id"] == ref:
            return n
    found = [n for n in nets if n["Id"].startswith(ref)]
    if len(found) == 1:
        return found[0]
    raise HttpError(404, f"network {ref} not found")


def _with_containers(ctx, net: dict) -> dict:
    net = dict(net)
    members = {}
    for s in ctx.containers.store.list():
        mode = s.config.get("ApiNetwork") or (
            "bridge" if s.config.get("HostConfig", {}).get("NetworkMode") == "private"
            else s.config.get("HostConfig", {}).get("NetworkMode"))
        if mode == net["Name"]:
            members[s.id] = {"Name": s.name, "EndpointID": "", "MacAddress": "",
                             "IPv4Address": "", "IPv6Address": ""}
    net["Containers"] = members
    return net


def list_(ctx, req, resp):
    filters = filters_arg(req)
    out = []
    for n in _all(ctx):
        ok = all(v in n["Name"] for v in filter_values(filters, "name"))
        ok &= all(n["Id"].startswith(v) for v in filter_values(filters, "id"))
        for lbl in filter_values(filters, "label"):
            k, eq, val = lbl.partition("=")
            ok &= k in n["Labels"] and (not eq or n["Labels"][k] == val)
        drivers = filter_values(filters, "driver")
        ok &= not drivers or n["Driver"] in drivers
        if ok:
            out.append(n)
    return out


def inspect(ctx, req, resp, id):
    return _with_containers(ctx, _find(ctx, id))


def create(ctx, req, resp):
    body = req.read_json(default=None)
    if not isinstance(body, dict) or not isinstance(body.get("Name"), str):
        raise HttpError(400, "network create needs a JSON body with a Name")
    name = body["Name"]
    if not _NAME.match(name) or len(name) > 255:
        raise HttpError(400, f"invalid network name {name[:64]!r}")
    driver = body.get("Driver") or "bridge"
    if driver != "bridge":
        raise HttpError(400, f"network driver {driver!r} is not supported: use bridge")
    labels = body.get("Labels") or {}
    if not isinstance(labels, dict):
        raise HttpError(400, "invalid Labels: expected an object")
    from pydocklite.atomic import atomic_write_json
    fd = _locked(ctx)
    try:
        nets = _load(ctx)
        if name in BUILTIN or name in nets:
            if body.get("CheckDuplicate", True) is not False or name in BUILTIN:
                raise HttpError(409, f"network with name {name} already exists")
        net = {**_builtin("bridge"), "Name": name, "Id": os.urandom(32).hex(),
               "Created": time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime()),
               "Labels": labels, "Internal": bool(body.get("Internal")),
               "Attachable": bool(body.get("Attachable")),
               "Options": body.get("Options") or {}}
        nets[name] = net
        atomic_write_json(_path(ctx), nets)
    finally:
        os.close(fd)
    resp.json({"Id": net["Id"], "Warning": ""}, status=201)
    return None


def remove(ctx, req, resp, id):
    from pydocklite.atomic import atomic_write_json
    net = _find(ctx, id)
    if net["Name"] in BUILTIN:
        raise HttpError(403, f"{net['Name']} is a pre-defined network and cannot be removed")
    if _with_containers(ctx, net)["Containers"]:
        raise HttpError(403, f"error while removing network: network {net['Name']} id "
                             f"{net['Id']} has active endpoints")
    fd = _locked(ctx)
    try:
        nets = _load(ctx)
        nets.pop(net["Name"], None)
        atomic_write_json(_path(ctx), nets)
    finally:
        os.close(fd)
    return None


def prune(ctx, req, resp):
    gone = []
    for n in _load(ctx).values():
        if not _with_containers(ctx, n)["Containers"]:
            remove(ctx, req, resp, n["Id"])
            gone.append(n["Name"])
    return {"NetworksDeleted": gone}


def connect(ctx, req, resp, id):
    _find(ctx, id)
    req.read_json(default={})
    return None


def disconnect(ctx, req, resp, id):
    _find(ctx, id)
    req.read_json(default={})
    return None
