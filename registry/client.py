"""The registry client: resolve and pull (manifests, configs, verified blob streams), login,
and push (blob_exists, upload_blob, mount_blob, put_manifest).

    client = RegistryClient()                      # credentials from ~/.docker/config.json
    img = client.resolve("nginx:1.27", Platform.parse("linux/arm64"))
    for chunk in client.stream_blob(img.ref, img.manifest.layers[0]):
        ...                                        # verified size + digest at the end
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, BinaryIO, Iterator, Optional, Union
from urllib.parse import quote, urljoin

from .auth import RegistryAuth, as_source, parse_challenge
from .credentials import Credentials
from .errors import (AuthError, BlobVerifyError, ManifestError, ManifestVerifyError,
                     NotFoundError, PlatformNotFound, RateLimitError, RegistryError,
                     ResponseTooLargeError, TransportError)
from .model import (ACCEPT_MANIFESTS, MAX_CONFIG_BYTES, MAX_ERROR_BYTES, MAX_MANIFEST_BYTES,
                    Descriptor, Digest, ImageConfig,
                    Index, Manifest, Platform, parse_image_config, parse_manifest,
                    sha256_digest, validate_config_for_manifest)
from .reference import Reference
from .transport import Transport, api_host

RefLike = Union[Reference, str]
READ_SIZE = 256 << 10   # socket reads; a cut connection loses at most this much progress


@dataclass(frozen=True)
class ResolvedImage:
    """What `resolve` found: the platform manifest, the index it came from, and the config."""

    ref: Reference
    manifest_digest: str
    manifest: Manifest
    index: Optional[Index]
    config_bytes: bytes
    config: ImageConfig

    @property
    def index_digest(self) -> str:
        return self.index.digest if self.index else ""


def _ref(ref: RefLike) -> Reference:
    return ref if isinstance(ref, Reference) else Reference.parse(ref)


def _error_detail(resp: Any) -> str:
    """The registry's error codes and messages (from at most MAX_ERROR_BYTES of body)."""
    from .bounded import read_capped
    try:
        errs = json.loads(read_capped(resp, MAX_ERROR_BYTES, "error body")).get("errors") or []
        return "; ".join(f"{e.get('code', '')}: {e.get('message', '')}".strip(": ")
                         for e in errs if isinstance(e, dict))
    except Exception:
        return ""


