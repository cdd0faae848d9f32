"""`network create|ls|inspect|rm|prune|connect|disconnect`: Docker's flags, output and JSON
over the networks service (pydocklite/networks.py)."""
from __future__ import annotations

import sys

from pydocklite.cli.common import (Parser, confirm, for_each, key_values, print_table,
                                    run_subcommand)
from pydocklite.errors import UsageError


def _service(settings):
    from pydocklite.networks import NetworkService
    return NetworkService(settings)


def _one(values, flag: str) -> str:
    if len(values) > 1:
        raise UsageError(f"only one {flag} per network is supported (IPv4, one subnet)")
    return values[0] if values else ""


def cmd_network_create(settings, argv) -> int:
    p = Parser("network create", "network create [OPTIONS] NETWORK", "Create a network")
    p.add_argument("-d", "--driver", default="bridge", help="Driver to manage the Network")
    p.add_argument("--subnet", action="append", default=[],
                   help="Subnet in CIDR format that represents a network segment")
    p.add_argument("--gateway", action="append", default=[],
                   help="IPv4 Gateway for the master subnet")
    p.add_argument("--ip-range", action="append", default=[],
                   help="Allocate container ip from a sub-range")
    p.add_argument("--internal", action="store_true",
                   help="Restrict external access to the network")
    p.add_argument("--label", action="append", default=[], help="Set metadata on a network")
    p.add_argument("-o", "--opt", action="append", default=[],
                   help="Set driver specific options")
    p.add_argument("--attachable", action="store_true", help="Enable manual container attachment")
    p.add_argument("--ipv6", action="store_true", help="Enable IPv6 networking")
    p.add_argument("--ipam-driver", default="default", help="IP Address Management Driver")
    p.add_argument("name")
    args = p.parse_args(argv)
    if args.ipam_driver != "default":
        raise UsageError(f"IPAM driver {args.ipam_driver!r} is not supported: use default")
    net = _service(settings).create(
        args.name, args.driver, _one(args.subnet, "--subnet"), _one(args.gateway, "--gateway"),
        _one(args.ip_range, "--ip-range"), args.internal, key_values(args.label, "--label"),
        key_values(args.opt, "--opt"), args.attachable, args.ipv6)
    sys.stdout.write(net.id + "\n")
    return 0


def _row(net, no_trunc: bool) -> dict:
    return {"ID": net.id if no_trunc else net.short_id, "Name": net.name,
            "Driver": net.driver, "Scope": "local", "IPv6": "false",
            "Internal": "true" if net.internal else "false",
            "Labels": ",".join(f"{k}={v}" for k, v in net.labels),
            "CreatedAt": net.created}


def cmd_network_ls(settings, argv) -> int:
    from pydocklite.networks import parse_filters
    p = Parser("network ls", "network ls [OPTIONS]", "List networks")
    p.add_argument("-f", "--filter", action="append", default=[],
                   help="Provide filter values (e.g. 'driver=bridge')")
    p.add_argument("--format", help="Format output using a Go template")
    p.add_argument("--no-trunc", action="store_true", help="Do not truncate the output")
    p.add_argument("-q", "--quiet", action="store_true", help="Only display network IDs")
    args = p.parse_args(argv)
    nets = _service(settings).list(parse_filters(args.filter))
    if args.quiet:
        sys.stdout.write("".join((n.id if args.no_trunc else n.short_id) + "\n" for n in nets))
        return 0
    print_table([_row(n, args.no_trunc) for n in nets],
                [("ID", "NETWORK ID"), ("Name", "NAME"), ("Driver", "DRIVER"),
                 ("Scope", "SCOPE")], args.format)
    return 0


def cmd_network_inspect(settings, argv) -> int:
    p = Parser("network inspect", "network inspect [OPTIONS] NETWORK [NETWORK...]",
               "Display detailed information on one or more networks")
    p.add_argument("-f", "--format", help="Format output using a Go template")
    p.add_argument("-v", "--verbose", action="store_true", help="Verbose output for diagnostics")
    p.add_argument("networks", nargs="+")
    args = p.parse_args(argv)
    from pydocklite.cli.common import inspect_each
    return inspect_each(args.networks, _service(settings).inspect_json, args.format)


def cmd_network_rm(settings, argv) -> int:
    p = Parser("network rm", "network rm NETWORK [NETWORK...]", "Remove one or more networks")
    p.add_argument("-f", "--force", action="store_true",
                   help="Do not error if the network does not exist")
    p.add_argument("networks", nargs="+")
    args = p.parse_args(argv)
    service = _service(settings)

    def remove(ref: str):
        from pydocklite.networks import NetworkNotFoundError
        try:
            return service.remove(ref)
        except NetworkNotFoundError:
            if args.force:
                return None
            raise
    return for_each(args.networks, remove)


def cmd_network_prune(settings, argv) -> int:
    from pydocklite.networks import parse_filters
    p = Parser("network prune", "network prune [OPTIONS]", "Remove all unused networks")
    p.add_argument("--filter", action="append", default=[],
                   help="Provide filter values (e.g. 'label=<key>=<value>')")
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")
    args = p.parse_args(argv)
    filters = parse_filters(args.filter)
    if not args.force and not confirm("WARNING! This will remove all custom networks not "
                                      "used by at least one container."):
        return 0
    names = _service(settings).prune(filters)
    if names:
        sys.stdout.write("Deleted Networks:\n" + "".join(n + "\n" for n in names))
    return 0


def cmd_network_connect(settings, argv) -> int:
    p = Parser("network connect", "network connect [OPTIONS] NETWORK CONTAINER",
               "Connect a container to a network")
    p.add_argument("--alias", action="append", default=[],
                   help="Add network-scoped alias for the container")
    p.add_argument("--ip", default="", help="IPv4 address (e.g., \"172.30.100.104\")")
    p.add_argument("--driver-opt", action="append", default=[],
                   help="driver options for the network")
    p.add_argument("network")
    p.add_argument("container")
    args = p.parse_args(argv)
    _service(settings).connect(args.network, args.container, tuple(args.alias), args.ip)
    return 0


def cmd_network_disconnect(settings, argv) -> int:
    p = Parser("network disconnect", "network disconnect [OPTIONS] NETWORK CONTAINER",
               "Disconnect a container from a network")
    p.add_argument("-f", "--force", action="store_true",
                   help="Force the container to disconnect from a network")
    p.add_argument("network")
    p.add_argument("container")
    args = p.parse_args(argv)
    _service(settings).disconnect(args.network, args.container, force=args.force)
    return 0


SUBCOMMANDS = {
    "create": cmd_network_create, "ls": cmd_network_ls, "list": cmd_network_ls,
    "inspect": cmd_network_inspect, "rm": cmd_network_rm, "remove": cmd_network_rm,
    "prune": cmd_network_prune, "connect": cmd_network_connect,
    "disconnect": cmd_network_disconnect,
}

HELP = """Usage:  pydocklite network COMMAND

Manage networks

Commands:
  connect     Connect a container to a network
  create      Create a network
  disconnect  Disconnect a container from a network
  inspect     Display detailed information on one or more networks
  ls          List networks
  prune       Remove all unused networks
  rm          Remove one or more networks

Run 'pydocklite network COMMAND --help' for more information on a command.
"""


def cmd_network(settings, argv) -> int:
    return run_subcommand(settings, argv, "network", SUBCOMMANDS, HELP)
