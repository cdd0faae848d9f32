"""GET /events: Docker's event stream (JSON objects, one per line), with since/until and
filters (type, event/action, container, image, label).

The events come from what this service saw (EventLog: its own creates, starts, exits,
removals, pulls...); a per-user journal that the CLI and the shims append to is the
engine's (issue 11), and is tailed here once it exists.
"""
from __future__ import annotations

import threading
import time

from pydocklite.api.util import client_closed, filters_arg

KEEP = 1000


class EventLog:
    def __init__(self):
        self.cond = threading.Condition()
        self.items = []          # newest last
        self.seq = 0

    def emit(self, typ: str, action: str, actor: str, attrs=None) -> None:
        ns = time.time_ns()
        event = {"Type": typ, "Action": action,
                 "Actor": {"ID": actor, "Attributes": dict(attrs or {})},
                 "scope": "local", "time": ns // 1_000_000_000, "timeNano": ns}
        if typ == "container":
            event.update({"status": action, "id": actor, "from": (attrs or {}).get("image", "")})
        with self.cond:
            self.seq += 1
            self.items.append((self.seq, event))
            del self.items[:-KEEP]
            self.cond.notify_all()

    def after(self, seq: int):
        with self.cond:
            return [(s, e) for s, e in self.items if s > seq]

    def wait(self, seq: int, timeout: float) -> None:
        with self.cond:
            if self.seq <= seq:
                self.cond.wait(timeout)


def emit_container(ctx, action: str, state, **extra) -> None:
    attrs = {"name": state.name, "image": state.image}
    attrs.update((state.config.get("Config", {}).get("Labels") or {}))
    attrs.update({k: str(v) for k, v in extra.items()})
    ctx.events.emit("container", action, state.id, attrs)


def _selected(event: dict, filters: dict) -> bool:
    actor = event["Actor"]
    attrs = actor.get("Attributes", {})
    for key, values in filters.items():
        if key == "type" and event["Type"] not in values:
            return False
        if key in ("event", "action") and not any(
                event["Action"] == v or event["Action"].split(":")[0] == v for v in values):
            return False
        if key == "container" and (event["Type"] != "container" or not any(
                actor["ID"].startswith(v) or attrs.get("name") == v for v in values)):
            return False
        if key == "image" and not any(attrs.get("image") == v or actor["ID"] == v
                                      for v in values):
            return False
        if key == "label":
            for v in values:
                k, eq, val = v.partition("=")
                if k not in attrs or (eq and attrs[k] != val):
                    return False
    return True


def _time(text, default):
    if text in (None, ""):
        return default
    try:
        return float(text)
    except ValueError:
        from pydocklite.shim.logs import parse_time_ns
        return parse_time_ns(text) / 1e9


def stream_events(ctx, req, resp) -> None:
    filters = {}
    for f in filters_arg(req):
        key, _, value = f.partition("=")
        filters.setdefault(key, []).append(value)
    now = time.time()
    since = _time(req.arg("since"), None)
    until = _time(req.arg("until"), None)
    log = ctx.events
    stream = resp.start_stream(200, "application/json")
    ctx.server.busy(+1)
    try:
        seq = 0
        if since is None:
            seq = log.seq
        while True:
            for seq, event in log.after(seq):
                t = event["timeNano"] / 1e9
                if since is not None and t < since:
                    continue
                if until is not None and t > until:
                    break
                if _selected(event, filters):
                    stream.json(event)
            if until is not None and time.time() >= until:
                break
            if until is not None and until <= now:
                break
            if client_closed(req.conn.sock):
                return
            log.wait(seq, 0.5)
        stream.close()
    finally:
        ctx.server.busy(-1)
