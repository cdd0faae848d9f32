"""Pure checks behind the security classes: name rules, terminal escaping, volume filters."""
from __future__ import annotations

import pytest

from pydocklite import naming, termsafe
from pydocklite.errors import UsageError
from pydocklite.volumes import Volume, matches, parse_filters


@pytest.mark.parametrize("name,valid", [
    ("web", True), ("a.b_c-d", True), ("9lives", True), ("ab", True), ("x" * 200, True),
    ("a", False), ("", False), ("..", False), (".x", False), ("_x", False), ("-x", False),
    ("a/b", False), ("../x", False), ("web\n", False), ("we b", False), ("w\x00b", False),
    ("x" * 201, False), ("\u0430b", False), ("ab\u202e", False),
])
def test_restricted_names(name, valid):
    assert naming.is_valid(name) is valid
    if not valid:
        for check in (naming.check_volume_name, naming.check_network_name,
                      naming.check_container_name):
            with pytest.raises(naming.InvalidNameError):
                check(name)


def test_container_names_share_the_rule():
    from pydocklite.state.names import is_valid_name
    assert is_valid_name("web") and not is_valid_name("web\n") and not is_valid_name("../w")


def test_volume_option_parsing_refuses_path_like_names():
    from pydocklite.containers.options import parse_volume
    assert parse_volume("data:/d").kind == "volume"
    assert parse_volume("/srv:/d").kind == "bind"
    assert parse_volume("./rel:/d").kind == "bind"
    for spec in ("x/../..:/d", "a/b:/d", "v\n:/d", "x:/d"):
        with pytest.raises(UsageError):
            parse_volume(spec)


@pytest.mark.parametrize("raw,shown", [
    ("plain text", "plain text"),
    ("\x1b]0;owned\x07title", "\\x1b]0;owned\\x07title"),
    ("\x1b[2J\x1b[Hclear", "\\x1b[2J\\x1b[Hclear"),
    ("over\rwrite", "over\\x0dwrite"),
    ("c1 \x9b31m csi", "c1 \\x9b31m csi"),
    ("del\x7f", "del\\x7f"),
    ("rtl \u202egnp.exe", "rtl \\u202egnp.exe"),
    ("tab\tand\nnewline", "tab\tand\nnewline"),
    ("caf\u00e9 \u2713", "caf\u00e9 \u2713"),
])
def test_escape(raw, shown):
    assert termsafe.escape(raw) == shown


def test_escape_line_escapes_newlines_and_tabs():
    assert termsafe.escape_line("a\nb\tc\x1b") == "a\\nb\\tc\\x1b"


def test_volume_filters():
    anon = Volume("f" * 64, "/m", "t", labels=(("com.docker.volume.anonymous", ""),))
    named = Volume("data", "/m", "t", labels=(("team", "a"),), users=("c" * 64,))
    f = parse_filters(["label=team=a"])
    assert matches(named, f) and not matches(anon, f)
    assert matches(anon, parse_filters(["dangling=true"]))
    assert not matches(named, parse_filters(["dangling=true"]))
    assert matches(named, parse_filters(["name=at", "driver=local"]))
    assert matches(anon, parse_filters(["label!=team"]))
    assert anon.anonymous and not named.anonymous
    for bad in (["dangling"], ["colour=red"]):
        with pytest.raises(UsageError):
            parse_filters(bad)
    with pytest.raises(UsageError):
        matches(anon, parse_filters(["dangling=maybe"]))
