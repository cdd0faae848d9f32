"""Which containers `ps --filter` (and the API's filters=) select.

As dockerd: filters on different keys must all hold; several values of one key are
alternatives (status=running + status=exited), except `label`, where each must hold.
"""
from __future__ import annotations

from pydocklite.errors import UsageError

KEYS = ("status", "name", "id", "label", "ancestor", "exited", "health")


def _one(s, st, key: str, value: str) -> bool:
    if key == "status":
        return st.state == value
    if key == "name":
        import re
        pattern = value.lstrip("/")
        try:
            return re.search(pattern, s.name) is not None
        except re.error:
            return pattern in s.name
    if key == "id":
        return s.id.startswith(value)
    if key == "label":
        labels = s.config.get("Config", {}).get("Labels") or {}
        k, eq, v = value.partition("=")
        return k in labels and (not eq or labels[k] == v)
    if key == "ancestor":
        return value in (s.image, s.image_id, s.image_id[7:19], s.image_id[7:])
    if key == "exited":
        return st.state == "exited" and str(st.exit_code) == value
    if key == "health":
        health = getattr(s, "health", None)
        status = health.get("Status") if isinstance(health, dict) else "none"
        return (status or "none") == value
    raise UsageError(f"invalid filter '{key}': use {', '.join(KEYS)}")


def matches(s, st, filters) -> bool:
    """Does container state `s` (status `st`) pass the "key=value" filters of `ps`?"""
    by_key = {}
    for f in filters:
        key, _, value = f.partition("=")
        if key not in KEYS:
            raise UsageError(f"invalid filter '{key}': use {', '.join(KEYS)}")
        by_key.setdefault(key, []).append(value)
    for key, values in by_key.items():
        if key == "label":
            if not all(_one(s, st, key, v) for v in values):
                return False
        elif not any(_one(s, st, key, v) for v in values):
            return False
    return True
