"""Fuzzing the parsers hostile input reaches first (issue 10, "Also"): the tar indexer, the
manifest / index / image config parsers, the reference parser, the Dockerfile parser, and
the terminal escaper, with Hypothesis-generated input for a bounded number of examples
(a few seconds each). Any exception other than the parser's documented error types is a bug.
"""
from __future__ import annotations

import io
import json
import tarfile

from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from pydocklite.builder.dockerfile import parse as parse_dockerfile
from pydocklite.builder.errors import BuildError
from pydocklite.termsafe import escape, escape_line
from registry.errors import InvalidReferenceError, ManifestError
from registry.image_config import parse_image_config
from registry.model import parse_manifest, validate_config_for_manifest
from registry.reference import Reference
from snapshotter.errors import LayerCorruptError, UnsafeLayerEntryError
from snapshotter.tar_indexer import TarIndexer

FUZZ = settings(max_examples=200, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
# generating nested JSON costs Hypothesis more than the parsers: fewer, richer examples
FUZZ_JSON = settings(FUZZ, max_examples=100)

# --- the tar indexer -------------------------------------------------------------------------

names = st.text(st.sampled_from("ab./\\-_ \x00\u00e9\n"), min_size=0, max_size=40)
kinds = st.sampled_from([tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE,
                         tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE, b"x", b"g", b"7",
                         b"S", b"L", b"K"])


@st.composite
def tars(draw):
    """A tar made by Python's tarfile from hostile member specs, then maybe damaged."""
    fmt = draw(st.sampled_from([tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT]))
    buf = io.BytesIO()
    try:
        with tarfile.open(fileobj=buf, mode="w", format=fmt, encoding="utf-8",
                          errors="surrogateescape") as tf:
            for _ in range(draw(st.integers(0, 6))):
                info = tarfile.TarInfo(draw(names) or "x")
                info.type = draw(kinds)
                info.linkname = draw(names)
                info.mode = draw(st.integers(0, 0o7777))
                info.uid = draw(st.integers(0, 2 ** 21 - 1))
                info.mtime = draw(st.integers(0, 2 ** 33 - 1))
                if fmt == tarfile.PAX_FORMAT and draw(st.booleans()):
                    info.pax_headers = {draw(st.sampled_from(
                        ["path", "linkpath", "size", "SCHILY.xattr.user.a",
                         "SCHILY.xattr.user.pydocklite.x", "GNU.sparse.map", "x"])): draw(names)}
                data = draw(st.binary(max_size=600))
                info.size = len(data) if info.type in (tarfile.REGTYPE, b"7") else 0
                tf.addfile(info, io.BytesIO(data) if info.size else None)
    except (ValueError, UnicodeError, tarfile.TarError, OverflowError):
        assume(False)
    data = bytearray(buf.getvalue())
    for _ in range(draw(st.integers(0, 4))):            # damage: a few bytes anywhere
        if data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = data[:draw(st.integers(0, len(data)))]   # cut short
    return bytes(data)


def index_all(data: bytes, chunk: int):
    ix = TarIndexer("fuzz")
    for i in range(0, len(data), chunk):
        ix.feed(data[i:i + chunk])
    return ix.finish()


@FUZZ
@given(tars(), st.sampled_from([1, 7, 512, 4096, 1 << 20]))
def test_tar_indexer_raises_only_layer_errors(data, chunk):
    try:
        idx = index_all(data, chunk)
    except (LayerCorruptError, UnsafeLayerEntryError):
        return
    assert idx.data_end() <= len(data)
    for e in idx.entries:
        assert not e.path.startswith("/") and ".." not in e.path.split("/")
        assert e.offset + (e.size if e.offset else 0) <= len(data)


@FUZZ
@given(st.binary(max_size=3000))
def test_tar_indexer_on_random_bytes(data):
    try:
        index_all(data, 512)
    except (LayerCorruptError, UnsafeLayerEntryError):
        pass


# --- manifests, indexes, configs -------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) |
    st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) |
    st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=12)

MEDIA = ["application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.index.v1+json",
         "application/vnd.docker.distribution.manifest.v2+json",
         "application/vnd.docker.distribution.manifest.list.v2+json", "", "text/plain"]
DIGEST = "sha256:" + "a" * 64


def descriptor(draw):
    return draw(st.fixed_dictionaries({}, optional={
        "mediaType": st.sampled_from(MEDIA + ["application/vnd.oci.image.layer.v1.tar+gzip"]),
        "digest": st.sampled_from([DIGEST, "sha256:xyz", "md5:" + "a" * 32, "", 7]),
        "size": st.one_of(st.integers(-5, 2 ** 64), st.text(max_size=3), st.none()),
        "platform": json_values, "urls": json_values, "annotations": json_values}))


@st.composite
def manifest_docs(draw):
    doc = {"schemaVersion": draw(st.sampled_from([2, 1, "2", None, 3]))}
    if draw(st.booleans()):
        doc["mediaType"] = draw(st.sampled_from(MEDIA))
    if draw(st.booleans()):
        doc["config"] = descriptor(draw)
    if draw(st.booleans()):
        doc["layers"] = [descriptor(draw) for _ in range(draw(st.integers(0, 3)))]
    if draw(st.booleans()):
        doc["manifests"] = [descriptor(draw) for _ in range(draw(st.integers(0, 3)))]
    for k, v in draw(st.dictionaries(st.text(max_size=10), json_values, max_size=3)).items():
        doc.setdefault(k, v)
    return doc


