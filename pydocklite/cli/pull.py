"""`pydocklite pull`: Docker's output — live per-layer progress on a TTY, plain lines otherwise."""
from __future__ import annotations

import sys

from pydocklite.cli.common import Parser
from pydocklite.cli.progress import LayerProgress


def pull_image(settings, name: str, *, quiet: bool = False, platform=None,
               tls_verify=None, out=None, ref=None, signature_policy=None) -> object:
    """Pull with docker's messages; shared by `pull` and the implicit pull of `run`/`create`
    (which passes `ref`, `name` parsed once where it entered)."""
    from pydocklite.images import ImageService, familiar
    from registry.reference import Reference
    out = out or sys.stdout
    if ref is None:
        ref = Reference.parse(name)
    service = ImageService(settings)
    previous = service.db.load()
    old = previous.tags.get(str(ref))
    if not quiet:
        if not ref.tag and not ref.digest:
            pass
        elif "@" not in name and ":" not in name.rsplit("/", 1)[-1]:
            out.write("Using default tag: latest\n")
        path = familiar(ref.repository)
        out.write(f"{ref.digest or ref.tag}: Pulling from {path}\n")
        out.flush()
    progress = None if quiet else LayerProgress(out, out.isatty(), "Downloading")
    record = service.pull(ref, platform=platform, progress=progress, tls_verify=tls_verify,
                          signature_policy=signature_policy)
    if not quiet:
        digest = record.repo_digests[0].rsplit("@", 1)[-1] if record.repo_digests else ""
        out.write(f"Digest: {digest}\n")
        shown = familiar(str(ref))
        if old == record.id:
            out.write(f"Status: Image is up to date for {shown}\n")
        else:
            out.write(f"Status: Downloaded newer image for {shown}\n")
    out.write(f"{ref}\n")
    out.flush()
    return record


def cmd_pull(settings, argv) -> int:
    p = Parser("pull", "pull [OPTIONS] NAME[:TAG|@DIGEST]",
               "Download an image from a registry")
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress verbose output")
    p.add_argument("--platform", help="Set platform if server is multi-platform capable")
    p.add_argument("--tls-verify", default=None, choices=["true", "false"],
                   help="Require HTTPS and verify certificates (default true)")
    p.add_argument("--signature-policy", metavar="FILE",
                   help="Signature policy to check the image against (default: "
                        "~/.config/containers/policy.json, else /etc/containers/policy.json)")
    p.add_argument("name")
    args = p.parse_args(argv)
    tls = None if args.tls_verify is None else args.tls_verify == "true"
    pull_image(settings, args.name, quiet=args.quiet, platform=args.platform, tls_verify=tls,
               signature_policy=args.signature_policy)
    return 0
