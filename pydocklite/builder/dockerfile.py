"""Dockerfile parser: text -> `Dockerfile` (meta ARGs + stages of `Instruction`s). Pure.

Follows the Dockerfile reference: parser directives at the very top (`# syntax=`, `# escape=`),
comments, line continuations with the escape character (comment and blank lines inside a
continued instruction are dropped), instructions case-insensitive, flags (`--from=x`), JSON
(exec) and shell forms. Variables are *not* expanded here: their values depend on the build
(ARG/ENV in effect), so the builder expands each argument when it runs the step.
"""
from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from pydocklite.builder.errors import DockerfileError
from pydocklite.builder.shellwords import ExpansionError, split_raw

INSTRUCTIONS = ("FROM", "RUN", "CMD", "ENTRYPOINT", "COPY", "ADD", "ENV", "ARG", "WORKDIR",
                "USER", "EXPOSE", "LABEL", "VOLUME", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
                "ONBUILD", "MAINTAINER")
JSON_FORMS = ("RUN", "CMD", "ENTRYPOINT", "SHELL", "COPY", "ADD", "VOLUME")
FLAGS = {
    "FROM": ("platform",),
    "RUN": ("mount", "network", "security"),
    "COPY": ("from", "chown", "chmod", "link", "parents", "exclude"),
    "ADD": ("chown", "chmod", "checksum", "keep-git-dir", "link", "exclude"),
    "HEALTHCHECK": ("interval", "timeout", "start-period", "start-interval", "retries"),
}
_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9_-]*)\s*=\s*(.*?)\s*$")


@dataclass(frozen=True)
class Instruction:
    keyword: str                       # upper case: "RUN"
    args: str                          # the text after the keyword (and flags), unexpanded
    line: int                          # first line number (1-based)
    original: str                      # the whole instruction as written (joined lines)
    flags: Tuple[Tuple[str, str], ...] = ()
    json_args: Optional[Tuple[str, ...]] = None   # exec form, when the args are a JSON array
    heredocs: Tuple[Tuple[str, str, bool], ...] = ()   # (name, body, expand variables)

    def flag(self, name: str, default: Optional[str] = None) -> Optional[str]:
        for k, v in self.flags:
            if k == name:
                return v
        return default


@dataclass(frozen=True)
class Stage:
    index: int
    base: str                          # unexpanded image reference (or "scratch", a stage name)
    name: str                          # the `AS name`, lower case; "" if none
    platform: str
    from_line: Instruction
    instructions: Tuple[Instruction, ...] = ()


@dataclass(frozen=True)
class Dockerfile:
    filename: str
    escape: str
    directives: Tuple[Tuple[str, str], ...]
    meta_args: Tuple[Instruction, ...]          # ARGs before the first FROM
    stages: Tuple[Stage, ...] = field(default_factory=tuple)

    def stage_index(self, name: str) -> Optional[int]:
        for s in self.stages:
            if s.name and s.name == name.lower():
                return s.index
        if name.isdigit() and int(name) < len(self.stages):
            return int(name)
        return None


