"""Values and functions of pydocklite's Go-template subset: how Go prints a value (`%v`),
encodes JSON (as Docker's `json` template function), formats `printf`, and the function
table (Docker's basicFunctions plus Go's builtins)."""
from __future__ import annotations

import json
import math
import re
from typing import Any, Callable, Dict, List


class TemplateError(Exception):
    """A template that doesn't parse or fails to execute; the message is Go's."""


class GoMap(dict):
    """A dict with Go map semantics: `.missing` gives "<no value>" instead of an error,
    and `json` sorts its keys."""


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING = _Missing()


def go_type(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, str):
        return "string"
    if isinstance(v, (list, tuple)):
        return "[]interface {}"
    if isinstance(v, dict):
        return "map[string]interface {}"
    return type(v).__name__


def _go_float(f: float) -> str:
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    if f == int(f) and abs(f) < 1e21:
        return str(int(f))
    r = repr(f)
    if "e" in r:
        mant, exp = r.split("e")
        sign = "-" if exp.startswith("-") else "+"
        exp = exp.lstrip("+-").rjust(2, "0")
        return f"{mant}e{sign}{exp}"
    return r


def go_str(v: Any, top: bool = True) -> str:
    """Go's fmt %v of a template value."""
    if v is None or v is MISSING:
        return "<no value>" if top else "<nil>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _go_float(v)
    if isinstance(v, str):
        return v
    if isinstance(v, bytes):
        return "[" + " ".join(str(b) for b in v) + "]"
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(go_str(x, False) for x in v) + "]"
    if isinstance(v, dict):
        keys = sorted(v, key=str)
        return "map[" + " ".join(f"{go_str(k, False)}:{go_str(v[k], False)}" for k in keys) + "]"
    fields = _fields_of(v)
    if fields is not None:
        return "{" + " ".join(go_str(getattr(v, f), False) for f in fields) + "}"
    return str(v)


def truth(v: Any) -> bool:
    """Go template truth: false, 0, nil, empty string/slice/map are false."""
    if v is None or v is MISSING:
        return False
    if isinstance(v, (bool, int, float, str, bytes, list, tuple, dict)):
        return bool(v)
    return True


def _json_str(s: str, escape_html: bool) -> str:
    out = json.dumps(s, ensure_ascii=False)
    out = out.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    if escape_html:
        out = out.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return out


def go_json(v: Any, escape_html: bool = False) -> str:
    """Compact JSON as Go's encoding/json writes it. Docker's `json` function disables HTML
    escaping (SetEscapeHTML(false)); escape_html=True gives json.Marshal's \\u003c etc.
    Plain dicts keep their order (struct fields); GoMap keys are sorted (Go maps)."""
    if v is None or v is MISSING:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            raise TemplateError(f"json: unsupported value: {_go_float(v)}")
        if v == int(v) and abs(v) < 1e21:
            return str(int(v))
        return _go_float(v)
    if isinstance(v, str):
        return _json_str(v, escape_html)
    if isinstance(v, bytes):
        import base64
        return '"' + base64.b64encode(v).decode() + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(go_json(x, escape_html) for x in v) + "]"
    if isinstance(v, dict):
        keys = sorted(v, key=str) if isinstance(v, GoMap) else list(v)
        return "{" + ",".join(_json_str(str(k), escape_html) + ":" + go_json(v[k], escape_html)
                              for k in keys) + "}"
    fields = _fields_of(v)
    if fields is not None:
        return go_json({f: getattr(v, f) for f in fields}, escape_html)
    if hasattr(v, "__dict__"):
        return go_json({k: x for k, x in vars(v).items() if not k.startswith("_")}, escape_html)
    return _json_str(str(v), escape_html)


_VERB = re.compile(r"%([-+# 0]*)(\d+|\*)?(?:\.(\d+|\*))?([a-zA-Z%])")


def _go_quote(s: str) -> str:
    out = json.dumps(s, ensure_ascii=False)
    return re.sub(r"\\u00([0-9a-f]{2})", lambda m: "\\x" + m.group(1), out)


