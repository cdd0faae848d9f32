"""Platforms (os/architecture/variant), normalisation and selection from an index."""
from __future__ import annotations

import platform as _pyplatform
import sys
from dataclasses import dataclass
from typing import Optional, Tuple

from .errors import InvalidReferenceError

_ARCH_ALIASES = {
    "x86_64": ("amd64", ""), "x86-64": ("amd64", ""), "amd64": ("amd64", ""),
    "aarch64": ("arm64", ""), "arm64": ("arm64", ""), "armhf": ("arm", "v7"),
    "armel": ("arm", "v6"), "armv7l": ("arm", "v7"), "armv7": ("arm", "v7"),
    "armv6l": ("arm", "v6"), "armv6": ("arm", "v6"), "armv5tel": ("arm", "v5"),
    "arm": ("arm", ""), "i386": ("386", ""), "i686": ("386", ""), "386": ("386", ""),
    "ppc64le": ("ppc64le", ""), "s390x": ("s390x", ""), "riscv64": ("riscv64", ""),
    "mips64le": ("mips64le", ""), "loong64": ("loong64", ""),
}
# Variants a CPU of the given variant can also run, best first (after itself).
_ARM_ORDER = ("v8", "v7", "v6", "v5")
_AMD64_ORDER = ("v4", "v3", "v2", "v1")


def _norm_variant(arch: str, variant: str) -> str:
    variant = (variant or "").lower()
    if arch == "arm64" and variant in ("", "8"):
        return "v8"
    if arch == "arm" and variant in ("", "7"):
        return "v7"
    if arch == "arm" and variant.isdigit():
        return "v" + variant
    if arch == "amd64" and variant in ("", "v1"):
        return ""
    return variant


@dataclass(frozen=True)
class Platform:
    """An OCI platform, normalised: `linux/arm64/v8`, `linux/amd64`, `linux/arm/v7`."""

    os: str
    architecture: str
    variant: str = ""
    os_version: str = ""
    os_features: Tuple[str, ...] = ()

    @classmethod
    def of(cls, os: str, architecture: str, variant: str = "", os_version: str = "",
           os_features: Tuple[str, ...] = ()) -> "Platform":
        """A normalised platform (arch aliases resolved, default variants filled in)."""
        arch, implied = _ARCH_ALIASES.get(architecture.lower(), (architecture.lower(), ""))
        variant = _norm_variant(arch, variant or implied)
        return cls((os or "").lower(), arch, variant, os_version or "", tuple(os_features or ()))

    @classmethod
    def parse(cls, s: str) -> "Platform":
        """Parse `os/arch[/variant]` (`linux/arm64/v8`) or just `arch` (os defaults to linux)."""
        parts = [p for p in s.strip().split("/")]
        if not s.strip() or any(not p for p in parts) or len(parts) > 3:
            raise InvalidReferenceError(
                f"invalid platform {s!r}: expected os/arch[/variant], e.g. linux/arm64/v8")
        if len(parts) == 1:
            return cls.of("linux", parts[0])
        return cls.of(parts[0], parts[1], parts[2] if len(parts) == 3 else "")

    @classmethod
    def from_json(cls, d: Optional[dict]) -> "Optional[Platform]":
        if not isinstance(d, dict) or not d.get("os") or not d.get("architecture"):
            return None
        return cls.of(str(d["os"]), str(d["architecture"]), str(d.get("variant") or ""),
                      str(d.get("os.version") or ""), tuple(d.get("os.features") or ()))

    def __str__(self) -> str:
        s = f"{self.os}/{self.architecture}"
        return s + f"/{self.variant}" if self.variant else s

    def match_rank(self, other: "Optional[Platform]") -> "Optional[int]":
        """How well `other` (an image's platform) runs on self: 0 best, None = cannot run."""
        if other is None or other.os != self.os:
            return None
        if other.architecture != self.architecture:
            return None
        if other.variant == self.variant:
            return 0
        order = _ARM_ORDER if self.architecture in ("arm", "arm64") else (
            _AMD64_ORDER if self.architecture == "amd64" else ())
        if other.variant == "" and self.architecture == "amd64":
            return len(order) + 1
        if self.variant in order and other.variant in order:
            mine, theirs = order.index(self.variant), order.index(other.variant)
            return theirs - mine if theirs > mine else None
        return None


def host_platform() -> Platform:
    """The platform of this machine (`linux/amd64`, `linux/arm64/v8`, `linux/arm/v7`...)."""
    os_name = "linux" if sys.platform.startswith("linux") else sys.platform
    machine = _pyplatform.machine() or "amd64"
    return Platform.of(os_name, machine)
