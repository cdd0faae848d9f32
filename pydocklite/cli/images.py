"""`images`, `rmi`, `tag` and the `image` management verbs."""
from __future__ import annotations

import json
import sys

from pydocklite.image_json import inspect_image  # noqa: F401 (used by cli.inspect)
from pydocklite.cli.common import (Parser, confirm, for_each, human_size, parse_time, print_table,
                                   rfc3339, time_ago)

IMAGE_COLUMNS = [("Repository", "REPOSITORY"), ("Tag", "TAG"), ("ID", "IMAGE ID"),
                 ("CreatedSince", "CREATED"), ("Size", "SIZE")]
DIGEST_COLUMNS = [("Repository", "REPOSITORY"), ("Tag", "TAG"), ("Digest", "DIGEST"),
                  ("ID", "IMAGE ID"), ("CreatedSince", "CREATED"), ("Size", "SIZE")]


def _service(settings):
    from pydocklite.images import ImageService
    return ImageService(settings)


def image_rows(service, *, truncate: bool = True) -> list:
    from pydocklite.images import split_repo_tag
    rows = []
    for record, tags in service.list():
        created = parse_time(record.created)
        base = {
            "ID": record.id[7:19] if truncate else record.id,
            "CreatedSince": time_ago(created) if created else "N/A",
            "CreatedAt": rfc3339(created) if created else "",
            "Size": human_size(record.size),
            "VirtualSize": human_size(record.size),
            "Containers": "N/A",
            "_created": created,
        }
        digests = {split_repo_tag(d)[0]: d.rsplit("@", 1)[-1] for d in record.repo_digests}
        digest = next(iter(digests.values()), "<none>")
        if tags:
            for t in tags:
                repo, tag = split_repo_tag(t)
                rows.append({**base, "Repository": repo, "Tag": tag,
                             "Digest": digests.get(repo, "<none>")})
        else:
            repo = "<none>"
            if record.repo_digests:
                repo = split_repo_tag(record.repo_digests[0])[0]
            rows.append({**base, "Repository": repo, "Tag": "<none>", "Digest": digest})
    rows.sort(key=lambda r: (-r["_created"], r["Repository"], r["Tag"]))
    for r in rows:
        del r["_created"]
    return rows


def cmd_images(settings, argv) -> int:
    p = Parser("images", "images [OPTIONS] [REPOSITORY[:TAG]]", "List images")
    p.add_argument("-a", "--all", action="store_true",
                   help="Show all images (default hides intermediate images)")
    p.add_argument("--digests", action="store_true", help="Show digests")
    p.add_argument("--format", help="Format output using a Go template")
    p.add_argument("-q", "--quiet", action="store_true", help="Only show image IDs")
    p.add_argument("--no-trunc", action="store_true", help="Don't truncate output")
    p.add_argument("-f", "--filter", action="append", default=[],
                   help="Filter output (dangling=true|false, reference=PATTERN)")
    p.add_argument("repository", nargs="?")
    args = p.parse_args(argv)
    service = _service(settings)
    rows = image_rows(service, truncate=not args.no_trunc)
    rows = _filter(rows, args.repository, args.filter)
    if args.quiet:
        seen = []
        for r in rows:
            if r["ID"] not in seen:
                seen.append(r["ID"])
        sys.stdout.write("".join(f"{i}\n" for i in seen))
        return 0
    columns = DIGEST_COLUMNS if args.digests else IMAGE_COLUMNS
    print_table(rows, columns, args.format)
    return 0


def _filter(rows, repository, filters) -> list:
    import fnmatch
    from pydocklite.errors import UsageError
    out = rows
    if repository:
        repo, _, tag = repository.partition(":") if "/" not in repository.rsplit(":", 1)[-1] \
            else (repository, "", "")
        out = [r for r in out if fnmatch.fnmatch(r["Repository"], repo)
               and (not tag or fnmatch.fnmatch(r["Tag"], tag))]
    for f in filters:
        key, _, value = f.partition("=")
        if key == "dangling":
            want = value.lower() == "true"
            out = [r for r in out if (r["Tag"] == "<none>") == want]
        elif key == "reference":
            out = [r for r in out if fnmatch.fnmatch(f"{r['Repository']}:{r['Tag']}", value)
                   or fnmatch.fnmatch(r["Repository"], value)]
        else:
            raise UsageError(f"invalid filter '{key}': use dangling= or reference=")
    return out


