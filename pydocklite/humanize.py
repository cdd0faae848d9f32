"""Docker's human-readable sizes and durations (go-units), shared by every listing."""
from __future__ import annotations

import time


def human_size(n: float) -> str:
    """go-units HumanSizeWithPrecision(n, 3): decimal units, 3 significant digits."""
    units = ["B", "kB", "MB", "GB", "TB", "PB"]
    i = 0
    n = float(n)
    while n >= 1000 and i < len(units) - 1:
        n /= 1000.0
        i += 1
    return f"{n:.3g}{units[i]}"


def human_duration(seconds: float) -> str:
    """go-units HumanDuration: 'Less than a second', '5 minutes', '2 weeks'..."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    m = s // 60
    if m == 1:
        return "About a minute"
    if m < 60:
        return f"{m} minutes"
    h = round(s / 3600)
    if h == 1:
        return "About an hour"
    if h < 48:
        return f"{h} hours"
    if h < 24 * 7 * 2:
        return f"{h // 24} days"
    if h < 24 * 30 * 2:
        return f"{h // 24 // 7} weeks"
    if h < 24 * 365 * 2:
        return f"{h // 24 // 30} months"
    return f"{h // 24 // 365} years"


def time_ago(ts: float, now: float = None) -> str:
    return human_duration((now or time.time()) - ts) + " ago"


_GO_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
             "m": 60_000_000_000, "h": 3_600_000_000_000}


def go_duration_ns(text: str):
    """A Go duration ("30s", "1h30m", "1.5s", "500ms", "0") in nanoseconds; None when the
    text is not one."""
    import re
    t = text.strip()
    if t == "0":
        return 0
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", t)
    if not parts or "".join(n + u for n, u in parts) != t:
        return None
    return int(sum(float(n) * _GO_UNITS[u] for n, u in parts))
