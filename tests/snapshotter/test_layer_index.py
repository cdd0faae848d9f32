"""TarIndexer / LayerIndex / MmapBlob against real tar streams (Python's tarfile and GNU tar)."""
from __future__ import annotations

import io
import os
import random
import stat
import subprocess
import tarfile
import time

import pytest

from snapshotter.errors import LayerCorruptError, UnsafeLayerEntryError
from snapshotter.layer_index import (BLOCK, CHAR, DIR, FIFO, HARDLINK, REG, SYMLINK, IndexEntry,
                                     LayerIndex, TarIndexer)
from snapshotter.mmap_blob import MmapBlob

TYPES = {tarfile.REGTYPE: REG, tarfile.AREGTYPE: REG, tarfile.CONTTYPE: REG,
         tarfile.LNKTYPE: HARDLINK, tarfile.SYMTYPE: SYMLINK, tarfile.CHRTYPE: CHAR,
         tarfile.BLKTYPE: BLOCK, tarfile.DIRTYPE: DIR, tarfile.FIFOTYPE: FIFO}


def norm(name: str) -> str:
    return "/".join(p for p in name.split("/") if p not in ("", "."))


def index_bytes(data: bytes, seed: int = 0, name: str = "test-layer") -> LayerIndex:
    """Index `data` fed in random-sized chunks (1 byte .. 64 KiB)."""
    rnd = random.Random(seed)
    ix = TarIndexer(name)
    i = 0
    while i < len(data):
        n = rnd.choice((1, 7, 511, 512, 513, 4096, 65536))
        ix.feed(data[i:i + n])
        i += n
    return ix.finish()


def assert_matches_tarfile(idx: LayerIndex, data: bytes, check_mtime_float: bool = True) -> None:
    tf = tarfile.open(fileobj=io.BytesIO(data))
    members = {}
    for m in tf.getmembers():
        members[norm(m.name)] = m
    contents = {}
    for m in tf.getmembers():
        if m.isreg():
            contents[norm(m.name)] = tf.extractfile(m).read()
        elif m.islnk():
            contents[norm(m.name)] = contents[norm(m.linkname)]
    for path, m in members.items():
        e = idx.get(path)
        assert e is not None, path
        assert e.path == path
        assert e.type == TYPES[m.type], (path, e.type, m.type)
        assert e.mode == m.mode & 0o7777, path
        assert (e.uid, e.gid) == (m.uid, m.gid), path
        assert e.mtime == (m.mtime if check_mtime_float else int(m.mtime)), path
        if m.issym():
            assert e.linkname == m.linkname
        elif m.islnk():  # chains of hardlinks point at the first non-link entry
            target = norm(m.linkname)
            while members[target].islnk():
                target = norm(members[target].linkname)
            assert e.linkname == target
        else:
            assert e.linkname == ""
        if m.ischr() or m.isblk():
            assert (e.devmajor, e.devminor) == (m.devmajor, m.devminor)
        xattrs = tuple(sorted((k[len("SCHILY.xattr."):], v.encode("utf-8", "surrogateescape"))
                              for k, v in m.pax_headers.items() if k.startswith("SCHILY.xattr.")))
        assert e.xattrs == xattrs, path
        if m.isreg() or m.islnk():
            assert e.size == len(contents[path])
            assert data[e.offset:e.offset + e.size] == contents[path], path
        else:
            assert e.size == 0 and e.offset == 0
    for e in idx.entries:  # anything not in the tar is a synthesised parent directory
        if e.path not in members:
            assert (e.type, e.mode, e.uid, e.gid) == (DIR, 0o755, 0, 0), e


def add(tf: tarfile.TarFile, name: str, type=tarfile.REGTYPE, data: bytes = b"", **kw) -> None:
    ti = tarfile.TarInfo(name)
    ti.type = type
    ti.size = len(data) if type in (tarfile.REGTYPE, tarfile.AREGTYPE) else 0
    ti.mode = kw.pop("mode", 0o755 if type == tarfile.DIRTYPE else 0o644)
    ti.mtime = kw.pop("mtime", 1_600_000_000)
    for k, v in kw.items():
        setattr(ti, k, v)
    tf.addfile(ti, io.BytesIO(data) if ti.size else None)