def cmd_rmi(settings, argv) -> int:
    p = Parser("rmi", "rmi [OPTIONS] IMAGE [IMAGE...]", "Remove one or more images")
    p.add_argument("-f", "--force", action="store_true", help="Force removal of the image")
    p.add_argument("--no-prune", action="store_true", help="Do not delete untagged parents")
    p.add_argument("images", nargs="+")
    args = p.parse_args(argv)
    service = _service(settings)

    def remove(name):
        return "\n".join(service.remove(name, force=args.force))
    return for_each(args.images, remove)


def cmd_tag(settings, argv) -> int:
    p = Parser("tag", "tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]",
               "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE")
    p.add_argument("source")
    p.add_argument("target")
    args = p.parse_args(argv)
    _service(settings).tag(args.source, args.target)
    return 0


def cmd_image_inspect(settings, argv) -> int:
    p = Parser("image inspect", "image inspect [OPTIONS] IMAGE [IMAGE...]",
               "Display detailed information on one or more images")
    p.add_argument("-f", "--format", help="Format output using a Go template")
    p.add_argument("images", nargs="+")
    args = p.parse_args(argv)
    return print_inspect(settings, args.images, args.format, kind="image")


def print_inspect(settings, names, fmt, kind="image") -> int:
    from pydocklite.errors import ImageNotFoundError
    service = _service(settings)
    results, status = [], 0
    for name in names:
        try:
            results.append(inspect_image(service, service.lookup(name)))
        except ImageNotFoundError:
            sys.stderr.write(f"Error: No such {kind}: {name}\n")
            status = 1
    emit_inspect(results, fmt)
    return status


def emit_inspect(results: list, fmt) -> None:
    if fmt:
        from pydocklite import gotemplate
        for r in results:
            sys.stdout.write(gotemplate.render(fmt.replace("\\n", "\n").replace("\\t", "\t"), r)
                             + "\n")
    else:
        sys.stdout.write(json.dumps(results, indent=4) + "\n")


def cmd_image_prune(settings, argv) -> int:
    p = Parser("image prune", "image prune [OPTIONS]", "Remove unused images")
    p.add_argument("-a", "--all", action="store_true",
                   help="Remove all unused images, not just dangling ones")
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")
    args = p.parse_args(argv)
    what = ("all images without at least one container associated to them" if args.all
            else "all dangling images")
    if not args.force and not confirm(f"WARNING! This will remove {what}."):
        return 0
    ids, freed = _service(settings).prune(all_images=args.all)
    if ids:
        sys.stdout.write("Deleted Images:\n" + "".join(f"deleted: {i}\n" for i in ids) + "\n")
    sys.stdout.write(f"Total reclaimed space: {human_size(freed)}\n")
    return 0


IMAGE_SUBCOMMANDS = {
    "ls": cmd_images, "list": cmd_images, "rm": cmd_rmi, "remove": cmd_rmi, "tag": cmd_tag,
    "inspect": cmd_image_inspect, "prune": cmd_image_prune,
}


DIST_SUBCOMMANDS = ("push", "save", "load", "import", "history")


def cmd_image(settings, argv) -> int:
    if argv and argv[0] == "pull":
        from pydocklite.cli.pull import cmd_pull
        return cmd_pull(settings, argv[1:])
    if argv and argv[0] == "sign":
        from pydocklite.cli.trust import cmd_image_sign
        return cmd_image_sign(settings, argv[1:])
    if argv and argv[0] in DIST_SUBCOMMANDS:
        from pydocklite.cli import dist
        return getattr(dist, f"cmd_{argv[0]}")(settings, argv[1:])
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in IMAGE_SUBCOMMANDS:
        sys.stdout.write("Usage:  pydocklite image COMMAND\n\nManage images\n\nCommands:\n"
                         "  inspect  Display detailed information on one or more images\n"
                         "  ls       List images\n  prune    Remove unused images\n"
                         "  pull     Download an image from a registry\n"
                         "  push     Upload an image to a registry\n"
                         "  save     Save images to a tar archive\n"
                         "  load     Load an image from a tar archive\n"
                         "  import   Create an image from a rootfs tarball\n"
                         "  history  Show the history of an image\n"
                         "  rm       Remove one or more images\n"
                         "  sign     Sign images in a registry (sigstore signatures)\n"
                         "  tag      Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE\n")
        return 0 if not argv or argv[0] in ("-h", "--help") else 125
    return IMAGE_SUBCOMMANDS[argv[0]](settings, argv[1:])
