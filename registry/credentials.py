"""Registry credentials: ~/.docker/config.json (`auths`, `credsStore`, `credHelpers`).

`DockerConfig.get(host)` looks a registry up the way Docker does: a per-registry credential
helper, else the default `credsStore`, else the base64 `auth` field in `auths`. `save` and
`erase` implement login/logout. Helpers are run as `docker-credential-<name> get|store|erase`.
"""
from __future__ import annotations

import base64
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Optional, Union

from .errors import AuthError, CredentialHelperError

DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_HUB_NAMES = {"docker.io", "index.docker.io", "registry-1.docker.io", DOCKER_HUB_KEY}
IDENTITY_TOKEN_USER = "<token>"


@dataclass(frozen=True)
class Credentials:
    """A username + secret, or an identity (refresh) token."""

    username: str = ""
    password: str = ""
    identity_token: str = ""

    def __repr__(self) -> str:  # never show secrets in tracebacks
        return f"Credentials(username={self.username!r}, password=***)"


def config_key(host: str) -> str:
    """The key Docker uses in config.json for a registry host."""
    h = normalize_host(host)
    return DOCKER_HUB_KEY if h in ("docker.io", "index.docker.io", "registry-1.docker.io") else h


def normalize_host(key: str) -> str:
    """`https://host:5000/v1/` -> `host:5000`; Docker Hub names -> `docker.io`."""
    if key in _HUB_NAMES:
        return "docker.io"
    k = key
    for prefix in ("https://", "http://"):
        if k.startswith(prefix):
            k = k[len(prefix):]
    k = k.split("/", 1)[0]
    return "docker.io" if k in _HUB_NAMES else k


def default_config_dir() -> Path:
    env = os.environ.get("DOCKER_CONFIG")
    return Path(env) if env else Path.home() / ".docker"


