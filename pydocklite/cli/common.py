"""Argument parsing and output helpers shared by the verbs (Docker's conventions)."""
from __future__ import annotations

import json
import os
import sys

from pydocklite.errors import UsageError
from pydocklite.termsafe import escape, escape_line
from pydocklite.humanize import human_duration, human_size, time_ago  # noqa: F401 (re-exported)


def _untranslated(message: str) -> str:
    return message


def _untranslated_n(singular: str, plural: str, n: int) -> str:
    return singular if n == 1 else plural


def _import_argparse():
    """argparse, imported without gettext when nothing has imported that yet: argparse
    takes only gettext() and ngettext() from it, replaced below anyway, and importing
    gettext is ~0.6 ms of every command (its plural-forms parser compiles regexes)."""
    if "argparse" in sys.modules or "gettext" in sys.modules:
        import argparse
        return argparse
    import types
    stub = types.ModuleType("gettext")
    stub.gettext, stub.ngettext = _untranslated, _untranslated_n
    sys.modules["gettext"] = stub
    try:
        import argparse
    except ImportError:      # an argparse that wants more of gettext
        del sys.modules["gettext"]
        import argparse
    finally:
        if sys.modules.get("gettext") is stub:
            del sys.modules["gettext"]    # whoever imports gettext later gets the real one
    return argparse


argparse = _import_argparse()
# argparse's messages in English, as docker's, untranslated: its gettext calls looked for
# message catalogs (importing `locale`, stat()ing files per call) on every parser built
argparse._ = _untranslated
argparse.ngettext = _untranslated_n

_COLUMNS: list = []


def _columns() -> int:
    """The terminal's width, looked up once (shutil.get_terminal_size's rule without
    importing shutil; argparse asks for it each time it makes a formatter, once per flag)."""
    if not _COLUMNS:
        try:
            cols = int(os.environ.get("COLUMNS", "0"))
        except ValueError:
            cols = 0
        if cols <= 0:
            try:
                cols = os.get_terminal_size(sys.__stdout__.fileno()).columns
            except (AttributeError, ValueError, OSError):
                cols = 0
        _COLUMNS.append(cols or 80)
    return _COLUMNS[0]


class _Formatter(argparse.HelpFormatter):
    def __init__(self, prog, indent_increment=2, max_help_position=24, width=None):
        super().__init__(prog, indent_increment, max_help_position,
                         _columns() - 2 if width is None else width)


class Parser(argparse.ArgumentParser):
    """argparse that reports errors the way docker does: one line, exit 125."""

    def __init__(self, prog: str, usage: str, description: str = "", **kw):
        kw.setdefault("formatter_class", _Formatter)
        super().__init__(prog=f"pydocklite {prog}", usage=f"pydocklite {usage}",
                         description=description, **kw)
        self._verb = prog

    def error(self, message):
        raise UsageError(f"{message}\nSee 'pydocklite {self._verb} --help'.")


def parse_time(text: str) -> float:
    """RFC 3339 (as in image configs) -> epoch seconds; 0 when absent or unparsable."""
    if not text:
        return 0.0
    t = text.strip().replace("Z", "+00:00")
    # Python < 3.11 accepts at most 6 fractional digits
    if "." in t:
        head, _, tail = t.partition(".")
        digits = "".join(c for c in tail if c.isdigit())
        zone = tail[len(digits):]
        t = f"{head}.{digits[:6]}{zone}"
    from datetime import datetime
    try:
        return datetime.fromisoformat(t).timestamp()
    except ValueError:
        return 0.0