def python_tar(fmt: int) -> bytes:
    rnd = random.Random(fmt)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        add(tf, "./", tarfile.DIRTYPE, mode=0o755)
        add(tf, "etc", tarfile.DIRTYPE, mode=0o750, uid=0, gid=42)
        add(tf, "etc/passwd", data=b"root:x:0:0::/root:/bin/sh\n")
        add(tf, "usr/bin/su", data=rnd.randbytes(3000), mode=0o4755)   # parents synthesised
        add(tf, "usr/bin/wall", data=b"w", mode=0o2755, gid=5)
        add(tf, "tmp", tarfile.DIRTYPE, mode=0o1777)
        for n in (0, 1, 511, 512, 513, 100_000):
            add(tf, f"sizes/f{n}", data=rnd.randbytes(n))
        add(tf, "d" * 90 + "/" + "e" * 90 + "/file", data=b"long path")
        add(tf, "hard", tarfile.LNKTYPE, linkname="etc/passwd")
        add(tf, "hard2", tarfile.LNKTYPE, linkname="./hard")
        add(tf, "abs-sym", tarfile.SYMTYPE, linkname="/etc/passwd", mode=0o777)
        add(tf, "rel-sym", tarfile.SYMTYPE, linkname="../../etc/shadow", mode=0o777)
        add(tf, "dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666)
        add(tf, "dev/sda", tarfile.BLKTYPE, devmajor=8, devminor=1, mode=0o660)
        add(tf, "run/fifo", tarfile.FIFOTYPE)
        add(tf, "var/lib/.wh.removed")
        add(tf, "opt/.wh..wh..opq")
        add(tf, "etc/passwd", data=b"second version wins\n")
        if fmt != tarfile.USTAR_FORMAT:
            add(tf, "f" * 300, data=b"very long name")
            add(tf, "long-sym", tarfile.SYMTYPE, linkname="t" * 200)
            add(tf, "bigids", data=b"x", uid=3_000_000, gid=2_500_000)
        if fmt == tarfile.PAX_FORMAT:
            add(tf, "caps", data=b"cap", pax_headers={
                "SCHILY.xattr.security.capability": "\x01\x00\x00\x02\x00\x20",
                "SCHILY.xattr.user.comment": "héllo"})
            add(tf, "héllo/ünïcode.txt", data="ünï".encode())
            add(tf, "fracmtime", data=b"t", mtime=1_600_000_000.25)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT],
                         ids=["ustar", "gnu", "pax"])
def test_python_tarfile_formats(fmt):
    data = python_tar(fmt)
    idx = index_bytes(data, seed=fmt)
    assert_matches_tarfile(idx, data)
    # the details tarfile cannot check for us
    assert idx.entries[0].path == "" and idx.entries[0].type == DIR
    assert idx.get("usr/bin/su").mode == 0o4755 and idx.get("usr/bin/wall").mode == 0o2755
    assert idx.get("tmp").mode == 0o1777
    assert idx.get("usr").mode == 0o755 and idx.get("usr/bin").type == DIR   # synthesised
    hard = idx.get("hard")
    assert hard.linkname == "etc/passwd" and data[hard.offset:hard.offset + hard.size] == \
        b"root:x:0:0::/root:/bin/sh\n"       # the link keeps the data it was made with
    assert idx.get("hard2").linkname == "etc/passwd"                         # chains resolved
    assert idx.get("etc/passwd").size == len(b"second version wins\n")
    assert idx.get("var/lib/.wh.removed").type == REG                        # whiteouts kept
    assert sorted(idx.children("dev")) == ["null", "sda"]
    assert idx.get("/etc/passwd/") is idx.get("etc/passwd")
    if fmt == tarfile.PAX_FORMAT:
        caps = idx.get("caps")
        assert dict(caps.xattrs)["security.capability"] == b"\x01\x00\x00\x02\x00\x20"
        assert idx.get("fracmtime").mtime == 1_600_000_000.25
    # chunking must not change anything
    assert index_bytes(data, seed=99).entries == idx.entries
    assert [e.path for e in idx.entries] == [e.path for e in index_bytes(data, seed=5)]