def go_sprintf(fmt: str, *args: Any) -> str:
    """fmt.Sprintf for the verbs templates use: %v %s %d %q %x %X %t %f %e %g %c %o %b %%."""
    out: List[str] = []
    it = iter(args)
    used = 0
    pos = 0
    for m in _VERB.finditer(fmt):
        out.append(fmt[pos:m.start()])
        pos = m.end()
        flags, width, prec, verb = m.groups()
        if verb == "%":
            out.append("%")
            continue
        if width == "*":
            width, used = str(next(it, 0)), used + 1
        if prec == "*":
            prec, used = str(next(it, 0)), used + 1
        arg = next(it, MISSING)
        if arg is MISSING:
            out.append(f"%!{verb}(MISSING)")
            continue
        used += 1
        out.append(_format_one(flags, width, prec, verb, arg))
    out.append(fmt[pos:])
    if used < len(args):
        extra = ", ".join(f"{go_type(a)}={go_str(a, False)}" for a in args[used:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


def _format_one(flags: str, width: Any, prec: Any, verb: str, arg: Any) -> str:
    try:
        if verb in "vs":
            text = go_str(arg, False) if verb == "v" or not isinstance(arg, str) else arg
            if prec is not None:
                text = text[:int(prec)]
        elif verb == "q":
            text = _go_quote(go_str(arg, False))
        elif verb == "t":
            text = go_str(arg, False) if isinstance(arg, bool) else f"%!t({go_type(arg)}={go_str(arg, False)})"
        elif verb in "dxXobc" and isinstance(arg, int) and not isinstance(arg, bool):
            spec = {"d": "d", "x": "x", "X": "X", "o": "o", "b": "b"}.get(verb)
            text = chr(arg) if verb == "c" else format(arg, ("+" if "+" in flags else "") + spec)
        elif verb in "xX" and isinstance(arg, (str, bytes)):
            data = arg.encode() if isinstance(arg, str) else arg
            text = data.hex() if verb == "x" else data.hex().upper()
        elif verb in "feEgG" and isinstance(arg, (int, float)) and not isinstance(arg, bool):
            p = "" if prec is None and verb in "gG" else "." + (prec if prec is not None else "6")
            text = format(float(arg), ("+" if "+" in flags else "") + p + verb)
        else:
            return f"%!{verb}({go_type(arg)}={go_str(arg, False)})"
    except (ValueError, OverflowError):
        return f"%!{verb}({go_type(arg)}={go_str(arg, False)})"
    if width:
        w = int(width)
        if "-" in flags:
            text = text.ljust(w)
        elif "0" in flags and verb not in "sqv":
            sign = text[0] if text[:1] in "+-" else ""
            text = sign + text[len(sign):].rjust(w - len(sign), "0")
        else:
            text = text.rjust(w)
    return text


def _sprint(*args: Any) -> str:
    out = ""
    for i, a in enumerate(args):
        if i > 0 and not isinstance(a, str) and not isinstance(args[i - 1], str):
            out += " "
        out += go_str(a, False)
    return out


def _index(item: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(item, dict):
            if key in item:
                item = item[key]
            else:  # Go's zero value: "" for a string map (labels), else nil
                item = "" if all(isinstance(x, str) for x in item.values()) else None
        elif isinstance(item, (list, tuple, str)):
            if not isinstance(key, int) or isinstance(key, bool):
                raise TemplateError(f"cannot index slice/array with type {go_type(key)}")
            if not 0 <= key < len(item):
                raise TemplateError(f"index out of range: {key}")
            item = item[key]
        elif item is None:
            raise TemplateError("index of untyped nil")
        else:
            raise TemplateError(f"can't index item of type {go_type(item)}")
    return item


def _len(v: Any) -> int:
    if isinstance(v, (str, bytes, list, tuple, dict)):
        return len(v.encode() if isinstance(v, str) else v)
    raise TemplateError(f"len of type {go_type(v)}")


def _eq(a: Any, *others: Any) -> bool:
    if not others:
        raise TemplateError("missing argument for comparison")
    return any(_cmp_ok(a, b) and a == b for b in others)


def _cmp_ok(a: Any, b: Any) -> bool:
    num = (int, float)
    if isinstance(a, bool) or isinstance(b, bool):
        if type(a) is not type(b):
            raise TemplateError("incompatible types for comparison")
        return True
    if isinstance(a, num) and isinstance(b, num):
        return True
    if a is None or b is None or type(a) is type(b):
        return True
    raise TemplateError("incompatible types for comparison")


def _order(op: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def compare(a: Any, b: Any) -> bool:
        _cmp_ok(a, b)
        if not isinstance(a, (int, float, str)) or isinstance(a, bool):
            raise TemplateError(f"invalid type for comparison: {go_type(a)}")
        return op(a, b)
    return compare


def _and(*args: Any) -> Any:
    for a in args:
        if not truth(a):
            return a
    return args[-1]


def _or(*args: Any) -> Any:
    for a in args:
        if truth(a):
            return a
    return args[-1]


def _title(s: str) -> str:
    return re.sub(r"(^|[^\w'])([a-z])", lambda m: m.group(1) + m.group(2).upper(), s)


def _join(items: Any, sep: str) -> str:
    if not isinstance(items, (list, tuple)):
        raise TemplateError(f"wrong type for value; expected []string; got {go_type(items)}")
    return sep.join(go_str(x, False) for x in items)


def _pad(s: str, prefix: int, suffix: int) -> str:
    return s if s == "" else " " * prefix + s + " " * suffix


def _truncate(s: str, n: int) -> str:
    return s if len(s) < n else s[:n]


def _strarg(f: Callable[[str], str], name: str) -> Callable[[Any], str]:
    def call(s: Any) -> str:
        if not isinstance(s, str):
            raise TemplateError(f"wrong type for value; expected string; got {go_type(s)}")
        return f(s)
    call.__name__ = name
    return call


def builtin_funcs(json_escape_html: bool = False) -> Dict[str, Callable]:
    return {
        "json": lambda v: go_json(v, json_escape_html),
        "index": _index,
        "len": _len,
        "printf": go_sprintf,
        "print": _sprint,
        "println": lambda *a: " ".join(go_str(x, False) for x in a) + "\n",
        "lower": _strarg(str.lower, "lower"),
        "upper": _strarg(str.upper, "upper"),
        "title": _strarg(_title, "title"),
        "join": _join,
        "split": lambda s, sep: s.split(sep) if sep else list(s),
        "pad": _pad,
        "truncate": _truncate,
        "and": _and,
        "or": _or,
        "not": lambda v: not truth(v),
        "eq": _eq,
        "ne": lambda a, b: not _eq(a, b),
        "lt": _order(lambda a, b: a < b),
        "le": _order(lambda a, b: a <= b),
        "gt": _order(lambda a, b: a > b),
        "ge": _order(lambda a, b: a >= b),
    }


def _fields_of(v):
    """The field names of a record or dataclass instance, else None."""
    if isinstance(v, type):
        return None
    fields = getattr(type(v), "_fields", None)
    if isinstance(fields, tuple) and hasattr(v, "_asdict"):
        return fields
    dc = getattr(type(v), "__dataclass_fields__", None)
    return tuple(dc) if dc is not None else None
