"""GET /events: Docker's event stream (JSON objects, one per line) from the per-user
journal (pydocklite/events.py) that the CLI, the shims and this service all append to, so
`docker events` sees what `pydocklite run` did and the other way round; since/until and
filters (type, event/action, container, image, label, volume, network)."""
from __future__ import annotations

import time

from pydocklite.api.util import client_closed, filters_arg


def emit_container(ctx, action: str, state, **extra) -> None:
    """An event the services don't emit themselves (exec_*)."""
    from pydocklite import events
    labels = state.config.get("Config", {}).get("Labels") or {}
    events.container(ctx.settings.runtime_layout.events_dir, action, state.id, state.image,
                     state.name, labels, **{k: str(v) for k, v in extra.items()})


def emit_image(ctx, action: str, name: str) -> None:
    from pydocklite import events
    events.emit(ctx.settings.runtime_layout.events_dir, "image", action, name, {"name": name})


def _time_ns(text):
    if text in (None, ""):
        return None
    try:
        return int(float(text) * 1_000_000_000)
    except ValueError:
        from pydocklite.shim.logs import parse_time_ns
        return parse_time_ns(text)


def stream_events(ctx, req, resp) -> None:
    from pydocklite import events
    filters = events.parse_filters(filters_arg(req))
    since, until = _time_ns(req.arg("since")), _time_ns(req.arg("until"))
    follow = until is None or until > time.time_ns()
    sock = req.conn.sock
    stream = resp.start_stream(200, "application/json")
    ctx.server.busy(+1)
    try:
        for event in events.read(ctx.settings.runtime_layout.events_dir, since_ns=since,
                                 until_ns=until, follow=follow,
                                 match=events.matcher(filters),
                                 stop=lambda: client_closed(sock)):
            stream.json(event)
        if not client_closed(sock):
            stream.close()
    finally:
        ctx.server.busy(-1)
