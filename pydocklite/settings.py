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
            extra=conf,
        )

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
