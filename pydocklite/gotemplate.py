"""A subset of Go's text/template, as Docker's `--format` uses it.

Supported: text and `{{ }}` actions with `{{-`/`-}}` trim markers and `{{/* comments */}}`;
fields `.A.B` on dicts, `GoMap`s and objects (attributes; zero-arg callables are called);
variables `$`, `$x := pipeline`, `$x = pipeline`; pipelines `a | b`; parenthesised
sub-pipelines; `if`/`else if`/`else`/`with`/`range` (with `$i, $v :=`) ... `end`;
functions json, index, len, printf, print, println, lower, upper, title, join, split,
pad, truncate, and, or, not, eq, ne, lt, le, gt, ge.

Data: plain dicts are treated like Docker's raw-JSON fallback (a missing key is an error,
"map has no entry for key"); a `GoMap` behaves like a Go map (missing key -> "<no value>");
objects like structs ("can't evaluate field X in type T").

Docker's table directive: `prepare_format`, `parse_table_format`, `format_rows`, and
`tabwrite` (Go's text/tabwriter as Docker configures it: minwidth 10, padding 3).
"""
from __future__ import annotations

import re
from typing import Any, Callable, Dict, List, Optional, Tuple

from pydocklite import gotemplate_funcs as _f

TemplateError = _f.TemplateError
GoMap = _f.GoMap
go_str = _f.go_str
go_json = _f.go_json
truth = _f.truth

