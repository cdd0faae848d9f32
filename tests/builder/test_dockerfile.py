"""Pure units of the builder: Dockerfile parsing, variable expansion, .dockerignore rules,
instruction -> config changes, COPY planning over a directory."""
from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from pydocklite.builder import steps
from pydocklite.builder.context import ContextFS, clean_rel
from pydocklite.builder.copier import parent_dirs, plan_copy, plan_hash, write_tar
from pydocklite.builder.dockerfile import parse, parse_instruction
from pydocklite.builder.dockerignore import IgnoreMatcher, parse_ignore
from pydocklite.builder.errors import ContextError, DockerfileError
from pydocklite.builder.shellwords import ExpansionError, expand, split, split_raw


# --- parser --------------------------------------------------------------------------------

def test_directives_continuations_comments_and_stages():
    df = parse("# syntax=docker/dockerfile:1\n"
               "# escape=`\n"
               "ARG V=1\n"
               "\n"
               "from busybox:${V} as Build\n"
               "RUN echo a `\n"
               "  # dropped comment\n"
               "\n"
               "  && echo b\n"
               "copy --from=build --chown=1:2 [\"a b\", \"/c/\"]\n"
               "FROM build\n"
               "CMD [\"sh\"]\n", "My.Dockerfile")
    assert df.escape == "`" and ("syntax", "docker/dockerfile:1") in df.directives
    assert [a.args for a in df.meta_args] == ["V=1"]
    s0, s1 = df.stages
    assert (s0.base, s0.name, s1.base, s1.name) == ("busybox:${V}", "build", "build", "")
    run, copy = s0.instructions
    assert run.keyword == "RUN" and run.line == 6 and run.args == "echo a   && echo b"
    assert copy.keyword == "COPY" and copy.json_args == ("a b", "/c/")
    assert copy.flag("from") == "build" and copy.flag("chown") == "1:2"
    assert df.stage_index("build") == 0 and df.stage_index("1") == 1
    assert s1.instructions[0].json_args == ("sh",)


def test_heredocs():
    df = parse("FROM a\nRUN <<EOF\necho hi\n  echo there\nEOF\n"
               "COPY <<-\"A\" <<B /dest/\n\tline $X\n\tA\nb $X\nB\n"
               "RUN python3 <<EOF > /out\nprint(1)\nEOF\nCMD x\n")
    run, copy, run2, cmd = df.stages[0].instructions
    assert run.heredocs == (("EOF", "echo hi\n  echo there\n", True),)
    assert steps.heredoc_command(run, ["sh", "-c"]) == ["sh", "-c", "echo hi\n  echo there\n"]
    assert copy.heredocs == (("A", "line $X\n", False), ("B", "b $X\n", True))
    assert steps.heredoc_command(run2, ["sh", "-c"]) == \
        ["sh", "-c", "python3 <<EOF > /out\nprint(1)\nEOF"]
    assert cmd.keyword == "CMD" and cmd.line == 14
    with pytest.raises(DockerfileError, match="Dockerfile:2: unterminated heredoc"):
        parse("FROM a\nRUN <<EOF\necho\n")


def test_directive_after_comment_is_a_comment():
    df = parse("# hello\n# escape=`\nFROM a\nRUN x \\\n y\n")
    assert df.escape == "\\" and df.stages[0].instructions[0].args == "x  y"


def test_shell_form_that_looks_like_json():
    ins = parse_instruction('CMD [not json', 1)
    assert ins.json_args is None and ins.args == "[not json"


