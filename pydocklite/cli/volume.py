"""`volume create|ls|inspect|rm|prune`: Docker's flags, output and JSON over the volumes
service (pydocklite/volumes.py)."""
from __future__ import annotations

import sys

from pydocklite.cli.common import (Parser, confirm, for_each, human_size, key_values,
                                    print_table, run_subcommand)
from pydocklite.errors import UsageError


def _service(settings):
    from pydocklite.volumes import VolumeService
    return VolumeService(settings)


def cmd_volume_create(settings, argv) -> int:
    p = Parser("volume create", "volume create [OPTIONS] [VOLUME]", "Create a volume")
    p.add_argument("-d", "--driver", default="local", help="Specify volume driver name")
    p.add_argument("--label", action="append", default=[], help="Set metadata for a volume")
    p.add_argument("-o", "--opt", action="append", default=[],
                   help="Set driver specific options")
    p.add_argument("--name", help="Specify volume name")
    p.add_argument("volume", nargs="?")
    args = p.parse_args(argv)
    if args.name and args.volume and args.name != args.volume:
        raise UsageError(f"conflicting options: either specify --name or provide a volume "
                         f"name, not both (got {args.name!r} and {args.volume!r})")
    v = _service(settings).create(args.name or args.volume, key_values(args.label, "--label"),
                                  key_values(args.opt, "--opt"), args.driver)
    sys.stdout.write(v.name + "\n")
    return 0


def _row(v) -> dict:
    return {"Driver": "local", "Name": v.name, "Scope": "local", "Mountpoint": v.mountpoint,
            "Labels": ",".join(f"{k}={val}" for k, val in v.labels), "Links": str(len(v.users)),
            "Size": "N/A"}


def cmd_volume_ls(settings, argv) -> int:
    from pydocklite.volumes import parse_filters
    p = Parser("volume ls", "volume ls [OPTIONS]", "List volumes")
    p.add_argument("-f", "--filter", action="append", default=[],
                   help="Provide filter values (e.g. 'dangling=true')")
    p.add_argument("--format", help="Format output using a Go template")
    p.add_argument("-q", "--quiet", action="store_true", help="Only display volume names")
    args = p.parse_args(argv)
    vols = _service(settings).list(parse_filters(args.filter))
    if args.quiet:
        sys.stdout.write("".join(v.name + "\n" for v in vols))
        return 0
    print_table([_row(v) for v in vols], [("Driver", "DRIVER"), ("Name", "VOLUME NAME")],
                args.format)
    return 0


def cmd_volume_inspect(settings, argv) -> int:
    from pydocklite.volumes import volume_json
    p = Parser("volume inspect", "volume inspect [OPTIONS] VOLUME [VOLUME...]",
               "Display detailed information on one or more volumes")
    p.add_argument("-f", "--format", help="Format output using a Go template")
    p.add_argument("volumes", nargs="+")
    args = p.parse_args(argv)
    from pydocklite.cli.common import inspect_each
    service = _service(settings)
    return inspect_each(args.volumes, lambda name: volume_json(service.inspect(name)),
                        args.format)


def cmd_volume_rm(settings, argv) -> int:
    p = Parser("volume rm", "volume rm [OPTIONS] VOLUME [VOLUME...]",
               "Remove one or more volumes. You cannot remove a volume that is in use by a "
               "container.")
    p.add_argument("-f", "--force", action="store_true",
                   help="Force the removal of one or more volumes")
    p.add_argument("volumes", nargs="+")
    args = p.parse_args(argv)
    service = _service(settings)
    return for_each(args.volumes, lambda n: service.remove(n, force=args.force))


def cmd_volume_prune(settings, argv) -> int:
    from pydocklite.volumes import parse_filters
    p = Parser("volume prune", "volume prune [OPTIONS]", "Remove unused local volumes")
    p.add_argument("-a", "--all", action="store_true",
                   help="Remove all unused volumes, not just anonymous ones")
    p.add_argument("--filter", action="append", default=[],
                   help="Provide filter values (e.g. 'label=<label>')")
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")
    args = p.parse_args(argv)
    filters = parse_filters(args.filter)
    what = "all local volumes" if args.all else "anonymous local volumes"
    if not args.force and not confirm(f"WARNING! This will remove {what} not used by at least "
                                      "one container."):
        return 0
    names, freed = _service(settings).prune(filters, all_volumes=args.all)
    if names:
        sys.stdout.write("Deleted Volumes:\n" + "".join(n + "\n" for n in names) + "\n")
    sys.stdout.write(f"Total reclaimed space: {human_size(freed)}\n")
    return 0


SUBCOMMANDS = {
    "create": cmd_volume_create, "ls": cmd_volume_ls, "list": cmd_volume_ls,
    "inspect": cmd_volume_inspect, "rm": cmd_volume_rm, "remove": cmd_volume_rm,
    "prune": cmd_volume_prune,
}

HELP = """Usage:  pydocklite volume COMMAND

Manage volumes

Commands:
  create      Create a volume
  inspect     Display detailed information on one or more volumes
  ls          List volumes
  prune       Remove unused local volumes
  rm          Remove one or more volumes

Run 'pydocklite volume COMMAND --help' for more information on a command.
"""


def cmd_volume(settings, argv) -> int:
    return run_subcommand(settings, argv, "volume", SUBCOMMANDS, HELP)
