"""RunOptions: what `run`/`create` flags ask for, parsed once into one frozen value."""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import Optional, Tuple

from pydocklite.runtime.record import Factory, record

if TYPE_CHECKING:
    from pydocklite.containers.netopts import NetworkOptions


@record
class Mapping:
    """A bind mount, named volume or tmpfs requested with -v/--mount/--tmpfs."""
    kind: str            # "bind", "volume", "tmpfs"
    source: str          # host path or volume name ("" for tmpfs)
    target: str          # absolute path in the container
    readonly: bool = False
    options: Tuple[str, ...] = ()


@record
class RunOptions:
    image: str
    command: Tuple[str, ...] = ()
    name: Optional[str] = None
    detach: bool = False
    remove: bool = False
    interactive: bool = False
    stdin_once: Optional[bool] = None         # None: Docker's CLI rule (run -i attached)
    tty: bool = False
    env: Tuple[str, ...] = ()                 # "K=V" after --env-file and -e merging
    entrypoint: Optional[str] = None          # "" clears the image's entrypoint
    workdir: Optional[str] = None
    user: Optional[str] = None
    hostname: Optional[str] = None
    network: str = "bridge"                   # bridge | host | none | container
    net: Optional[NetworkOptions] = None      # the network flags (containers/netopts.py)
    publish: Tuple[str, ...] = ()             # raw -p values
    publish_all: bool = False
    mounts: Tuple[Mapping, ...] = ()
    memory: Optional[int] = None              # bytes
    memory_swap: Optional[int] = None         # bytes; -1 = unlimited
    cpus: Optional[float] = None
    pids_limit: Optional[int] = None
    ulimits: Tuple[str, ...] = ()             # "nofile=1024:2048"
    cap_add: Tuple[str, ...] = ()
    cap_drop: Tuple[str, ...] = ()
    read_only: bool = False
    init: bool = False
    restart: str = "no"
    stop_signal: Optional[str] = None
    stop_timeout: Optional[int] = None
    labels: Tuple[Tuple[str, str], ...] = ()
    platform: Optional[str] = None
    pull: str = "missing"
    privileged: bool = False
    # the health check (containers/healthcheck.py): () / None = the image's
    health_test: Tuple[str, ...] = ()         # ("CMD-SHELL", cmd), ("CMD", ...), ("NONE",)
    health_interval: Optional[int] = None     # nanoseconds
    health_timeout: Optional[int] = None
    health_start_period: Optional[int] = None
    health_start_interval: Optional[int] = None
    health_retries: Optional[int] = None
    extra: dict = Factory(dict, compare=False)


def parse_bytes(text: str) -> int:
    """Docker's RAMInBytes: 512m, 1g, 100k, 1024 (bytes)."""
    from pydocklite.errors import UsageError
    t = text.strip().lower()
    units = {"b": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3, "t": 1024 ** 4}
    if t.endswith("b") and len(t) > 1 and t[-2] in units:
        t = t[:-1]
    mult = 1
    if t and t[-1] in units:
        mult = units[t[-1]]
        t = t[:-1]
    try:
        value = float(t)
    except ValueError:
        raise UsageError(f"invalid size: '{text}': use a number with an optional unit "
                         "(b, k, m, g), e.g. 512m") from None
    if value < 0:
        raise UsageError(f"invalid size: '{text}': must be positive")
    return int(value * mult)


def parse_volume(spec: str) -> Mapping:
    """-v SRC:DST[:ro|rw|z|Z...] ; SRC absolute = bind, else a named volume; -v DST = anonymous."""
    from pydocklite.errors import UsageError
    parts = spec.split(":")
    if len(parts) == 1:
        return Mapping("volume", "", _abs(parts[0], spec))
    if len(parts) > 3:
        raise UsageError(f"invalid volume specification: '{spec}'")
    source, target = parts[0], parts[1]
    opts = tuple(o for o in (parts[2].split(",") if len(parts) == 3 else ()) if o)
    for o in opts:
        if o not in ("ro", "rw", "z", "Z", "rbind", "bind", "nosuid", "nodev", "noexec",
                     "private", "rprivate", "shared", "rshared", "slave", "rslave", "nocopy"):
            raise UsageError(f"invalid mode: {o} in volume '{spec}'")
    kind = "bind" if source.startswith("/") or source.startswith(".") else "volume"
    if not source:
        raise UsageError(f"invalid volume specification: '{spec}': empty source")
    if kind == "volume":
        from pydocklite.naming import check_volume_name
        check_volume_name(source)       # one path component under the volumes directory
    return Mapping(kind, source, _abs(target, spec), "ro" in opts,
                   tuple(o for o in opts if o not in ("ro", "rw", "z", "Z")))


def parse_tmpfs(spec: str) -> Mapping:
    target, _, opts = spec.partition(":")
    return Mapping("tmpfs", "", _abs(target, spec), False,
                   tuple(o for o in opts.split(",") if o))


def _abs(path: str, spec: str) -> str:
    from pydocklite.errors import UsageError
    if not path.startswith("/"):
        raise UsageError(f"invalid mount config: the container path in '{spec}' must be "
                         "absolute")
    return path


_LABEL_PARTS = ("user", "role", "type", "level")


def parse_security_opts(opts) -> dict:
    """--security-opt values -> RunOptions.extra entries (Docker's spellings, "=" or ":"):
    seccomp=unconfined, no-new-privileges[=true|false], apparmor=PROFILE (unconfined: none),
    label=user:U|role:R|type:T|level:L (parts of the SELinux label) or label=disable."""
    from pydocklite.errors import UsageError
    extra = {}
    label = {}
    for opt in opts:
        eq, colon = opt.find("="), opt.find(":")
        sep = "=" if eq >= 0 and (colon < 0 or eq < colon) else ":"   # "label:type:x" is old
        key, _, value = opt.partition(sep)
        if key == "seccomp" and value == "unconfined":
            extra["seccomp"] = "unconfined"
        elif key == "no-new-privileges" and value in ("", "true", "false"):
            if value != "false":
                extra["no_new_privileges"] = True
        elif key == "apparmor" and value:
            if value != "unconfined":
                extra["apparmor"] = value
        elif key == "label" and value == "disable":
            label = {"disable": True}
        elif key == "label" and value.partition(":")[0] in _LABEL_PARTS and \
                value.partition(":")[2]:
            part, _, v = value.partition(":")
            label[part] = v
        else:
            raise UsageError(f"invalid --security-opt {opt!r}: supported are apparmor=PROFILE, "
                             "label=user:U|role:R|type:T|level:L|disable, seccomp=unconfined "
                             "and no-new-privileges")
    if label and not label.get("disable"):
        extra["label"] = tuple(sorted(label.items()))
    return extra
