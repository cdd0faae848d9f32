"""containers-policy.json(5): which requirements an image must meet, by transport and scope.

    policy = load_policy(None)                 # ~/.config/containers/policy.json, else
                                               # /etc/containers/policy.json, else None
    sel = policy.for_docker(Reference.parse("registry.example/app:1.0"))
    sel.entry          # 'transports.docker["registry.example/app"]' (for messages)
    sel.requirements   # (Requirement(type="sigstoreSigned", ...), ...): all must hold

Parsing is strict, as containers/image's: unknown or duplicated fields, unknown requirement
or identity types, unknown transports, empty requirement lists and scopes a transport can't
have are errors that name the file and the entry. Requirements this tool can't evaluate
(`signedBy` GPG signatures, `signedBaseLayer`, sigstore's Fulcio/PKI/Rekor options) parse,
and only fail, with a message saying so, when an image is actually checked against them.

Scopes (the most specific match wins, then the transport's "" scope, then "default"):
    docker         the image's reference (repo:tag or repo@digest), then its repository, each
                   parent namespace, the host[:port], then `*.domain` wildcards of the host
    oci-archive, oci, dir
                   the archive's (or layout's) absolute path, then each parent directory
    docker-archive only "" (containers/image allows no other scope)
Relative `keyPath`s are taken relative to the policy file's directory.

No `cryptography` here: keys are read and signatures checked by verify.py, and only for an
image whose requirements ask for signatures.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, Optional, Tuple

from pydocklite.runtime.record import record
from pydocklite.trust.errors import PolicyError

SYSTEM_POLICY = "/etc/containers/policy.json"
USER_POLICY = ".config/containers/policy.json"      # under $HOME, as containers/image has it
TRANSPORTS = ("atomic", "containers-storage", "dir", "docker", "docker-archive",
              "docker-daemon", "oci", "oci-archive", "ostree", "sif", "tarball")
PATH_TRANSPORTS = ("dir", "oci", "oci-archive", "sif")
ACCEPT, REJECT, SIGSTORE = "insecureAcceptAnything", "reject", "sigstoreSigned"
IDENTITY_TYPES = ("matchExact", "matchRepoDigestOrExact", "matchRepository", "exactReference",
                  "exactRepository", "remapIdentity")
KEY_FIELDS = ("keyPath", "keyPaths", "keyData", "keyDatas")
_SIGSTORE_FIELDS = ("type", *KEY_FIELDS, "fulcio", "pki", "rekorPublicKeyPath",
                    "rekorPublicKeyPaths", "rekorPublicKeyData", "rekorPublicKeyDatas",
                    "signedIdentity")


@record
class IdentityRule:
    type: str = "matchRepoDigestOrExact"
    reference: str = ""          # exactReference's dockerReference / exactRepository's repo
    prefix: str = ""             # remapIdentity
    signed_prefix: str = ""


@record
class Requirement:
    type: str
    keys: tuple = ()             # sigstoreSigned: (("path", "/abs/key.pub") | ("data", b"PEM"))
    identity: IdentityRule = IdentityRule()
    unsupported: str = ""        # non-empty: why this requirement can't be checked here


@record
class Selection:
    """The requirements that apply to one image, and where in which file they were found."""
    policy_path: str
    entry: str
    requirements: tuple

    @property
    def needs_signatures(self) -> bool:
        return any(r.type == SIGSTORE and not r.unsupported for r in self.requirements)


@record
class Policy:
    path: str
    default: tuple
    transports: dict             # transport -> {scope: (Requirement, ...)}

    def select(self, transport: str, identity: str, namespaces=()) -> Selection:
        scopes = self.transports.get(transport)
        if scopes:
            for scope in ((identity,) if identity else ()) + tuple(namespaces) + ("",):
                if scope in scopes:
                    return Selection(self.path, f"transports.{transport}[{json.dumps(scope)}]",
                                     scopes[scope])
        return Selection(self.path, "default", self.default)

    def for_docker(self, ref) -> Selection:
        """`ref`: a registry.reference.Reference (as pulled)."""
        return self.select("docker", docker_identity(ref), docker_namespaces(ref.repository))

    def for_path(self, transport: str, path: str) -> Selection:
        """`path` "" (an archive read from stdin): only the transport's "" scope applies."""
        if transport == "docker-archive" or not path:
            return self.select(transport, "")
        real = os.path.realpath(path)
        parents = []
        p = real
        while p not in ("/", ""):
            parents.append(p)
            p = os.path.dirname(p)
        return self.select(transport, real, parents[1:])


def docker_identity(ref) -> str:
    """repo:tag, or repo@digest when the reference has a digest (what gets pulled)."""
    if ref.digest:
        return f"{ref.repository}@{ref.digest}"
    return f"{ref.repository}:{ref.tag or 'latest'}"


