"""HTTP transport for registries: one requests Session, TLS policy, scheme choice, retries.

- HTTPS by default. Plain HTTP only for loopback hosts (localhost, 127.0.0.0/8, ::1) and
  hosts listed as insecure; for those HTTPS is tried first and HTTP used if the server
  does not speak TLS. A certificate that fails verification is an error, never a reason
  to fall back (except for hosts explicitly marked insecure, where TLS is not verified).
- Extra CAs: `ca_file`, and Docker-style certs.d directories (<dir>/<host[:port]>/*.crt,
  client certificates as *.cert + *.key).
- Retries with exponential backoff on 429/5xx and connection failures, honouring
  Retry-After. Only requests whose body can be replayed are retried.
"""
from __future__ import annotations

import email.utils
import ipaddress
import os
import random
import ssl
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Optional

from .auth import RegistryAuth
from .errors import TransportError

RETRY_STATUSES = (429, 500, 502, 503, 504)
DOCKER_HUB_API = "registry-1.docker.io"


def default_certs_dirs() -> "list[Path]":
    """Where Docker/Podman keep per-registry CAs: user dirs first, then system ones."""
    home = Path.home()
    return [home / ".docker" / "certs.d", home / ".config" / "containers" / "certs.d",
            Path("/etc/docker/certs.d"), Path("/etc/containers/certs.d")]