def parse(text: str, filename: str = "Dockerfile") -> Dockerfile:
    lines = text.splitlines()
    directives, escape, start = _directives(lines, filename)
    instructions = []
    try:
        for lineno, raw, docs in _logical_lines(lines, start, escape):
            ins = parse_instruction(raw, lineno, escape, filename)
            instructions.append(dataclasses.replace(ins, heredocs=docs) if docs else ins)
    except DockerfileError as e:
        if e.filename:
            raise
        raise DockerfileError(str(e).split(": ", 1)[1].split(" (in: ")[0], filename, e.line,
                              e.instruction) from None
    meta: List[Instruction] = []
    stages: List[Stage] = []
    current: Optional[Tuple[Instruction, List[Instruction]]] = None
    for ins in instructions:
        if ins.keyword == "FROM":
            if current is not None:
                stages.append(_stage(len(stages), current, filename))
            current = (ins, [])
        elif current is None:
            if ins.keyword != "ARG":
                raise DockerfileError(f"{ins.keyword} before the first FROM: only ARG may come "
                                      "before FROM", filename, ins.line, ins.original)
            meta.append(ins)
        else:
            current[1].append(ins)
    if current is None:
        raise DockerfileError("no FROM instruction: a Dockerfile must start with FROM "
                              "(after optional ARGs)", filename, len(lines))
    stages.append(_stage(len(stages), current, filename))
    names = [s.name for s in stages if s.name]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        st = [s for s in stages if s.name in dup][1]
        raise DockerfileError(f"duplicate stage name {sorted(dup)[0]!r}", filename,
                              st.from_line.line, st.from_line.original)
    return Dockerfile(filename, escape, tuple(directives), tuple(meta), tuple(stages))


def _stage(index: int, current, filename: str) -> Stage:
    ins, body = current
    words = split_raw(ins.args, "\\")
    if len(words) == 3 and words[1].lower() == "as":
        name = words[2].lower()
        if not re.fullmatch(r"[a-z][a-z0-9._-]*", name):
            raise DockerfileError(f"invalid stage name {words[2]!r}: use letters, digits, "
                                  "'.', '_', '-', starting with a letter", filename, ins.line,
                                  ins.original)
    elif len(words) == 1:
        name = ""
    else:
        raise DockerfileError("FROM requires either one or three arguments (IMAGE [AS NAME])",
                              filename, ins.line, ins.original)
    return Stage(index, words[0], name, ins.flag("platform") or "", ins, tuple(body))


def _directives(lines: List[str], filename: str):
    found: Dict[str, str] = {}
    order: List[Tuple[str, str]] = []
    i = 0
    while i < len(lines):
        m = _DIRECTIVE.match(lines[i].strip()) if lines[i].lstrip().startswith("#") else None
        if not m:
            break
        key = m.group(1).lower()
        if key not in ("syntax", "escape", "check"):
            break     # an ordinary comment ends the directives
        if key in found:
            raise DockerfileError(f"only one {key} parser directive can be used", filename, i + 1,
                                  lines[i])
        found[key] = m.group(2)
        order.append((key, m.group(2)))
        i += 1
    escape = found.get("escape", "\\")
    if escape not in ("\\", "`"):
        raise DockerfileError(f"invalid escape token {escape!r} does not match ` or \\",
                              filename, 1, lines[0] if lines else "")
    return order, escape, i


_HEREDOC = re.compile(r"<<(-?)([\"']?)([A-Za-z_][A-Za-z0-9_]*)\2")
HEREDOC_INSTRUCTIONS = ("RUN", "COPY", "ADD")


def _logical_lines(lines: List[str], start: int, escape: str):
    """(first line number, joined text, heredocs) of each instruction. Heredocs
    (`<<EOF` ... `EOF` after RUN/COPY/ADD) are (name, body, expand) tuples."""
    buf: List[str] = []
    first = 0
    idx = start
    while idx < len(lines):
        raw = lines[idx]
        idx += 1
        stripped = raw.strip()
        if not buf:
            if not stripped or stripped.startswith("#"):
                continue
            first = idx
        elif not stripped or stripped.startswith("#"):
            continue          # comment or blank line inside a continued instruction
        body = raw.rstrip()
        if body.endswith(escape):
            buf.append(body[:-1])
            continue
        buf.append(raw if buf else raw.lstrip())
        text = "".join(buf).strip()
        buf = []
        docs = []
        if text.split(None, 1)[0].upper() in HEREDOC_INSTRUCTIONS:
            for m in _HEREDOC.finditer(text):
                strip_tabs, quote, name = m.group(1) == "-", m.group(2), m.group(3)
                content = []
                while idx < len(lines):
                    line = lines[idx]
                    idx += 1
                    if (line.lstrip("\t") if strip_tabs else line) == name:
                        break
                    content.append(line.lstrip("\t") if strip_tabs else line)
                else:
                    raise DockerfileError(f"unterminated heredoc <<{name}: no line {name!r} "
                                          "ends it", "", first, text)
                docs.append((name, "".join(c + "\n" for c in content), not quote))
        yield first, text, tuple(docs)
    if buf:
        yield first, "".join(buf).strip(), ()


