"""`push`, `save`, `load`, `import`, `commit`, `history`: image distribution verbs."""
from __future__ import annotations

import os
import sys

from pydocklite.cli.common import Parser, human_size, parse_time, print_table, rfc3339, \
    time_ago
from pydocklite.cli.progress import LayerProgress
from pydocklite.errors import UsageError

SAVE_FORMATS = {"docker-archive": ("docker", "tar"), "docker-dir": ("docker", "dir"),
                "oci-archive": ("oci", "tar"), "oci-dir": ("oci", "dir")}
HISTORY_COLUMNS = [("ID", "IMAGE"), ("CreatedSince", "CREATED"), ("CreatedBy", "CREATED BY"),
                   ("Size", "SIZE"), ("Comment", "COMMENT")]


def _service(settings):
    from pydocklite.images import ImageService
    return ImageService(settings)


def _bool_flags(argv, names) -> tuple:
    """Docker's boolean flags: `-p`, `--pause`, `--pause=false`. Returns (argv without them,
    {long name: bool}); a bare flag never swallows the next argument."""
    rest, values = [], {}
    for arg in argv:
        flag, eq, value = arg.partition("=")
        if flag in names:
            if eq and value.lower() not in ("true", "false", "1", "0"):
                raise UsageError(f"invalid boolean value {value!r} for {flag}")
            values[names[flag]] = not eq or value.lower() in ("true", "1")
        else:
            rest.append(arg)
    return rest, values


def _tls(value):
    return None if value is None else value == "true"


def cmd_push(settings, argv) -> int:
    p = Parser("push", "push [OPTIONS] NAME[:TAG]", "Upload an image to a registry")
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress verbose output")
    p.add_argument("--tls-verify", choices=["true", "false"], default=None,
                   help="Require HTTPS and verify certificates (default true)")
    p.add_argument("--compress", choices=["gzip", "zstd"], default="gzip",
                   help="Compression of layers that must be uploaded (default gzip)")
    p.add_argument("--force-compression", action="store_true",
                   help="Upload every layer in the --compress format, never reusing blobs "
                        "of another compression")
    p.add_argument("--chunk-size", type=int, default=None,
                   help="Upload blobs bigger than this many bytes in chunks (default 16 MiB)")
    p.add_argument("-a", "--all-tags", action="store_true",
                   help="Push all tags of an image to the repository")
    from pydocklite.cli.trust import add_sign_flags, sign_pushed, signing_key
    add_sign_flags(p)
    p.add_argument("name")
    args = p.parse_args(argv)
    key = signing_key(args)      # unreadable key, wrong passphrase: fail before any upload
    from pydocklite.distribution.push import CHUNK_SIZE, push_image
    from pydocklite.images import familiar
    from registry.reference import Reference
    service = _service(settings)
    ref = Reference.parse(args.name)
    explicit_tag = ":" in args.name.rsplit("/", 1)[-1] or "@" in args.name
    names = [args.name]
    if args.all_tags:
        if explicit_tag:
            raise UsageError("tag can't be used with --all-tags/-a")
        names = [t for t in sorted(service.db.load().tags)
                 if Reference.parse(t).repository == ref.repository]
        if not names:
            from pydocklite.errors import ImageNotFoundError
            raise ImageNotFoundError(f"An image does not exist locally with the tag: "
                                     f"{familiar(ref.repository)}")
    out = sys.stdout
    if not args.quiet:
        if not explicit_tag and not args.all_tags:
            out.write("Using default tag: latest\n")
        out.write(f"The push refers to repository [{familiar(ref.repository)}]\n")
        out.flush()
    force = args.force_compression or args.compress == "zstd"
    for name in names:
        progress = None if args.quiet else LayerProgress(out, out.isatty(), "Pushing",
                                                         print_active=True)
        result = push_image(service, name, compression=args.compress,
                            chunk_size=args.chunk_size or CHUNK_SIZE, progress=progress,
                            tls_verify=_tls(args.tls_verify), force_compress=force)
        if key is not None:
            sign_pushed(settings, result.reference, result.digest, key, args.sign_identity,
                        _tls(args.tls_verify), out=None if args.quiet else out)
        if args.quiet:
            out.write(f"{familiar(result.reference)}\n")
        else:
            out.write(f"{result.tag}: digest: {result.digest} size: {result.size}\n")
    return 0


def cmd_save(settings, argv) -> int:
    p = Parser("save", "save [OPTIONS] IMAGE [IMAGE...]",
               "Save one or more images to a tar archive (streamed to STDOUT by default)")
    p.add_argument("-o", "--output", help="Write to a file (or directory for *-dir formats)")
    p.add_argument("--format", default="docker-archive", choices=sorted(SAVE_FORMATS),
                   help="docker-archive (default), oci-archive, oci-dir or docker-dir")
    p.add_argument("images", nargs="+")
    args = p.parse_args(argv)
    from pydocklite.distribution.archive import save
    from pydocklite.distribution.sources import DirSink, TarSink
    fmt, kind = SAVE_FORMATS[args.format]
    service = _service(settings)
    if kind == "dir":
        if not args.output:
            raise UsageError(f"--format {args.format} needs -o DIRECTORY")
        save(service, args.images, DirSink(args.output), fmt)
        return 0
    if not args.output:
        if sys.stdout.isatty():
            raise UsageError("cowardly refusing to save to a terminal. Use the -o flag or "
                             "redirect")
        save(service, args.images, TarSink(sys.stdout.buffer), fmt)
        sys.stdout.flush()
        return 0
    tmp = f"{args.output}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            save(service, args.images, TarSink(f), fmt)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, args.output)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return 0


