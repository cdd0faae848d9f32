"""`key generate` and `image sign`: sigstore keys and signatures (the work is in trust/)."""
from __future__ import annotations

import sys

from pydocklite.cli.common import Parser
from pydocklite.errors import UsageError

KEY_USAGE = """Usage:  pydocklite key COMMAND

Manage image signing keys

Commands:
  generate  Generate a sigstore key pair (PREFIX.private, encrypted, and PREFIX.pub)
"""


def add_sign_flags(p, required: bool = False) -> None:
    p.add_argument("--sign-by-sigstore-private-key", metavar="KEY", required=required,
                   help="Sign the image with this sigstore private key (PEM: the encrypted "
                        "cosign format, or PKCS#8)")
    p.add_argument("--sign-passphrase-file", metavar="FILE",
                   help="Read the signing key's passphrase from the first line of FILE")
    p.add_argument("--sign-identity", metavar="REF",
                   help="The image reference the signature claims (default: the pushed or "
                        "signed reference)")


def signing_key(args):
    """The decrypted signing key the flags name, or None: loaded before anything is sent."""
    if not args.sign_by_sigstore_private_key:
        if args.sign_passphrase_file or args.sign_identity:
            raise UsageError("--sign-passphrase-file and --sign-identity need "
                             "--sign-by-sigstore-private-key")
        return None
    if args.sign_identity:
        from registry.reference import Reference
        Reference.parse(args.sign_identity)   # a bad identity fails before the upload too
    from pydocklite.trust.sign import load_signing_key
    return load_signing_key(args.sign_by_sigstore_private_key, args.sign_passphrase_file)


def sign_pushed(settings, name: str, digest: str, key, identity=None, tls_verify=None,
                out=None) -> None:
    """Attach a signature of the manifest `digest` just pushed as `name`."""
    from pydocklite.images import ImageService
    from pydocklite.trust.sign import sign_manifest
    from registry.reference import Reference
    ref = Reference.parse(name)
    if out is not None:
        out.write("Signing manifest using a sigstore signature\n")
        out.flush()
    with ImageService(settings).client(tls_verify=tls_verify, host=ref.domain) as client:
        sign_manifest(client, ref, digest, key, identity)


def cmd_key(settings, argv) -> int:
    if not argv or argv[0] in ("-h", "--help") or argv[0] != "generate":
        sys.stdout.write(KEY_USAGE)
        return 0 if not argv or argv[0] in ("-h", "--help") else 125
    from pydocklite.trust.keys import GENERATE_TYPES
    p = Parser("key generate", "key generate --output-prefix PREFIX [OPTIONS]",
               "Generate a sigstore key pair as skopeo generate-sigstore-key does: "
               "PREFIX.private (scrypt + nacl/secretbox encrypted, the cosign format) and "
               "PREFIX.pub")
    p.add_argument("--output-prefix", required=True, metavar="PREFIX",
                   help="Write PREFIX.private and PREFIX.pub")
    p.add_argument("--passphrase-file", metavar="FILE",
                   help="Read the passphrase from the first line of FILE (default: ask on the "
                        "terminal)")
    p.add_argument("--key-type", default="ecdsa-p256", choices=GENERATE_TYPES,
                   help="Key type (default ecdsa-p256)")
    args = p.parse_args(argv[1:])
    from pydocklite.trust.sign import generate_key_files, read_passphrase_file
    if args.passphrase_file:
        passphrase = read_passphrase_file(args.passphrase_file)
    elif sys.stdin.isatty():
        import getpass
        passphrase = getpass.getpass("Enter a passphrase for the new key: ").encode()
        if getpass.getpass("Enter it again: ").encode() != passphrase:
            raise UsageError("the passphrases do not match: nothing written")
    else:
        raise UsageError("no terminal to ask a passphrase on: give --passphrase-file FILE")
    private, public = generate_key_files(args.output_prefix, passphrase, args.key_type)
    sys.stdout.write(f"Key written to \"{private}\" and \"{public}\"\n")
    return 0


def cmd_image_sign(settings, argv) -> int:
    p = Parser("image sign", "image sign --sign-by-sigstore-private-key KEY [OPTIONS] "
               "IMAGE [IMAGE...]",
               "Sign images in a registry: attach a sigstore signature of the manifest (or "
               "index) the reference names, next to the signatures already there")
    add_sign_flags(p, required=True)
    p.add_argument("--tls-verify", choices=["true", "false"], default=None,
                   help="Require HTTPS and verify certificates (default true)")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    args = p.parse_args(argv)
    key = signing_key(args)
    from pydocklite.images import ImageService
    from pydocklite.trust.sign import sign_manifest
    from registry.reference import Reference
    tls = None if args.tls_verify is None else args.tls_verify == "true"
    service = ImageService(settings)
    for name in args.images:
        ref = Reference.parse(name)
        with service.client(tls_verify=tls, host=ref.domain) as client:
            digest = client.get_manifest(ref).digest
            sign_manifest(client, ref, digest, key, args.sign_identity)
        sys.stdout.write(f"{ref.familiar}: signed {digest} with {key.kind} key "
                         f"{key.public.fingerprint}\n")
    return 0
