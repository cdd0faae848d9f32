"""`update`: change a container's limits and restart policy (Docker's flags); prints each
container as given, warnings about what this host can't enforce on stderr."""
from __future__ import annotations

import sys

from pydocklite.cli.common import Parser, for_each


def cmd_update(settings, argv) -> int:
    p = Parser("update", "update [OPTIONS] CONTAINER [CONTAINER...]",
               "Update configuration of one or more containers")
    p.add_argument("--cpus", type=float, help="Number of CPUs")
    p.add_argument("-m", "--memory", help="Memory limit")
    p.add_argument("--memory-swap", help="Swap limit equal to memory plus swap: -1 to "
                   "enable unlimited swap")
    p.add_argument("--pids-limit", type=int, help="Tune container pids limit (set -1 for "
                   "unlimited)")
    p.add_argument("--restart", help="Restart policy to apply when a container exits")
    p.add_argument("containers", nargs="+")
    args = p.parse_args(argv)
    from pydocklite.containers.container import ContainerService
    from pydocklite.containers.options import parse_bytes
    from pydocklite.containers.update import UpdateOptions
    from pydocklite.errors import UsageError
    if args.cpus is not None and args.cpus <= 0:
        raise UsageError(f"invalid --cpus {args.cpus}: must be more than 0")
    want = UpdateOptions(
        memory=parse_bytes(args.memory) if args.memory else None,
        memory_swap=(-1 if args.memory_swap == "-1" else parse_bytes(args.memory_swap))
        if args.memory_swap else None,
        cpus=args.cpus, pids_limit=args.pids_limit, restart=args.restart)
    service = ContainerService(settings)

    def one(name: str) -> str:
        for w in service.update(name, want):
            sys.stderr.write(f"WARNING: {w}\n")
        return name
    return for_each(args.containers, one)