def parse_instruction(text: str, line: int, escape: str = "\\",
                      filename: str = "Dockerfile") -> Instruction:
    keyword, _, rest = text.partition(" ")
    if "\t" in keyword:
        keyword, _, more = keyword.partition("\t")
        rest = more + " " + rest
    kw = keyword.upper()
    if kw not in INSTRUCTIONS:
        raise DockerfileError(f"unknown instruction: {keyword}", filename, line, text)
    rest = rest.strip()
    flags: List[Tuple[str, str]] = []
    while rest.startswith("--") and kw in FLAGS:
        word, _, after = rest.partition(" ")
        name, eq, value = word[2:].partition("=")
        if name not in FLAGS[kw]:
            raise DockerfileError(f"unknown flag: --{name} for {kw} (known: "
                                  f"{', '.join('--' + f for f in FLAGS[kw])})",
                                  filename, line, text)
        flags.append((name, value if eq else "true"))
        rest = after.strip()
    json_args = None
    if kw in JSON_FORMS and rest.startswith("["):
        try:
            parsed = json.loads(rest)
        except ValueError:
            parsed = None   # not JSON: Docker then treats it as the shell form
        if isinstance(parsed, list) and all(isinstance(x, str) for x in parsed):
            json_args = tuple(parsed)
    ins = Instruction(kw, rest, line, text, tuple(flags), json_args)
    _check(ins, escape, filename)
    return ins


def _check(ins: Instruction, escape: str, filename: str) -> None:
    kw, args = ins.keyword, ins.args

    def fail(msg: str) -> None:
        raise DockerfileError(msg, filename, ins.line, ins.original)
    if not args:
        fail(f"{kw} requires at least one argument")
    try:
        words = split_raw(args, escape) if ins.json_args is None else list(ins.json_args)
    except ExpansionError as e:
        fail(str(e))
        return
    if kw in ("COPY", "ADD") and len(words) < 2:
        fail(f"{kw} requires at least two arguments: SOURCE... DEST")
    if kw in ("WORKDIR", "STOPSIGNAL") and ins.json_args is None and len(words) != 1:
        fail(f"{kw} requires exactly one argument")
    if kw == "SHELL" and ins.json_args is None:
        fail("SHELL requires the arguments to be in JSON form: SHELL [\"executable\", \"param\"]")
    if kw == "ENV" and "=" not in words[0] and len(words) < 2:
        fail("ENV must have two arguments: ENV NAME VALUE or ENV NAME=VALUE")
    if kw == "LABEL" and any("=" not in w for w in words):
        fail("LABEL requires NAME=VALUE pairs")
    if kw == "ARG":
        for w in words:
            name = w.split("=", 1)[0]
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                fail(f"invalid ARG name {name!r}")
    if kw == "HEALTHCHECK":
        head = words[0].upper()
        if head not in ("NONE", "CMD"):
            fail("HEALTHCHECK needs CMD or NONE")
        if head == "NONE" and (len(words) > 1 or ins.flags):
            fail("HEALTHCHECK NONE takes no other arguments")
        if head == "CMD" and len(words) < 2:
            fail("HEALTHCHECK CMD requires a command")
    if kw == "ONBUILD":
        trigger = words[0].upper()
        if trigger in ("ONBUILD", "FROM", "MAINTAINER"):
            fail(f"{trigger} isn't allowed as an ONBUILD trigger")
        parse_instruction(args, ins.line, escape, filename)
