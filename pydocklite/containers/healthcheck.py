"""A container's health check from the image's HEALTHCHECK and the run/create flags (or the
API's Config.Healthcheck): Docker's merge, field by field, flags winning. Pure functions.

    --health-cmd CMD          Test ["CMD-SHELL", CMD]   (the API may send ["CMD", args...])
    --health-interval D       between checks (default 30s)
    --health-timeout D        a check longer than this fails (default 30s)
    --health-start-period D   failures don't count until then (default 0s)
    --health-start-interval D between checks during the start period (default 5s)
    --health-retries N        failures in a row that make it unhealthy (default 3)
    --no-healthcheck          Test ["NONE"]: the image's check is off
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import Optional

from pydocklite.errors import UsageError

SECOND = 1_000_000_000
DEFAULTS = {"Interval": 30 * SECOND, "Timeout": 30 * SECOND, "StartPeriod": 0,
            "StartInterval": 5 * SECOND, "Retries": 3}


def parse_duration(text: str, flag: str) -> int:
    """A Go duration ("30s", "1m30s", "500ms") in nanoseconds."""
    from pydocklite.humanize import go_duration_ns
    ns = go_duration_ns(text or "")
    if ns is None:
        raise UsageError(f'invalid argument "{text}" for "{flag}" flag: time: invalid '
                         f'duration "{text}" (use e.g. 30s, 1m30s, 500ms)')
    return ns


def merge(image_hc: Optional[dict], opts) -> Optional[dict]:
    """Docker's Config.Healthcheck for a container: the image's, overridden by the options
    (RunOptions.health_*); None when there is none. Raises UsageError on bad values."""
    wanted = {"Test": list(opts.health_test) or None, "Interval": opts.health_interval,
              "Timeout": opts.health_timeout, "StartPeriod": opts.health_start_period,
              "StartInterval": opts.health_start_interval, "Retries": opts.health_retries}
    if wanted["Test"] == ["NONE"] and any(v is not None for k, v in wanted.items()
                                          if k != "Test"):
        raise UsageError("--no-healthcheck conflicts with --health-* options")
    for key in ("Interval", "Timeout", "StartPeriod", "StartInterval"):
        v = wanted[key]
        if v is not None and (v < 0 or (0 < v < 1_000_000 and key != "StartPeriod")):
            raise UsageError(f"--health-{_flag(key)} cannot be negative or less than 1ms")
    if wanted["Retries"] is not None and wanted["Retries"] < 0:
        raise UsageError("--health-retries cannot be negative")
    out = dict(image_hc or {})
    for key, v in wanted.items():
        if v is not None:
            out[key] = v
    test = out.get("Test")
    if not test:
        return None
    if isinstance(test, str):
        test = ["CMD-SHELL", test]
        out["Test"] = test
    if test[0] not in ("CMD", "CMD-SHELL", "NONE"):
        out["Test"] = ["CMD"] + list(test)
    return {k: v for k, v in out.items() if k in DEFAULTS or k == "Test"}


def shim_config(hc: Optional[dict]):
    """The shim's HealthConfig for Docker's Config.Healthcheck (None: no check to run)."""
    if not hc or not hc.get("Test") or hc["Test"][0] == "NONE":
        return None
    from pydocklite.shim.config import HealthConfig

    def get(key: str) -> int:
        v = hc.get(key)
        return int(v) if v else DEFAULTS[key]
    return HealthConfig(test=tuple(str(x) for x in hc["Test"]), interval=get("Interval"),
                        timeout=get("Timeout"), start_period=int(hc.get("StartPeriod") or 0),
                        start_interval=get("StartInterval"),
                        retries=int(hc["Retries"]) if hc.get("Retries") else DEFAULTS["Retries"])


def _flag(key: str) -> str:
    return {"StartPeriod": "start-period", "StartInterval": "start-interval"}.get(key,
                                                                                 key.lower())
