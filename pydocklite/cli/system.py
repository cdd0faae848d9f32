"""`version`, `info`, `system df`, `system info`."""
from __future__ import annotations

import platform
import sys

from pydocklite.cli.common import Parser, human_size


def cmd_version(settings, argv) -> int:
    from pydocklite import __version__
    p = Parser("version", "version [OPTIONS]", "Show the pydocklite version information")
    p.add_argument("-f", "--format", help="Format output using a Go template")
    args = p.parse_args(argv)
    data = {"Client": {"Version": __version__, "PythonVersion": platform.python_version(),
                       "Os": "linux", "Arch": platform.machine()}}
    if args.format:
        from pydocklite import gotemplate
        sys.stdout.write(gotemplate.render(args.format, data) + "\n")
        return 0
    c = data["Client"]
    sys.stdout.write(f"Client:\n Version:        {c['Version']}\n"
                     f" Python version: {c['PythonVersion']}\n"
                     f" OS/Arch:        {c['Os']}/{c['Arch']}\n")
    return 0


def cmd_info(settings, argv) -> int:
    p = Parser("info", "info [OPTIONS]", "Display system-wide information")
    p.add_argument("-f", "--format", help="Format output using a Go template")
    args = p.parse_args(argv)
    from pydocklite.hostinfo import collect, render_text
    info = collect(settings)
    if args.format:
        from pydocklite import gotemplate
        sys.stdout.write(gotemplate.render(args.format, info) + "\n")
    else:
        sys.stdout.write(render_text(info))
    return 0


def disk_usage(settings) -> list:
    from pydocklite.images import ImageService
    service = ImageService(settings)
    db = service.db.load()
    used_images = service.images_in_use()
    layers = service._layers()
    layer_size = {}
    for record in db.images.values():
        for d in record.diff_ids:
            if d not in layer_size:
                try:
                    layer_size[d] = layers.size(d)
                except Exception:
                    layer_size[d] = 0
    all_layers = set(layer_size)
    active_layers = {d for iid in used_images if iid in db.images
                     for d in db.images[iid].diff_ids}
    total = sum(layer_size.values())
    reclaim = sum(layer_size[d] for d in all_layers - active_layers)
    containers = _container_usage(settings)
    rows = [
        {"Type": "Images", "TotalCount": str(len(db.images)),
         "Active": str(len(used_images & set(db.images))), "Size": human_size(total),
         "Reclaimable": _pct(reclaim, total)},
        {"Type": "Containers", "TotalCount": str(containers[0]), "Active": str(containers[1]),
         "Size": human_size(containers[2]), "Reclaimable": _pct(containers[3], containers[2])},
        _volume_usage(settings),
        {"Type": "Build Cache", "TotalCount": "0", "Active": "0", "Size": "0B",
         "Reclaimable": "0B"},
    ]
    return rows


def _volume_usage(settings) -> dict:
    from pydocklite.volumes import VolumeService, disk_usage
    vols = VolumeService(settings).list()
    sizes = {v.name: disk_usage(v.mountpoint) for v in vols}
    total = sum(sizes.values())
    return {"Type": "Local Volumes", "TotalCount": str(len(vols)),
            "Active": str(sum(1 for v in vols if v.users)), "Size": human_size(total),
            "Reclaimable": _pct(sum(sizes[v.name] for v in vols if not v.users), total)}


def _pct(part: int, total: int) -> str:
    if not total:
        return "0B"
    return f"{human_size(part)} ({int(100 * part / total)}%)"


def _container_usage(settings):
    """(total, running, bytes in upper dirs, bytes in stopped ones)."""
    import os
    cdir = settings.layout.containers_dir
    total = running = size = reclaim = 0
    if not cdir.is_dir():
        return 0, 0, 0, 0
    try:
        from pydocklite.state.store import ContainerStore
        states = ContainerStore(cdir).list()
    except Exception:
        states = []
    for st in states:
        total += 1
        is_running = getattr(st, "status", "") == "running"
        running += is_running
        used = 0
        for root, _, files in os.walk(cdir / st.id / "upper"):
            for name in files:
                try:
                    used += os.lstat(os.path.join(root, name)).st_size
                except OSError:
                    pass
        size += used
        reclaim += 0 if is_running else used
    return total, running, size, reclaim


def cmd_system(settings, argv) -> int:
    if argv and argv[0] == "df":
        p = Parser("system df", "system df [OPTIONS]", "Show pydocklite disk usage")
        p.add_argument("--format", help="Format output using a Go template")
        p.add_argument("-v", "--verbose", action="store_true", help="Show detailed information")
        args = p.parse_args(argv[1:])
        from pydocklite.cli.common import print_table
        print_table(disk_usage(settings),
                    [("Type", "TYPE"), ("TotalCount", "TOTAL"), ("Active", "ACTIVE"),
                     ("Size", "SIZE"), ("Reclaimable", "RECLAIMABLE")], args.format)
        return 0
    if argv and argv[0] == "info":
        return cmd_info(settings, argv[1:])
    if argv and argv[0] == "events":
        from pydocklite.cli.events import cmd_events
        return cmd_events(settings, argv[1:], prog="system events")
    if argv and argv[0] == "service":
        from pydocklite.cli.service import cmd_service
        return cmd_service(settings, argv[1:])
    if argv and argv[0] == "prune":
        return cmd_system_prune(settings, argv[1:])
    sys.stdout.write("Usage:  pydocklite system COMMAND\n\nManage pydocklite\n\nCommands:\n"
                     "  df       Show pydocklite disk usage\n"
                     "  events   Get real time events from pydocklite\n"
                     "  info     Display system-wide information\n"
                     "  prune    Remove unused data\n"
                     "  service  Serve the Docker Engine API on a unix socket\n")
    return 0 if not argv or argv[0] in ("-h", "--help") else 125


def cmd_system_prune(settings, argv) -> int:
    p = Parser("system prune", "system prune [OPTIONS]", "Remove unused data")
    p.add_argument("-a", "--all", action="store_true",
                   help="Remove all unused images not just dangling ones")
    p.add_argument("--filter", action="append", default=[],
                   help="Provide filter values (e.g. 'label=<key>=<value>', 'until=24h')")
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")
    p.add_argument("--volumes", action="store_true", help="Prune anonymous volumes")
    args = p.parse_args(argv)
    from pydocklite import system
    from pydocklite.cli.common import confirm
    from pydocklite.filters import parse_filters
    filters = parse_filters(args.filter, system.FILTER_KEYS)
    what = ["all stopped containers", "all networks not used by at least one container"]
    if args.volumes:
        what.append("all anonymous volumes not used by at least one container")
    what += ["all images without at least one container associated to them" if args.all
             else "all dangling images",
             "all build cache" if args.all else "unused build cache"]
    if not args.force and not confirm("WARNING! This will remove:\n" +
                                      "".join(f"  - {w}\n" for w in what)):
        return 0
    r = system.prune(settings, all_images=args.all, volumes=args.volumes, filters=filters)
    out = sys.stdout
    for title, items in (("Deleted Containers", r.containers), ("Deleted Networks", r.networks),
                         ("Deleted Volumes", r.volumes)):
        if items:
            out.write(f"{title}:\n" + "".join(f"{i}\n" for i in items) + "\n")
    if r.images:
        out.write("Deleted Images:\n" + "".join(f"deleted: {i}\n" for i in r.images) + "\n")
    if r.build_cache:
        out.write(f"Deleted build cache objects: {r.build_cache}\n\n")
    out.write(f"Total reclaimed space: {human_size(r.reclaimed)}\n")
    return 0

