"""/networks: translations to the networks service (pydocklite/networks.py). A container
created through the API on a user-defined network (Compose's <project>_default) records
that network's name; connect/disconnect come with the networks' start-path integration."""
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


def _remember(ctx, container: str, network, aliases) -> None:
    """Until containers join networks for real (the networks' start-path integration): the
    network a client put the container on, shown by inspect, as create records it."""
    def change(s):
        cfg = dict(s.config)
        if network is None:
            cfg.pop("ApiNetwork", None)
            cfg.pop("ApiAliases", None)
        else:
            cfg["ApiNetwork"], cfg["ApiAliases"] = network, list(aliases) or None
        return s._replace(config=cfg)
    ctx.containers.store.update(ctx.containers.store.resolve(container), change)


def connect(ctx, req, resp, id):
    body, container = _endpoint(req)
    service = _service(ctx)
    net = service.inspect(id)
    aliases = tuple((body.get("EndpointConfig") or {}).get("Aliases") or ())
    fn = getattr(service, "connect", None)
    if fn is not None:
        fn(id, container, aliases=aliases)
    else:
        _remember(ctx, container, net.name, aliases)
    return None


def disconnect(ctx, req, resp, id):
    body, container = _endpoint(req)
    service = _service(ctx)
    net = service.inspect(id)
    fn = getattr(service, "disconnect", None)
    if fn is not None:
        fn(id, container, force=bool(body.get("Force")))
    else:
        state = ctx.containers.store.get(container)
        if state.config.get("ApiNetwork") == net.name:
            _remember(ctx, container, None, ())
    return None
