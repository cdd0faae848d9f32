"""POST /containers/create: Docker's container config (JSON) -> RunOptions -> the container
service, as `create` does from flags. Unknown fields are ignored (as dockerd does); a
field of the wrong type is a 400 naming it. No image in the store is dockerd's 404
"No such image", which makes the clients pull and retry."""
from __future__ import annotations

from pydocklite.api.http import HttpError

_NOT_GIVEN = object()


def _field(obj: dict, key: str, kind, where: str = "", default=None):
    value = obj.get(key, _NOT_GIVEN)
    if value is _NOT_GIVEN or value is None:
        return default
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if bool not in kinds and isinstance(value, bool) and int in kinds:
        raise HttpError(400, f"invalid {where}{key}: expected a number, got a boolean")
    if not isinstance(value, kinds):
        names = " or ".join({dict: "an object", list: "an array", str: "a string",
                             int: "a number", float: "a number", bool: "a boolean"}[k]
                            for k in kinds)
        raise HttpError(400, f"invalid {where}{key}: expected {names}, got "
                             f"{type(value).__name__}")
    return value


def _strings(obj: dict, key: str, where: str = "") -> tuple:
    value = _field(obj, key, (list, str), where, ())
    if isinstance(value, str):
        return (value,)
    if not all(isinstance(v, str) for v in value):
        raise HttpError(400, f"invalid {where}{key}: expected an array of strings")
    return tuple(value)


def run_options(body: dict, name):
    """RunOptions for a create request's body."""
    from pydocklite.containers.options import Mapping, RunOptions, parse_tmpfs, parse_volume
    image = _field(body, "Image", str)
    if not image:
        raise HttpError(400, "Config.Image is empty: name the image to create the container from")
    host = _field(body, "HostConfig", dict, default={})
    hc = "HostConfig."
    command = _strings(body, "Cmd")
    entry = body.get("Entrypoint")
    entrypoint = None
    if entry is not None:
        parts = _strings(body, "Entrypoint")
        if not parts or parts == ("",):
            entrypoint = ""
        else:
            # RunOptions holds one entrypoint word; the rest go before the command
            entrypoint, command = parts[0], tuple(parts[1:]) + command
    mounts = [parse_volume(b) for b in _strings(host, "Binds", hc)]
    for m in _field(host, "Mounts", list, hc, []):
        if not isinstance(m, dict):
            raise HttpError(400, "invalid HostConfig.Mounts: expected objects")
        kind = (_field(m, "Type", str, "Mounts.") or "volume").lower()
        target = _field(m, "Target", str, "Mounts.") or ""
        source = _field(m, "Source", str, "Mounts.") or ""
        if kind not in ("bind", "volume", "tmpfs"):
            raise HttpError(400, f"mount type {kind!r} is not supported: use bind, volume "
                                 "or tmpfs")
        if not target.startswith("/"):
            raise HttpError(400, f"invalid mount target {target!r}: must be absolute")
        mounts.append(Mapping(kind, source if kind != "tmpfs" else "", target,
                              bool(m.get("ReadOnly"))))
    for target, opts in _field(host, "Tmpfs", dict, hc, {}).items():
        mounts.append(parse_tmpfs(f"{target}:{opts}" if opts else target))
    publish = []
    for key, bindings in _field(host, "PortBindings", dict, hc, {}).items():
        port, _, proto = key.partition("/")
        for b in bindings or [{}]:
            if not isinstance(b, dict):
                raise HttpError(400, "invalid HostConfig.PortBindings: expected objects")
            ip = _field(b, "HostIp", str, "PortBindings.") or ""
            hport = _field(b, "HostPort", str, "PortBindings.") or ""
            ip_part = f"[{ip}]" if ":" in ip else ip
            spec = f"{ip_part}:{hport}:{port}" if ip else (f"{hport}:{port}" if hport else port)
            publish.append(f"{spec}/{proto or 'tcp'}")
    restart = _field(host, "RestartPolicy", dict, hc, {})
    rname = _field(restart, "Name", str, "RestartPolicy.") or "no"
    retries = _field(restart, "MaximumRetryCount", int, "RestartPolicy.") or 0
    _field(host, "NetworkMode", str, hc)
    from pydocklite.containers.netopts import from_api
    from pydocklite.errors import UsageError
    try:
        net = from_api(host, body.get("NetworkingConfig"), body)
    except UsageError as e:
        raise HttpError(400, str(e)) from None
    nano = _field(host, "NanoCpus", int, hc) or 0
    quota, period = _field(host, "CpuQuota", int, hc) or 0, _field(host, "CpuPeriod", int, hc) or 0
    cpus = nano / 1e9 if nano else (quota / period if quota > 0 and period > 0 else None)
    memory = _field(host, "Memory", int, hc) or None
    swap = _field(host, "MemorySwap", int, hc) or None
    ulimits = []
    for u in _field(host, "Ulimits", list, hc, []):
        if not isinstance(u, dict) or not isinstance(u.get("Name"), str):
            raise HttpError(400, "invalid HostConfig.Ulimits: expected {Name, Soft, Hard}")
        ulimits.append(f"{u['Name']}={int(u.get('Soft') or 0)}:{int(u.get('Hard') or 0)}")
    # the CLI's parser: apparmor= and label= reach the spec (and are refused, 400 from the
    # container service, on a host whose LSM can't apply them), never dropped
    from pydocklite.containers.options import parse_security_opts
    try:
        extra = parse_security_opts(_strings(host, "SecurityOpt", hc))
    except UsageError as e:
        raise HttpError(400, str(e).replace("--security-opt", "SecurityOpt")) from None
    labels = _field(body, "Labels", dict, default={})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        raise HttpError(400, "invalid Labels: expected an object of strings")
    stop_timeout = _field(body, "StopTimeout", int)
    pids = _field(host, "PidsLimit", int, hc)
    health = _health(_field(body, "Healthcheck", dict, default={}))
    stdin_once = _field(body, "StdinOnce", bool)
    return RunOptions(
        stdin_once=stdin_once, **health,
        image=image, command=command, name=name or None, detach=True,
        remove=bool(_field(host, "AutoRemove", bool, hc, False)),
        interactive=bool(_field(body, "OpenStdin", bool, default=False)),
        tty=bool(_field(body, "Tty", bool, default=False)),
        env=_strings(body, "Env"), entrypoint=entrypoint,
        workdir=_field(body, "WorkingDir", str) or None,
        user=_field(body, "User", str) or None,
        hostname=_field(body, "Hostname", str) or None,
        network=net.mode, net=net, publish=tuple(publish),
        publish_all=bool(_field(host, "PublishAllPorts", bool, hc, False)),
        mounts=tuple(mounts), memory=memory, memory_swap=swap, cpus=cpus,
        pids_limit=pids if pids and pids > 0 else None, ulimits=tuple(ulimits),
        cap_add=_strings(host, "CapAdd", hc), cap_drop=_strings(host, "CapDrop", hc),
        read_only=bool(_field(host, "ReadonlyRootfs", bool, hc, False)),
        init=bool(_field(host, "Init", bool, hc, False)),
        restart=f"{rname}:{retries}" if rname == "on-failure" and retries else rname,
        stop_signal=_field(body, "StopSignal", str) or None, stop_timeout=stop_timeout,
        labels=tuple(labels.items()), pull="never",
        privileged=bool(_field(host, "Privileged", bool, hc, False)), extra=extra)


