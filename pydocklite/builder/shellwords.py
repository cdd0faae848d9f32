"""Variable expansion and word splitting for Dockerfile arguments (the reference's rules).

`$VAR`, `${VAR}`, `${VAR:-word}`, `${VAR-word}`, `${VAR:+word}`, `${VAR+word}`,
`${VAR:?msg}`, `${VAR?msg}`; single quotes keep everything literal, double quotes keep spaces
but expand variables; the escape character (default backslash) makes the next character
literal. Pure functions over a `{name: value}` mapping.
"""
from __future__ import annotations

from typing import List, Mapping, Optional, Tuple

from pydocklite.builder.errors import BuildError

_NAME_START = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_"
_NAME_CHARS = _NAME_START + "0123456789"


class ExpansionError(BuildError):
    pass


def expand(text: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """One word: quotes removed, variables expanded, no splitting."""
    words = _lex(text, env, escape, split=False)
    return words[0] if words else ""


def split(text: str, env: Optional[Mapping[str, str]] = None, escape: str = "\\") -> List[str]:
    """Words separated by unquoted whitespace, each expanded and unquoted."""
    return _lex(text, env if env is not None else {}, escape, split=True,
                expand_vars=env is not None)


def split_raw(text: str, escape: str = "\\") -> List[str]:
    """Words separated by unquoted whitespace, quotes and escapes kept (expanded later)."""
    out: List[str] = []
    cur, i, quote, n = [], 0, "", len(text)
    while i < n:
        c = text[i]
        if quote:
            cur.append(c)
            if c == escape and quote == '"' and i + 1 < n:
                cur.append(text[i + 1])
                i += 1
            elif c == quote:
                quote = ""
        elif c == escape and i + 1 < n:
            cur.append(c + text[i + 1])
            i += 1
        elif c in "'\"":
            quote = c
            cur.append(c)
        elif c.isspace():
            if cur:
                out.append("".join(cur))
                cur = []
        else:
            cur.append(c)
        i += 1
    if quote:
        raise ExpansionError(f"unterminated quote in {text!r}")
    if cur:
        out.append("".join(cur))
    return out


def _lex(text: str, env: Mapping[str, str], escape: str, split: bool,
         expand_vars: bool = True) -> List[str]:
    words: List[str] = []
    cur: List[str] = []
    have = False       # a word was started (even if empty, e.g. "")
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == escape and i + 1 < n:
            cur.append(text[i + 1])
            have = True
            i += 2
            continue
        if c == "'":
            end = text.find("'", i + 1)
            if end < 0:
                raise ExpansionError(f"unterminated single quote in {text!r}")
            cur.append(text[i + 1:end])
            have = True
            i = end + 1
            continue
        if c == '"':
            i += 1
            have = True
            while True:
                if i >= n:
                    raise ExpansionError(f"unterminated double quote in {text!r}")
                c = text[i]
                if c == '"':
                    i += 1
                    break
                if c == escape and i + 1 < n and text[i + 1] in ('"', "$", escape):
                    cur.append(text[i + 1])
                    i += 2
                elif c == "$" and expand_vars:
                    value, i = _dollar(text, i, env, escape)
                    cur.append(value)
                else:
                    cur.append(c)
                    i += 1
            continue
        if c == "$" and expand_vars:
            value, i = _dollar(text, i, env, escape)
            cur.append(value)
            have = have or bool(value)
            continue
        if split and c.isspace():
            if have or cur:
                words.append("".join(cur))
            cur, have = [], False
            i += 1
            continue
        cur.append(c)
        have = True
        i += 1
    if have or cur or not split:
        words.append("".join(cur))
    return words


def _dollar(text: str, i: int, env: Mapping[str, str], escape: str) -> Tuple[str, int]:
    """Expand the `$...` starting at text[i]; returns (value, index after it)."""
    n = len(text)
    if i + 1 >= n:
        return "$", i + 1
    c = text[i + 1]
    if c == "{":
        end = _closing_brace(text, i + 2)
        if end < 0:
            raise ExpansionError(f"missing '}}' in {text!r}")
        return _braced(text[i + 2:end], env, escape, text), end + 1
    if c in _NAME_START:
        j = i + 1
        while j < n and text[j] in _NAME_CHARS:
            j += 1
        return env.get(text[i + 1:j], ""), j
    return "$", i + 1


def _closing_brace(text: str, start: int) -> int:
    depth, i = 1, start
    while i < len(text):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def _braced(body: str, env: Mapping[str, str], escape: str, whole: str) -> str:
    j = 0
    while j < len(body) and body[j] in _NAME_CHARS:
        j += 1
    name, rest = body[:j], body[j:]
    if not name or name[0] not in _NAME_START:
        raise ExpansionError(f"bad substitution {'${' + body + '}'!r} in {whole!r}")
    if not rest:
        return env.get(name, "")
    colon = rest.startswith(":")
    op = rest[1:2] if colon else rest[:1]
    word = rest[2:] if colon else rest[1:]
    if op not in ("-", "+", "?"):
        raise ExpansionError(f"unsupported modifier {rest!r} in {'${' + body + '}'!r}: use "
                             ":-, -, :+, +, :? or ?")
    is_set = name in env
    is_good = is_set and (not colon or env[name] != "")
    if op == "-":
        return env[name] if is_good else expand(word, env, escape)
    if op == "+":
        return expand(word, env, escape) if is_good else ""
    if not is_good:
        raise ExpansionError(f"{name}: {expand(word, env, escape) or 'is not set'}")
    return env[name]
