"""One `Settings` object, built once by the CLI and passed down: every path and user choice.

No module keeps global configuration; whatever needs a path or an option receives Settings.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import Optional, Tuple

from pydocklite.layout import default_runtime_dir
from pydocklite.runtime.record import Factory, record


def _xdg(name: str, default: str) -> Path:
    value = os.environ.get(name)
    if value and os.path.isabs(value):
        return Path(value)
    return Path.home() / default


def default_data_root() -> Path:
    return _xdg("XDG_DATA_HOME", ".local/share") / "pydocklite"


def default_config_dir() -> Path:
    return _xdg("XDG_CONFIG_HOME", ".config") / "pydocklite"


@record
class Settings:
    data_root: Path
    config_dir: Path
    runtime_dir: Path
    storage_driver: str = "auto"
    insecure_registries: Tuple[str, ...] = ()
    docker_config: Optional[Path] = None
    # delegated cgroup dir(s) to put containers' cgroups under (v1: one per hierarchy);
    # () = let the runtime find one (PYDOCKLITE_CGROUP_BASE="a:b" or config "cgroup-base")
    cgroup_base: Tuple[str, ...] = ()
    # what a hostile image, archive or URL may make us write (SECURITY.md, class 7):
    # the largest uncompressed layer (None: auto, 0: no limit) and the space kept free
    max_layer_size: Optional[int] = None
    min_free_space: int = 256 << 20
    extra: dict = Factory(dict, compare=False)

    @classmethod
    def from_environment(cls, *, root: Optional[str] = None, storage_driver: Optional[str] = None,
                         runtime_dir: Optional[str] = None) -> "Settings":
        config_dir = default_config_dir()
        conf = _read_config(config_dir / "config.json")
        insecure = tuple(conf.get("insecure-registries", ()))
        env_insecure = os.environ.get("PYDOCKLITE_INSECURE_REGISTRIES", "")
        insecure += tuple(x for x in env_insecure.split(",") if x)
        docker_config = os.environ.get("DOCKER_CONFIG")
        return cls(
            data_root=Path(root or os.environ.get("PYDOCKLITE_ROOT") or default_data_root()),
            config_dir=config_dir,
            runtime_dir=Path(runtime_dir or os.environ.get("PYDOCKLITE_RUNTIME_DIR")
                             or default_runtime_dir()),
            storage_driver=(storage_driver or os.environ.get("PYDOCKLITE_STORAGE_DRIVER")
                            or conf.get("storage-driver") or "auto"),
            insecure_registries=insecure,
            docker_config=Path(docker_config) / "config.json" if docker_config else None,
            cgroup_base=_cgroup_base(os.environ.get("PYDOCKLITE_CGROUP_BASE"),
                                     conf.get("cgroup-base")),
            max_layer_size=_size_setting("PYDOCKLITE_MAX_LAYER_SIZE", conf, "max-layer-size",
                                         None),
            min_free_space=_size_setting("PYDOCKLITE_MIN_FREE_SPACE", conf, "min-free-space",
                                         256 << 20),
            extra=conf,
        )

    def expansion_limit(self, compressed: int) -> Optional[int]:
        """How many bytes a layer (or an ADD archive or URL) of `compressed` bytes may turn
        into: the max-layer-size setting, or by default 100 times its size and at least
        1 GiB (a decompression bomb stops there; real layers rarely pass 10x); None: no
        limit (max-layer-size 0)."""
        if self.max_layer_size is None:
            return max(100 * compressed, AUTO_LAYER_FLOOR)
        return self.max_layer_size or None

    def layer_bounds(self, compressed: Optional[int] = None, expand: bool = True) -> dict:
        """LayerStore.ingest's bounds for a layer: the expansion limit from its compressed
        size when known (a pull), else from the bytes read so far (load, import); none for
        a layer we make ourselves (expand=False); min-free-space always."""
        if not expand:
            limit = None
        elif compressed is not None:
            fixed = self.expansion_limit(compressed)
            limit = (lambda _fed: fixed)
        else:
            limit = self.expansion_limit
        return {"limit": limit, "min_free": self.min_free_space, "hint": LIMITS_HINT}

    @property
    def layout(self):
        from snapshotter.layout import StoreLayout
        return StoreLayout(self.data_root)

    @property
    def runtime_layout(self):
        """Every path under the runtime directory (pydocklite/layout.py)."""
        from pydocklite.layout import RuntimeLayout
        return RuntimeLayout(self.runtime_dir)

    def certs_dirs(self, registry_host: str) -> Tuple[Path, ...]:
        """Where a registry's custom CA may live, Docker's and our own convention."""
        return (self.config_dir / "certs.d" / registry_host,
                Path("/etc/docker/certs.d") / registry_host,
                Path("/etc/containers/certs.d") / registry_host)


def env_seconds(name: str, default: float) -> float:
    """A duration in seconds from the environment (>= 0; the default when unset or bad)."""
    try:
        return max(0.0, float(os.environ.get(name, default)))
    except ValueError:
        return default


AUTO_LAYER_FLOOR = 1 << 30
LIMITS_HINT = ("if the image is genuine, raise PYDOCKLITE_MAX_LAYER_SIZE (e.g. 64g; 0: no limit) "
               "or lower PYDOCKLITE_MIN_FREE_SPACE")
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str, what: str) -> int:
    """"64m", "2g", "1048576" -> bytes (binary units, as Docker's sizes)."""
    t = str(text).strip().lower()
    if t.endswith("b") and len(t) > 1 and t[-2] in "kmgt":
        t = t[:-1]
    unit = t[-1:] if t[-1:] in "kmgt" else ""
    try:
        value = float(t[:len(t) - len(unit)])
    except ValueError:
        value = -1
    if value < 0:
        from pydocklite.errors import UsageError
        raise UsageError(f"{what}: {text!r} is not a size: use a number of bytes with an "
                         "optional unit (k, m, g), e.g. 512m")
    return int(value * _UNITS[unit])


def _size_setting(env: str, conf: dict, key: str, default):
    """The environment wins over the config file; "auto" (or nothing) is the default."""
    value = os.environ.get(env) or conf.get(key)
    if value is None or str(value).strip().lower() in ("", "auto"):
        return default
    return parse_size(value, f"{env} / {key}")


def _cgroup_base(env: Optional[str], conf) -> Tuple[str, ...]:
    """The environment wins over the config file; both take "dir:dir", the config a list too."""
    value = env if env else conf
    if not value:
        return ()
    parts = value.split(os.pathsep) if isinstance(value, str) else [str(v) for v in value]
    return tuple(p for p in parts if p)


def _read_config(path: Path) -> dict:
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        from pydocklite.errors import UsageError
        raise UsageError(f"config file {path} is unreadable ({e}): fix or remove it") from e
    return data if isinstance(data, dict) else {}
