"""Text that came from elsewhere (a registry, an image's config, an archive, a container, an
API request), made safe to print on a terminal: control characters are shown escaped
(`\\x1b`, `\\r`, `\\x9b`...) so they can't move the cursor, retitle the window, rewrite earlier
lines or reach the terminal's other escape sequences.

Newlines and tabs are kept by `escape` (our own messages and tables use them); `escape_line`
escapes them too, for a value printed inside one line.
"""
from __future__ import annotations

# C0 controls but \t and \n, DEL, the C1 controls (0x9b is a one-byte CSI on many terminals),
# and the Unicode bidi overrides/isolates that reorder what a line appears to say
_UNSAFE = set(range(0x00, 0x20)) - {0x09, 0x0a} | {0x7f} | set(range(0x80, 0xa0)) | \
    {0x200e, 0x200f, 0x202a, 0x202b, 0x202c, 0x202d, 0x202e, 0x2066, 0x2067, 0x2068, 0x2069}
_TABLE = {c: (f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}") for c in _UNSAFE}
_LINE_TABLE = {**_TABLE, 0x09: "\\t", 0x0a: "\\n"}


def escape(text: str) -> str:
    """`text` with terminal control characters escaped (tabs and newlines kept)."""
    if text.isprintable():          # the common case, one C call
        return text
    return str(text).translate(_TABLE)


def escape_line(text: str) -> str:
    """`text` as one line: newlines and tabs escaped too."""
    if text.isprintable():
        return text
    return str(text).translate(_LINE_TABLE)
