"""Docker's `--filter key=value` (and the API's filters=) as the services read them: one
parser and one label test for every listing and prune (containers, images, volumes,
networks, events, system prune)."""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import Dict, List, Optional, Sequence


def parse_filters(pairs: Sequence[str], keys: Optional[Sequence[str]] = None
                  ) -> Dict[str, List[str]]:
    """["label=a=b", "until=1h"] -> {"label": ["a=b"], "until": ["1h"]}; keys (when given)
    are the ones allowed: another is a UsageError naming them."""
    from pydocklite.errors import UsageError
    out: Dict[str, List[str]] = {}
    for text in pairs:
        key, eq, value = text.partition("=")
        key = key.strip().lower()
        if not eq:
            raise UsageError(f"bad format of filter (expected name=value): {text}")
        if keys is not None and key not in keys:
            raise UsageError(f"invalid filter '{key}': use {', '.join(k + '=' for k in keys)}")
        out.setdefault(key, []).append(value)
    return out


def label_matches(labels: dict, want: str) -> bool:
    """`key` (present) or `key=value` (equal)."""
    k, eq, v = want.partition("=")
    return k in labels and (not eq or labels[k] == v)


def labels_pass(labels: dict, filters: Dict[str, List[str]]) -> bool:
    """Every `label` filter holds and no `label!` one does (Docker's rule)."""
    return all(label_matches(labels, w) for w in filters.get("label", ())) and \
        not any(label_matches(labels, w) for w in filters.get("label!", ()))
