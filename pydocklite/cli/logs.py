"""`logs`: the json-file log of a container (-f, --tail, -t, --since, --until)."""
from __future__ import annotations

import sys

from pydocklite.cli.common import Parser


def _since(text):
    """--since/--until (humanize.timestamp_ns) as the log reader's exact RFC 3339 text."""
    if text is None:
        return None
    from pydocklite.humanize import timestamp_ns
    from pydocklite.shim.logs import format_time
    return format_time(timestamp_ns(text), fixed=True)


def cmd_logs(settings, argv) -> int:
    p = Parser("logs", "logs [OPTIONS] CONTAINER", "Fetch the logs of a container")
    p.add_argument("-f", "--follow", action="store_true", help="Follow log output")
    p.add_argument("-n", "--tail", default="all", help="Number of lines to show from the end")
    p.add_argument("-t", "--timestamps", action="store_true", help="Show timestamps")
    p.add_argument("--since", help="Show logs since timestamp or relative (e.g. 42m)")
    p.add_argument("--until", help="Show logs before a timestamp or relative")
    p.add_argument("--details", action="store_true", help="Show extra details")
    p.add_argument("container")
    args = p.parse_args(argv)
    from pydocklite.state.store import ContainerStore
    from pydocklite.errors import UsageError
    from pydocklite.shim.logs import copy_logs
    store = ContainerStore(settings.layout.containers_dir)
    state = store.get(args.container)
    tail = None
    if args.tail != "all":
        try:
            tail = int(args.tail)
        except ValueError:
            raise UsageError(f"invalid --tail {args.tail!r}: a number or 'all'") from None

    def stopped() -> bool:
        try:
            st = store.load(state.id).status()
        except Exception:  # noqa: BLE001 - removed meanwhile
            return True
        return not st.running and not (st.shim_alive and st.state == "restarting")
    import os
    if not os.path.exists(state.log_path):
        return 0
    copy_logs(state.log_path, sys.stdout.buffer, sys.stderr.buffer, follow=args.follow,
              tail=tail, since=_since(args.since), until=_since(args.until),
              timestamps=args.timestamps, stop_when=stopped)
    sys.stdout.flush()
    return 0