def cmd_load(settings, argv) -> int:
    p = Parser("load", "load [OPTIONS]", "Load an image from a tar archive or STDIN")
    p.add_argument("-i", "--input", help="Read from a tar archive file (or an OCI/Docker "
                                         "layout directory) instead of STDIN")
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress the load output")
    p.add_argument("--signature-policy", metavar="FILE",
                   help="Signature policy for the archive (transports docker-archive, "
                        "oci-archive, oci; default: ~/.config/containers/policy.json, else "
                        "/etc/containers/policy.json)")
    args = p.parse_args(argv)
    from pydocklite.distribution.archive import load
    from pydocklite.distribution.sources import open_source
    service = _service(settings)
    tmp = None
    path = args.input
    if not path or path == "-":
        if sys.stdin.isatty():
            raise UsageError("requested load from stdin, but stdin is empty: use -i FILE")
        import shutil
        import tempfile
        service.layout.ensure()
        fd, tmp = tempfile.mkstemp(prefix="load-", dir=str(service.layout.ingest_dir))
        with os.fdopen(fd, "wb") as f:
            shutil.copyfileobj(sys.stdin.buffer, f, 1 << 20)
        path = tmp
    try:
        source = open_source(path)
        try:
            loaded = load(service, source, signature_policy=args.signature_policy,
                          origin=None if tmp else os.path.abspath(path))
        finally:
            source.close()
    finally:
        if tmp:
            os.unlink(tmp)
    from pydocklite.termsafe import escape_line
    for item in loaded:
        if item.names:
            for n in item.names:            # names from the archive's own manifest
                sys.stdout.write(f"Loaded image: {escape_line(n)}\n")
        else:
            sys.stdout.write(f"Loaded image ID: {item.image_id}\n")
    return 0


def cmd_import(settings, argv) -> int:
    p = Parser("import", "import [OPTIONS] file|URL|- [REPOSITORY[:TAG]]",
               "Import the contents from a tarball to create a filesystem image")
    p.add_argument("-c", "--change", action="append", default=[],
                   help="Apply Dockerfile instruction to the created image")
    p.add_argument("-m", "--message", default="", help="Set commit message for imported image")
    p.add_argument("--platform", help="Set platform if server is multi-platform capable")
    p.add_argument("source")
    p.add_argument("repository", nargs="?")
    args = p.parse_args(argv)
    from pydocklite.distribution.importer import import_tarball
    record = import_tarball(_service(settings), args.source, args.repository,
                            changes=args.change, message=args.message,
                            stdin=sys.stdin.buffer, platform=args.platform)
    sys.stdout.write(f"{record.id}\n")
    return 0


def cmd_commit(settings, argv) -> int:
    p = Parser("commit", "commit [OPTIONS] CONTAINER [REPOSITORY[:TAG]]",
               "Create a new image from a container's changes")
    p.add_argument("-a", "--author", default="",
                   help='Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")')
    p.add_argument("-c", "--change", action="append", default=[],
                   help="Apply Dockerfile instruction to the created image")
    p.add_argument("-m", "--message", default="", help="Commit message")
    p.add_argument("-p", "--pause", action="store_true",
                   help="Pause container during commit (default true; --pause=false to "
                        "leave it running)")
    p.add_argument("container")
    p.add_argument("repository", nargs="?")
    argv, flags = _bool_flags(argv, {"-p": "pause", "--pause": "pause"})
    args = p.parse_args(argv)
    from pydocklite.containers.container import ContainerService
    from pydocklite.distribution.commit import commit_container
    record = commit_container(_service(settings), ContainerService(settings), args.container,
                              args.repository, message=args.message, author=args.author,
                              changes=args.change, pause=flags.get("pause", True))
    sys.stdout.write(f"{record.id}\n")
    return 0


def cmd_history(settings, argv) -> int:
    p = Parser("history", "history [OPTIONS] IMAGE", "Show the history of an image")
    p.add_argument("--format", help="Format output using a Go template")
    p.add_argument("-H", "--human", action="store_true",
                   help="Print sizes and dates in human readable format (default true)")
    p.add_argument("--no-trunc", action="store_true", help="Don't truncate output")
    p.add_argument("-q", "--quiet", action="store_true", help="Only show image IDs")
    p.add_argument("image")
    argv, flags = _bool_flags(argv, {"-H": "human", "--human": "human"})
    args = p.parse_args(argv)
    from pydocklite.distribution.history import image_history
    rows = image_history(_service(settings), args.image)
    human = flags.get("human", True)
    table = []
    for r in rows:
        ident = r.id
        if ident != "<missing>" and not args.no_trunc:
            ident = ident[7:19]
        created = parse_time(r.created)
        created_by = r.created_by
        if not args.no_trunc and len(created_by) > 45:
            created_by = created_by[:44] + "…"
        table.append({
            "ID": ident,
            "CreatedSince": (time_ago(created) if human else rfc3339(created)) if created
            else "N/A",
            "CreatedAt": rfc3339(created) if created else "",
            "CreatedBy": created_by,
            "Size": human_size(r.size) if human else str(r.size),
            "Comment": r.comment,
        })
    if args.quiet:
        sys.stdout.write("".join(f"{t['ID']}\n" for t in table))
        return 0
    print_table(table, HISTORY_COLUMNS, args.format)
    return 0
