"""The OCI runtime-spec config.json as immutable records.

`load_spec(bundle)` / `parse_spec(obj)` validate types field by field: unknown fields are
tolerated (the spec grows), a wrong type raises SpecError naming the field
(`config.json: process.args must be a list of strings, got str`).

Records are record.Record subclasses rather than dataclasses: importing `dataclasses` costs
~12 ms and this module sits on the start-up path of every container (see record.py).
`linux.resources` and `linux.seccomp` stay JSON objects (dicts): they are handed as-is to
cgroups.py / seccomp.py, which own their schema.
"""
from __future__ import annotations

import os

from . import minijson
from .errors import SpecError
from .record import Record


class Root(Record):
    __slots__ = ("path", "readonly")


class User(Record):
    __slots__ = ("uid", "gid", "umask", "additional_gids")


class Capabilities(Record):
    __slots__ = ("bounding", "effective", "inheritable", "permitted", "ambient")


class Rlimit(Record):
    __slots__ = ("type", "hard", "soft")


class Process(Record):
    __slots__ = ("terminal", "console_size", "user", "args", "env", "cwd", "capabilities",
                 "rlimits", "no_new_privileges", "oom_score_adj", "apparmor_profile",
                 "selinux_label")


class Mount(Record):
    __slots__ = ("destination", "type", "source", "options")


class Hook(Record):
    __slots__ = ("path", "args", "env", "timeout")


class Hooks(Record):
    __slots__ = ("prestart", "create_runtime", "create_container", "start_container", "poststart",
                 "poststop")


class Namespace(Record):
    __slots__ = ("type", "path")


class IdMapping(Record):
    __slots__ = ("container_id", "host_id", "size")


class Linux(Record):
    __slots__ = ("namespaces", "uid_mappings", "gid_mappings", "sysctl", "resources",
                 "cgroups_path", "seccomp", "rootfs_propagation", "masked_paths",
                 "readonly_paths", "devices", "mount_label", "personality")


class Spec(Record):
    __slots__ = ("oci_version", "root", "process", "hostname", "domainname", "mounts", "hooks",
                 "annotations", "linux")

NAMESPACE_TYPES = ("pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time")

_TYPE_NAMES = {dict: "an object", list: "a list", str: "a string", int: "an integer",
               bool: "a boolean"}


def _kind(v) -> str:
    if v is None:
        return "null"
    return {dict: "object", list: "list", str: "string", bool: "boolean",
            int: "integer", float: "number"}.get(type(v), type(v).__name__)


def _get(obj: dict, key: str, typ, where: str, default=None):
    """obj[key] checked against typ (bool is not accepted as int)."""
    if key not in obj or obj[key] is None:
        return default
    v = obj[key]
    ok = isinstance(v, typ) and not (typ is int and isinstance(v, bool))
    if typ is int and isinstance(v, float) and v.is_integer():
        return int(v)
    if not ok:
        raise SpecError(f"config.json: {where}{key} must be {_TYPE_NAMES.get(typ, typ)}, "
                        f"got {_kind(v)}")
    return v


def _str_list(obj: dict, key: str, where: str) -> tuple:
    v = _get(obj, key, list, where, [])
    for i, item in enumerate(v):
        if not isinstance(item, str):
            raise SpecError(f"config.json: {where}{key}[{i}] must be a string, got {_kind(item)}")
    return tuple(v)


def _int_list(obj: dict, key: str, where: str) -> tuple:
    v = _get(obj, key, list, where, [])
    for i, item in enumerate(v):
        if not isinstance(item, int) or isinstance(item, bool):
            raise SpecError(f"config.json: {where}{key}[{i}] must be an integer, "
                            f"got {_kind(item)}")
    return tuple(v)


def _obj_list(obj: dict, key: str, where: str) -> list:
    v = _get(obj, key, list, where, [])
    for i, item in enumerate(v):
        if not isinstance(item, dict):
            raise SpecError(f"config.json: {where}{key}[{i}] must be an object, got {_kind(item)}")
    return v


def _parse_user(p: dict) -> User:
    u = _get(p, "user", dict, "process.", {})
    return User(uid=_get(u, "uid", int, "process.user.", 0),
                gid=_get(u, "gid", int, "process.user.", 0),
                umask=_get(u, "umask", int, "process.user.", None),
                additional_gids=_int_list(u, "additionalGids", "process.user."))


