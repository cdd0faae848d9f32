"""The Go text/template subset behind `--format` (expected strings are what Go/Docker print)."""
from __future__ import annotations

import dataclasses

import pytest

from pydocklite.gotemplate import (GoMap, Template, TemplateError, format_rows, go_json,
                                   parse_table_format, prepare_format, render, tabwrite)

INSPECT = {
    "Id": "f" * 64,
    "Name": "/web",
    "State": {"Status": "running", "Running": True, "Pid": 4242, "ExitCode": 0},
    "Config": {"Env": ["PATH=/usr/bin", "A=1"], "Labels": {"b": "2", "a": "<1>&"},
               "Cmd": ["nginx", "-g", "daemon off;"], "ExposedPorts": {"80/tcp": {}}},
    "Mounts": [],
    "Ratio": 0.5,
}


@pytest.mark.parametrize("tmpl, out", [
    ("{{.State.Pid}}", "4242"),
    ("{{.Name}} is {{.State.Status}}", "/web is running"),
    ("{{.Config.Labels.a}}", "<1>&"),
    ('{{index .Config.Labels "b"}}', "2"),
    ('[{{index .Config.Labels "missing"}}]', "[]"),
    ("{{index .Config.Env 1}}", "A=1"),
    ("{{json .Config.Cmd}}", '["nginx","-g","daemon off;"]'),
    ("{{json .Config.Labels}}", '{"b":"2","a":"<1>&"}'),
    ("{{.Config.Labels | json}}", '{"b":"2","a":"<1>&"}'),
    ("{{json .Mounts}}", "[]"),
    ("{{json .Ratio}}", "0.5"),
    ("{{range .Config.Env}}<{{.}}>{{end}}", "<PATH=/usr/bin><A=1>"),
    ("{{range $i, $e := .Config.Cmd}}{{$i}}:{{$e}} {{end}}", "0:nginx 1:-g 2:daemon off; "),
    ("{{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}}", "a=<1>&;b=2;"),
    ("{{range .Mounts}}x{{else}}none{{end}}", "none"),
    ("{{range $p, $_ := .Config.ExposedPorts}}{{$p}}{{end}}", "80/tcp"),
    ("{{range .Config.Env}}{{$.Name}}{{end}}", "/web/web"),
    ("{{if .State.Running}}up{{else}}down{{end}}", "up"),
    ("{{if not .State.Running}}up{{else if .State.Pid}}pid{{else}}down{{end}}", "pid"),
    ('{{if eq .State.Status "exited" "running"}}yes{{end}}', "yes"),
    ("{{if and .State.Running (gt .State.Pid 1)}}ok{{end}}", "ok"),
    ("{{with .State}}{{.ExitCode}}{{end}}", "0"),
    ('{{printf "%s|%5d|%-6s|%q|%x" .Name .State.Pid "ab" "q" 255}}', '/web| 4242|ab    |"q"|ff'),
    ('{{printf "%v %d"  .Config.Env}}', "[PATH=/usr/bin A=1] %!d(MISSING)"),
    ("{{lower \"ABC\"}}{{upper .State.Status}}", "abcRUNNING"),
    ('{{join .Config.Cmd " "}}', "nginx -g daemon off;"),
    ('{{title "hello wide world"}}', "Hello Wide World"),
    ("{{len .Config.Env}} {{len .Config.Labels}} {{len .Name}}", "2 2 4"),
    ("{{println .Name}}", "/web\n"),
    ("{{.Config.Cmd}}", "[nginx -g daemon off;]"),
    ("{{.Config.Labels}}", "map[a:<1>& b:2]"),
    ("{{.Ratio}} {{.State.Running}}", "0.5 true"),
    ("a  {{- .Name -}}  \n b", "a/webb"),
    ("{{/* a comment */}}x", "x"),
    ("{{$n := .Name}}{{$n}}{{$n = \"z\"}}{{$n}}", "/webz"),
    ("{{(index .Config.Env 0)}}", "PATH=/usr/bin"),
    ('{{split "a,b" ","}}', "[a b]"),
    ('{{pad "x" 1 2}}|{{truncate .Id 12}}', " x  |ffffffffffff"),
])
def test_render(tmpl, out):
    assert render(tmpl, INSPECT) == out


def test_json_matches_docker_and_go_escaping():
    data = {"s": "<a&b>", "u": "é\u2028", "n": None, "f": 1.0, "i": 3, "l": [True, False]}
    # Docker's json template function uses SetEscapeHTML(false)
    assert render("{{json .}}", data) == '{"s":"<a&b>","u":"é\\u2028","n":null,"f":1,"i":3,"l":[true,false]}'
    # Go's json.Marshal default escapes <, >, &
    assert go_json("<a&b>", escape_html=True) == '"\\u003ca\\u0026b\\u003e"'
    assert render("{{json .}}", GoMap(b=1, a=2)) == '{"a":2,"b":1}'


