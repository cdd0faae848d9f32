"""`events` and `system events`: the per-user events journal (pydocklite/events.py), with
Docker's flags (--filter, --format, --since, --until) and its line format."""
from __future__ import annotations

import sys
from datetime import datetime

from pydocklite.cli.common import Parser

# Go's names of events.Message's fields -> the keys of its JSON form
_GO_FIELDS = {"Status": "status", "ID": "id", "From": "from", "Scope": "scope",
              "Time": "time", "TimeNano": "timeNano"}


class EventView:
    """An event for --format: `{{.Type}} {{.Actor.Attributes.name}} {{.TimeNano}}` as in Go,
    and `{{json .}}` prints the event as Docker's API sends it."""

    def __init__(self, event: dict):
        self.__dict__.update(event)

    def __getattr__(self, name: str):
        wire = _GO_FIELDS.get(name)
        if wire is None:
            raise AttributeError(name)
        return self.__dict__.get(wire, 0 if wire.startswith("time") else "")


def event_line(event: dict) -> str:
    """The docker CLI's default line: local time with 9 fraction digits, type, action,
    actor id, then the attributes sorted by name."""
    ns = int(event.get("timeNano") or 0)
    sec, frac = divmod(ns, 1_000_000_000)
    when = datetime.fromtimestamp(sec).astimezone()
    zone = when.strftime("%z")
    zone = "Z" if zone in ("+0000", "") else f"{zone[:3]}:{zone[3:]}"
    stamp = when.strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}{zone}"
    actor = event.get("Actor") or {}
    attrs = actor.get("Attributes") or {}
    line = f"{stamp} {event.get('Type', '')} {event.get('Action', '')} {actor.get('ID', '')}"
    if attrs:
        line += " (" + ", ".join(f"{k}={attrs[k]}" for k in sorted(attrs)) + ")"
    return line


def cmd_events(settings, argv, prog: str = "events") -> int:
    p = Parser(prog, f"{prog} [OPTIONS]", "Get real time events from pydocklite")
    p.add_argument("-f", "--filter", action="append", default=[],
                   help="Filter output based on conditions provided (type=, event=, "
                        "container=, image=, label=, volume=, network=)")
    p.add_argument("--format", help="Format the output using the given Go template "
                   "('json' for one JSON object per line)")
    p.add_argument("--since", help="Show all events created since timestamp")
    p.add_argument("--until", help="Stream events until this timestamp")
    args = p.parse_args(argv)
    from pydocklite import events
    from pydocklite.humanize import timestamp_ns
    match = events.matcher(events.parse_filters(args.filter))
    since = timestamp_ns(args.since) if args.since else None
    until = timestamp_ns(args.until) if args.until else None
    render = _renderer(args.format)
    out = sys.stdout
    for event in events.read(settings.runtime_layout.events_dir, since_ns=since,
                             until_ns=until, follow=True, match=match):
        out.write(render(event) + "\n")
        out.flush()
    return 0


def _renderer(fmt):
    if not fmt:
        return event_line
    if fmt == "json":
        import json
        return lambda e: json.dumps(e, separators=(",", ":"))
    from pydocklite import gotemplate
    template = gotemplate.Template(fmt.replace("\\t", "\t").replace("\\n", "\n"))
    return lambda e: template.execute(EventView(e))