def rfc3339(ts: float) -> str:
    from datetime import datetime, timezone
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def print_table(rows: list, columns: list, fmt: str = None, quiet_field: str = None) -> None:
    """Print dicts either as Docker's padded table or through a --format Go template."""
    out = sys.stdout
    if fmt and fmt != "table":
        from pydocklite import gotemplate
        is_table, header, body = _table_parts(fmt, columns)
        if fmt == "json":
            for row in rows:
                out.write(json.dumps(row, separators=(",", ":")) + "\n")
            return
        rendered = [escape(gotemplate.render(body, row)) for row in rows]
        if is_table:
            _print_aligned([header.split("\t")] + [r.split("\t") for r in rendered])
        else:
            for line in rendered:
                out.write(line + "\n")
        return
    table = [[title for _, title in columns]]
    for row in rows:
        table.append([escape_line(str(row.get(key, ""))) for key, _ in columns])
    _print_aligned(table)


def _table_parts(fmt: str, columns: list):
    fmt = fmt.replace("\\t", "\t").replace("\\n", "\n")
    if fmt.startswith("table"):
        body = fmt[len("table"):].strip()
        titles = dict(columns)
        import re
        header = re.sub(r"{{\s*\.(\w+)\s*}}",
                        lambda m: titles.get(m.group(1), m.group(1).upper()), body)
        return True, header, body
    return False, "", fmt


def _print_aligned(table: list) -> None:
    """Docker's tabwriter: columns padded to the widest cell plus 3 spaces."""
    if not table:
        return
    width = max(len(r) for r in table)
    widths = [0] * width
    for r in table:
        for i, cell in enumerate(r):
            widths[i] = max(widths[i], len(cell))
    for r in table:
        cells = [cell.ljust(widths[i] + 3) if i < len(r) - 1 else cell
                 for i, cell in enumerate(r)]
        sys.stdout.write("".join(cells).rstrip() + "\n")


def confirm(warning: str) -> bool:
    """Docker's prune prompt: the warning, then y/N read from stdin."""
    sys.stdout.write(f"{warning}\nAre you sure you want to continue? [y/N] ")
    sys.stdout.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def for_each(names, fn) -> int:
    """Run fn per named object like docker: errors to stderr, exit 1 if any failed; an
    object already in the state asked for (a 304: start of a running container) counts
    as done, its name printed, as the docker CLI does."""
    from pydocklite.errors import classify
    status = 0
    for name in names:
        try:
            out = fn(name)
        except Exception as e:
            outcome = classify(e)
            if outcome is None:
                raise
            if outcome.http_status != 304:
                sys.stderr.write(f"Error response from daemon: {escape(str(e))}\n")
                status = 1
                continue
            out = name
        if out is not None:
            sys.stdout.write(f"{out}\n")
    return status


def inspect_each(names, get, fmt) -> int:
    """`X inspect NAME...`: get(name)'s JSON for each, printed as one list (or through the
    --format template); errors to stderr as docker's, exit 1 if any failed."""
    from pydocklite.cli.images import emit_inspect
    results, status = [], 0
    for name in names:
        try:
            results.append(get(name))
        except Exception as e:
            if type(e).__module__.split(".")[0] != "pydocklite":
                raise
            sys.stderr.write(f"Error response from daemon: {escape(str(e))}\n")
            status = 1
    if results or not fmt:
        emit_inspect(results, fmt)
    return status


def run_subcommand(settings, argv, group: str, table: dict, help_text: str) -> int:
    """`pydocklite GROUP SUB ...` (volume, network): the table's verb, or GROUP's help (and
    exit 125 for an unknown SUB, as docker does)."""
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in table:
        sys.stdout.write(help_text)
        if argv and argv[0] not in ("-h", "--help"):
            sys.stderr.write(f"pydocklite: '{group} {argv[0]}' is not a pydocklite command.\n")
            return 125
        return 0
    return table[argv[0]](settings, argv[1:])


def key_values(values, flag: str) -> dict:
    """Repeated KEY=VALUE flags (--label, --opt) as a dict."""
    out = {}
    for text in values:
        k, _eq, v = text.partition("=")
        if not k:
            raise UsageError(f"invalid {flag} '{text}': use KEY=VALUE")
        out[k] = v
    return out