def docker_namespaces(repository: str) -> "Tuple[str, ...]":
    out = []
    name = repository
    while True:
        out.append(name)
        slash = name.rfind("/")
        if slash < 0:
            break
        name = name[:slash]
    host = name.split(":", 1)[0]
    while "." in host:
        host = host[host.index(".") + 1:]
        out.append("*." + host)
    return tuple(out)


# --- finding and reading the file -------------------------------------------------------

def policy_path(explicit: "Optional[str]" = None) -> "Optional[str]":
    """The policy file that applies, or None when there is none (today's behaviour)."""
    if explicit:
        return explicit
    user = Path.home() / USER_POLICY
    if user.exists():
        return str(user)
    if os.path.exists(SYSTEM_POLICY):
        return SYSTEM_POLICY
    return None


def load_policy(explicit: "Optional[str]" = None) -> "Optional[Policy]":
    path = policy_path(explicit)
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            data = f.read(4 << 20)
    except OSError as e:
        raise PolicyError(f"signature policy {path}: {e.strerror}: fix the path given with "
                          "--signature-policy" if explicit else
                          f"signature policy {path} is unreadable: {e.strerror}") from None
    return parse_policy(data, path)


def parse_policy(data: bytes, path: str) -> Policy:
    from pydocklite.trust.payload import strict_json
    try:
        doc = strict_json(data, lambda k: PolicyError(
            f"signature policy {path}: duplicate field {k!r}: the file must be fixed"))
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        if isinstance(e, PolicyError):
            raise
        raise PolicyError(f"signature policy {path} is not valid JSON ({e}): fix the "
                          "file") from None
    where = _Where(path)
    _fields(doc, ("default", "transports"), where("the top level"), required=("default",))
    base = Path(path).resolve().parent
    default = _requirements(doc["default"], where("default"), base)
    transports: "Dict[str, dict]" = {}
    tdoc = doc.get("transports") or {}
    if not isinstance(tdoc, dict):
        raise where.error("transports", "is not an object")
    for transport, scopes in tdoc.items():
        if transport not in TRANSPORTS:
            raise where.error(f"transports.{transport}", "is an unknown transport (known: "
                              + ", ".join(TRANSPORTS) + ")")
        if not isinstance(scopes, dict):
            raise where.error(f"transports.{transport}", "is not an object of scopes")
        parsed = {}
        for scope, reqs in scopes.items():
            entry = f"transports.{transport}[{json.dumps(scope)}]"
            _check_scope(transport, scope, where, entry)
            parsed[scope] = _requirements(reqs, where(entry), base)
        transports[transport] = parsed
    return Policy(path, default, transports)


class _Where:
    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self, entry: str) -> tuple:
        return (self, entry)

    def error(self, entry: str, problem: str) -> PolicyError:
        return PolicyError(f"signature policy {self.path}, {entry}: {problem}: fix the file")


def _fields(obj, allowed, at: tuple, required=()) -> dict:
    where, entry = at
    if not isinstance(obj, dict):
        raise where.error(entry, "is not a JSON object")
    unknown = sorted(set(obj) - set(allowed))
    if unknown:
        raise where.error(entry, f"has unknown field(s) {', '.join(unknown)}")
    for name in required:
        if name not in obj:
            raise where.error(entry, f"lacks the field {name!r}")
    return obj


def _check_scope(transport: str, scope: str, where: _Where, entry: str) -> None:
    if scope == "":
        return
    if transport == "docker-archive" or transport == "tarball":
        raise where.error(entry, f"{transport} supports only the default scope \"\"")
    if transport in PATH_TRANSPORTS:
        if not scope.startswith("/") or scope == "/" or os.path.normpath(scope) != scope:
            raise where.error(entry, "must be an absolute, normalised path other than \"/\"")
    if transport == "docker" and "*" in scope:
        if not scope.startswith("*.") or "*" in scope[2:] or "/" in scope:
            raise where.error(entry, "a wildcard scope must look like *.example.com")


def _requirements(reqs, at: tuple, base: Path) -> tuple:
    where, entry = at
    if not isinstance(reqs, list) or not reqs:
        raise where.error(entry, "must be a non-empty list of requirements")
    return tuple(_requirement(r, (where, f"{entry}[{i}]"), base) for i, r in enumerate(reqs))