@FUZZ_JSON
@given(manifest_docs(), st.sampled_from(MEDIA))
def test_manifest_parser_raises_only_manifest_errors(doc, media_type):
    raw = json.dumps(doc).encode()
    try:
        m = parse_manifest(raw, media_type)
    except ManifestError:
        return
    assert m.raw == raw


@FUZZ_JSON
@given(st.binary(max_size=400) | json_values.map(lambda v: json.dumps(v).encode()))
def test_manifest_and_config_parsers_on_anything(raw):
    for media_type in MEDIA[:2]:
        try:
            parse_manifest(raw, media_type)
        except ManifestError:
            pass
    try:
        parse_image_config(raw)
    except ManifestError:
        pass


@st.composite
def config_docs(draw):
    doc = draw(st.dictionaries(st.sampled_from(
        ["architecture", "os", "variant", "created", "author", "history", "config", "os.version"]),
        json_values, max_size=5))
    if draw(st.booleans()):
        doc["rootfs"] = {"type": draw(st.sampled_from(["layers", "other", 1])),
                         "diff_ids": draw(st.lists(st.sampled_from(
                             [DIGEST, "sha256:" + "b" * 64, "bad", 5]), max_size=3))}
    if draw(st.booleans()):
        doc["config"] = draw(st.fixed_dictionaries({}, optional={
            k: json_values for k in ("Env", "Cmd", "Entrypoint", "User", "ExposedPorts",
                                     "Volumes", "Labels", "WorkingDir", "StopSignal",
                                     "Healthcheck")}))
    return doc


@FUZZ_JSON
@given(config_docs())
@example({"architecture": None, "history": True,       # found by this test in CI: TypeError
          "rootfs": {"type": "layers", "diff_ids": []}})
@example({"history": 7, "rootfs": {"type": "layers", "diff_ids": []}})
@example({"history": {"a": 1}, "rootfs": {"type": "layers", "diff_ids": []}})
@example({"config": {"Healthcheck": {"Interval": "5s", "Retries": [1]}},
          "rootfs": {"type": "layers", "diff_ids": []}})
@example({"config": {"Healthcheck": {"Interval": 1e400, "Timeout": True}},
          "rootfs": {"type": "layers", "diff_ids": []}})
def test_image_config_parser_raises_only_manifest_errors(doc):
    raw = json.dumps(doc).encode()
    try:
        cfg = parse_image_config(raw)
    except ManifestError:
        return
    manifest = parse_manifest(json.dumps({
        "schemaVersion": 2, "mediaType": MEDIA[0],
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": DIGEST,
                   "size": len(raw)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": DIGEST, "size": 1}]}).encode())
    try:
        validate_config_for_manifest(cfg, manifest)
    except ManifestError:
        pass


# --- references ------------------------------------------------------------------------------

ref_text = st.text(st.sampled_from("abcAZ09._-/:@+ \n\x00\u00e9"), max_size=60) | \
    st.builds(lambda host, path, tag: f"{host}/{path}:{tag}",
              st.sampled_from(["localhost:5000", "docker.io", "a.b", "[::1]:5000", "x_y:1"]),
              st.text(st.sampled_from("abc/._-"), min_size=1, max_size=20),
              st.text(st.sampled_from("abc.-_9"), min_size=0, max_size=12))


@FUZZ
@given(ref_text)
@example("nginx")
@example("docker.io/library/nginx:latest@sha256:" + "a" * 64)
def test_reference_parser_round_trips_or_refuses(text):
    try:
        ref = Reference.parse(text)
    except InvalidReferenceError:
        return
    again = Reference.parse(str(ref))
    assert again == ref
    assert all(c.isprintable() and c != " " for c in str(ref))


# --- the Dockerfile parser -------------------------------------------------------------------

KEYWORDS = ["FROM", "RUN", "CMD", "COPY", "ADD", "ENV", "ARG", "LABEL", "EXPOSE", "USER",
            "WORKDIR", "VOLUME", "ENTRYPOINT", "SHELL", "ONBUILD", "HEALTHCHECK", "STOPSIGNAL",
            "MAINTAINER", "from", "BOGUS", "#", "# escape=`", "# syntax=x"]
fragments = st.sampled_from(["a", " ", "\\", "`", "\"", "'", "[", "]", ",", "=", "$", "{",
                             "}", "--mount=type=bind", "--network=host", "--from=0",
                             "<<EOF", "<<-EOF", "EOF", "\t", "${X:-y}", "$(", "AS b",
                             "--chown=1:2", "\u00e9", "\x00", "\r"])


@st.composite
def dockerfiles(draw):
    lines = []
    for _ in range(draw(st.integers(0, 10))):
        kw = draw(st.sampled_from(KEYWORDS))
        rest = "".join(draw(st.lists(fragments, max_size=8)))
        lines.append(f"{kw} {rest}")
    return "\n".join(lines) + draw(st.sampled_from(["", "\n", "\\\n", "\\"]))


@FUZZ
@given(dockerfiles() | st.text(max_size=300))
def test_dockerfile_parser_raises_only_build_errors(text):
    try:
        parse_dockerfile(text)
    except BuildError:
        pass


# --- what reaches a terminal ----------------------------------------------------------------

@FUZZ
@given(st.text(max_size=200))
def test_escaped_text_has_no_control_characters(text):
    for out, allowed in ((escape(text), "\t\n"), (escape_line(text), "")):
        assert all(c in allowed or c.isprintable() or c == " " for c in out), repr(out)