def gnu_tree(root, long_names: bool, specials: bool) -> None:
    os.makedirs(root / "a" / "b")
    (root / "a" / "b" / "file").write_bytes(b"hello\n" * 1000)
    (root / "empty").write_bytes(b"")
    os.chmod(root / "a" / "b" / "file", 0o4750)
    os.link(root / "a" / "b" / "file", root / "a" / "hardlink")
    os.symlink("/etc/passwd", root / "a" / "sym")
    if specials:  # v7 tar has no fifos or device nodes
        os.mkfifo(root / "fifo")
    os.setxattr(root / "empty", "user.note", b"value\x00bin")
    (root / ".wh.gone").write_bytes(b"")
    if os.geteuid() == 0 and specials:
        os.mknod(root / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        os.mknod(root / "loop0", 0o660 | stat.S_IFBLK, os.makedev(7, 0))
    if long_names:
        deep = root / ("x" * 120) / ("y" * 120)
        os.makedirs(deep)
        (deep / ("z" * 150)).write_bytes(b"deep")
        os.symlink("q" * 180, root / "longlink")
        os.link(deep / ("z" * 150), root / "hard-to-long")


@pytest.mark.parametrize("fmt", ["gnu", "oldgnu", "pax", "ustar", "v7"])
def test_gnu_tar_formats(tmp_path, fmt):
    src = tmp_path / "src"
    src.mkdir()
    gnu_tree(src, long_names=fmt in ("gnu", "oldgnu", "pax"), specials=fmt != "v7")
    args = ["tar", "--sort=name", f"--format={fmt}", "-cf", "-", "-C", str(src), "."]
    if fmt == "pax":
        args.insert(1, "--xattrs")
    data = subprocess.run(args, check=True, capture_output=True).stdout
    idx = index_bytes(data, seed=len(fmt))
    assert_matches_tarfile(idx, data)
    assert idx.get("a/b/file").offset > 0 and idx.get("a/hardlink").linkname == "a/b/file"
    assert idx.get("a/hardlink").type == HARDLINK and idx.get("a/hardlink").size == 6000
    assert idx.get("a/b/file").mode == 0o4750
    if fmt == "pax":
        assert dict(idx.get("empty").xattrs)["user.note"] == b"value\x00bin"
    if os.geteuid() == 0 and fmt != "v7":
        null = idx.get("null")
        assert (null.type, null.devmajor, null.devminor) == (CHAR, 1, 3)
        assert idx.get("loop0").type == BLOCK


def test_gnu_sparse_is_refused(tmp_path):
    f = tmp_path / "sparse"
    with open(f, "wb") as fh:
        fh.seek(10 << 20)
        fh.write(b"end")
    data = subprocess.run(["tar", "--format=gnu", "-S", "-cf", "-", "-C", str(tmp_path), "sparse"],
                          check=True, capture_output=True).stdout
    with pytest.raises(LayerCorruptError, match="sparse"):
        index_bytes(data)


def one_entry_tar(name, type=tarfile.REGTYPE, linkname="", prefix=()) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for pname, ptype, kw in prefix:
            add(tf, pname, ptype, **kw)
        add(tf, name, type, data=b"x" if type == tarfile.REGTYPE else b"", linkname=linkname)
    return buf.getvalue()


@pytest.mark.parametrize("name,type,linkname,prefix", [
    ("/etc/passwd", tarfile.REGTYPE, "", ()),
    ("../evil", tarfile.REGTYPE, "", ()),
    ("a/../../evil", tarfile.REGTYPE, "", ()),
    ("ok/../../../etc/cron.d/x", tarfile.REGTYPE, "", ()),
    ("h", tarfile.LNKTYPE, "../../etc/shadow", ()),
    ("h", tarfile.LNKTYPE, "/etc/shadow", ()),
    ("h", tarfile.LNKTYPE, "not-yet-seen", ()),
    ("h", tarfile.LNKTYPE, "dir", (("dir", tarfile.DIRTYPE, {}),)),
    ("lnk/etc/passwd", tarfile.REGTYPE, "", (("lnk", tarfile.SYMTYPE, {"linkname": "/"}),)),
    ("./", tarfile.REGTYPE, "", ()),
], ids=["absolute", "dotdot", "dotdot-deep", "dotdot-after-dir", "hardlink-dotdot",
        "hardlink-absolute", "hardlink-unseen", "hardlink-dir", "through-symlink", "root-not-dir"])
def test_unsafe_entries_are_refused(name, type, linkname, prefix):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for pname, ptype, kw in prefix:
            add(tf, pname, ptype, **kw)
        add(tf, name, type, data=b"x" if type == tarfile.REGTYPE and name != "./" else b"",
            linkname=linkname)
    with pytest.raises(UnsafeLayerEntryError) as ei:
        index_bytes(buf.getvalue(), name="sha256:feedface")
    msg = str(ei.value)
    assert "sha256:feedface" in msg and repr(name) in msg   # names the layer and the entry
    assert ei.value.layer == "sha256:feedface" and ei.value.entry == name


def test_dotdot_inside_the_layer_is_normalised():
    data = one_entry_tar("a/b/../c", prefix=(("a/b", tarfile.DIRTYPE, {}),))
    idx = index_bytes(data)
    assert idx.get("a/c").type == REG and idx.get("a/b/../c") is None


def test_directory_replaced_by_file_drops_its_children():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        add(tf, "d", tarfile.DIRTYPE)
        add(tf, "d/x", data=b"1")
        add(tf, "d", data=b"now a file")
    idx = index_bytes(buf.getvalue())
    assert idx.get("d").type == REG and idx.get("d/x") is None and idx.children("d") == []
    assert idx.paths() == ["", "d"]


def test_corrupt_and_truncated_streams():
    data = python_tar(tarfile.GNU_FORMAT)
    idx = index_bytes(data)
    big = idx.get("sizes/f100000")
    cases = {
        "mid-data": data[:big.offset + 5000],
        "mid-header": data[:big.offset - 512 + 100],
        "empty": b"",
    }
    for what, blob in cases.items():
        with pytest.raises(LayerCorruptError, match="truncated|empty"):
            index_bytes(blob)
    bad = bytearray(data)
    bad[big.offset - 512 + 10] ^= 0x55          # damage a header: checksum mismatch
    with pytest.raises(LayerCorruptError, match="checksum"):
        index_bytes(bytes(bad))
    with pytest.raises(LayerCorruptError):
        index_bytes(os.urandom(4096))
    # a stream cut exactly between members is a valid (shorter) tar; the diff_id catches that
    assert len(index_bytes(data[:big.offset - 512])) < len(idx)


def test_trailing_bytes_after_end_of_archive_are_ignored():
    data = python_tar(tarfile.PAX_FORMAT)
    ix = TarIndexer("t")
    ix.feed(data + b"garbage after the end" * 100)
    assert ix.finish().entries == index_bytes(data).entries
    assert ix.pos == len(data) + 21 * 100


def test_save_load_roundtrip_and_corruption(tmp_path):
    idx = index_bytes(python_tar(tarfile.PAX_FORMAT))
    p = tmp_path / "index"
    idx.save(p)
    loaded = LayerIndex.load(p)
    assert loaded.entries == idx.entries and len(loaded) == len(idx)
    assert loaded.children("") == idx.children("")
    assert LayerIndex(idx.entries).entries == idx.entries       # built from entries
    assert [f for f in os.listdir(tmp_path)] == ["index"]       # no temp file left
    raw = bytearray(p.read_bytes())
    raw[-10] ^= 1
    p.write_bytes(bytes(raw))
    with pytest.raises(LayerCorruptError, match="corrupt"):
        LayerIndex.load(p)
    p.write_bytes(bytes(raw[:40]))
    with pytest.raises(LayerCorruptError):
        LayerIndex.load(p)
    p.write_bytes(b"not an index at all")
    with pytest.raises(LayerCorruptError, match="bad header"):
        LayerIndex.load(p)


def test_index_of_20k_entries_saves_and_loads(tmp_path):
    # how fast it loads is bench/fs.py's business (prepare+mount), not a unit test's
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for d in range(200):
            add(tf, f"usr/share/pkg{d}", tarfile.DIRTYPE)
            for i in range(100):
                add(tf, f"usr/share/pkg{d}/file-{i}.txt", data=b"0123456789")
    idx = index_bytes(buf.getvalue())
    assert len(idx) == 20_203
    idx.save(tmp_path / "index")
    loaded = LayerIndex.load(tmp_path / "index")
    assert len(loaded) == 20_203
    e = loaded.get("usr/share/pkg150/file-42.txt")
    assert e.size == 10 and len(loaded.children("usr/share/pkg150")) == 100


def test_mmap_blob_reads_and_bounds(tmp_path):
    data = python_tar(tarfile.GNU_FORMAT)
    (tmp_path / "blob").write_bytes(data)
    idx = index_bytes(data)
    with MmapBlob(tmp_path / "blob", name="layer X") as blob:
        assert blob.size == len(data)
        e = idx.get("sizes/f513")
        assert blob.read_at(e.offset, e.size) == data[e.offset:e.offset + e.size]
        assert bytes(blob.view(e.offset, 10)) == data[e.offset:e.offset + 10]
        assert blob.read_file(e, 500, 100) == data[e.offset + 500:e.offset + 513]  # short read
        assert blob.read_file(e, 513, 10) == b"" and blob.read_file(e, 9999) == b""
        assert blob.read_at(len(data), 0) == b""
        for off, size in ((len(data) - 1, 2), (-1, 1), (0, len(data) + 1), (10 ** 12, 1)):
            with pytest.raises(LayerCorruptError, match="layer X"):
                blob.read_at(off, size)
        bogus = IndexEntry("x", REG, 0o644, 0, 0, 4096, 0.0, "", 0, 0, (), len(data) - 100)
        with pytest.raises(LayerCorruptError):
            blob.read_file(bogus)
    (tmp_path / "empty").write_bytes(b"")
    with MmapBlob(tmp_path / "empty") as empty:
        assert empty.size == 0 and empty.read_at(0, 0) == b""
        with pytest.raises(LayerCorruptError):
            empty.read_at(0, 1)


def test_libarchive_xattrs_and_pax_overrides():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT,
                      pax_headers={"uid": "7"}) as tf:     # a global header applies to all
        add(tf, "a", data=b"1", pax_headers={
            "LIBARCHIVE.xattr.user.with%20space": "dmFsdWU",  # base64("value"), unpadded
            "SCHILY.xattr.user.plain": "p",
            "mtime": "1234.5", "gid": "4000000"})
        add(tf, "b", data=b"2")
    idx = index_bytes(buf.getvalue())
    a = idx.get("a")
    assert a.xattrs == (("user.plain", b"p"), ("user.with space", b"value"))
    assert (a.uid, a.gid, a.mtime) == (7, 4_000_000, 1234.5)
    assert idx.get("b").uid == 7 and idx.get("b").xattrs == ()