@pytest.mark.parametrize("text,line,message", [
    ("FROM a\nRUNN x\n", 2, "unknown instruction: RUNN"),
    ("RUN x\n", 1, "before the first FROM"),
    ("# only a comment\n", 1, "no FROM instruction"),
    ("FROM a b\n", 1, "FROM requires either one or three arguments"),
    ("FROM a\nCOPY onlyone\n", 2, "at least two arguments"),
    ("FROM a\nCOPY --form=x a b\n", 2, "unknown flag: --form"),
    ("FROM a\nWORKDIR\n", 2, "requires at least one argument"),
    ("FROM a\nSHELL /bin/sh\n", 2, "JSON form"),
    ("FROM a\nHEALTHCHECK WAT\n", 2, "CMD or NONE"),
    ("FROM a\nONBUILD FROM b\n", 2, "isn't allowed as an ONBUILD trigger"),
    ("FROM a AS x\nFROM b AS x\n", 2, "duplicate stage name"),
    ("FROM a\nARG 1bad\n", 2, "invalid ARG name"),
    ("FROM a\nENV A\n", 2, "ENV must have two arguments"),
    ("FROM a\nLABEL novalue\n", 2, "NAME=VALUE"),
    ("FROM a\nRUN echo 'unterminated\n", 2, "unterminated"),
])
def test_errors_report_file_line_and_instruction(text, line, message):
    with pytest.raises(DockerfileError) as e:
        parse(text, "Dockerfile.test")
    assert message in str(e.value)
    assert e.value.line == line and str(e.value).startswith(f"Dockerfile.test:{line}")


# --- expansion -----------------------------------------------------------------------------

ENV = {"A": "1", "EMPTY": "", "P": "/srv", "SP": "two words"}


@pytest.mark.parametrize("text,want", [
    ("$A", "1"), ("${A}x", "1x"), ("$Ax", ""), ("${NOPE}", ""),
    ("${A:-d}", "1"), ("${EMPTY:-d}", "d"), ("${EMPTY-d}", ""), ("${NOPE-d}", "d"),
    ("${A:+alt}", "alt"), ("${EMPTY:+alt}", ""), ("${EMPTY+alt}", "alt"), ("${NOPE+alt}", ""),
    ("${NOPE:-$P/x}", "/srv/x"), ("'$A'", "$A"), ('"$A b"', "1 b"), ("\\$A", "$A"),
    ("a\\ b", "a b"), ('"\\"q\\""', '"q"'), ("$", "$"), ("$1", "$1"), ("${P}/${A}", "/srv/1"),
])
def test_expand(text, want):
    assert expand(text, ENV) == want


def test_expand_errors_and_split():
    with pytest.raises(ExpansionError):
        expand("${NOPE:?must be set}", ENV)
    with pytest.raises(ExpansionError):
        expand("${A", ENV)
    with pytest.raises(ExpansionError):
        expand("${A/x/y}", ENV)
    assert split('a "b c" $SP \'$A\' ""', ENV) == ["a", "b c", "two words", "$A", ""]
    assert split_raw('K="a b" L=\'c d\' M=e\\ f') == ['K="a b"', "L='c d'", "M=e\\ f"]
    assert expand("`$A", ENV, escape="`") == "$A"


# --- .dockerignore -------------------------------------------------------------------------

def test_dockerignore_rules():
    m = IgnoreMatcher(parse_ignore(
        "# comment\n\n*.md\n!KEEP.md\n/build\n**/*.tmp\ndocs/**\n!docs/keep/**\n"
        "  spaced  \na?c\n[xy].txt\nlogs/*/old\n"))
    excluded = ["README.md", "build", "build/out.o", "x.tmp", "a/b/c.tmp", "docs/a",
                "docs/sub/b", "spaced", "abc", "x.txt", "logs/2024/old", "logs/2024/old/f"]
    kept = ["KEEP.md", "sub/README.md", "src/build", "docs/keep/a", "docs", "abbc",
            "z.txt", "logs/a/b/old", "main.c"]
    for p in excluded:
        assert m.excluded(p), p
    for p in kept:
        assert not m.excluded(p), p
    assert m.may_reinclude_under("docs") and not m.may_reinclude_under("build")


def test_dockerignore_last_match_wins_and_parent_dirs():
    m = IgnoreMatcher(parse_ignore("!a/keep\na\n"))
    assert m.excluded("a/keep")          # the later exclusion wins
    m = IgnoreMatcher(parse_ignore("a\n!a/keep\n"))
    assert not m.excluded("a/keep") and m.excluded("a/other")


# --- config steps --------------------------------------------------------------------------

def _cfg():
    return steps.scratch_config("amd64")


