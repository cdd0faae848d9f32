"""Image references, normalised the way Docker does it.

    nginx                       -> docker.io/library/nginx:latest
    user/app:1.0                -> docker.io/user/app:1.0
    localhost/x                 -> localhost/x:latest
    host:5000/a/b@sha256:<hex>  -> host:5000/a/b@sha256:<hex>
    app:1.0@sha256:<hex>        -> tag kept for display; the digest is what gets pulled
"""
from __future__ import annotations

import re
from collections import namedtuple

from .errors import InvalidReferenceError

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_MAX = 255

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = r"(?:" + _DOMAIN_COMPONENT + r"(?:\." + _DOMAIN_COMPONENT + r")*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
_PATH_RE = re.compile(r"^" + _COMPONENT + r"(?:/" + _COMPONENT + r")*$")
_DOMAIN_RE = re.compile(r"^" + _DOMAIN + r"$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$")
_HEX64_RE = re.compile(r"^[a-f0-9]{64}$")
_DIGEST_HEX_LEN = {"sha256": 64, "sha384": 96, "sha512": 128}


def validate_digest(value: str) -> str:
    """Return `value` if it is a well-formed `algorithm:hex` digest, else raise."""
    if not _DIGEST_RE.match(value):
        raise InvalidReferenceError(f"invalid digest {value!r}: expected 'sha256:<64 hex digits>'")
    alg, _, hexpart = value.partition(":")
    want = _DIGEST_HEX_LEN.get(alg)
    if want is None:
        raise InvalidReferenceError(f"unsupported digest algorithm {alg!r} in {value!r}: use sha256")
    if len(hexpart) != want or not re.fullmatch(r"[a-f0-9]+", hexpart):
        raise InvalidReferenceError(
            f"invalid digest {value!r}: {alg} needs {want} lowercase hex digits")
    return value


def split_domain(name: str) -> "tuple[str, str]":
    """Split a repository name into (domain, path) with Docker's defaults."""
    first, sep, rest = name.partition("/")
    if not sep or (not any(c in first for c in ".:") and first != "localhost"
                   and first.lower() == first):
        domain, path = DEFAULT_DOMAIN, name
    else:
        domain, path = first, rest
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = OFFICIAL_PREFIX + path
    return domain, path


class Reference(namedtuple("Reference", "domain path tag digest", defaults=(None, None))):
    """A normalised image reference. `tag` and/or `digest` may be None (not both after parse).
    A named tuple (not a dataclass, which costs every CLI start ~0.5 ms to define)."""
    __slots__ = ()

    @classmethod
    def parse(cls, s: str, default_tag: str = DEFAULT_TAG) -> "Reference":
        """Parse and normalise `s`; raise InvalidReferenceError with the reason."""
        if not isinstance(s, str) or not s:
            raise InvalidReferenceError("invalid reference: empty image name")
        if s != s.strip() or any(c.isspace() for c in s):
            raise InvalidReferenceError(f"invalid reference {s!r}: contains whitespace")
        if _HEX64_RE.match(s):
            raise InvalidReferenceError(
                f"invalid repository name {s!r}: cannot be a 64-character hexadecimal string "
                "(that looks like an image ID)")
        name, digest = s, None
        if "@" in s:
            name, _, digest = s.partition("@")
            validate_digest(digest)
        tag = None
        slash = name.rfind("/")
        colon = name.rfind(":")
        if colon > slash:
            name, tag = name[:colon], name[colon + 1:]
            if not _TAG_RE.match(tag):
                raise InvalidReferenceError(
                    f"invalid tag {tag!r} in {s!r}: use letters, digits, '_', '.', '-' "
                    "(at most 128, not starting with '.' or '-')")
        if not name:
            raise InvalidReferenceError(f"invalid reference {s!r}: missing repository name")
        domain, path = split_domain(name)
        if not _DOMAIN_RE.match(domain):
            raise InvalidReferenceError(f"invalid registry host {domain!r} in {s!r}")
        if path.lower() != path:
            raise InvalidReferenceError(
                f"invalid reference {s!r}: repository name must be lowercase")
        if not _PATH_RE.match(path):
            raise InvalidReferenceError(
                f"invalid repository name {path!r} in {s!r}: use lowercase letters, digits and "
                "separators '.', '_', '__', '-' between them, components joined by '/'")
        if len(domain) + 1 + len(path) > NAME_TOTAL_MAX:
            raise InvalidReferenceError(
                f"invalid reference {s!r}: repository name longer than {NAME_TOTAL_MAX} characters")
        if tag is None and digest is None:
            tag = default_tag
        return cls(domain=domain, path=path, tag=tag, digest=digest)

    @property
    def repository(self) -> str:
        """`docker.io/library/nginx`: domain and path, no tag or digest."""
        return f"{self.domain}/{self.path}"

    name = repository

    @property
    def familiar_name(self) -> str:
        """`nginx`, `user/app`, `host:5000/app`: the short form Docker shows."""
        if self.domain != DEFAULT_DOMAIN:
            return self.repository
        if self.path.startswith(OFFICIAL_PREFIX) and self.path.count("/") == 1:
            return self.path[len(OFFICIAL_PREFIX):]
        return self.path

    @property
    def familiar(self) -> str:
        """`nginx:latest`, `nginx@sha256:...`: the short form with tag/digest."""
        return self.familiar_name + self._suffix()

    @property
    def reference(self) -> str:
        """What goes after /manifests/ in the registry API: the digest if any, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    def _suffix(self) -> str:
        out = ""
        if self.tag:
            out += ":" + self.tag
        if self.digest:
            out += "@" + self.digest
        return out

    def with_digest(self, digest: str) -> "Reference":
        return self._replace(digest=validate_digest(digest))

    def with_tag(self, tag: str) -> "Reference":
        if not _TAG_RE.match(tag):
            raise InvalidReferenceError(f"invalid tag {tag!r}")
        return self._replace(tag=tag)

    def with_path(self, path: str) -> "Reference":
        """The same registry, another repository (for cross-repo mounts)."""
        if not _PATH_RE.match(path):
            raise InvalidReferenceError(f"invalid repository name {path!r}")
        return self._replace(path=path)

    def __str__(self) -> str:
        return self.repository + self._suffix()


def parse(s: str) -> Reference:
    """Shorthand for Reference.parse."""
    return Reference.parse(s)