def _health(hc: dict) -> dict:
    """Config.Healthcheck -> RunOptions' health fields (durations in nanoseconds; 0 or
    absent = the image's or the default)."""
    out = {}
    test = hc.get("Test")
    if test is not None:
        if not isinstance(test, list) or not all(isinstance(t, str) for t in test):
            raise HttpError(400, "invalid Healthcheck.Test: expected an array of strings")
        if test:
            if test[0] not in ("NONE", "CMD", "CMD-SHELL"):
                raise HttpError(400, f"invalid Healthcheck.Test: starts with {test[0]!r}, "
                                     "not NONE, CMD or CMD-SHELL")
            out["health_test"] = tuple(test)
    for key, field in (("Interval", "health_interval"), ("Timeout", "health_timeout"),
                       ("StartPeriod", "health_start_period"),
                       ("StartInterval", "health_start_interval"), ("Retries", "health_retries")):
        value = _field(hc, key, int, "Healthcheck.")
        if value:
            if value < 0:
                raise HttpError(400, f"invalid Healthcheck.{key}: must not be negative")
            out[field] = value
    return out


def create(ctx, req, resp):
    from pydocklite.containers.publish import resolve_ports
    from pydocklite.errors import ImageNotFoundError
    body = req.read_json(default=None)
    if body is None:
        raise HttpError(400, "the request body is empty: send the container's config as JSON")
    name = req.arg("name")
    opts = run_options(body, name)
    images = ctx.images
    try:
        record = images.lookup(opts.image)
    except ImageNotFoundError:
        from pydocklite.oci_layout import load_embedded
        record = load_embedded(ctx.settings, opts.image)
        if record is None:
            raise HttpError(404, f"No such image: {opts.image}") from None
    image_config = images.config_json(record)
    warnings = []
    ports = resolve_ports(opts, image_config, warn=lambda text: warnings.append(text.strip()))
    state = ctx.containers.create(opts, record, image_config, ports)
    size = _console_size((body.get("HostConfig") or {}).get("ConsoleSize"))
    if size:
        def remember(s):
            cfg = dict(s.config)
            cfg["ApiConsoleSize"] = size
            return s._replace(config=cfg)
        state = ctx.containers.store.update(state.id, remember)
    from pydocklite.api.attach import fork_ahead
    fork_ahead(ctx, state)      # before the answer: the start that follows must find it
    resp.json({"Id": state.id, "Warnings": warnings}, status=201)
    return None


def _console_size(value):
    """HostConfig.ConsoleSize [height, width] (the CLI's terminal at create), or None."""
    if isinstance(value, list) and len(value) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) and 0 < v < 0x10000 for v in value):
        return value
    return None
