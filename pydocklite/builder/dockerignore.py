""".dockerignore: Docker's pattern rules, pure.

- one pattern a line; `#` lines are comments; blank lines ignored; surrounding space trimmed;
- patterns are cleaned like Go's filepath.Clean and a leading `/` is dropped (all relative to
  the context root);
- `*` matches any run of non-`/` characters, `?` one, `[a-z]` a class, `**` any number of
  directories (including none), `\\` escapes;
- `!pattern` re-includes what an earlier pattern excluded; the last matching line wins;
- a pattern that matches a directory excludes everything below it (unless re-included).
"""
from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import List, Pattern, Sequence, Tuple


@dataclass(frozen=True)
class IgnoreRule:
    pattern: str
    negate: bool
    regex: Pattern


def parse_ignore(text: str) -> Tuple[IgnoreRule, ...]:
    rules: List[IgnoreRule] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        if negate:
            line = line[1:].strip()
        if not line:
            continue
        cleaned = posixpath.normpath(line)
        if cleaned.startswith("/"):
            cleaned = cleaned.lstrip("/") or "."
        if cleaned == ".":
            cleaned = "."
        rules.append(IgnoreRule(cleaned, negate, re.compile(pattern_regex(cleaned))))
    return tuple(rules)


def pattern_regex(pattern: str) -> str:
    """A Docker ignore pattern as an anchored regular expression over '/'-joined paths."""
    out = ["^"]
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            if pattern.startswith("**", i):
                i += 2
                if i < n and pattern[i] == "/":
                    out.append("(.*/)?")       # '**/' : zero or more directories
                    i += 1
                else:
                    out.append(".*")
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1:end]
                if body.startswith("^") or body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = end
        elif c == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(c))
        i += 1
    out.append("$")
    return "".join(out)


class IgnoreMatcher:
    """Decides whether a context path (relative, '/'-separated) is excluded."""

    def __init__(self, rules: Sequence[IgnoreRule] = ()) -> None:
        self.rules = tuple(rules)
        self.has_negations = any(r.negate for r in self.rules)

    def excluded(self, path: str) -> bool:
        path = path.strip("/")
        if not path or not self.rules:
            return False
        parents = _prefixes(path)
        result = False
        for rule in self.rules:
            if any(rule.regex.match(p) for p in parents):
                result = not rule.negate
        return result

    def may_reinclude_under(self, dirpath: str) -> bool:
        """Could a negation re-include something below an excluded directory?"""
        if not self.has_negations:
            return False
        d = dirpath.strip("/") + "/"
        for rule in self.rules:
            if rule.negate:
                lit = re.split(r"[*?\[\\]", rule.pattern, 1)[0]
                if lit.startswith(d) or d.startswith(lit) or lit == "":
                    return True
        return False


def _prefixes(path: str) -> List[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
