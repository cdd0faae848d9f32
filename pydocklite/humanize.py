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


def timestamp_ns(text: str, now_ns: int = 0) -> int:
    """A --since/--until value as Docker reads it (timetypes.GetTimestamp): a Go duration
    back from now ("10m", "1h30m", "1.5s"), Unix seconds ("1700000000.5"), or an RFC 3339
    time (the fraction and the zone optional); nanoseconds since the epoch."""
    import re
    import time
    t = text.strip()
    back = go_duration_ns(t) if t != "0" and not t.isdigit() else None
    if back is not None:
        return (now_ns or time.time_ns()) - back
    if re.fullmatch(r"\d+(\.\d{1,9})?", t):
        sec, _, frac = t.partition(".")
        return int(sec) * 1_000_000_000 + int(frac.ljust(9, "0") or 0)
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", t):
        t += "T00:00:00"
    try:
        return rfc3339_ns(t)
    except ValueError:
        from pydocklite.errors import UsageError
        raise UsageError(f"invalid time {text!r}: use a duration back from now (10m), Unix "
                         "seconds or an RFC 3339 time (2006-01-02T15:04:05Z)") from None


def rfc3339_ns(text: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 time with any fraction length."""
    t = text.strip()
    frac = 0
    tz = "+00:00"
    if t.endswith("Z") or t.endswith("z"):
        t = t[:-1]
    elif len(t) > 6 and t[-6] in "+-" and t[-3] == ":":
        t, tz = t[:-6], t[-6:]
    if "." in t:
        t, f = t.split(".", 1)
        frac = int(f[:9].ljust(9, "0"))
    from datetime import datetime
    dt = datetime.fromisoformat(t + tz)       # ValueError when it is not one
    return int(dt.timestamp()) * 1_000_000_000 + frac