class RegistryClient:
    """OCI distribution client. `auth`: None (Docker config.json), False (anonymous),
    Credentials, (user, password), {host: Credentials}, or any host -> Credentials source."""

    def __init__(self, auth: object = None, insecure: "Any" = (), ca_file: "Optional[str]" = None,
                 certs_dirs: "Any" = None, plain_http: "Any" = (), retries: int = 5,
                 backoff: float = 0.5, timeout: "tuple[float, float]" = (15.0, 60.0),
                 user_agent: str = "pydocklite/0.1", max_resumes: int = 5,
                 transport: "Optional[Transport]" = None) -> None:
        self._auth = RegistryAuth(as_source(auth))
        self._t = transport or Transport(
            self._auth, insecure=insecure, ca_file=ca_file, certs_dirs=certs_dirs,
            plain_http=plain_http, retries=retries, backoff=backoff, timeout=timeout,
            user_agent=user_agent)
        if transport is not None:
            self._auth = transport.auth
        self.max_resumes = max_resumes

    @property
    def transport(self) -> Transport:
        return self._t

    def close(self) -> None:
        self._t.close()

    def __enter__(self) -> "RegistryClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- errors ---------------------------------------------------------------------------
    def _raise_for(self, resp: Any, what: str, domain: str) -> None:
        code = resp.status_code
        if code < 400:
            return
        detail = _error_detail(resp)
        suffix = f" ({detail})" if detail else ""
        resp.close()
        if code == 401:
            host = api_host(domain)
            creds = self._auth.credentials_for(host)
            if creds:
                raise AuthError(f"{what}: registry {domain} rejected the credentials{suffix}: "
                                f"check them with 'pydocklite login {domain}'")
            raise AuthError(f"{what}: registry {domain} requires authentication{suffix}: "
                            f"run 'pydocklite login {domain}'")
        if code == 403:
            raise AuthError(f"{what}: access denied by {domain}{suffix}: check that the "
                            "repository exists and your account may use it")
        if code == 404:
            raise NotFoundError(f"{what} not found in {domain}{suffix}: check the name and tag")
        if code == 429:
            raise RateLimitError(f"{what}: {domain} keeps rate-limiting requests (HTTP 429)"
                                 f"{suffix}: wait and retry, or log in", status=code)
        raise TransportError(f"{what}: {domain} answered HTTP {code}{suffix}", status=code)

    # -- probing and login ----------------------------------------------------------------
    def ping(self, domain: str) -> "Optional[tuple]":
        """GET /v2/ (without credentials). Returns None if open, or the auth challenge."""
        url = self._t.base_url(domain) + "/v2/"
        resp = self._t.request_url("GET", url, auth_flow=False)
        resp.close()
        if resp.status_code == 200:
            return None
        if resp.status_code == 401:
            return parse_challenge(resp.headers.get("WWW-Authenticate", ""))
        self._raise_for(resp, "registry API /v2/", domain)
        raise TransportError(f"{domain} is not an OCI registry (GET /v2/ -> {resp.status_code})")

    def login(self, domain: str, credentials: Credentials) -> None:
        """Check `credentials` against the registry; raise AuthError if they are refused."""
        host = api_host(domain)
        challenge = self.ping(domain)
        if challenge is None:
            return
        scheme, params = challenge
        url = self._t.base_url(domain) + "/v2/"
        if scheme == "bearer":
            token = self._auth.fetch_token(host, params, frozenset(), credentials=credentials,
                                           offline=True)
            resp = self._t.request_url("GET", url, auth_flow=False,
                                       headers={"Authorization": "Bearer " + token})
        elif scheme == "basic":
            resp = self._t.request_url("GET", url, auth_flow=False,
                                       auth=(credentials.username, credentials.password))
        else:
            raise AuthError(f"registry {domain} asks for unsupported auth scheme {scheme!r}")
        resp.close()
        if resp.status_code in (401, 403):
            raise AuthError(f"login to {domain} failed: incorrect username or password")
        self._raise_for(resp, "login", domain)
        self._auth.forget(host)
        self._auth.set_credentials(host, credentials)

    # -- manifests ------------------------------------------------------------------------
    def _fetch_manifest(self, ref: Reference, reference: str) -> "Union[Manifest, Index]":
        what = f"manifest {ref.repository}:{reference}" if ":" not in reference else \
            f"manifest {ref.repository}@{reference}"
        resp, raw = self._get_small(ref.domain, f"/v2/{ref.path}/manifests/{reference}", what,
                                    {"Accept": ", ".join(ACCEPT_MANIFESTS)})
        actual = sha256_digest(raw)
        if reference.startswith("sha256:") and actual != reference:
            raise ManifestVerifyError(f"{what}: the registry served bytes with digest {actual}: "
                                      "the registry or a proxy is corrupting content")
        announced = resp.headers.get("Docker-Content-Digest", "")
        if announced.startswith("sha256:") and announced != actual:
            raise ManifestVerifyError(f"{what}: registry says digest {announced} but the bytes "
                                      f"have {actual}")
        return parse_manifest(raw, resp.headers.get("Content-Type", ""), actual, name=what)

    def _get_small(self, domain: str, path: str, what: str,
                   headers: "Optional[dict]" = None,
                   limit: int = MAX_MANIFEST_BYTES) -> "tuple[Any, bytes]":
        """GET a small document (manifest, tag list) whole, at most `limit` bytes (more is
        ResponseTooLargeError, a gzip Content-Encoding included); a body cut short is asked
        again."""
        from urllib3.exceptions import HTTPError as Urllib3Error
        from .bounded import read_capped
        for attempt in range(self.max_resumes + 1):
            resp = self._t.request("GET", domain, path, headers=headers or {}, stream=True)
            try:
                self._raise_for(resp, what, domain)
                raw = read_capped(resp, limit, what)
                length = resp.headers.get("Content-Length", "")
                if length.isdigit() and len(raw) < int(length) and \
                        not resp.headers.get("Content-Encoding"):
                    raise OSError(f"connection closed after {len(raw)} of {length} bytes")
                return resp, raw
            except (Urllib3Error, OSError) as e:
                if attempt >= self.max_resumes:
                    raise TransportError(f"{what}: download keeps failing: {e}") from None
                time.sleep(min(2.0, 0.05 * (2 ** attempt)))
            finally:
                resp.close()
        raise AssertionError("unreachable")

    def get_manifest(self, ref: RefLike) -> "Union[Manifest, Index]":
        """The manifest or index `ref` points at (by digest if it has one, else by tag)."""
        r = _ref(ref)
        return self._fetch_manifest(r, r.reference)

    def head_manifest(self, ref: RefLike) -> "Optional[Descriptor]":
        """HEAD the manifest: its descriptor (digest, size, type), or None if absent."""
        r = _ref(ref)
        resp = self._t.request("HEAD", r.domain, f"/v2/{r.path}/manifests/{r.reference}",
                               headers={"Accept": ", ".join(ACCEPT_MANIFESTS)})
        resp.close()
        if resp.status_code == 404:
            return None
        self._raise_for(resp, f"manifest {r}", r.domain)
        return Descriptor(resp.headers.get("Content-Type", ""),
                          resp.headers.get("Docker-Content-Digest", ""),
                          int(resp.headers.get("Content-Length") or 0))

    def resolve(self, ref: RefLike, platform: "Optional[Platform]" = None) -> ResolvedImage:
        """Follow `ref` to one platform's manifest and its verified, parsed config."""
        r = _ref(ref)
        top = self.get_manifest(r)
        index: "Optional[Index]" = None
        if isinstance(top, Index):
            index = top
            desc = top.select(platform, name=r.familiar)
            manifest = self._fetch_manifest(r, desc.digest)
            if not isinstance(manifest, Manifest):
                raise ManifestError(f"{r.familiar}: index entry {desc.digest} is not an image "
                                    "manifest (nested indexes are not supported)")
            if desc.size != len(manifest.raw):
                raise ManifestVerifyError(
                    f"{r.familiar}: index says manifest {desc.digest} has {desc.size} bytes, "
                    f"the registry served {len(manifest.raw)}")
        else:
            manifest = top
        config_bytes = self.get_blob_bytes(r, manifest.config)
        config = parse_image_config(config_bytes, manifest.config.digest, name=r.familiar)
        validate_config_for_manifest(config, manifest, name=r.familiar)
        if platform is not None and index is None and config.os and config.architecture:
            if platform.match_rank(config.platform) is None:
                raise PlatformNotFound(
                    f"{r.familiar} is a single-platform image for {config.platform}, "
                    f"not {platform}: drop --platform or pick {config.platform}")
        return ResolvedImage(r, manifest.digest, manifest, index, config_bytes, config)

    def list_tags(self, ref: RefLike) -> "list[str]":
        r = _ref(ref)
        what = f"tags of {r.repository}"
        _, raw = self._get_small(r.domain, f"/v2/{r.path}/tags/list", what)
        try:
            return [str(t) for t in json.loads(raw).get("tags") or []]
        except (ValueError, AttributeError):
            raise TransportError(f"{what}: the registry sent an invalid tag list") from None

    # -- blobs ----------------------------------------------------------------------------
    def get_blob_bytes(self, ref: RefLike, desc: Descriptor,
                       cap: int = MAX_CONFIG_BYTES) -> bytes:
        """The whole blob in memory, verified (configs and small blobs): refused when its
        descriptor announces more than `cap` bytes (stream_blob then holds it to that)."""
        if desc.size > cap:
            raise ResponseTooLargeError(
                f"blob {desc.digest} ({desc.media_type or 'no media type'}): the manifest "
                f"says {desc.size} bytes, more than the {cap} accepted for it in memory: "
                "refused (a broken or hostile image?)")
        return b"".join(self.stream_blob(ref, desc))

    def stream_blob(self, ref: RefLike, desc: Descriptor,
                    chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """Yield the blob's bytes. Size is checked as they arrive and the digest at the end
        (BlobVerifyError). A cut connection is resumed with an HTTP Range request; if the
        server ignores Range, the download restarts and the bytes already yielded are skipped.
        """
        from urllib3.exceptions import HTTPError as Urllib3Error
        r = _ref(ref)
        digest = Digest.parse(desc.digest)
        what = f"blob {desc.digest} of {r.repository}"
        path = f"/v2/{r.path}/blobs/{desc.digest}"
        hasher = digest.hasher()
        received = 0
        failures = 0
        while True:
            headers = {"Range": f"bytes={received}-"} if received else {}
            resp = self._t.request("GET", r.domain, path, headers=headers, stream=True)
            try:
                skip = self._check_blob_response(resp, desc, received, what, r.domain)
                progress_at_start = received
                try:
                    for chunk in resp.raw.stream(min(chunk_size, READ_SIZE), decode_content=False):
                        if skip:
                            drop = min(skip, len(chunk))
                            chunk, skip = chunk[drop:], skip - drop
                            if not chunk:
                                continue
                        received += len(chunk)
                        if received > desc.size:
                            raise BlobVerifyError(
                                f"{what}: the registry sent more than the {desc.size} bytes the "
                                "manifest declares: the manifest or the blob is wrong")
                        hasher.update(chunk)
                        yield chunk
                    if received < desc.size:  # urllib3 1.x ends a cut stream without error
                        raise OSError(f"connection closed at byte {received}")
                except (Urllib3Error, OSError) as e:
                    failures = 0 if received > progress_at_start else failures + 1
                    if failures > self.max_resumes:
                        raise TransportError(f"{what}: download keeps failing at byte "
                                             f"{received} of {desc.size}: {e}") from None
                    time.sleep(min(2.0, 0.05 * (2 ** failures)))
                    continue
            finally:
                resp.close()
            break
        if received != desc.size:
            raise BlobVerifyError(f"{what}: got {received} bytes, the manifest says {desc.size}")
        if hasher.hexdigest() != digest.hex:
            raise BlobVerifyError(f"{what}: content has digest {digest.algorithm}:"
                                  f"{hasher.hexdigest()}: corrupted in transit or by the registry")

    def _check_blob_response(self, resp: Any, desc: Descriptor, received: int, what: str,
                             domain: str) -> int:
        """Validate a blob GET response; return how many leading bytes to skip."""
        if resp.status_code == 416 and received:
            resp.close()
            raise BlobVerifyError(f"{what}: the registry has only {received} bytes, the "
                                  f"manifest declares {desc.size}: the image is corrupt")
        self._raise_for(resp, what, domain)
        if resp.status_code == 206 and received:
            cr = resp.headers.get("Content-Range", "")
            try:
                span, _, total = cr.split(" ", 1)[1].partition("/")
                start = int(span.split("-")[0])
            except (IndexError, ValueError):
                raise TransportError(f"{what}: bad Content-Range {cr!r} in a resumed download"
                                     ) from None
            if total not in ("*", "") and int(total) != desc.size:
                raise BlobVerifyError(f"{what}: the registry says it has {total} bytes, the "
                                      f"manifest says {desc.size}")
            if start > received:
                raise TransportError(f"{what}: resumed at byte {start}, wanted {received}")
            return received - start
        if resp.status_code != 200:
            raise TransportError(f"{what}: unexpected HTTP {resp.status_code}")
        length = resp.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) != desc.size:
            raise BlobVerifyError(f"{what}: the registry serves {length} bytes but the "
                                  f"manifest declares {desc.size}: the image is corrupt")
        return received  # 200: a restart from byte 0, skip what we already yielded

    # -- push -----------------------------------------------------------------------------
    def blob_exists(self, ref: RefLike, digest: str) -> bool:
        r = _ref(ref)
        resp = self._t.request("HEAD", r.domain, f"/v2/{r.path}/blobs/{digest}")
        resp.close()
        if resp.status_code == 404:
            return False
        self._raise_for(resp, f"blob {digest} of {r.repository}", r.domain)
        return True

    def _start_upload(self, r: Reference, query: str = "") -> "tuple[Any, str]":
        base = self._t.base_url(r.domain)
        path = f"/v2/{r.path}/blobs/uploads/" + (f"?{query}" if query else "")
        resp = self._t.request_url("POST", base + path, data=b"")
        self._raise_for(resp, f"upload to {r.repository}", r.domain)
        resp.close()
        location = resp.headers.get("Location", "")
        return resp, urljoin(base + path, location) if location else ""

    def upload_blob(self, ref: RefLike, data: "Union[bytes, BinaryIO]",
                    digest: "Optional[str]" = None, size: "Optional[int]" = None,
                    chunk_size: "Optional[int]" = None) -> str:
        """Upload a blob (bytes or a binary file); monolithic unless `chunk_size` is given
        and smaller than the blob, then chunked PATCHes. Returns the digest."""
        r = _ref(ref)
        if isinstance(data, (bytes, bytearray)):
            data = bytes(data)
            digest = digest or sha256_digest(data)
            if size is not None and size != len(data):
                raise BlobVerifyError(f"upload of {digest}: size {size} but {len(data)} bytes given")
            size = len(data)
        elif digest is None or size is None:
            raise ValueError("upload_blob needs digest and size when data is a file")
        what = f"upload of blob {digest} to {r.repository}"
        resp, url = self._start_upload(r)
        if not url:
            raise TransportError(f"{what}: registry gave no upload Location")
        sep = "&" if "?" in url else "?"
        if chunk_size and size > chunk_size:
            offset = 0
            while offset < size:
                chunk = data[offset:offset + chunk_size] if isinstance(data, bytes) \
                    else data.read(chunk_size)
                if not chunk:
                    raise BlobVerifyError(f"{what}: data ended at {offset} of {size} bytes")
                resp = self._t.request_url("PATCH", url, data=chunk, headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{offset}-{offset + len(chunk) - 1}"})
                self._raise_for(resp, what, r.domain)
                resp.close()
                url = urljoin(url, resp.headers.get("Location") or url)
                sep = "&" if "?" in url else "?"
                offset += len(chunk)
            body: "Union[bytes, BinaryIO]" = b""
        else:
            body = data
        resp = self._t.request_url("PUT", f"{url}{sep}digest={quote(digest)}", data=body,
                                   headers={"Content-Type": "application/octet-stream",
                                            "Content-Length": str(0 if body == b"" else size)})
        self._raise_for(resp, what, r.domain)
        resp.close()
        got = resp.headers.get("Docker-Content-Digest")
        if got and got != digest:
            raise BlobVerifyError(f"{what}: registry stored it as {got}")
        return digest

    def mount_blob(self, ref: RefLike, digest: str, from_repo: "Union[str, Reference]") -> bool:
        """Cross-repository mount. True if mounted; False if the registry declined (then
        upload the blob normally)."""
        r = _ref(ref)
        src = from_repo.path if isinstance(from_repo, Reference) else from_repo
        resp, url = self._start_upload(r, f"mount={quote(digest)}&from={quote(src)}")
        if resp.status_code == 201:
            return True
        if url:  # 202: an upload session was opened instead; cancel it
            self._t.request_url("DELETE", url).close()
        return False

    def put_manifest(self, ref: RefLike, raw: bytes, media_type: str = "") -> str:
        """PUT a manifest or index under the ref's tag (or digest). Returns its digest."""
        r = _ref(ref)
        parsed = parse_manifest(raw, media_type, name=f"manifest for {r}")
        digest = sha256_digest(raw)
        if r.digest and r.digest != digest and not r.tag:
            raise ManifestVerifyError(f"manifest for {r}: bytes have digest {digest}")
        target = r.tag or digest
        resp = self._t.request("PUT", r.domain, f"/v2/{r.path}/manifests/{target}", data=raw,
                               headers={"Content-Type": media_type or parsed.media_type})
        self._raise_for(resp, f"push of manifest {r}", r.domain)
        resp.close()
        got = resp.headers.get("Docker-Content-Digest")
        if got and got != digest:
            raise ManifestVerifyError(f"push of manifest {r}: registry stored it as {got}")
        return digest

    def delete_manifest(self, ref: RefLike) -> None:
        r = _ref(ref)
        if not r.digest:
            raise ValueError("delete_manifest needs a reference with a digest")
        resp = self._t.request("DELETE", r.domain, f"/v2/{r.path}/manifests/{r.digest}")
        self._raise_for(resp, f"manifest {r}", r.domain)
        resp.close()


__all__ = ["RegistryClient", "ResolvedImage", "RegistryError"]
