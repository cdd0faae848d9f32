"""Image configs (`application/vnd.oci.image.config.v1+json` and Docker's equivalent)."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional, Tuple

from .errors import ImageConfigError
from .platform import Platform
from .reference import validate_digest

if TYPE_CHECKING:  # pragma: no cover
    from .model import Manifest


@dataclass(frozen=True)
class Healthcheck:
    test: Tuple[str, ...] = ()
    interval: int = 0          # nanoseconds, as in the JSON
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0


@dataclass(frozen=True)
class ContainerConfig:
    """The `config` object of an image config: how to run the image."""

    env: Tuple[str, ...] = ()
    cmd: Optional[Tuple[str, ...]] = None
    entrypoint: Optional[Tuple[str, ...]] = None
    working_dir: str = ""
    user: str = ""
    exposed_ports: Tuple[str, ...] = ()
    labels: Tuple[Tuple[str, str], ...] = ()
    stop_signal: str = ""
    volumes: Tuple[str, ...] = ()
    healthcheck: Optional[Healthcheck] = None
    shell: Optional[Tuple[str, ...]] = None
    on_build: Tuple[str, ...] = ()
    args_escaped: bool = False


@dataclass(frozen=True)
class HistoryEntry:
    created: str = ""
    created_by: str = ""
    author: str = ""
    comment: str = ""
    empty_layer: bool = False


@dataclass(frozen=True)
class ImageConfig:
    """A parsed image config. `raw` holds the exact bytes, whose digest is `digest`."""

    raw: bytes = field(repr=False)
    digest: str
    architecture: str
    os: str
    variant: str
    diff_ids: Tuple[str, ...]
    created: str = ""
    author: str = ""
    config: ContainerConfig = ContainerConfig()
    history: Tuple[HistoryEntry, ...] = ()
    os_version: str = ""

    @property
    def platform(self) -> Platform:
        return Platform.of(self.os, self.architecture, self.variant, self.os_version)

    def to_dict(self) -> dict:
        """The original JSON document (for `inspect`)."""
        return json.loads(self.raw)


def _strs(v: object, what: str, where: str) -> "Optional[Tuple[str, ...]]":
    if v is None:
        return None
    if isinstance(v, str):  # some old images carry a plain string
        return (v,)
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ImageConfigError(f"{where}: {what} must be a list of strings")
    return tuple(v)


def _keys(v: object, what: str, where: str) -> "Tuple[str, ...]":
    if v is None:
        return ()
    if not isinstance(v, dict):
        raise ImageConfigError(f"{where}: {what} must be an object")
    return tuple(sorted(str(k) for k in v))


def _int(v: object, what: str, where: str) -> int:
    """A whole number (a duration in ns, a count); absent or null is 0."""
    if v is None:
        return 0
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or \
            v in (float("inf"), float("-inf")):
        raise ImageConfigError(f"{where}: {what} must be a number")
    return int(v)


def _container_config(c: object, where: str) -> ContainerConfig:
    if c is None:
        return ContainerConfig()
    if not isinstance(c, dict):
        raise ImageConfigError(f"{where}: 'config' must be an object")
    hc = c.get("Healthcheck")
    health = None
    if isinstance(hc, dict):
        health = Healthcheck(
            test=_strs(hc.get("Test"), "Healthcheck.Test", where) or (),
            interval=_int(hc.get("Interval"), "Healthcheck.Interval", where),
            timeout=_int(hc.get("Timeout"), "Healthcheck.Timeout", where),
            start_period=_int(hc.get("StartPeriod"), "Healthcheck.StartPeriod", where),
            start_interval=_int(hc.get("StartInterval"), "Healthcheck.StartInterval", where),
            retries=_int(hc.get("Retries"), "Healthcheck.Retries", where))
    labels = c.get("Labels") or {}
    if not isinstance(labels, dict):
        raise ImageConfigError(f"{where}: Labels must be an object")
    return ContainerConfig(
        env=_strs(c.get("Env"), "Env", where) or (),
        cmd=_strs(c.get("Cmd"), "Cmd", where),
        entrypoint=_strs(c.get("Entrypoint"), "Entrypoint", where),
        working_dir=str(c.get("WorkingDir") or ""),
        user=str(c.get("User") or ""),
        exposed_ports=_keys(c.get("ExposedPorts"), "ExposedPorts", where),
        labels=tuple(sorted((str(k), str(v)) for k, v in labels.items())),
        stop_signal=str(c.get("StopSignal") or ""),
        volumes=_keys(c.get("Volumes"), "Volumes", where),
        healthcheck=health,
        shell=_strs(c.get("Shell"), "Shell", where),
        on_build=_strs(c.get("OnBuild"), "OnBuild", where) or (),
        args_escaped=bool(c.get("ArgsEscaped")),
    )


def parse_image_config(raw: bytes, digest: str = "", name: str = "image") -> ImageConfig:
    """Parse config bytes. If `digest` is given it must match the bytes."""
    actual = "sha256:" + hashlib.sha256(raw).hexdigest()
    if digest:
        validate_digest(digest)
        if digest.startswith("sha256:") and digest != actual:
            raise ImageConfigError(f"{name}: config bytes have digest {actual}, expected {digest}")
    where = f"{name}: image config"
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise ImageConfigError(f"{where} is not valid JSON ({e})") from None
    if not isinstance(doc, dict):
        raise ImageConfigError(f"{where} is not a JSON object")
    rootfs = doc.get("rootfs")
    if not isinstance(rootfs, dict) or rootfs.get("type") != "layers":
        raise ImageConfigError(f"{where} has no rootfs of type 'layers'")
    diff_ids = rootfs.get("diff_ids") or []
    if not isinstance(diff_ids, list):
        raise ImageConfigError(f"{where}: rootfs.diff_ids must be a list")
    for d in diff_ids:
        try:
            validate_digest(str(d))
        except Exception as e:
            raise ImageConfigError(f"{where}: bad diff_id: {e}") from None
    history = []
    entries = doc.get("history") or []
    if not isinstance(entries, list):
        raise ImageConfigError(f"{where}: history must be a list")
    for h in entries:
        if isinstance(h, dict):
            history.append(HistoryEntry(
                str(h.get("created") or ""), str(h.get("created_by") or ""),
                str(h.get("author") or ""), str(h.get("comment") or ""),
                bool(h.get("empty_layer"))))
    return ImageConfig(
        raw=raw, digest=digest or actual,
        architecture=str(doc.get("architecture") or ""), os=str(doc.get("os") or ""),
        variant=str(doc.get("variant") or ""), diff_ids=tuple(diff_ids),
        created=str(doc.get("created") or ""), author=str(doc.get("author") or ""),
        config=_container_config(doc.get("config"), where), history=tuple(history),
        os_version=str(doc.get("os.version") or ""))


def validate_config_for_manifest(config: ImageConfig, manifest: "Manifest",
                                 name: str = "image") -> None:
    """Raise ImageConfigError if the config cannot describe the manifest's layers."""
    if config.digest != manifest.config.digest:
        raise ImageConfigError(
            f"{name}: config digest {config.digest} is not the manifest's {manifest.config.digest}")
    if len(config.diff_ids) != len(manifest.layers):
        raise ImageConfigError(
            f"{name}: the config lists {len(config.diff_ids)} diff_ids but the manifest has "
            f"{len(manifest.layers)} layers: the image is corrupt, rebuild or re-push it")