def _parse_caps(p: dict):
    c = _get(p, "capabilities", dict, "process.")
    if c is None:
        return None
    w = "process.capabilities."
    return Capabilities(*(_str_list(c, k, w) for k in
                          ("bounding", "effective", "inheritable", "permitted", "ambient")))


def _parse_process(spec: dict):
    p = _get(spec, "process", dict, "")
    if p is None:
        return None
    rlimits = []
    for i, r in enumerate(_obj_list(p, "rlimits", "process.")):
        w = f"process.rlimits[{i}]."
        typ = _get(r, "type", str, w)
        if typ is None:
            raise SpecError(f"config.json: {w}type is required")
        rlimits.append(Rlimit(typ, _get(r, "hard", int, w, 0), _get(r, "soft", int, w, 0)))
    args = _str_list(p, "args", "process.")
    cs = _get(p, "consoleSize", dict, "process.")
    return Process(
        terminal=_get(p, "terminal", bool, "process.", False),
        console_size=(_get(cs, "height", int, "process.consoleSize.", 0),
                      _get(cs, "width", int, "process.consoleSize.", 0)) if cs else None,
        user=_parse_user(p), args=args, env=_str_list(p, "env", "process."),
        cwd=_get(p, "cwd", str, "process.", "/"), capabilities=_parse_caps(p),
        rlimits=tuple(rlimits),
        no_new_privileges=_get(p, "noNewPrivileges", bool, "process.", False),
        oom_score_adj=_get(p, "oomScoreAdj", int, "process.", None),
        apparmor_profile=_get(p, "apparmorProfile", str, "process.", ""),
        selinux_label=_get(p, "selinuxLabel", str, "process.", ""))


def _parse_hooks(spec: dict) -> Hooks:
    h = _get(spec, "hooks", dict, "", {})
    out = []
    for key in ("prestart", "createRuntime", "createContainer", "startContainer",
                "poststart", "poststop"):
        hooks = []
        for i, e in enumerate(_obj_list(h, key, "hooks.")):
            w = f"hooks.{key}[{i}]."
            path = _get(e, "path", str, w)
            if not path:
                raise SpecError(f"config.json: {w}path is required")
            hooks.append(Hook(path, _str_list(e, "args", w), _str_list(e, "env", w),
                              _get(e, "timeout", int, w, None)))
        out.append(tuple(hooks))
    return Hooks(*out)


def _parse_mappings(lx: dict, key: str) -> tuple:
    out = []
    for i, m in enumerate(_obj_list(lx, key, "linux.")):
        w = f"linux.{key}[{i}]."
        vals = [_get(m, k, int, w) for k in ("containerID", "hostID", "size")]
        if None in vals or vals[2] <= 0:
            raise SpecError(f"config.json: {w} needs containerID, hostID and a positive size")
        out.append(IdMapping(*vals))
    return tuple(out)


def _parse_linux(spec: dict) -> Linux:
    lx = _get(spec, "linux", dict, "", {})
    nss = []
    seen = set()
    for i, n in enumerate(_obj_list(lx, "namespaces", "linux.")):
        typ = _get(n, "type", str, f"linux.namespaces[{i}].")
        if typ not in NAMESPACE_TYPES:
            raise SpecError(f"config.json: linux.namespaces[{i}].type {typ!r} is not one of "
                            f"{', '.join(NAMESPACE_TYPES)}")
        if typ in seen:
            raise SpecError(f"config.json: linux.namespaces lists {typ!r} twice")
        seen.add(typ)
        nss.append(Namespace(typ, _get(n, "path", str, f"linux.namespaces[{i}].", "")))
    sysctl = _get(lx, "sysctl", dict, "linux.", {})
    for k, v in sysctl.items():
        if not isinstance(v, str):
            raise SpecError(f"config.json: linux.sysctl[{k!r}] must be a string, got {_kind(v)}")
    prop = _get(lx, "rootfsPropagation", str, "linux.", "")
    if prop not in ("", "private", "rprivate", "slave", "rslave", "shared", "rshared",
                    "unbindable", "runbindable"):
        raise SpecError(f"config.json: linux.rootfsPropagation {prop!r} is not a propagation mode")
    return Linux(
        namespaces=tuple(nss), uid_mappings=_parse_mappings(lx, "uidMappings"),
        gid_mappings=_parse_mappings(lx, "gidMappings"), sysctl=dict(sysctl),
        resources=_get(lx, "resources", dict, "linux.", {}),
        cgroups_path=_get(lx, "cgroupsPath", str, "linux.", ""),
        seccomp=_get(lx, "seccomp", dict, "linux.", None),
        rootfs_propagation=prop,
        masked_paths=_str_list(lx, "maskedPaths", "linux."),
        readonly_paths=_str_list(lx, "readonlyPaths", "linux."),
        devices=tuple(_obj_list(lx, "devices", "linux.")),
        mount_label=_get(lx, "mountLabel", str, "linux.", ""),
        personality=_parse_personality(lx))


