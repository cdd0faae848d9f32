"""Text that came from elsewhere (a registry, an image's config, an archive, a container, an
API request), made safe to print on a terminal: control characters are shown escaped
(`\\x1b`, `\\r`, `\\x9b`...) so they can't move the cursor, retitle the window, rewrite earlier
lines or reach the terminal's other escape sequences.

Newlines and tabs are kept by `escape` (our own messages and tables use them); `escape_line`
escapes them too, for a value printed inside one line.
"""
from __future__ import annotations


def _shown(c: str) -> str:
    n = ord(c)
    if n < 0x100:
        return f"\\x{n:02x}"
    return f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"


def escape(text: str) -> str:
    """`text` with terminal control characters escaped (tabs and newlines kept): C0 and C1
    controls (0x9b is a one-byte CSI on many terminals), DEL, and every other character
    Python calls unprintable (bidi overrides that reorder a line, line separators, format
    and unassigned characters, lone surrogates)."""
    text = str(text)
    if text.isprintable():          # the common case, one C call
        return text
    return "".join(c if c.isprintable() or c in "\t\n" else _shown(c) for c in text)


def escape_line(text: str) -> str:
    """`text` as one line: newlines and tabs escaped too."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else "\\t" if c == "\t" else "\\n" if c == "\n"
                   else _shown(c) for c in text)