class DockerConfig:
    """Credentials from a Docker config.json (default: $DOCKER_CONFIG or ~/.docker)."""

    def __init__(self, path: "Optional[Union[str, Path]]" = None,
                 helper_env: "Optional[Mapping[str, str]]" = None) -> None:
        self.path = Path(path) if path else default_config_dir() / "config.json"
        self._helper_env = dict(helper_env) if helper_env is not None else None

    def _load(self) -> dict:
        try:
            data = self.path.read_text()
        except FileNotFoundError:
            return {}
        except OSError as e:
            raise AuthError(f"cannot read {self.path}: {e}") from None
        try:
            doc = json.loads(data) if data.strip() else {}
        except ValueError as e:
            raise AuthError(f"{self.path} is not valid JSON ({e}): fix or remove it") from None
        if not isinstance(doc, dict):
            raise AuthError(f"{self.path} is not a JSON object: fix or remove it")
        return doc

    def _helper_for(self, doc: dict, host: str) -> str:
        helpers = doc.get("credHelpers") or {}
        for key, name in helpers.items():
            if normalize_host(key) == host:
                return str(name)
        return str(doc.get("credsStore") or "")

    def get(self, host: str) -> "Optional[Credentials]":
        """Credentials for `host` (e.g. `docker.io`, `localhost:5000`), or None."""
        host = normalize_host(host)
        doc = self._load()
        helper = self._helper_for(doc, host)
        if helper:
            creds = self._helper_get(helper, host)
            if creds is not None:
                return creds
        for key, entry in (doc.get("auths") or {}).items():
            if normalize_host(key) != host or not isinstance(entry, dict):
                continue
            if entry.get("identitytoken"):
                return Credentials(identity_token=str(entry["identitytoken"]))
            if entry.get("auth"):
                try:
                    user, _, pw = base64.b64decode(entry["auth"]).decode().partition(":")
                except (ValueError, UnicodeDecodeError):
                    raise AuthError(f"{self.path}: the 'auth' entry for {key} is not base64 "
                                    f"'user:password': log in again") from None
                return Credentials(user, pw)
            if entry.get("username"):
                return Credentials(str(entry["username"]), str(entry.get("password") or ""))
        return None

    __call__ = get

    def save(self, host: str, creds: Credentials) -> None:
        """Store credentials (login): via the helper if one is configured, else in `auths`."""
        host = normalize_host(host)
        doc = self._load()
        helper = self._helper_for(doc, host)
        if helper:
            user = creds.username if not creds.identity_token else IDENTITY_TOKEN_USER
            secret = creds.identity_token or creds.password
            self._run_helper(helper, "store", json.dumps(
                {"ServerURL": config_key(host), "Username": user, "Secret": secret}))
            auths = doc.setdefault("auths", {})
            auths.setdefault(config_key(host), {})  # Docker records the login here too
        else:
            entry: dict = {}
            if creds.identity_token:
                entry["identitytoken"] = creds.identity_token
            else:
                entry["auth"] = base64.b64encode(
                    f"{creds.username}:{creds.password}".encode()).decode()
            auths = doc.setdefault("auths", {})
            for key in [k for k in auths if normalize_host(k) == host]:
                del auths[key]
            auths[config_key(host)] = entry
        self._write(doc)

    def erase(self, host: str) -> bool:
        """Remove credentials (logout). Returns False if there were none."""
        host = normalize_host(host)
        doc = self._load()
        helper = self._helper_for(doc, host)
        found = False
        if helper:
            try:
                self._run_helper(helper, "erase", config_key(host))
                found = True
            except CredentialHelperError:
                pass
        auths = doc.get("auths") or {}
        for key in [k for k in auths if normalize_host(k) == host]:
            del auths[key]
            found = True
        if found:
            self._write(doc)
        return found

    def _write(self, doc: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=".config.json.", dir=str(self.path.parent))
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(doc, f, indent="\t")
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    def _run_helper(self, helper: str, verb: str, stdin: str) -> str:
        prog = f"docker-credential-{helper}"
        try:
            p = subprocess.run([prog, verb], input=stdin.encode(), capture_output=True,
                               timeout=60, env=self._helper_env)
        except FileNotFoundError:
            raise CredentialHelperError(
                f"credential helper {prog} not found on PATH: install it or remove "
                f"'{helper}' from credsStore/credHelpers in {self.path}") from None
        except subprocess.TimeoutExpired:
            raise CredentialHelperError(f"credential helper {prog} {verb} timed out") from None
        if p.returncode != 0:
            msg = (p.stdout or p.stderr).decode(errors="replace").strip()
            raise CredentialHelperError(f"credential helper {prog} {verb} failed: {msg}")
        return p.stdout.decode(errors="replace")

    def _helper_get(self, helper: str, host: str) -> "Optional[Credentials]":
        try:
            out = self._run_helper(helper, "get", config_key(host))
        except CredentialHelperError as e:
            if "credentials not found" in str(e).lower():
                return None
            raise
        try:
            doc = json.loads(out)
        except ValueError:
            raise CredentialHelperError(
                f"credential helper docker-credential-{helper} printed invalid JSON") from None
        user, secret = str(doc.get("Username") or ""), str(doc.get("Secret") or "")
        if user == IDENTITY_TOKEN_USER:
            return Credentials(identity_token=secret)
        return Credentials(user, secret) if (user or secret) else None


class StaticCredentials:
    """Fixed credentials: one `Credentials` for every host, or a {host: Credentials} map."""

    def __init__(self, creds: "Union[Credentials, Mapping[str, Credentials], None]") -> None:
        self._creds = creds

    def get(self, host: str) -> "Optional[Credentials]":
        if self._creds is None or isinstance(self._creds, Credentials):
            return self._creds
        host = normalize_host(host)
        for k, v in self._creds.items():
            if normalize_host(k) == host:
                return v
        return None

    __call__ = get


CredentialSource = Callable[[str], Optional[Credentials]]


def as_source(auth: object) -> CredentialSource:
    """Turn what a caller passes as `auth=` into a host -> Credentials callable."""
    if auth is None:
        return DockerConfig().get
    if auth is False:
        return StaticCredentials(None).get
    if isinstance(auth, Credentials):
        return StaticCredentials(auth).get
    if isinstance(auth, tuple) and len(auth) == 2:
        return StaticCredentials(Credentials(str(auth[0]), str(auth[1]))).get
    if hasattr(auth, "get") and callable(getattr(auth, "get")) and not isinstance(auth, dict):
        return auth.get  # type: ignore[no-any-return]
    if isinstance(auth, dict):
        return StaticCredentials(auth).get
    if callable(auth):
        return auth  # type: ignore[return-value]
    raise TypeError(f"auth must be Credentials, (user, password), a mapping or a source; "
                    f"got {type(auth).__name__}")
