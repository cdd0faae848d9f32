"""JSON in and out without importing `json` on the container start path.

`import json` costs ~6 ms because json.decoder/encoder import and compile `re`; every
`pydocklite runtime run` pays for it before doing any work. CPython's C accelerator `_json`
(what `json` itself uses) parses and escapes strings without `re`: `loads` drives its scanner
directly, `dumps` is a small encoder for the plain data we write (dict, list, tuple, str, int,
float, bool, None). Without `_json` (another Python implementation), or on any parse error
(for its precise message), the standard module is used.
"""
from __future__ import annotations

try:
    import _json
except ImportError:  # pragma: no cover - not CPython
    _json = None

_WS = " \t\n\r"


class _Context:
    """The attributes _json.make_scanner reads from a JSONDecoder."""
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo = None

    @staticmethod
    def parse_constant(name: str) -> float:
        return {"NaN": float("nan"), "Infinity": float("inf"),
                "-Infinity": float("-inf")}[name]


def loads(data):
    """Parse a JSON document (str or bytes, UTF-8)."""
    if isinstance(data, (bytes, bytearray)):
        data = data.decode("utf-8")
    if data[:1] == "\ufeff":          # a byte order mark some editors write
        data = data[1:]
    if _json is not None:
        start = 0
        n = len(data)
        while start < n and data[start] in _WS:
            start += 1
        try:
            obj, end = _json.make_scanner(_Context())(data, start)
        except (StopIteration, ValueError, RecursionError):
            pass
        else:
            if not data[end:].strip(_WS):
                return obj
    import json
    return json.loads(data)          # raises json.JSONDecodeError with line/column


def _enc(obj, out: list) -> None:
    if isinstance(obj, str):
        out.append(_json.encode_basestring_ascii(obj))
    elif obj is None:
        out.append("null")
    elif obj is True:
        out.append("true")
    elif obj is False:
        out.append("false")
    elif isinstance(obj, int):
        out.append(int.__repr__(obj))
    elif isinstance(obj, float):
        if obj != obj or obj in (float("inf"), float("-inf")):
            raise ValueError(f"JSON can't hold the float {obj!r}")
        out.append(float.__repr__(obj))
    elif isinstance(obj, dict):
        out.append("{")
        first = True
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(f"JSON object keys must be strings, got {type(k).__name__}")
            if not first:
                out.append(", ")
            first = False
            out.append(_json.encode_basestring_ascii(k))
            out.append(": ")
            _enc(v, out)
        out.append("}")
    elif isinstance(obj, (list, tuple)):
        out.append("[")
        for i, v in enumerate(obj):
            if i:
                out.append(", ")
            _enc(v, out)
        out.append("]")
    else:
        raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def dumps(obj) -> str:
    """Compact-ish JSON text (same output as json.dumps with default separators)."""
    if _json is None:  # pragma: no cover
        import json
        return json.dumps(obj)
    out = []
    _enc(obj, out)
    return "".join(out)
