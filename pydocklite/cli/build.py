"""`build`: Docker's flags -> BuildOptions -> Builder; Docker's step output and exit codes."""
from __future__ import annotations

import io
import os
import sys
import time

from pydocklite.cli.common import Parser
from pydocklite.errors import UsageError


# BuildKit's entitlements a Dockerfile can only use when the user grants them
ENTITLEMENTS = ("network.host",)


def _parser() -> Parser:
    p = Parser("build", "build [OPTIONS] PATH", "Build an image from a Dockerfile")
    a = p.add_argument
    a("-t", "--tag", action="append", default=[], help="Name and optionally a tag (name:tag)")
    a("-f", "--file", help="Name of the Dockerfile (default: PATH/Dockerfile)")
    a("--build-arg", action="append", default=[], help="Set build-time variables")
    a("--target", default="", help="Set the target build stage to build")
    a("--no-cache", action="store_true", help="Do not use cache when building the image")
    a("--pull", action="store_true", help="Always attempt to pull a newer version of the image")
    a("--platform", default="", help="Set platform (only the host's is supported)")
    a("--label", action="append", default=[], help="Set metadata for an image")
    a("-q", "--quiet", action="store_true", help="Suppress the build output and print image ID "
      "on success")
    a("--network", default="private", help="Networking mode for RUN: default (the default "
      "bridge), host, none")
    a("--allow", action="append", default=[], help="Allow extra privileged entitlement "
      "(network.host: RUN --network=host)")
    a("--iidfile", help="Write the image ID to the file")
    a("--signature-policy", metavar="FILE",
      help="Signature policy for base images pulled by FROM (default: "
           "~/.config/containers/policy.json, else /etc/containers/policy.json)")
    a("path", metavar="PATH")
    return p


def options_from_argv(argv):
    from pydocklite.builder.builder import BuildOptions, source_date_epoch
    args = _parser().parse_args(argv)
    if args.path == "-" or "://" in args.path:
        raise UsageError(f"build context {args.path!r}: only a local directory is supported")
    if args.network not in ("private", "host", "none", "default", "bridge"):
        raise UsageError(f"network mode {args.network!r} not supported: use private, host or "
                         "none")
    network = "private" if args.network in ("default", "bridge") else args.network
    allow = tuple(sorted({e.strip() for v in args.allow for e in v.split(",") if e.strip()}))
    for e in allow:
        if e not in ENTITLEMENTS:
            raise UsageError(f"invalid entitlement {e!r} in --allow: pydocklite knows "
                             f"{', '.join(ENTITLEMENTS)}")
    build_args = []
    for item in args.build_arg:
        k, eq, v = item.partition("=")
        if not eq:
            if k not in os.environ:
                continue      # docker: a bare name takes the value from the environment
            v = os.environ[k]
        build_args.append((k, v))
    dockerfile = None
    text = None
    if args.file == "-":
        text = sys.stdin.read()
        dockerfile = os.path.join(args.path, "Dockerfile")
    elif args.file:
        dockerfile = args.file if os.path.isabs(args.file) or os.path.exists(args.file) \
            else os.path.join(args.path, args.file)
    labels = tuple(tuple(x.split("=", 1)) if "=" in x else (x, "") for x in args.label)
    return args, BuildOptions(
        context=os.path.abspath(args.path), dockerfile=dockerfile, tags=tuple(args.tag),
        build_args=tuple(build_args), target=args.target, no_cache=args.no_cache,
        pull=args.pull, labels=labels, network=network, platform=args.platform,
        source_date_epoch=source_date_epoch(), dockerfile_text=text, allow=allow)


def cmd_build(settings, argv) -> int:
    from pydocklite.builder.builder import Builder
    from pydocklite.builder.errors import BuildError
    from pydocklite.images import familiar
    args, opts = options_from_argv(argv)
    quiet = args.quiet
    out = io.StringIO() if quiet else sys.stdout

    def pull(name, ref=None):
        from pydocklite.cli.pull import pull_image
        return pull_image(settings, name, quiet=quiet, out=out, ref=ref,
                          signature_policy=args.signature_policy)
    started = time.monotonic()
    builder = Builder(settings, out=out, pull=pull)
    try:
        result = builder.build(opts)
    except BuildError as e:
        if quiet:
            sys.stderr.write(out.getvalue())
        sys.stdout.flush()
        from pydocklite.termsafe import escape
        sys.stderr.write(f"Error: {escape(str(e))}\n")      # names text from the Dockerfile
        return 1
    except Exception:
        if quiet:
            sys.stderr.write(out.getvalue())
        raise
    if args.iidfile:
        with open(args.iidfile, "w") as f:
            f.write(result.image_id)
    if quiet:
        sys.stdout.write(result.image_id + "\n")
        return 0
    took = time.monotonic() - started
    out.write(f"Successfully built {result.image_id.split(':', 1)[-1][:12]} "
              f"({result.steps} steps, {result.cached} cached, {took:.2f}s)\n")
    for tag in result.tags:
        out.write(f"Successfully tagged {familiar(tag)}\n")
    out.flush()
    return 0


def _main() -> int:
    """`python -m pydocklite.cli.build ...` until the verb is in cli/main.py's table."""
    from pydocklite.cli import main as cli_main
    cli_main.COMMANDS.setdefault("build", ("build", "cmd_build",
                                           "Build an image from a Dockerfile"))
    return cli_main.main(["build"] + sys.argv[1:])


if __name__ == "__main__":
    sys.exit(_main())
