"""Pure parts of image distribution, no registry or user needed: --change parsing, chain ids,
reproducible compression, the blob-location store, history rows' layer sizes."""
from __future__ import annotations

import gzip
import hashlib
import io
import tarfile

import pytest

from pydocklite.distribution.archive import chain_ids
from pydocklite.distribution.blobinfo import BlobInfoStore, KnownBlob, compression_of
from pydocklite.distribution.changes import apply_changes
from pydocklite.distribution.compress import compress_layer
from pydocklite.distribution.errors import ChangeError


def test_apply_changes_forms():
    base = {"Env": ["PATH=/bin", "A=1"], "Cmd": ["sh"]}
    cfg = apply_changes(base, ['CMD ["cat", "/x"]', "ENTRYPOINT echo hi", "ENV A=2 B=\"x y\"",
                               "ENV C legacy value", "EXPOSE 80 53/udp", "LABEL k=v",
                               "WORKDIR /w", "USER nobody", "VOLUME /data",
                               "STOPSIGNAL SIGINT"])
    assert cfg["Cmd"] == ["cat", "/x"]
    assert cfg["Entrypoint"] == ["/bin/sh", "-c", "echo hi"]
    assert cfg["Env"] == ["PATH=/bin", "A=2", "B=x y", "C=legacy value"]
    assert cfg["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}
    assert cfg["Labels"] == {"k": "v"} and cfg["Volumes"] == {"/data": {}}
    assert (cfg["WorkingDir"], cfg["User"], cfg["StopSignal"]) == ("/w", "nobody", "SIGINT")
    assert base == {"Env": ["PATH=/bin", "A=1"], "Cmd": ["sh"]}     # not modified
    with pytest.raises(ChangeError, match="RUN"):
        apply_changes({}, ["RUN echo no"])


def test_chain_ids_follow_the_oci_definition():
    a, b = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    expected = hashlib.sha256(f"{a} {b}".encode()).hexdigest()
    assert chain_ids([a, b]) == ["a" * 64, expected]


def _tar_bytes() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        data = b"hello\n" * 5000
        ti = tarfile.TarInfo("etc/hello")
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def test_gzip_is_reproducible_and_valid(tmp_path):
    layer = tmp_path / "layer.tar"
    layer.write_bytes(_tar_bytes())
    one = compress_layer(layer, tmp_path / "w")
    two = compress_layer(layer, tmp_path / "w")
    assert one.digest == two.digest and one.size == two.size
    data = one.path.read_bytes()
    assert data[4:8] == b"\0\0\0\0"                       # gzip mtime 0
    assert "sha256:" + hashlib.sha256(data).hexdigest() == one.digest
    assert gzip.decompress(data) == layer.read_bytes()


def test_zstd_roundtrip(tmp_path):
    zstandard = pytest.importorskip("zstandard")
    layer = tmp_path / "layer.tar"
    layer.write_bytes(_tar_bytes())
    blob = compress_layer(layer, tmp_path, "zstd")
    out = zstandard.ZstdDecompressor().decompressobj().decompress(blob.path.read_bytes())
    assert out == layer.read_bytes()


def test_blobinfo_merges_repositories(tmp_path):
    store = BlobInfoStore(tmp_path)
    diff = "sha256:" + "1" * 64
    blob = "sha256:" + "2" * 64
    gz = "application/vnd.oci.image.layer.v1.tar+gzip"
    store.add(diff, KnownBlob(blob, gz, 10, ("reg/a",)))
    store.add(diff, KnownBlob(blob, gz, 10, ("reg/b",)))
    store.add(diff, KnownBlob("sha256:" + "3" * 64, gz, 11, ("other/c",)))
    known = store.get(diff)
    assert [k.digest for k in known] == ["sha256:" + "3" * 64, blob]
    assert known[1].repos == ("reg/b", "reg/a")
    assert compression_of(gz) == "gzip" and compression_of(
        "application/vnd.docker.image.rootfs.diff.tar.gzip") == "gzip"
    assert compression_of("application/vnd.oci.image.layer.v1.tar") == "none"