__all__ = ["TemplateError", "GoMap", "Template", "render", "go_str", "go_json",
           "prepare_format", "parse_table_format", "format_rows", "tabwrite",
           "CONTAINER_HEADERS", "IMAGE_HEADERS"]

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<char>'(?:[^'\\]|\\.)+')
  | (?P<declare>:=)
  | (?P<assign>=)
  | (?P<pipe>\|)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<comma>,)
  | (?P<var>\$[A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)
  | (?P<field>(?:\.[A-Za-z0-9_]+)+|\.)
  | (?P<number>[-+]?(?:0[xX][0-9a-fA-F]+|\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+))
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
""", re.VERBOSE)

_KEYWORDS = ("if", "else", "end", "range", "with", "define", "template", "block", "break", "continue")


class _Node:
    __slots__ = ("kind", "pos", "a", "b", "c", "d")

    def __init__(self, kind, pos, a=None, b=None, c=None, d=None):
        self.kind, self.pos, self.a, self.b, self.c, self.d = kind, pos, a, b, c, d


def _unquote(tok: str, text: str, pos: int) -> str:
    if tok[0] == "`":
        return tok[1:-1]
    try:
        # Go escapes are a superset of what we meet; json covers \" \\ \n \t \uXXXX
        import json
        return json.loads(tok.replace("\\'", "'").replace("\\x", "\\u00"))
    except ValueError:
        raise _parse_error(text, pos, f"bad string {tok}") from None


def _action_end(text: str, i: int) -> int:
    """Index of the "}}" closing the action whose body starts at i (quotes skipped)."""
    n = len(text)
    while i < n:
        c = text[i]
        if c in "\"'`":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if c != "`" and text[j] == "\\" else 1
            i = j + 1
            continue
        if text.startswith("}}", i):
            return i
        i += 1
    return -1


def _line_of(text: str, pos: int) -> Tuple[int, int]:
    before = text[:pos]
    nl = before.rfind("\n")
    return before.count("\n") + 1, (pos if nl < 0 else pos - nl - 1)


def _parse_error(text: str, pos: int, msg: str) -> TemplateError:
    return TemplateError(f"template: :{_line_of(text, pos)[0]}: {msg}")


class _Parser:
    """Turns template text into a tree of _Node (kinds: text, action, if, range, with, list)."""

    def __init__(self, text: str, funcs: Dict[str, Callable]):
        self.text, self.funcs = text, funcs
        self.items = self._split(text)
        self.i = 0

    def _split(self, text: str) -> List[Tuple[str, int, str]]:
        items: List[Tuple[str, int, str]] = []
        pos = 0
        while True:
            start = text.find("{{", pos)
            if start < 0:
                items.append(("text", pos, text[pos:]))
                break
            body_start = start + 2
            trim_left = text.startswith("{{- ", start) or text[start:start + 4] in ("{{-\t", "{{-\n", "{{-\r")
            if trim_left:
                body_start += 1
            end = _action_end(text, body_start)
            if end < 0:
                raise _parse_error(text, start, "unclosed action")
            body_end = end
            trim_right = end - 1 >= body_start and text[end - 1] == "-" and text[end - 2:end - 1] in (" ", "\t", "\n", "\r")
            if trim_right:
                body_end -= 1
            chunk = text[pos:start]
            if trim_left:
                chunk = chunk.rstrip(" \t\r\n")
            items.append(("text", pos, chunk))
            body = text[body_start:body_end]
            if body.strip().startswith("/*"):
                if not body.strip().endswith("*/"):
                    raise _parse_error(text, start, "unclosed comment")
            else:
                items.append(("action", body_start, body))
            pos = end + 2
            if trim_right:
                while pos < len(text) and text[pos] in " \t\r\n":
                    pos += 1
        return items

    def parse(self) -> _Node:
        node, stop = self._list(())
        if stop is not None:
            raise _parse_error(self.text, stop[1], f"unexpected {{{{{stop[0]}}}}}")
        return node

    def _list(self, stops: tuple):
        nodes: List[_Node] = []
        while self.i < len(self.items):
            kind, pos, body = self.items[self.i]
            self.i += 1
            if kind == "text":
                if body:
                    nodes.append(_Node("text", pos, body))
                continue
            toks = self._tokens(body, pos)
            if not toks:
                raise _parse_error(self.text, pos, "missing value for command")
            head = toks[0]
            word = head[1] if head[0] == "ident" else None
            if word in ("end", "else"):
                if word not in stops:
                    raise _parse_error(self.text, pos, f"unexpected {{{{{word}}}}}")
                return _Node("list", pos, nodes), (word, pos, toks[1:])
            if word in ("if", "with", "range"):
                nodes.append(self._block(word, pos, toks[1:]))
                continue
            if word in _KEYWORDS:
                raise _parse_error(self.text, pos, f"{{{{{word}}}}} is not supported")
            nodes.append(_Node("action", pos, self._pipeline(toks, 0, allow_decl=True)[0]))
        return _Node("list", 0, nodes), None

    def _block(self, word: str, pos: int, toks: list) -> _Node:
        if not toks:
            raise _parse_error(self.text, pos, f"missing value for {word}")
        pipe, _ = self._pipeline(toks, 0, allow_decl=True, in_range=(word == "range"))
        body, stop = self._list(("end", "else"))
        if stop is None:
            raise _parse_error(self.text, pos, "unexpected EOF")
        other = None
        if stop[0] == "else":
            rest = stop[2]
            if rest and rest[0][0] == "ident" and rest[0][1] in ("if", "with") and word != "range":
                # `else if` / `else with`: a nested block sharing our {{end}}
                other = _Node("list", stop[1], [self._block(rest[0][1], stop[1], rest[1:])])
            else:
                other, stop2 = self._list(("end",))
                if stop2 is None:
                    raise _parse_error(self.text, pos, "unexpected EOF")
        return _Node(word, pos, pipe, body, other)

    def _tokens(self, body: str, base: int) -> list:
        toks = []
        p = 0
        while p < len(body):
            m = _TOKEN.match(body, p)
            if not m:
                raise _parse_error(self.text, base + p, f"unexpected {body[p]!r} in command")
            if m.lastgroup != "ws":
                toks.append((m.lastgroup, m.group(), base + p, p > 0 and body[p - 1] not in " \t\r\n"))
            p = m.end()
        return toks

    def _pipeline(self, toks: list, i: int, *, allow_decl=False, in_range=False, closing=False):
        decl: List[str] = []
        assign = False
        if allow_decl and len(toks) > i + 1 and toks[i][0] == "var" and "." not in toks[i][1]:
            if toks[i + 1][0] in ("declare", "assign"):
                decl, assign, i = [toks[i][1]], toks[i + 1][0] == "assign", i + 2
            elif in_range and toks[i + 1][0] == "comma" and len(toks) > i + 3 and toks[i + 3][0] == "declare":
                decl, i = [toks[i][1], toks[i + 2][1]], i + 4
        cmds: List[list] = []
        cmd: list = []
        while i < len(toks):
            kind, val, pos, _adj = toks[i]
            if kind == "rparen":
                if not closing:
                    raise _parse_error(self.text, pos, "unexpected right paren")
                break
            if kind == "pipe":
                if not cmd:
                    raise _parse_error(self.text, pos, "missing command before |")
                cmds.append(cmd)
                cmd = []
                i += 1
                continue
            operand, i = self._operand(toks, i)
            cmd.append(operand)
        if closing and i >= len(toks):
            raise _parse_error(self.text, toks[-1][2], "unclosed left paren")
        if not cmd:
            raise _parse_error(self.text, toks[i - 1][2] if toks else 0, "missing value for command")
        cmds.append(cmd)
        return _Node("pipe", toks[0][2] if toks else 0, decl, cmds, assign), i

    def _operand(self, toks: list, i: int):
        kind, val, pos, _ = toks[i]
        if kind == "lparen":
            node, i = self._pipeline(toks, i + 1, closing=True)
            i += 1
            if i < len(toks) and toks[i][0] == "field" and toks[i][3] and toks[i][1] != ".":
                node = _Node("chain", pos, node, toks[i][1].split(".")[1:], None, toks[i][1])
                i += 1
            return node, i
        if kind == "field":
            return _Node("field", pos, [] if val == "." else val.split(".")[1:], None, None, val), i + 1
        if kind == "var":
            name, *path = val.split(".")
            return _Node("var", pos, name, path, None, val), i + 1
        if kind in ("string", "raw"):
            return _Node("const", pos, _unquote(val, self.text, pos)), i + 1
        if kind == "char":
            return _Node("const", pos, ord(_unquote('"' + val[1:-1] + '"', self.text, pos))), i + 1
        if kind == "number":
            num = int(val, 0) if re.fullmatch(r"[-+]?(0[xX][0-9a-fA-F]+|\d+)", val) else float(val)
            return _Node("const", pos, num), i + 1
        if kind == "ident":
            if val in ("true", "false"):
                return _Node("const", pos, val == "true"), i + 1
            if val == "nil":
                return _Node("const", pos, None), i + 1
            if val not in self.funcs:
                raise _parse_error(self.text, pos, f'function "{val}" not defined')
            return _Node("func", pos, val), i + 1
        raise _parse_error(self.text, pos, f"unexpected {val!r} in operand")


class _Exec:
    def __init__(self, text: str, funcs: Dict[str, Callable], missingkey: str):
        self.text, self.funcs, self.missingkey = text, funcs, missingkey
        self.vars: List[Tuple[str, Any]] = []
        self.out: List[str] = []

    def fail(self, node: _Node, msg: str) -> TemplateError:
        line, col = _line_of(self.text, node.pos)
        what = node.d if node.kind in ("field", "var", "chain") else node.a if node.kind == "func" else ""
        at = f" at <{what}>" if what else ""
        return TemplateError(f'template: :{line}:{col}: executing ""{at}: {msg}')

    def walk(self, node: _Node, dot: Any) -> None:
        k = node.kind
        if k == "text":
            self.out.append(node.a)
        elif k == "list":
            for child in node.a:
                self.walk(child, dot)
        elif k == "action":
            val = self.pipe(node.a, dot)
            if not node.a.a:  # declarations print nothing
                self.out.append(go_str(val))
        elif k in ("if", "with"):
            mark = len(self.vars)
            val = self.pipe(node.a, dot)
            if truth(val):
                self.walk(node.b, val if k == "with" else dot)
            elif node.c is not None:
                self.walk(node.c, dot)
            del self.vars[mark:]
        elif k == "range":
            self.range(node, dot)

    def range(self, node: _Node, dot: Any) -> None:
        mark = len(self.vars)
        pipe = node.a
        val = self.pipe(_Node("pipe", pipe.pos, [], pipe.b), dot)
        if isinstance(val, dict):
            keys = list(val.keys())
            try:
                keys.sort()
            except TypeError:
                pass
            items = [(k, val[k]) for k in keys]
        elif isinstance(val, (list, tuple)):
            items = list(enumerate(val))
        elif isinstance(val, int) and not isinstance(val, bool):
            items = [(i, i) for i in range(val)]
        elif val is None:
            items = []
        else:
            raise self.fail(node, f"range can't iterate over {go_str(val)}")
        for key, item in items:
            inner = len(self.vars)
            if len(pipe.a) == 1:
                self.vars.append((pipe.a[0], item))
            elif len(pipe.a) == 2:
                self.vars.extend([(pipe.a[0], key), (pipe.a[1], item)])
            self.walk(node.b, item)
            del self.vars[inner:]
        if not items and node.c is not None:
            self.walk(node.c, dot)
        del self.vars[mark:]

    def pipe(self, pipe: _Node, dot: Any) -> Any:
        val: Any = _f.MISSING
        for cmd in pipe.b:
            val = self.command(cmd, dot, val)
        if pipe.a:
            if pipe.c:  # assignment to an existing variable
                for idx in range(len(self.vars) - 1, -1, -1):
                    if self.vars[idx][0] == pipe.a[0]:
                        self.vars[idx] = (pipe.a[0], val)
                        break
                else:
                    raise self.fail(pipe, f"undefined variable: {pipe.a[0]}")
            else:
                self.vars.append((pipe.a[0], val))
        return val

    def command(self, cmd: list, dot: Any, prev: Any) -> Any:
        head = cmd[0]
        if head.kind == "func":
            args = [self.arg(a, dot) for a in cmd[1:]]
            if prev is not _f.MISSING:
                args.append(prev)
            try:
                return self.funcs[head.a](*args)
            except TemplateError:
                raise
            except TypeError as exc:
                raise self.fail(head, f"wrong number of args for {head.a}: {exc}") from None
            except Exception as exc:  # function errors become template errors, as in Go
                raise self.fail(head, f"error calling {head.a}: {exc}") from None
        if len(cmd) > 1 or prev is not _f.MISSING:
            # a method with arguments, as `{{.Label "com.example.key"}}` on ps rows
            path = head.a if head.kind == "field" else head.b if head.kind in ("var", "chain") else None
            if path:
                if head.kind == "field":
                    base = dot
                elif head.kind == "var":
                    base = self.arg(_Node("var", head.pos, head.a, [], None, head.d), dot)
                else:
                    base = self.pipe(head.a, dot)
                recv = self.fields(head, base, path[:-1])
                attr = None if isinstance(recv, dict) else getattr(recv, path[-1], None)
                if callable(attr):
                    args = [self.arg(a, dot) for a in cmd[1:]]
                    if prev is not _f.MISSING:
                        args.append(prev)
                    try:
                        return attr(*args)
                    except TypeError as exc:
                        raise self.fail(head, f"wrong number of args for {path[-1]}: {exc}") from None
            raise self.fail(head, f"can't give argument to non-function {head.d or go_str(head.a)}")
        return self.arg(head, dot)

    def arg(self, node: _Node, dot: Any) -> Any:  # noqa: C901 - one branch per node kind
        k = node.kind
        if k == "const":
            return node.a
        if k == "field":
            return self.fields(node, dot, node.a)
        if k == "var":
            for name, val in reversed(self.vars):
                if name == node.a:
                    return self.fields(node, val, node.b)
            if node.a == "$":
                return self.fields(node, self.root, node.b)
            raise self.fail(node, f"undefined variable: {node.a}")
        if k == "pipe":
            return self.pipe(node, dot)
        if k == "chain":
            return self.fields(node, self.pipe(node.a, dot), node.b)
        if k == "func":
            return self.command([node], dot, _f.MISSING)
        raise self.fail(node, "bad operand")

    def fields(self, node: _Node, val: Any, path: list) -> Any:
        for name in path:
            val = self.field(node, val, name)
        return val

    def field(self, node: _Node, val: Any, name: str) -> Any:
        if isinstance(val, dict):
            if name in val:
                return val[name]
            if isinstance(val, GoMap) or self.missingkey != "error":
                return None
            raise self.fail(node, f'map has no entry for key "{name}"')
        if val is None:
            raise self.fail(node, f"nil pointer evaluating interface {{}}.{name}")
        if isinstance(val, (str, int, float, bool, list, tuple, bytes)):
            raise self.fail(node, f"can't evaluate field {name} in type {_f.go_type(val)}")
        try:
            attr = getattr(val, name)
        except AttributeError:
            raise self.fail(node, f"can't evaluate field {name} in type {type(val).__name__}") from None
        return attr() if callable(attr) else attr


class Template:
    """A parsed template; `execute(data)` renders it (parse once, render many rows)."""

    def __init__(self, text: str, *, funcs: Optional[Dict[str, Callable]] = None,
                 missingkey: str = "error", json_escape_html: bool = False):
        if missingkey not in ("error", "default"):
            raise ValueError("missingkey must be 'error' or 'default'")
        self.text, self.missingkey = text, missingkey
        self.funcs = _f.builtin_funcs(json_escape_html)
        if funcs:
            self.funcs.update(funcs)
        self.tree = _Parser(text, self.funcs).parse()

    def execute(self, data: Any) -> str:
        ex = _Exec(self.text, self.funcs, self.missingkey)
        ex.root = data
        ex.walk(self.tree, data)
        return "".join(ex.out)


def render(template: str, data: Any, **options: Any) -> str:
    """Render `template` against `data`; raises TemplateError on parse or execution errors."""
    return Template(template, **options).execute(data)


# --- Docker's table directive -------------------------------------------------------------

CONTAINER_HEADERS = {
    "ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "CreatedAt": "CREATED AT",
    "RunningFor": "CREATED", "Ports": "PORTS", "State": "STATE", "Status": "STATUS",
    "Size": "SIZE", "Names": "NAMES", "Labels": "LABELS", "Label": "LABEL", "Mounts": "MOUNTS",
    "LocalVolumes": "LOCAL VOLUMES", "Networks": "NETWORKS", "Platform": "PLATFORM",
}
IMAGE_HEADERS = {
    "ID": "IMAGE ID", "Repository": "REPOSITORY", "Tag": "TAG", "Digest": "DIGEST",
    "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE",
    "Containers": "CONTAINERS", "VirtualSize": "VIRTUAL SIZE", "SharedSize": "SHARED SIZE",
    "UniqueSize": "UNIQUE SIZE",
}


def prepare_format(fmt: str) -> str:
    """The row template Docker executes for `fmt`: `table` stripped, `json` -> {{json .}},
    surrounding spaces trimmed, literal backslash-t / backslash-n turned into tab / newline."""
    if fmt.startswith("table"):
        fmt = fmt[len("table"):]
    elif fmt == "json":
        fmt = "{{json .}}"
    fmt = fmt.strip(" ")
    return fmt.replace("\\t", "\t").replace("\\n", "\n")


class _Header(str):
    """A column name that also answers method-style fields (`{{.Label "key"}}`)."""

    def __call__(self, *args: Any) -> str:
        return str(self)


class _HeaderCtx:
    def __init__(self, headers: Dict[str, str]):
        self.headers = headers

    def __getattr__(self, name: str) -> _Header:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Header(self.headers.get(name, re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name).upper()))


def parse_table_format(fmt: str, headers: Optional[Dict[str, str]] = None) -> Tuple[bool, str]:
    """(is_table, header_line): the header renders each field as its Docker column name."""
    if not fmt.startswith("table"):
        return False, ""
    ident = {name: (lambda v, *_: v) for name in ("json", "split", "join", "title", "lower",
                                                     "upper", "truncate")}
    tmpl = Template(prepare_format(fmt), funcs=ident, missingkey="default")
    return True, tmpl.execute(_HeaderCtx(CONTAINER_HEADERS if headers is None else headers))


def format_rows(fmt: str, rows: list, headers: Optional[Dict[str, str]] = None) -> str:
    """Docker's formatter: each row rendered + "\\n"; tables get a header and tabwriter columns."""
    tmpl = Template(prepare_format(fmt))
    body = "".join(tmpl.execute(row) + "\n" for row in rows)
    is_table, header = parse_table_format(fmt, headers)
    if not is_table:
        return body
    return tabwrite(header + "\n" + body)


def tabwrite(text: str, minwidth: int = 10, tabwidth: int = 1, padding: int = 3,
             padchar: str = " ") -> str:
    """Go's text/tabwriter (flags 0): tab-terminated cells aligned in column blocks."""
    lines = [ln.split("\t") for ln in text.split("\n")]
    widths: List[int] = []
    out: List[str] = []

    def write(l0: int, l1: int) -> None:
        for li in range(l0, l1):
            cells = lines[li]
            for j, cell in enumerate(cells):
                if j < len(widths) and j < len(cells) - 1:
                    out.append(cell + padchar * (widths[j] - len(cell)))
                else:
                    out.append(cell)
            if li < len(lines) - 1:
                out.append("\n")

    def fmt(l0: int, l1: int) -> None:
        column = len(widths)
        this = l0
        while this < l1:
            if column >= len(lines[this]) - 1:
                this += 1
                continue
            write(l0, this)
            l0 = this
            width = minwidth
            while this < l1 and column < len(lines[this]) - 1:
                width = max(width, len(lines[this][column]) + padding)
                this += 1
            widths.append(width)
            fmt(l0, this)
            widths.pop()
            l0 = this
        write(l0, l1)

    fmt(0, len(lines))
    return "".join(out)
