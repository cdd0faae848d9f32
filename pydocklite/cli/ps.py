"""`ps`: Docker's columns, -a/-q/-n/-l, --filter, --format, --no-trunc."""
from __future__ import annotations

import sys

from pydocklite.cli.common import Parser, print_table
from pydocklite.containers.query import matches

COLUMNS = [("ID", "CONTAINER ID"), ("Image", "IMAGE"), ("Command", "COMMAND"),
           ("RunningFor", "CREATED"), ("Status", "STATUS"), ("Ports", "PORTS"),
           ("Names", "NAMES")]


def _command(args: list, trunc: bool) -> str:
    text = " ".join(args)
    if trunc and len(text) > 20:
        text = text[:19] + "…"
    return f'"{text}"'


def _ports(state) -> str:
    out = []
    for m in state.config.get("PortBindings", []):
        ip = m.get("host_ip") or "127.0.0.1"
        out.append(f"{ip}:{m.get('host_port')}->{m.get('container_port')}/{m.get('protocol')}")
    return ", ".join(out)


def container_rows(states, trunc: bool = True) -> list:
    from datetime import datetime, timezone
    from pydocklite.state.container import human_duration, parse_rfc3339
    now = datetime.now(timezone.utc)
    rows = []
    for s in states:
        st = s.status()
        created = parse_rfc3339(s.created)
        running_for = human_duration((now - created).total_seconds()) + " ago" if created else ""
        labels = s.config.get("Config", {}).get("Labels") or {}
        rows.append({
            "ID": s.id[:12] if trunc else s.id,
            "Image": s.image,
            "Command": _command(s.config.get("Args", []), trunc),
            "CreatedAt": s.created,
            "RunningFor": running_for,
            "Status": s.human_status(now),
            "State": st.state,
            "Ports": _ports(s),
            "Names": s.name,
            "Labels": ",".join(f"{k}={v}" for k, v in labels.items()),
            "Mounts": ",".join(m.get("target", "") for m in s.config.get("Mounts", [])),
            "Networks": s.config.get("HostConfig", {}).get("NetworkMode", ""),
            "_state": s, "_status": st,
        })
    return rows


def _matches(row, filters) -> bool:
    return matches(row["_state"], row["_status"], filters)


def cmd_ps(settings, argv) -> int:
    p = Parser("ps", "ps [OPTIONS]", "List containers")
    p.add_argument("-a", "--all", action="store_true", help="Show all containers")
    p.add_argument("-q", "--quiet", action="store_true", help="Only display container IDs")
    p.add_argument("-n", "--last", type=int, default=-1, help="Show n last created containers")
    p.add_argument("-l", "--latest", action="store_true", help="Show the latest created container")
    p.add_argument("-f", "--filter", action="append", default=[], help="Filter output")
    p.add_argument("--format", help="Format output using a Go template")
    p.add_argument("--no-trunc", action="store_true", help="Don't truncate output")
    p.add_argument("-s", "--size", action="store_true", help="Display total file sizes")
    args = p.parse_args(argv)
    from pydocklite.state.store import ContainerStore
    states = ContainerStore(settings.layout.containers_dir).list()
    show_all = args.all or args.last > 0 or args.latest or any(
        f.startswith("status=") or f.startswith("exited=") for f in args.filter)
    rows = [r for r in container_rows(states, not args.no_trunc)
            if (show_all or r["_status"].running or r["_status"].state == "restarting")
            and _matches(r, args.filter)]
    if args.latest:
        rows = rows[:1]
    elif args.last > 0:
        rows = rows[:args.last]
    for r in rows:
        del r["_state"], r["_status"]
    if args.quiet:
        sys.stdout.write("".join(r["ID"] + "\n" for r in rows))
        return 0
    print_table(rows, COLUMNS, args.format)
    return 0