def _requirement(obj, at: tuple, base: Path) -> Requirement:
    where, entry = at
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise where.error(entry, "is not a requirement object with a \"type\"")
    kind = obj["type"]
    if kind in (ACCEPT, REJECT):
        _fields(obj, ("type",), at)
        return Requirement(kind)
    if kind == "signedBy":
        _fields(obj, ("type", "keyType", "keyPath", "keyPaths", "keyData", "signedIdentity"),
                at)
        return Requirement(kind, unsupported="signedBy (GPG \"simple signing\") is not "
                           "supported by pydocklite: sign with a sigstore key and require "
                           "sigstoreSigned")
    if kind == "signedBaseLayer":
        _fields(obj, ("type", "baseLayerIdentity"), at)
        return Requirement(kind, unsupported="signedBaseLayer is not supported by pydocklite")
    if kind != SIGSTORE:
        raise where.error(entry, f"unknown requirement type {kind!r} (known: "
                          f"{ACCEPT}, {REJECT}, {SIGSTORE}, signedBy, signedBaseLayer)")
    _fields(obj, _SIGSTORE_FIELDS, at)
    sources = [f for f in (*KEY_FIELDS, "fulcio", "pki") if f in obj]
    if len(sources) != 1:
        raise where.error(entry, "needs exactly one of keyPath, keyPaths, keyData, keyDatas, "
                          f"fulcio, pki (has {', '.join(sources) or 'none'})")
    identity = _identity(obj.get("signedIdentity"), (where, entry + ".signedIdentity"))
    unsupported = ""
    if sources[0] in ("fulcio", "pki") or any(f.startswith("rekor") for f in obj):
        unsupported = (f"sigstoreSigned with {sources[0] if sources[0] in ('fulcio', 'pki') else 'rekor'} "
                       "is not supported by pydocklite: use a sigstore public key "
                       "(keyPath or keyData)")
        return Requirement(kind, (), identity, unsupported)
    return Requirement(kind, _keys(obj, sources[0], at, base), identity)


def _keys(obj, field: str, at: tuple, base: Path) -> tuple:
    import base64
    import binascii
    where, entry = at
    value = obj[field]
    values = value if field.endswith("s") else [value]
    if not isinstance(values, list) or not values or \
            not all(isinstance(v, str) and v for v in values):
        raise where.error(entry, f"{field} must be "
                          + ("a non-empty list of non-empty strings" if field.endswith("s")
                             else "a non-empty string"))
    if field.startswith("keyPath"):
        return tuple(("path", str(base / v) if not os.path.isabs(v) else v) for v in values)
    out = []
    for v in values:
        try:
            out.append(("data", base64.b64decode(v, validate=True)))
        except (binascii.Error, ValueError):
            raise where.error(entry, f"{field} is not valid base64 (it holds the base64 of a "
                              "PEM public key)") from None
    return tuple(out)


def _identity(obj, at: tuple) -> IdentityRule:
    from registry.reference import Reference
    where, entry = at
    if obj is None:
        return IdentityRule()
    if not isinstance(obj, dict) or obj.get("type") not in IDENTITY_TYPES:
        kind = obj.get("type") if isinstance(obj, dict) else obj
        raise where.error(entry, f"unknown identity type {kind!r} (known: "
                          + ", ".join(IDENTITY_TYPES) + ")")
    kind = obj["type"]
    if kind in ("matchExact", "matchRepoDigestOrExact", "matchRepository"):
        _fields(obj, ("type",), at)
        return IdentityRule(kind)
    if kind in ("exactReference", "exactRepository"):
        field = "dockerReference" if kind == "exactReference" else "dockerRepository"
        _fields(obj, ("type", field), at, required=(field,))
        try:
            ref = Reference.parse(obj[field], default_tag=None)
        except Exception as e:  # noqa: BLE001 - InvalidReferenceError or a non-string
            raise where.error(entry, f"{field} {obj[field]!r} is not a valid reference: {e}"
                              ) from None
        if kind == "exactReference" and not (ref.tag or ref.digest):
            raise where.error(entry, f"dockerReference {obj[field]!r} has neither a tag nor a "
                              "digest")
        return IdentityRule(kind, obj[field])
    _fields(obj, ("type", "prefix", "signedPrefix"), at, required=("prefix", "signedPrefix"))
    for field in ("prefix", "signedPrefix"):
        if not _valid_prefix(obj[field]):
            raise where.error(entry, f"{field} {obj[field]!r} is not a host[:port], a "
                              "namespace or a repository (fully expanded, no tag)")
    return IdentityRule(kind, prefix=obj["prefix"], signed_prefix=obj["signedPrefix"])


def _valid_prefix(value) -> bool:
    from registry.reference import _DOMAIN_RE, _PATH_RE
    if not isinstance(value, str) or not value:
        return False
    if _DOMAIN_RE.match(value):
        return True
    domain, slash, path = value.partition("/")
    return bool(slash and _DOMAIN_RE.match(domain) and _PATH_RE.match(path))