def _fix_checksum(d: bytearray, off: int) -> None:
    blk = d[off:off + 512]
    blk[148:156] = b" " * 8
    d[off + 148:off + 156] = b"%06o\0 " % sum(blk)


def test_negative_base256_size_is_corrupt_not_a_hang():
    d = bytearray(one_entry_tar("f"))
    # first block is the PAX header: give it a base-256 negative size
    d[124:136] = b"\xff" + b"0" * 10 + b"\0"
    _fix_checksum(d, 0)
    with pytest.raises(LayerCorruptError, match="base-256 size"):
        index_bytes(bytes(d))
    d = bytearray(one_entry_tar("f"))
    d[124:136] = b"-0000000001\0"
    _fix_checksum(d, 0)
    with pytest.raises(LayerCorruptError, match="octal size"):
        index_bytes(bytes(d))


def test_fuzzed_headers_raise_only_layer_errors():
    """Random header damage (with valid checksums) must give LayerCorruptError or
    UnsafeLayerEntryError - never another exception, a hang, or data past the stream."""
    rnd = random.Random(1234)
    bases = []
    for fmt in (tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT):
        data = python_tar(fmt)
        tf = tarfile.open(fileobj=io.BytesIO(data))
        blocks = [o for m in tf.getmembers() for o in range(m.offset, m.offset_data, 512)]
        bases.append((data, blocks))
    t = time.monotonic()
    for _ in range(1500):
        data, blocks = rnd.choice(bases)
        d = bytearray(data)
        off = rnd.choice(blocks)
        for _ in range(rnd.randint(1, 4)):
            d[off + rnd.randrange(512)] = rnd.choice((0, 0x20, 0x2E, 0x2F, 0x30, 0x37, 0x80, 0xFF,
                                                      rnd.randrange(256)))
        if rnd.random() < 0.8:
            _fix_checksum(d, off)
        ix = TarIndexer("fuzz")
        try:
            ix.feed(bytes(d))
            idx = ix.finish()
        except (LayerCorruptError, UnsafeLayerEntryError):
            continue
        assert idx.data_end() <= len(d)
    assert time.monotonic() - t < 30


def test_non_utf8_names_survive_save_and_load(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT,
                      encoding="utf-8", errors="surrogateescape") as tf:
        add(tf, "latin1-\udce9t\udce9", data=b"x")          # b"latin1-\xe9t\xe9" on disk
    idx = index_bytes(buf.getvalue())
    idx.save(tmp_path / "index")
    e = LayerIndex.load(tmp_path / "index").get("latin1-\udce9t\udce9")
    assert e is not None and os.fsencode(e.path) == b"latin1-\xe9t\xe9"


def test_bare_slash_entry_is_the_root():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        add(tf, "/", tarfile.DIRTYPE, mode=0o700)
        add(tf, "f", data=b"x")
    idx = index_bytes(buf.getvalue())
    assert idx.paths() == ["", "f"] and idx.get("").mode == 0o700
