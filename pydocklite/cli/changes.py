"""`diff` (changes to a container's filesystem, Docker's "A/C/D path" lines) and `export`
(its filesystem as a tar archive, to STDOUT or -o FILE)."""
from __future__ import annotations

import os
import sys

from pydocklite.cli.common import Parser


def cmd_diff(settings, argv) -> int:
    p = Parser("diff", "diff CONTAINER",
               "Inspect changes to files or directories on a container's filesystem")
    p.add_argument("container")
    args = p.parse_args(argv)
    from pydocklite.containers.changes import diff
    from pydocklite.termsafe import escape_line
    out = "".join(f"{kind} {escape_line(path)}\n" for kind, path in diff(settings, args.container))
    sys.stdout.write(out)
    return 0


def cmd_export(settings, argv) -> int:
    p = Parser("export", "export [OPTIONS] CONTAINER",
               "Export a container's filesystem as a tar archive")
    p.add_argument("-o", "--output", help="Write to a file, instead of STDOUT")
    p.add_argument("container")
    args = p.parse_args(argv)
    from pydocklite.containers.changes import export
    from pydocklite.errors import UsageError
    if not args.output and os.isatty(1):
        raise UsageError("cowardly refusing to save to a terminal. Use the -o flag or "
                         "redirect")
    stream = export(settings, args.container)
    tmp = None
    try:
        if args.output:
            tmp = f"{args.output}.{os.getpid()}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        else:
            fd = 1
        try:
            while True:
                chunk = stream.read(1 << 20)
                if not chunk:
                    break
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
        finally:
            if fd != 1:
                os.close(fd)
        stream.close()                  # raises if the helper failed: no partial file kept
        if tmp is not None:
            os.replace(tmp, args.output)
            tmp = None
    except BaseException:
        stream.abort()
        raise
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    return 0
