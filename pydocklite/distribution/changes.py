"""`--change` instructions (Dockerfile syntax) applied to an image config's "config" part:
CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR."""
from __future__ import annotations

import json
import shlex
from typing import Iterable

from pydocklite.distribution.errors import ChangeError

SUPPORTED = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "ONBUILD", "STOPSIGNAL", "USER",
             "VOLUME", "WORKDIR")


def _command(text: str) -> list:
    text = text.strip()
    if text.startswith("["):
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if isinstance(value, list) and all(isinstance(x, str) for x in value):
            return value
    return ["/bin/sh", "-c", text]


def _pairs(text: str, what: str) -> list:
    """`K=V K2="v 2"` or the legacy `K V` form."""
    words = shlex.split(text)
    if not words:
        raise ChangeError(f"{what} needs at least one argument")
    if "=" not in words[0]:
        key, _, value = text.strip().partition(" ")
        return [(key, value.strip())]
    out = []
    for w in words:
        key, eq, value = w.partition("=")
        if not eq or not key:
            raise ChangeError(f"{what}: {w!r} is not KEY=VALUE")
        out.append((key, value))
    return out


def apply_changes(cfg: dict, changes: Iterable[str]) -> dict:
    """A new "config" dict with `changes` applied (cfg itself is not modified)."""
    cfg = json.loads(json.dumps(cfg or {}))
    for change in changes:
        word, _, rest = change.strip().partition(" ")
        op = word.upper()
        rest = rest.strip()
        if op not in SUPPORTED:
            raise ChangeError(f"dockerfile instruction {word!r} is not supported in --change: "
                              f"use one of {', '.join(SUPPORTED)}")
        if op == "CMD":
            cfg["Cmd"] = _command(rest)
        elif op == "ENTRYPOINT":
            cfg["Entrypoint"] = _command(rest)
        elif op == "ENV":
            env = list(cfg.get("Env") or [])
            for key, value in _pairs(rest, "ENV"):
                env = [e for e in env if e.split("=", 1)[0] != key] + [f"{key}={value}"]
            cfg["Env"] = env
        elif op == "LABEL":
            labels = dict(cfg.get("Labels") or {})
            labels.update(dict(_pairs(rest, "LABEL")))
            cfg["Labels"] = labels
        elif op == "EXPOSE":
            ports = dict(cfg.get("ExposedPorts") or {})
            for p in rest.split():
                ports[p if "/" in p else p + "/tcp"] = {}
            cfg["ExposedPorts"] = ports
        elif op == "VOLUME":
            vols = dict(cfg.get("Volumes") or {})
            for v in (_command(rest) if rest.startswith("[") else rest.split()):
                vols[v] = {}
            cfg["Volumes"] = vols
        elif op == "ONBUILD":
            cfg["OnBuild"] = list(cfg.get("OnBuild") or []) + [rest]
        elif op == "STOPSIGNAL":
            cfg["StopSignal"] = rest
        elif op == "USER":
            cfg["User"] = rest
        elif op == "WORKDIR":
            cfg["WorkingDir"] = rest
    return cfg
