"""Registry authentication as a requests `AuthBase`: Basic and Docker bearer tokens.

The client never branches on auth. `RegistryAuth` is attached to every registry request:
it adds a cached token (or Basic header) when it knows the host wants one, and when a
response is 401 it reads `WWW-Authenticate`, gets credentials from its source (only then),
fetches a token from the realm (anonymous when there are no credentials) and re-sends the
request once. Credentials storage (config.json, helpers, login/logout) is credentials.py,
re-exported here.
"""
from __future__ import annotations

import json
import re
import time
from typing import Callable, Dict, FrozenSet, Optional, Tuple
from urllib.parse import urlparse

from .credentials import (  # noqa: F401  (re-exported)
    Credentials, CredentialSource, DockerConfig, StaticCredentials, as_source, config_key,
    normalize_host,
)
from .errors import AuthError

_PARAM_RE = re.compile(r'([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')
_REPO_PATH_RE = re.compile(r"^/v2/(.+?)/(?:blobs|manifests|tags)/")
Scope = FrozenSet[Tuple[str, str]]          # {("repository:foo", "pull"), ...}
MAX_CACHED_TOKENS = 64                      # per host


def parse_challenge(header: str) -> "Tuple[str, Dict[str, str]]":
    """`Bearer realm="..",service="..",scope=".."` -> ("bearer", {...})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3))
              for m in _PARAM_RE.finditer(rest)}
    return scheme.lower(), params


def parse_scopes(scopes: "list[str]") -> Scope:
    """`["repository:a/b:pull,push"]` -> {("repository:a/b", "pull"), ("repository:a/b", "push")}."""
    out = set()
    for s in scopes:
        for one in s.split(" "):
            res, sep, actions = one.rpartition(":")
            if not sep or not res:
                continue
            for a in actions.split(","):
                if a:
                    out.add((res, a))
    return frozenset(out)


def format_scopes(scope: Scope) -> "list[str]":
    grouped: "Dict[str, list]" = {}
    for res, action in sorted(scope):
        grouped.setdefault(res, []).append(action)
    return [f"{res}:{','.join(actions)}" for res, actions in grouped.items()]


def request_scope(method: str, url: str) -> Scope:
    """The access a registry API request needs, from its method and path."""
    u = urlparse(url)
    m = _REPO_PATH_RE.match(u.path)
    if not m:
        return frozenset()
    repo = m.group(1)
    actions = ("pull",) if method.upper() in ("GET", "HEAD") else ("pull", "push")
    scope = {(f"repository:{repo}", a) for a in actions}
    qs = dict(p.split("=", 1) for p in u.query.split("&") if "=" in p)
    if "mount" in qs and "from" in qs:
        from urllib.parse import unquote
        scope.add((f"repository:{unquote(qs['from'])}", "pull"))
    return frozenset(scope)


class RegistryAuth:
    """requests auth flow for registries (use as `session.request(..., auth=RegistryAuth(...))`).

    credentials: host -> Credentials|None, called lazily on a 401.
    token_getter: (method, url, **kw) -> Response, used to talk to the token realm
    (the transport passes its own session so TLS settings apply).
    """

    def __init__(self, credentials: "Optional[CredentialSource]" = None,
                 token_getter: "Optional[Callable[..., object]]" = None,
                 clock: "Callable[[], float]" = time.monotonic) -> None:
        self._source: CredentialSource = credentials or (lambda host: None)
        self._token_getter = token_getter
        self._clock = clock
        self._challenges: "Dict[str, Tuple[str, Dict[str, str]]]" = {}
        self._tokens: "Dict[str, list]" = {}          # host -> [(scope, token, expiry)]
        self._creds: "Dict[str, Optional[Credentials]]" = {}

    # -- requests AuthBase protocol -------------------------------------------------------
    def __call__(self, r):  # type: ignore[no-untyped-def]
        host = urlparse(r.url).netloc
        header = self._header_for(host, request_scope(r.method, r.url))
        if header:
            r.headers["Authorization"] = header
        body = r.body
        r._pdl_body_pos = body.tell() if hasattr(body, "tell") and hasattr(body, "seek") else None
        r.register_hook("response", self._handle_401)
        return r

    # -- public helpers -------------------------------------------------------------------
    def credentials_for(self, host: str) -> "Optional[Credentials]":
        if host not in self._creds:
            self._creds[host] = self._source(host)
        return self._creds[host]

    def set_credentials(self, host: str, creds: "Optional[Credentials]") -> None:
        """Use `creds` for `host` from now on (e.g. after a successful login)."""
        self._creds[host] = creds

    def set_token_getter(self, getter: "Callable[..., object]") -> None:
        self._token_getter = getter

    def forget(self, host: str) -> None:
        """Drop cached challenges, tokens and credentials for `host`."""
        self._challenges.pop(host, None)
        self._tokens.pop(host, None)
        self._creds.pop(host, None)

    def challenge(self, host: str) -> "Optional[Tuple[str, Dict[str, str]]]":
        return self._challenges.get(host)

    # -- internals ------------------------------------------------------------------------
    def _header_for(self, host: str, scope: Scope) -> str:
        ch = self._challenges.get(host)
        if ch is None:
            return ""
        if ch[0] == "basic":
            creds = self.credentials_for(host)
            return _basic_header(creds) if creds and creds.username else ""
        now = self._clock()
        for have, token, expiry in self._tokens.get(host, ()):
            if expiry > now and scope <= have:
                return "Bearer " + token
        return ""

    def _handle_401(self, resp, **kwargs):  # type: ignore[no-untyped-def]
        if resp.status_code != 401 or getattr(resp.request, "_pdl_retried", False):
            return resp
        header = resp.headers.get("WWW-Authenticate", "")
        if not header:
            return resp
        host = urlparse(resp.request.url).netloc
        scheme, params = parse_challenge(header)
        self._challenges[host] = (scheme, params)
        if scheme == "basic":
            creds = self.credentials_for(host)
            if not creds or not creds.username:
                return resp
            auth_header = _basic_header(creds)
        elif scheme == "bearer":
            scope = request_scope(resp.request.method, resp.request.url)
            scope = scope | parse_scopes([params["scope"]] if params.get("scope") else [])
            auth_header = "Bearer " + self.fetch_token(host, params, scope)
        else:
            return resp
        from .bounded import drain
        drain(resp)       # a little is read so the connection can be reused, never all of it
        prep = resp.request.copy()
        prep.headers["Authorization"] = auth_header
        prep._pdl_retried = True
        pos = getattr(resp.request, "_pdl_body_pos", None)
        if pos is not None:
            prep.body.seek(pos)
        new = resp.connection.send(prep, **kwargs)
        new.history.append(resp)
        new.request = prep
        return new

    def fetch_token(self, host: str, params: "Dict[str, str]", scope: Scope,
                    credentials: "Optional[Credentials]" = None, offline: bool = False) -> str:
        """Get a bearer token for `scope` from the challenge's realm, and cache it."""
        realm = params.get("realm")
        if not realm:
            raise AuthError(f"registry {host} sent a Bearer challenge without a realm")
        if self._token_getter is None:
            raise AuthError("RegistryAuth has no HTTP getter for the token realm")
        creds = credentials if credentials is not None else self.credentials_for(host)
        service = params.get("service", "")
        scopes = format_scopes(scope)
        kw: dict = {"timeout": 30}
        if creds and creds.identity_token:
            data = {"grant_type": "refresh_token", "refresh_token": creds.identity_token,
                    "service": service, "client_id": "pydocklite", "scope": " ".join(scopes)}
            resp = self._token_getter("POST", realm, data=data, **kw)
        else:
            query = [("service", service)] if service else []
            query += [("scope", s) for s in scopes]
            if offline:
                query += [("offline_token", "true"), ("client_id", "pydocklite")]
            if creds and creds.username:
                kw["auth"] = (creds.username, creds.password)
            resp = self._token_getter("GET", realm, params=query, **kw)
        status = getattr(resp, "status_code", 0)
        if status != 200:
            from .bounded import drain
            drain(resp)
        if status in (401, 403):
            who = f"as {creds.username!r}" if creds and creds.username else "anonymously"
            raise AuthError(f"token server {realm} refused access to {host} {who}"
                            f" (HTTP {status}): check the username and password "
                            f"(pydocklite login {host})")
        if status != 200:
            raise AuthError(f"token server {realm} for {host} answered HTTP {status}")
        from .bounded import read_capped
        from .model import MAX_TOKEN_BYTES
        try:
            doc = json.loads(read_capped(resp, MAX_TOKEN_BYTES, f"token server {realm}"))
            if not isinstance(doc, dict):
                raise ValueError("not an object")
        except (ValueError, UnicodeDecodeError):
            raise AuthError(f"token server {realm} returned invalid JSON") from None
        token = doc.get("token") or doc.get("access_token")
        if not token or not isinstance(token, str):
            raise AuthError(f"token server {realm} returned no token")
        expires = doc.get("expires_in") or 60
        try:
            expires = max(10, int(expires))
        except (TypeError, ValueError):
            expires = 60
        entry = (scope, token, self._clock() + expires - 5)
        cached = self._tokens.setdefault(host, [])
        cached.insert(0, entry)
        del cached[MAX_CACHED_TOKENS:]
        return token


def _basic_header(creds: Credentials) -> str:
    import base64
    raw = f"{creds.username}:{creds.password}".encode()
    return "Basic " + base64.b64encode(raw).decode()


__all__ = [
    "RegistryAuth", "parse_challenge", "parse_scopes", "format_scopes", "request_scope",
    "Credentials", "CredentialSource", "DockerConfig", "StaticCredentials", "as_source",
    "config_key", "normalize_host",
]
