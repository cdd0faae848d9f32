"""/networks: translations to the networks service (pydocklite/networks.py); a container
created on a network (Compose's <project>_default, with the service's aliases) joins it
through containers/netopts.from_api, connect/disconnect through the service."""
from __future__ import annotations

from pydocklite.api.http import HttpError
from pydocklite.api.util import filters_arg


def _service(ctx):
    from pydocklite.networks import NetworkService
    return NetworkService(ctx.settings)


def _filters(req) -> dict:
    from pydocklite.networks import parse_filters
    return parse_filters(filters_arg(req))


def list_(ctx, req, resp):
    from pydocklite.networks import network_json
    return [network_json(n) for n in _service(ctx).list(_filters(req))]


def inspect(ctx, req, resp, id):
    return _service(ctx).inspect_json(id)


def create(ctx, req, resp):
    body = req.read_json(default=None)
    if not isinstance(body, dict) or not isinstance(body.get("Name"), str):
        raise HttpError(400, "network create needs a JSON body with a Name")
    ipam = body.get("IPAM") or {}
    configs = (ipam.get("Config") or []) if isinstance(ipam, dict) else []
    first = configs[0] if configs and isinstance(configs[0], dict) else {}
    for key, kind in (("Labels", dict), ("Options", dict), ("Driver", str)):
        if body.get(key) is not None and not isinstance(body[key], kind):
            raise HttpError(400, f"invalid {key}")
    net = _service(ctx).create(
        body["Name"], driver=body.get("Driver") or "bridge",
        subnet=str(first.get("Subnet") or ""), gateway=str(first.get("Gateway") or ""),
        ip_range=str(first.get("IPRange") or ""), internal=bool(body.get("Internal")),
        labels=body.get("Labels") or {}, options=body.get("Options") or {},
        attachable=bool(body.get("Attachable")), ipv6=bool(body.get("EnableIPv6")))
    resp.json({"Id": net.id, "Warning": ""}, status=201)
    return None


def remove(ctx, req, resp, id):
    _service(ctx).remove(id)
    return None


def prune(ctx, req, resp):
    return {"NetworksDeleted": _service(ctx).prune(_filters(req))}


def _endpoint(req):
    body = req.read_json(default={})
    container = body.get("Container")
    if not isinstance(container, str) or not container:
        raise HttpError(400, "a Container is needed")
    return body, container


def connect(ctx, req, resp, id):
    body, container = _endpoint(req)
    config = body.get("EndpointConfig") or {}
    if not isinstance(config, dict):
        raise HttpError(400, "invalid EndpointConfig: expected an object")
    ipam = config.get("IPAMConfig") if isinstance(config.get("IPAMConfig"), dict) else {}
    aliases = tuple(a for a in (config.get("Aliases") or ()) if isinstance(a, str))
    _service(ctx).connect(id, container, aliases=aliases, ip=ipam.get("IPv4Address") or "",
                          mac=config.get("MacAddress") or "")
    return None


def disconnect(ctx, req, resp, id):
    body, container = _endpoint(req)
    _service(ctx).disconnect(id, container, force=bool(body.get("Force")))
    return None