def is_loopback(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1 (with or without a port)."""
    h = host
    if h.startswith("["):
        h = h[1:h.find("]")]
    elif h.count(":") == 1:
        h = h.split(":")[0]
    if h == "localhost" or h.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def api_host(domain: str) -> str:
    """The host serving the registry API for a reference domain (docker.io is special)."""
    return DOCKER_HUB_API if domain in ("docker.io", "index.docker.io") else domain


def parse_retry_after(value: "Optional[str]", now: "Optional[float]" = None) -> "Optional[float]":
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when - (now if now is not None else time.time()))


def _make_adapter(context: ssl.SSLContext) -> Any:
    from requests.adapters import HTTPAdapter

    class _ContextAdapter(HTTPAdapter):
        """HTTPAdapter verifying with our SSLContext (system CAs + the registry's extras)."""

        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            kwargs["ssl_context"] = context
            super().init_poolmanager(*args, **kwargs)

        def build_connection_pool_key_attributes(self, request, verify, cert=None):  # type: ignore
            host_params, pool_kwargs = super().build_connection_pool_key_attributes(
                request, verify, cert)
            if verify is True:
                pool_kwargs["ssl_context"] = context
                pool_kwargs.pop("ca_certs", None)
            return host_params, pool_kwargs

    return _ContextAdapter()


class Transport:
    """Sends registry requests: picks the scheme and TLS settings per host, retries, auths."""

    def __init__(self, auth: "Optional[RegistryAuth]" = None, insecure: "Iterable[str]" = (),
                 ca_file: "Optional[str]" = None,
                 certs_dirs: "Optional[Iterable[os.PathLike]]" = None,
                 plain_http: "Iterable[str]" = (), retries: int = 5, backoff: float = 0.5,
                 max_backoff: float = 30.0, max_retry_after: float = 60.0,
                 timeout: "tuple[float, float]" = (15.0, 60.0),
                 user_agent: str = "pydocklite/0.1",
                 sleep: "Callable[[float], None]" = time.sleep) -> None:
        import requests

        self.session = requests.Session()
        self.session.headers["User-Agent"] = user_agent
        self.auth = auth or RegistryAuth()
        self.auth.set_token_getter(self._token_request)
        self.insecure = frozenset(insecure)
        self.ca_file = ca_file
        self.certs_dirs = [Path(d) for d in (certs_dirs if certs_dirs is not None
                                              else default_certs_dirs())]
        self.retries, self.backoff, self.max_backoff = retries, backoff, max_backoff
        self.max_retry_after = max_retry_after
        self.timeout = timeout
        self._sleep = sleep
        self._schemes: "Dict[str, str]" = {h: "http" for h in plain_http}
        self._tls_ready: "set[str]" = set()

    # -- TLS ------------------------------------------------------------------------------
    def _host_certs(self, host: str) -> "tuple[list[Path], Optional[tuple[str, str]]]":
        cas: "list[Path]" = [Path(self.ca_file)] if self.ca_file else []
        client = None
        for base in self.certs_dirs:
            d = base / host
            if not d.is_dir():
                continue
            for f in sorted(d.iterdir()):
                if f.suffix == ".crt":
                    cas.append(f)
                elif f.suffix == ".cert" and (d / (f.stem + ".key")).exists() and client is None:
                    client = (str(f), str(d / (f.stem + ".key")))
        return cas, client

    def _prepare_tls(self, host: str) -> None:
        if host in self._tls_ready or host in self.insecure:
            return
        cas, client = self._host_certs(host)
        if cas or client:
            ctx = ssl.create_default_context()
            # urllib3 matches the hostname itself (and must, for IP addresses with urllib3 1.x)
            ctx.check_hostname = False
            try:
                import certifi  # requests' own bundle, so public registries keep working
                ctx.load_verify_locations(cafile=certifi.where())
            except (ImportError, OSError):
                pass
            try:
                for ca in cas:
                    ctx.load_verify_locations(cafile=str(ca))
                if client:
                    ctx.load_cert_chain(client[0], client[1])
            except (OSError, ssl.SSLError) as e:
                raise TransportError(f"cannot load TLS certificates for {host}: {e}") from None
            self.session.mount(f"https://{host}/", _make_adapter(ctx))
        self._tls_ready.add(host)

    def _verify(self, host: str) -> bool:
        return host not in self.insecure

    # -- scheme ---------------------------------------------------------------------------
    def base_url(self, domain: str) -> str:
        """`https://host` or `http://host` for a reference domain, probing if allowed."""
        host = api_host(domain)
        scheme = self._schemes.get(host)
        if scheme is None:
            scheme = self._probe_scheme(host)
            self._schemes[host] = scheme
        return f"{scheme}://{host}"

    def _probe_scheme(self, host: str) -> str:
        self._prepare_tls(host)
        if host not in self.insecure and not is_loopback(host):
            return "https"
        import requests
        try:
            self.session.get(f"https://{host}/v2/", timeout=(5, 5), verify=self._verify(host),
                             allow_redirects=False).close()
            return "https"
        except requests.exceptions.SSLError as e:
            if _is_cert_error(e):
                raise TransportError(
                    f"TLS certificate of {host} is not trusted ({_short(e)}): add its CA "
                    f"(ca_file, or certs.d/{host}/ca.crt) or mark the registry insecure") from None
            return "http"
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout):
            return "http"

    # -- requests -------------------------------------------------------------------------
    def _token_request(self, method: str, url: str, **kw: Any) -> Any:
        import requests
        host = url.split("/")[2] if "://" in url else url
        self._prepare_tls(host)
        kw.setdefault("verify", self._verify(host))
        try:
            return self.request_url(method, url, auth_flow=False, **kw)
        except requests.exceptions.RequestException as e:  # pragma: no cover - defensive
            raise TransportError(f"token request to {url} failed: {_short(e)}") from None

    def request(self, method: str, domain: str, path: str, **kw: Any) -> Any:
        """Send `method` to `<base>/v2/...` for a reference domain; returns the Response."""
        return self.request_url(method, self.base_url(domain) + path, **kw)

    def request_url(self, method: str, url: str, auth_flow: bool = True, **kw: Any) -> Any:
        """Send with retries. Raises TransportError once retries are exhausted."""
        import requests
        host = url.split("/")[2]
        if url.startswith("https://"):
            self._prepare_tls(host)
        kw.setdefault("timeout", self.timeout)
        kw.setdefault("verify", self._verify(host))
        # no body is read implicitly: callers read what they need, capped (bounded.py)
        kw.setdefault("stream", True)
        if auth_flow:
            kw["auth"] = self.auth
        data = kw.get("data")
        pos = data.tell() if hasattr(data, "tell") and hasattr(data, "seek") else None
        replayable = data is None or isinstance(data, (bytes, str, dict, list)) or pos is not None
        attempt = 0
        while True:
            try:
                resp = self.session.request(method, url, **kw)
            except requests.exceptions.SSLError as e:
                raise TransportError(f"TLS error talking to {host}: {_short(e)}: check the "
                                     f"registry's certificate and CA (certs.d/{host}/ca.crt)"
                                     ) from None
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                    requests.exceptions.ChunkedEncodingError) as e:
                if attempt >= self.retries or not replayable:
                    raise TransportError(f"cannot reach {host} ({method} {url}): {_short(e)}"
                                         ) from None
                self._sleep(self._delay(attempt, None))
                attempt += 1
                if pos is not None:
                    data.seek(pos)
                continue
            except requests.exceptions.RequestException as e:
                raise TransportError(f"{method} {url} failed: {_short(e)}") from None
            if resp.status_code in RETRY_STATUSES and attempt < self.retries and replayable:
                wait = self._delay(attempt, parse_retry_after(resp.headers.get("Retry-After")))
                resp.close()
                self._sleep(wait)
                attempt += 1
                if pos is not None:
                    data.seek(pos)
                continue
            return resp

    def _delay(self, attempt: int, retry_after: "Optional[float]") -> float:
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        base = min(self.max_backoff, self.backoff * (2 ** attempt))
        return base * (0.5 + random.random() / 2)

    def close(self) -> None:
        self.session.close()


def _is_cert_error(e: BaseException) -> bool:
    seen = set()
    stack = [e]
    while stack:
        x = stack.pop()
        if id(x) in seen or x is None:
            continue
        seen.add(id(x))
        if isinstance(x, ssl.SSLCertVerificationError) or type(x).__name__ == "CertificateError":
            return True
        text = str(x)
        if "CERTIFICATE_VERIFY_FAILED" in text or "doesn't match" in text:
            return True
        stack.extend([x.__cause__, x.__context__] + [a for a in getattr(x, "args", ())
                                                       if isinstance(a, BaseException)])
    return False


def _short(e: BaseException) -> str:
    s = str(e)
    return s if len(s) < 300 else s[:300] + "..."
