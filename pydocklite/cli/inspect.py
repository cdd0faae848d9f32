"""`inspect` (containers, then images) and `container inspect`: Docker's JSON shape."""
from __future__ import annotations

import sys

from pydocklite.cli.common import Parser
from pydocklite.containers.inspect_json import container_json


def cmd_container_inspect(settings, argv) -> int:
    p = Parser("container inspect", "container inspect [OPTIONS] CONTAINER [CONTAINER...]",
               "Display detailed information on one or more containers")
    p.add_argument("-f", "--format", help="Format output using a Go template")
    p.add_argument("-s", "--size", action="store_true", help="Display total file sizes")
    p.add_argument("containers", nargs="+")
    args = p.parse_args(argv)
    return _inspect(settings, args.containers, args.format, images=False)


def cmd_inspect(settings, argv) -> int:
    p = Parser("inspect", "inspect [OPTIONS] NAME|ID [NAME|ID...]",
               "Return low-level information on containers or images")
    p.add_argument("-f", "--format", help="Format output using a Go template")
    p.add_argument("-s", "--size", action="store_true", help="Display total file sizes")
    p.add_argument("--type", choices=["container", "image"], help="Only this type of object")
    p.add_argument("names", nargs="+")
    args = p.parse_args(argv)
    return _inspect(settings, args.names, args.format, images=args.type != "container",
                    containers=args.type != "image")


def _inspect(settings, names, fmt, images=True, containers=True) -> int:
    from pydocklite.cli.images import emit_inspect, inspect_image
    from pydocklite.state.store import ContainerStore
    from pydocklite.errors import ContainerNotFoundError, ImageNotFoundError
    store = ContainerStore(settings.layout.containers_dir)
    service = None
    results, status = [], 0
    for name in names:
        if containers:
            try:
                results.append(container_json(settings, store.get(name)))
                continue
            except ContainerNotFoundError:
                pass
        if images:
            from pydocklite.images import ImageService
            service = service or ImageService(settings)
            try:
                results.append(inspect_image(service, service.lookup(name)))
                continue
            except ImageNotFoundError:
                pass
        sys.stderr.write(f"Error: No such object: {name}\n")
        status = 1
    emit_inspect(results, fmt)
    return status