def test_config_instructions():
    cfg = _cfg()
    env = {"V": "9"}
    for line in ('ENV A=1 B="x y"', "ENV C the rest", "LABEL l=$V", "EXPOSE 80 53/udp",
                 'VOLUME ["/data"]', "STOPSIGNAL SIGINT", "USER app:grp", "WORKDIR /w",
                 "WORKDIR sub/../sub2", 'SHELL ["/bin/bash", "-c"]', "CMD echo hi",
                 "HEALTHCHECK --interval=1m30s --timeout=500ms --retries=3 CMD [\"true\"]",
                 "ONBUILD RUN make"):
        cfg = steps.apply_config(cfg, parse_instruction(line, 1), env, steps.DEFAULT_SHELL)
    c = cfg["config"]
    assert c["Env"][1:] == ["A=1", "B=x y", "C=the rest"]
    assert c["Labels"] == {"l": "9"} and c["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}
    assert c["Volumes"] == {"/data": {}} and c["StopSignal"] == "SIGINT"
    assert c["User"] == "app:grp" and c["WorkingDir"] == "/w/sub2"
    assert c["Shell"] == ["/bin/bash", "-c"] and c["Cmd"] == ["/bin/sh", "-c", "echo hi"]
    assert c["Healthcheck"] == {"Test": ["CMD", "true"], "Interval": 90_000_000_000,
                                "Timeout": 500_000_000, "Retries": 3}
    assert c["OnBuild"] == ["RUN make"]
    # ENTRYPOINT resets a CMD inherited from the base, keeps one set in this stage
    e = steps.apply_config(cfg, parse_instruction('ENTRYPOINT ["x"]', 1), {}, [], cmd_set=False)
    assert e["config"]["Entrypoint"] == ["x"] and e["config"]["Cmd"] is None
    e = steps.apply_config(cfg, parse_instruction('ENTRYPOINT ["x"]', 1), {}, [], cmd_set=True)
    assert e["config"]["Cmd"] == ["/bin/sh", "-c", "echo hi"]
    with pytest.raises(DockerfileError):
        steps.apply_config(cfg, parse_instruction("EXPOSE http", 3), {}, [])
    r = steps.apply_config(_cfg(), parse_instruction("EXPOSE 7000-7002/udp $P", 1), {"P": "9"},
                           [])
    assert r["config"]["ExposedPorts"] == {"7000/udp": {}, "7001/udp": {}, "7002/udp": {},
                                           "9/tcp": {}}
    assert steps.history_text(parse_instruction("RUN make -j2", 1), {}, ["/bin/sh", "-c"]) \
        == "RUN /bin/sh -c make -j2"


def test_platform_check():
    steps.check_platform("")
    steps.check_platform(f"linux/{steps.host_arch()}")
    from pydocklite.errors import UsageError
    with pytest.raises(UsageError):
        steps.check_platform("linux/s390x" if steps.host_arch() != "s390x" else "linux/amd64")


# --- COPY planning over a real directory ----------------------------------------------------

def _ctx(tmp_path: Path, ignore: str = "") -> ContextFS:
    for rel, text in {"a.txt": "A", "dir/b.txt": "B", "dir/sub/c.txt": "C", "x.md": "X",
                      "dir/skip.tmp": "T"}.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    (tmp_path / ".dockerignore").write_text(ignore)
    return ContextFS.open(tmp_path)


def _plan(fs, sources, dest, dirs=(), **kw):
    kw.setdefault("owner", None)
    kw.setdefault("chmod", None)
    return plan_copy(fs, sources, dest, dest_is_dir=lambda rel: rel in dirs, extract=False,
                     what="COPY", now=0, **kw)


def test_copy_semantics(tmp_path):
    fs = _ctx(tmp_path, "**/*.tmp\n")
    assert [i.dest for i in _plan(fs, ["a.txt"], "/x")] == ["x"]
    assert [i.dest for i in _plan(fs, ["a.txt"], "/x/")] == ["x/a.txt"]
    assert [i.dest for i in _plan(fs, ["a.txt"], "/etc", dirs=("etc",))] == ["etc/a.txt"]
    assert [i.dest for i in _plan(fs, ["dir"], "/d", dirs=("d",))] == \
        ["d/b.txt", "d/sub", "d/sub/c.txt"]                     # contents, not the dir
    assert [i.dest for i in _plan(fs, ["*.txt", "x.md"], "/m/")] == ["m/a.txt", "m/x.md"]
    items = _plan(fs, ["dir/*/c.txt"], "/g/", owner=(5, 6), chmod=0o600)
    assert [(i.dest, i.entry.uid, i.entry.gid, i.entry.mode) for i in items] == \
        [("g/c.txt", 5, 6, 0o600)]
    with pytest.raises(ContextError, match="must be a directory"):
        _plan(fs, ["a.txt", "x.md"], "/nodir")
    with pytest.raises(ContextError, match="excluded by .dockerignore"):
        _plan(fs, ["dir/skip.tmp"], "/x")
    with pytest.raises(ContextError, match="outside the build context"):
        _plan(fs, ["../etc/passwd"], "/x")
    assert clean_rel("./a/../b/") == "b" and clean_rel("/") == ""
    (tmp_path / "out").symlink_to("/etc")
    (tmp_path / "in").symlink_to("dir")
    # links are followed inside the context (as BuildKit): /etc is the context's own etc/
    with pytest.raises(ContextError, match="file not found in build context"):
        _plan(fs, ["out/passwd"], "/x")
    with pytest.raises(ContextError, match="file not found in build context"):
        _plan(fs, ["out"], "/x")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("the context's\n")
    items = _plan(fs, ["out/passwd"], "/x")
    assert [i.dest for i in items] == ["x"] and b"".join(items[0].data()) == b"the context's\n"
    assert [i.dest for i in _plan(fs, ["in"], "/i/")] == ["i", "i/b.txt", "i/sub",
                                                          "i/sub/c.txt"]
    links = _plan(fs, ["*"], "/all/")
    assert [(i.dest, i.entry.linkname) for i in links if i.entry.linkname] == \
        [("all/in", "dir"), ("all/out", "/etc")]            # a wildcard copies links as links


def test_copy_hash_and_tar_are_deterministic(tmp_path):
    fs = _ctx(tmp_path)
    items = _plan(fs, ["dir"], "/app/")
    items += parent_dirs(items, lambda rel: None, 0)
    h1 = plan_hash(items)
    outs = []
    for _ in range(2):
        buf = io.BytesIO()
        write_tar(buf, items, mtime_clamp=1000)
        outs.append(buf.getvalue())
    assert outs[0] == outs[1]
    with tarfile.open(fileobj=io.BytesIO(outs[0])) as tf:
        members = tf.getmembers()
    assert [m.name for m in members] == ["app", "app/b.txt", "app/skip.tmp", "app/sub",
                                         "app/sub/c.txt"]
    assert all(m.mtime <= 1000 and m.uid == 0 for m in members)
    (tmp_path / "dir" / "b.txt").write_text("changed")
    assert plan_hash(_plan(fs, ["dir"], "/app/") + parent_dirs(items, lambda r: None, 0)) != h1


def test_add_reads_a_compressed_archive_once(tmp_path):
    """ADD of a .tar.gz: the archive is decompressed in one pass, whatever the number of
    members (reading each member in place decompressed from the start: a debian rootfs of
    ~10k files took hours); hard links get their file's bytes; the layer holds them all."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for i in range(300):
            data = f"file {i}\n".encode() * (i + 1)
            ti = tarfile.TarInfo(f"root/f{i:03d}")
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
        link = tarfile.TarInfo("root/link")
        link.type, link.linkname = tarfile.LNKTYPE, "root/f007"
        tf.addfile(link)
    (tmp_path / "big.tar.gz").write_bytes(buf.getvalue())
    fs = ContextFS.open(tmp_path)
    opens = []
    real_open = fs.open_file
    fs.open_file = lambda rel: opens.append(rel) or real_open(rel)
    items = plan_copy(fs, ["big.tar.gz"], "/", dest_is_dir=lambda rel: True, extract=True,
                      what="ADD", now=0, owner=None, chmod=None, spool_dir=str(tmp_path))
    files = {i.dest: b"".join(i.data()) for i in items if i.data is not None}
    plan_hash(items)
    write_tar(io.BytesIO(), items)
    assert len(files) == 301 and files["root/f299"] == b"file 299\n" * 300
    assert files["root/link"] == files["root/f007"] == b"file 7\n" * 8
    # one open to tell it is an archive, one to read it: not one per member and reader
    assert len(opens) <= 2, opens
