"""`mount IMAGE` / `unmount IMAGE` (podman's `image mount`): an image's files, read-only,
FUSE-mounted on the host with fusermount, to look at them without running anything."""
from __future__ import annotations

import sys

from pydocklite.cli.common import Parser


def _key(record) -> str:
    return "mount-" + record.id[7:19]


def _mountpoint(settings, record):
    return settings.runtime_layout.image_mount(record.id)


def cmd_mount(settings, argv) -> int:
    p = Parser("mount", "mount IMAGE", "Mount an image's root filesystem read-only and print "
               "where (podman image mount)")
    p.add_argument("image")
    args = p.parse_args(argv)
    from pydocklite.images import ImageService
    from snapshotter.errors import SnapshotExistsError
    from snapshotter.mounter import mount_all
    from snapshotter.snapshots import Snapshotter, mounted_under
    service = ImageService(settings)
    record = service.lookup(args.image)
    target = _mountpoint(settings, record)
    if mounted_under(str(target)):
        sys.stdout.write(f"{target}\n")
        return 0
    target.mkdir(parents=True, exist_ok=True)
    snap = Snapshotter(settings.layout, "fuse")
    try:
        mounts = snap.view(_key(record), list(record.diff_ids))
    except SnapshotExistsError:
        mounts = snap.mounts(_key(record))
    mount_all(mounts, target, allow_other=False)   # the FUSE server outlives this command
    sys.stdout.write(f"{target}\n")
    return 0


def cmd_unmount(settings, argv) -> int:
    p = Parser("unmount", "unmount IMAGE", "Unmount an image mounted with 'mount'")
    p.add_argument("image")
    args = p.parse_args(argv)
    from pydocklite.images import ImageService
    from snapshotter.errors import SnapshotNotFoundError
    from snapshotter.fuse_fs import unmount_path
    from snapshotter.snapshots import Snapshotter
    record = ImageService(settings).lookup(args.image)
    target = _mountpoint(settings, record)
    unmount_path(str(target))
    try:
        Snapshotter(settings.layout, "fuse").remove(_key(record))
    except SnapshotNotFoundError:
        pass
    try:
        target.rmdir()
    except OSError:
        pass
    sys.stdout.write(f"{record.id[7:19]}\n")
    return 0
