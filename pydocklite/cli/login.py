"""`login` and `logout`: credentials checked against the registry, kept in
~/.docker/config.json (or the credential helper it names), as docker does."""
from __future__ import annotations

import getpass
import sys

from pydocklite.cli.common import Parser
from pydocklite.errors import UsageError

DEFAULT_SERVER = "docker.io"


def _config(settings):
    from registry.credentials import DockerConfig
    return DockerConfig(settings.docker_config) if settings.docker_config else DockerConfig()


def cmd_login(settings, argv) -> int:
    p = Parser("login", "login [OPTIONS] [SERVER]", "Log in to a registry")
    p.add_argument("-u", "--username", help="Username")
    p.add_argument("-p", "--password", help="Password")
    p.add_argument("--password-stdin", action="store_true", help="Take the password from stdin")
    p.add_argument("--tls-verify", choices=["true", "false"], default=None,
                   help="Require HTTPS and verify certificates (default true)")
    p.add_argument("server", nargs="?", default=DEFAULT_SERVER)
    args = p.parse_args(argv)
    from registry.credentials import Credentials, normalize_host
    host = normalize_host(args.server)
    if args.password and args.password_stdin:
        raise UsageError("--password and --password-stdin are mutually exclusive")
    username = args.username
    password = args.password
    if args.password_stdin:
        if not username:
            raise UsageError("must provide --username with --password-stdin")
        password = sys.stdin.read().rstrip("\n").rstrip("\r")
    elif args.password:
        sys.stderr.write("WARNING! Using --password via the CLI is insecure. "
                         "Use --password-stdin.\n")
    if not username:
        if not sys.stdin.isatty():
            raise UsageError("cannot perform an interactive login from a non TTY device: "
                             "use --username and --password-stdin")
        username = input("Username: ").strip()
    if password is None:
        if not sys.stdin.isatty():
            raise UsageError("cannot perform an interactive login from a non TTY device: "
                             "use --password-stdin")
        password = getpass.getpass("Password: ")
    if not username or not password:
        raise UsageError("login needs a username and a password")
    creds = Credentials(username=username, password=password)
    from pydocklite.registry_access import make_client
    tls = None if args.tls_verify is None else args.tls_verify == "true"
    with make_client(settings, tls_verify=tls, insecure_host=host) as client:
        client.login(host, creds)
    _config(settings).save(host, creds)
    sys.stdout.write("Login Succeeded\n")
    return 0


def cmd_logout(settings, argv) -> int:
    p = Parser("logout", "logout [SERVER]", "Log out from a registry")
    p.add_argument("server", nargs="?", default=DEFAULT_SERVER)
    args = p.parse_args(argv)
    from registry.credentials import normalize_host
    host = normalize_host(args.server)
    if _config(settings).erase(host):
        sys.stdout.write(f"Removing login credentials for {host}\n")
    else:
        sys.stdout.write(f"Not logged in to {host}\n")
    return 0