PERSONALITIES = {"LINUX": 0x0000, "LINUX32": 0x0008}


def _parse_personality(lx: dict) -> int:
    """linux.personality -> the persona for personality(2); None when not set."""
    p = _get(lx, "personality", dict, "linux.")
    if p is None:
        return None
    domain = _get(p, "domain", str, "linux.personality.", "LINUX")
    if domain not in PERSONALITIES:
        raise SpecError(f"config.json: linux.personality.domain {domain!r} is not one of "
                        f"{', '.join(PERSONALITIES)}")
    if _str_list(p, "flags", "linux.personality."):
        raise SpecError("config.json: linux.personality.flags are not supported by pydocklite "
                        "(the runtime-spec defines none): remove them")
    return PERSONALITIES[domain]


def _check_version(version: str) -> None:
    """ociVersion: SemVer 2.0 of the runtime-spec, which we implement in its major 1."""
    if not version:
        return          # absent: tolerated (the runtime-spec 1.x we read is assumed)
    core = version.split("+", 1)[0].split("-", 1)[0].split(".")
    if len(core) != 3 or not all(c.isdigit() for c in core):
        raise SpecError(f"config.json: ociVersion {version!r} is not a version (like \"1.0.2\")")
    if core[0] != "1":
        raise SpecError(f"config.json: ociVersion {version} is not supported: pydocklite "
                        f"implements the runtime-spec 1.x")


def parse_spec(obj) -> Spec:
    """Validate a decoded config.json and return a Spec."""
    if not isinstance(obj, dict):
        raise SpecError(f"config.json: top level must be an object, got {_kind(obj)}")
    version = _get(obj, "ociVersion", str, "", "")
    _check_version(version)
    r = _get(obj, "root", dict, "")
    if r is None or not _get(r, "path", str, "root."):
        raise SpecError("config.json: root.path is required (the rootfs directory)")
    mounts = []
    for i, m in enumerate(_obj_list(obj, "mounts", "")):
        w = f"mounts[{i}]."
        dest = _get(m, "destination", str, w)
        if not dest or not dest.startswith("/"):
            raise SpecError(f"config.json: {w}destination must be an absolute path, got {dest!r}")
        mounts.append(Mount(dest, _get(m, "type", str, w, ""), _get(m, "source", str, w, ""),
                            _str_list(m, "options", w)))
    ann = _get(obj, "annotations", dict, "", {})
    for k, v in ann.items():
        if not isinstance(v, str):
            raise SpecError(f"config.json: annotations[{k!r}] must be a string, got {_kind(v)}")
    proc = _parse_process(obj)
    if proc is not None and not proc.args:
        raise SpecError("config.json: process.args must name the program to run")
    return Spec(oci_version=version,
                root=Root(r["path"], _get(r, "readonly", bool, "root.", False)),
                process=proc, hostname=_get(obj, "hostname", str, "", ""),
                domainname=_get(obj, "domainname", str, "", ""), mounts=tuple(mounts),
                hooks=_parse_hooks(obj), annotations=dict(ann), linux=_parse_linux(obj))


def load_spec(bundle: str) -> tuple:
    """(Spec, raw JSON dict) from BUNDLE/config.json, with root.path made absolute."""
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            raw = minijson.loads(f.read())
    except FileNotFoundError:
        raise SpecError(f"bundle {bundle}: no config.json (run 'pydocklite runtime spec' "
                        f"there to write one)") from None
    except ValueError as e:
        raise SpecError(f"{path}: not valid JSON: {e}") from None
    spec = parse_spec(raw)
    rootfs = os.path.join(os.path.abspath(bundle), spec.root.path)
    if not os.path.isdir(rootfs):
        raise SpecError(f"bundle {bundle}: root.path {spec.root.path!r} is not a directory "
                        f"({rootfs}): create the rootfs or fix config.json")
    return spec._replace(root=spec.root._replace(path=os.path.realpath(rootfs))), raw


def namespace(spec: Spec, typ: str):
    """The Namespace record of that type, or None when the spec leaves it shared."""
    for n in spec.linux.namespaces:
        if n.type == typ:
            return n
    return None