def test_missing_field_errors_like_go():
    with pytest.raises(TemplateError) as exc:
        render("{{.Foo}}", INSPECT)
    assert str(exc.value) == 'template: :1:2: executing "" at <.Foo>: map has no entry for key "Foo"'
    with pytest.raises(TemplateError, match=r'template: :2:5: executing "" at <.State.Nope>'):
        render("x\nab {{.State.Nope}}", INSPECT)


def test_objects_act_as_structs():
    @dataclasses.dataclass(frozen=True)
    class Row:
        ID: str
        Image: str

        def Names(self):
            return "quirky_turing"

    row = Row("abc", "nginx")
    assert render("{{.ID}} {{.Image}} {{.Names}}", row) == "abc nginx quirky_turing"
    with pytest.raises(TemplateError) as exc:
        render("{{.Foo}}", row)
    assert "at <.Foo>: can't evaluate field Foo in type Row" in str(exc.value)


def test_gomap_and_default_missingkey_give_no_value():
    assert render("{{.Labels.x}}", {"Labels": GoMap()}) == "<no value>"
    assert render("{{.x}}", {}, missingkey="default") == "<no value>"


@pytest.mark.parametrize("bad, msg", [
    ("{{.A", "unclosed action"),
    ("{{if .A}}x", "unexpected EOF"),
    ("{{end}}", "unexpected {{end}}"),
    ("{{nosuch .A}}", 'function "nosuch" not defined'),
    ("{{.A | }}", "missing value"),
])
def test_parse_errors(bad, msg):
    with pytest.raises(TemplateError, match="template: :1:"):
        Template(bad)
    with pytest.raises(TemplateError, match=msg.replace("{", r"\{").replace("|", r"\|")):
        Template(bad)


def test_function_errors_are_template_errors():
    with pytest.raises(TemplateError, match="index out of range: 5"):
        render("{{index .Config.Env 5}}", INSPECT)
    with pytest.raises(TemplateError, match="len of type int"):
        render("{{len .State.Pid}}", INSPECT)


def test_template_parses_once_and_executes_many():
    t = Template("{{.ID}}")
    assert [t.execute({"ID": i}) for i in range(3)] == ["0", "1", "2"]


def test_prepare_format_docker_escapes():
    assert prepare_format(r"table {{.ID}}\t{{.Image}}\n") == "{{.ID}}\t{{.Image}}\n"
    assert prepare_format("json") == "{{json .}}"
    assert prepare_format("  {{.ID}} ") == "{{.ID}}"


def test_parse_table_format_headers():
    assert parse_table_format(r"table {{.ID}}\t{{.Image}}") == (True, "CONTAINER ID\tIMAGE")
    assert parse_table_format("{{.ID}}") == (False, "")
    is_table, header = parse_table_format(r"table {{.ID}}\t{{.Repository}}\t{{json .Size}}",
                                          headers={"ID": "IMAGE ID", "Repository": "REPOSITORY",
                                                   "Size": "SIZE"})
    assert header == "IMAGE ID\tREPOSITORY\tSIZE"
    assert parse_table_format("table {{.RunningFor}} {{.Status}}")[1] == "CREATED STATUS"


def test_format_rows_table_is_aligned_like_docker():
    rows = [{"ID": "0123456789ab", "Image": "nginx", "Names": "web"},
            {"ID": "ba9876543210", "Image": "busybox:latest", "Names": "b"}]
    out = format_rows(r"table {{.ID}}\t{{.Image}}\t{{.Names}}", rows)
    assert out == ("CONTAINER ID   IMAGE            NAMES\n"
                   "0123456789ab   nginx            web\n"
                   "ba9876543210   busybox:latest   b\n")
    assert format_rows("{{.Names}}", rows) == "web\nb\n"


def test_tabwrite_minwidth_and_blocks():
    assert tabwrite("a\tb\nccc\td\n") == "a         b\nccc       d\n"
    # a line without tabs ends a column block
    assert tabwrite("a\tb\nplain\nlonger-cell\tc\n") == "a         b\nplain\nlonger-cell   c\n"


def test_methods_with_arguments_and_braces_in_strings():
    class PsRow:
        ID = "abc"

        def Label(self, key):
            return {"com.example.team": "blue"}.get(key, "")

    row = PsRow()
    assert render('{{.Label "com.example.team"}}|{{.Label "nope"}}', row) == "blue|"
    assert render('{{printf "}}%s{{" .ID}}', row) == "}}abc{{"
    with pytest.raises(TemplateError, match="can't give argument to non-function .ID"):
        render('{{.ID "x"}}', row)
    assert parse_table_format(r'table {{.ID}}\t{{.Label "x"}}')[1] == "CONTAINER ID\tLABEL"
