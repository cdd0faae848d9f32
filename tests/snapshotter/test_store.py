"""LayerStore / ContentStore: one-pass ingest, verification, atomic commit, locks, crashes."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from snapshotter.errors import (DigestMismatchError, LayerCorruptError, StoreError,
                                StoreFullError, UnsafeLayerEntryError)
from snapshotter.layer_index import CHAR, FIFO, REG
from snapshotter.layout import StoreLayout
from snapshotter.errors import BlobNotFoundError, LayerNotFoundError
from snapshotter.store import ContentStore, FileLock, LayerStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import unpriv  # noqa: E402  (tests/unpriv.py)

GZ = "application/vnd.oci.image.layer.v1.tar+gzip"
ZST = "application/vnd.oci.image.layer.v1.tar+zstd"
TAR = "application/vnd.oci.image.layer.v1.tar"
DOCKER_GZ = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def make_tar(files: dict, extra=None) -> bytes:
    """files: name -> bytes (regular files); extra(tf) may add special members."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), 0o644, 1_600_000_000
            tf.addfile(ti, io.BytesIO(data))
        if extra:
            extra(tf)
    return buf.getvalue()


def specials(tf: tarfile.TarFile) -> None:
    for name, type, kw in (("dev/null", tarfile.CHRTYPE, {"devmajor": 1, "devminor": 3}),
                           ("run/fifo", tarfile.FIFOTYPE, {}),
                           ("usr/bin/passwd", tarfile.REGTYPE, {"mode": 0o4755}),
                           ("etc/.wh.shadow", tarfile.REGTYPE, {})):
        ti = tarfile.TarInfo(name)
        ti.type = type
        ti.mode = kw.pop("mode", 0o644)
        for k, v in kw.items():
            setattr(ti, k, v)
        tf.addfile(ti)


def diff_id(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def compress(data: bytes, media_type: str) -> bytes:
    if media_type in (GZ, DOCKER_GZ):
        half = len(data) // 2   # two gzip members: multi-member streams must work
        return gzip.compress(data[:half]) + gzip.compress(data[half:])
    if media_type == ZST:
        import zstandard
        return zstandard.ZstdCompressor(level=3).compress(data)
    return data


def chunks(data: bytes, size: int = 100_003):
    return [data[i:i + size] for i in range(0, len(data), size)]


@pytest.fixture
def layout(tmp_path):
    return StoreLayout(tmp_path / "store").ensure()


@pytest.fixture
def layer_tar():
    files = {"etc/os-release": b"ID=test\n", "bin/big": os.urandom(3 << 20),
             "usr/share/doc/readme": b"hello\n" * 5000}
    return make_tar(files, specials)


def committed_dirs(layout: StoreLayout) -> list:
    return sorted(os.listdir(layout.layers_dir))


@pytest.mark.parametrize("media_type", [GZ, ZST, TAR, DOCKER_GZ])
def test_ingest_decompresses_hashes_indexes_and_stores(layout, layer_tar, media_type):
    store = LayerStore(layout)
    did = diff_id(layer_tar)
    with store.ingest(did, media_type, "layer 1 of test") as w:
        for c in chunks(compress(layer_tar, media_type)):
            w.write(c)
        info = w.commit()
    assert (info.diff_id, info.size) == (did, len(layer_tar))
    assert store.has(did) and store.list() == [did] and store.size(did) == len(layer_tar)
    assert store.blob_path(did).read_bytes() == layer_tar      # blob = the uncompressed tar
    assert os.listdir(layout.ingest_dir) == []
    idx = store.index(did)
    assert len(idx) == info.entries
    tf = tarfile.open(fileobj=io.BytesIO(layer_tar))
    with store.open_blob(did) as blob:
        for m in tf.getmembers():
            e = idx.get(m.name)
            if m.isreg():
                assert blob.read_at(e.offset, e.size) == tf.extractfile(m).read()
    assert idx.get("dev/null").type == CHAR and idx.get("run/fifo").type == FIFO
    assert idx.get("usr/bin/passwd").mode == 0o4755 and idx.get("etc/.wh.shadow").type == REG


def test_shared_layer_is_stored_once(layout, layer_tar):
    store = LayerStore(layout)
    did = diff_id(layer_tar)
    a = store.ingest_stream(did, GZ, chunks(compress(layer_tar, GZ)), "image A")
    b = store.ingest_stream(did, ZST, chunks(compress(layer_tar, ZST)), "image B")
    assert a == b and committed_dirs(layout) == [did[7:]]
    assert sorted(os.listdir(layout.layer_dir(did))) == ["blob", "index"]
    assert os.listdir(layout.ingest_dir) == []


def assert_nothing_committed(layout, did):
    store = LayerStore(layout)
    assert not store.has(did) and store.list() == []
    assert committed_dirs(layout) == [] and os.listdir(layout.ingest_dir) == []


def test_diff_id_mismatch_commits_nothing(layout, layer_tar):
    wrong = diff_id(b"something else")
    w = LayerStore(layout).ingest(wrong, GZ, "layer 2")
    w.write(compress(layer_tar, GZ))
    with pytest.raises(DigestMismatchError, match=r"layer 2.*expected " + wrong):
        w.commit()
    assert_nothing_committed(layout, wrong)


@pytest.mark.parametrize("case", ["gzip-truncated", "gzip-corrupt", "zstd-truncated",
                                  "tar-truncated", "wrong-compression", "garbage"])
def test_damaged_streams_commit_nothing(layout, layer_tar, case):
    did = diff_id(layer_tar)
    gz, zs = compress(layer_tar, GZ), compress(layer_tar, ZST)
    mt, data = {
        "gzip-truncated": (GZ, gz[:len(gz) // 2]),
        "gzip-corrupt": (GZ, gz[:5000] + bytes(b ^ 0xFF for b in gz[5000:5100]) + gz[5100:]),
        "zstd-truncated": (ZST, zs[:-1]),
        "tar-truncated": (GZ, gzip.compress(layer_tar[:len(layer_tar) // 2])),
        "wrong-compression": (GZ, zs),
        "garbage": (TAR, os.urandom(10_000)),
    }[case]
    with pytest.raises(LayerCorruptError, match="layer L3"):
        with LayerStore(layout).ingest(did, mt, "L3") as w:
            for c in chunks(data, 65536):
                w.write(c)
    assert_nothing_committed(layout, did)


def test_unsafe_layer_is_refused_and_nothing_committed(layout):
    def evil(tf):
        ti = tarfile.TarInfo("../../etc/cron.d/evil")
        ti.size = 3
        tf.addfile(ti, io.BytesIO(b"bad"))
    data = make_tar({"ok": b"fine"}, evil)
    did = diff_id(data)
    with pytest.raises(UnsafeLayerEntryError, match=r"layer evil-image.*'\.\./\.\./etc/cron\.d/evil'"):
        LayerStore(layout).ingest_stream(did, GZ, [compress(data, GZ)], "evil-image")
    assert_nothing_committed(layout, did)


def test_unknown_media_type_and_bad_digest(layout):
    store = LayerStore(layout)
    with pytest.raises(StoreError, match="unsupported layer media type"):
        store.ingest(diff_id(b"x"), "application/x-rar", "x")
    with pytest.raises(StoreError, match="invalid digest"):
        store.ingest("sha256:../../etc", GZ, "x")
    with pytest.raises(StoreError, match="invalid digest"):
        layout.blob_path("sha256:" + "0" * 63 + "/")
    assert os.listdir(layout.ingest_dir) == []


def test_diff_id_none_uses_computed_digest(layout, layer_tar):
    info = LayerStore(layout).ingest_stream(None, "auto", [compress(layer_tar, ZST)], "new")
    assert info.diff_id == diff_id(layer_tar)


def test_remove_and_lookups_of_missing_layers(layout, layer_tar):
    store = LayerStore(layout)
    did = store.ingest_stream(diff_id(layer_tar), TAR, [layer_tar]).diff_id
    store.index(did)
    store.remove(did)
    assert not store.has(did) and committed_dirs(layout) == [] and os.listdir(layout.ingest_dir) == []
    for call in (store.index, store.size, store.open_blob, store.remove):
        with pytest.raises(LayerNotFoundError, match=did):
            call(did)


def test_enospc_is_a_clean_error(tmp_path, layer_tar):
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs")
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], check=True)
    try:
        layout = StoreLayout(mnt / "store").ensure()
        with pytest.raises(StoreFullError, match="no space left"):
            LayerStore(layout).ingest_stream(diff_id(layer_tar), GZ, chunks(compress(layer_tar, GZ)), "big")
        assert_nothing_committed(layout, diff_id(layer_tar))
        with pytest.raises(StoreFullError):
            data = os.urandom(2 << 20)
            ContentStore(layout).write(diff_id(data), data)
        assert os.listdir(layout.ingest_dir) == [] and os.listdir(layout.blobs_dir) == []
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def _ingest_in_child(root: str, data: bytes, mt: str, barrier, q) -> None:
    try:
        store = LayerStore(StoreLayout(Path(root)))
        w = store.ingest(diff_id(data), mt, f"pid {os.getpid()}")
        for c in chunks(compress(data, mt)):
            w.write(c)
        barrier.wait(30)           # both have written everything before either commits
        info = w.commit()
        q.put(("ok", info.diff_id, info.size))
    except BaseException as e:     # report, don't hang the parent
        q.put(("error", repr(e), 0))


def test_concurrent_ingest_of_the_same_layer(layout, layer_tar):
    ctx = multiprocessing.get_context("fork")
    barrier, q = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_ingest_in_child, args=(str(layout.root), layer_tar, mt, barrier, q))
             for mt in (GZ, ZST)]
    for p in procs:
        p.start()
    results = [q.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    did = diff_id(layer_tar)
    assert results == [("ok", did, len(layer_tar))] * 2
    assert committed_dirs(layout) == [did[7:]] and os.listdir(layout.ingest_dir) == []
    assert LayerStore(layout).blob_path(did).read_bytes() == layer_tar


KILL_SCRIPT = textwrap.dedent("""
    import sys, time, gzip
    from pathlib import Path
    from snapshotter.layout import StoreLayout
    from snapshotter.store import LayerStore
    root, did, src = sys.argv[1:4]
    data = gzip.compress(Path(src).read_bytes())
    w = LayerStore(StoreLayout(Path(root))).ingest(did, "application/vnd.oci.image.layer.v1.tar+gzip", "k")
    w.write(data[: len(data) // 2])
    print("halfway", flush=True)
    time.sleep(60)
""")


def test_sigkill_mid_ingest_leaves_nothing_committed(layout, layer_tar, tmp_path):
    src = tmp_path / "layer.tar"
    src.write_bytes(layer_tar)
    did = diff_id(layer_tar)
    env = dict(os.environ, PYTHONPATH=str(unpriv.REPO))
    p = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(layout.root), did, str(src)],
                         stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert p.stdout.readline().strip() == "halfway"
        store = LayerStore(layout)
        assert cleanup_names(layout, 0) == []          # alive: its ingest dir is locked
        assert len(os.listdir(layout.ingest_dir)) == 1
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait(10)
    assert not store.has(did) and store.list() == [] and committed_dirs(layout) == []
    leftover = os.listdir(layout.ingest_dir)
    assert len(leftover) == 1                           # left behind, but never visible
    info = store.ingest_stream(did, GZ, [compress(layer_tar, GZ)], "retry")
    assert info.diff_id == did and store.has(did)
    assert os.listdir(layout.ingest_dir) == leftover    # young leftovers are kept a while...
    assert cleanup_names(layout, 0) == leftover         # ...and removed once stale
    assert os.listdir(layout.ingest_dir) == []


def cleanup_names(layout, min_age):
    return sorted(LayerStore(layout).cleanup_ingest(min_age=min_age))


def test_file_lock_excludes_other_holders(layout):
    store = LayerStore(layout)
    with store.lock("sha256:" + "a" * 64):
        other = FileLock(layout.locks_dir / ("sha256-" + "a" * 64 + ".lock"), timeout=0.2)
        t = time.monotonic()
        with pytest.raises(StoreError, match="timed out"):
            other.acquire()
        assert time.monotonic() - t >= 0.2
    with FileLock(layout.locks_dir / ("sha256-" + "a" * 64 + ".lock"), timeout=0.2):
        pass
    with pytest.raises(StoreError, match="invalid lock name"):
        store.lock("../x")


def test_content_store(layout):
    cs = ContentStore(layout)
    data = b'{"schemaVersion": 2}'
    d = diff_id(data)
    cs.write(d, data)
    assert cs.has(d) and cs.read(d) == data and cs.list() == [d]
    with pytest.raises(DigestMismatchError):
        cs.write(diff_id(b"other"), data)
    with pytest.raises(DigestMismatchError):
        with cs.writer(diff_id(b"y")) as w:
            w.write(b"x")
    with pytest.raises(DigestMismatchError, match="size"):
        with cs.writer(diff_id(b"zz"), size=3) as w:
            w.write(b"zz")
    with pytest.raises(RuntimeError):
        with cs.writer(diff_id(b"q")) as w:
            w.write(b"q")
            raise RuntimeError("caller failed")
    assert not cs.has(diff_id(b"q")) and os.listdir(layout.ingest_dir) == []
    os.chmod(cs.path(d), 0o644)
    cs.path(d).write_bytes(b"tampered")
    with pytest.raises(DigestMismatchError, match="corrupt store"):
        cs.read(d)
    with pytest.raises(BlobNotFoundError):
        cs.read(diff_id(b"absent"))


UNPRIV_SCRIPT = textwrap.dedent("""
    import json, os, sys, hashlib
    from pathlib import Path
    from snapshotter.layout import StoreLayout
    from snapshotter.store import LayerStore
    root, src = sys.argv[1:3]
    data = Path(src).read_bytes()
    store = LayerStore(StoreLayout(Path(root)))
    raw_did = sys.argv[3]
    info = store.ingest_file(raw_did, "application/vnd.oci.image.layer.v1.tar+gzip", Path(src), "u")
    idx = store.index(raw_did)
    e = {p: [idx.get(p).type, idx.get(p).mode, idx.get(p).devmajor, idx.get(p).devminor]
         for p in ("dev/null", "run/fifo", "usr/bin/passwd")}
    kinds = set()
    for dirpath, dirs, files in os.walk(root):
        for f in files:
            kinds.add(oct(os.lstat(os.path.join(dirpath, f)).st_mode >> 12))
    print(json.dumps({"uid": os.getuid(), "size": info.size, "entries": e, "kinds": sorted(kinds)}))
""")


@pytest.fixture
def user_home():
    """A home dir the test user can reach (pytest's tmp_path is root-only 0700)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to the unprivileged test user")
    base = Path(tempfile.mkdtemp(prefix="pdl-store-unpriv-"))
    os.chmod(base, 0o755)
    try:
        yield unpriv.make_user_dir(base / "home")
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_ingest_as_unprivileged_user(user_home, layer_tar):
    user = unpriv.test_user()
    home = user_home
    src = home / "layer.tar.gz"
    src.write_bytes(compress(layer_tar, GZ))
    os.chmod(src, 0o644)
    r = unpriv.python_as_user(["-c", UNPRIV_SCRIPT, str(home / "store"), str(src),
                               diff_id(layer_tar)], home)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["uid"] == user.pw_uid and out["size"] == len(layer_tar)
    assert out["entries"]["dev/null"] == ["c", 0o644, 1, 3]          # recorded ...
    assert out["entries"]["run/fifo"][0] == "p"
    assert out["entries"]["usr/bin/passwd"][1] == 0o4755
    assert out["kinds"] == [oct(0o10)]                                # ... never created
    st = os.stat(home / "store" / "layers" / "sha256" / diff_id(layer_tar)[7:] / "blob")
    assert st.st_uid == user.pw_uid and not st.st_mode & 0o6000


def test_damaged_index_is_rebuilt_from_the_verified_blob(layout, layer_tar):
    store = LayerStore(layout)
    did = store.ingest_stream(diff_id(layer_tar), GZ, [compress(layer_tar, GZ)]).diff_id
    good = store.index(did).entries
    store.verify(did)
    ipath = layout.layer_index(did)
    os.chmod(ipath, 0o644)
    ipath.write_bytes(ipath.read_bytes()[:-7])            # truncated index file
    fresh = LayerStore(layout)
    with pytest.raises(LayerCorruptError):
        fresh.verify(did)
    assert fresh.index(did).entries == good                # rebuilt on load ...
    assert LayerStore(layout).index(did).entries == good   # ... and saved
    blob = layout.layer_blob(did)
    os.chmod(blob, 0o644)
    with open(blob, "r+b") as f:
        f.seek(1000)
        f.write(b"X")
    with pytest.raises(DigestMismatchError, match="stored layer"):
        LayerStore(layout).verify(did)
    ipath.write_bytes(b"junk")
    with pytest.raises(DigestMismatchError):               # never rebuilt from a bad blob
        LayerStore(layout).index(did)


def test_cleanup_ingest_spares_live_writers_and_foreign_entries(layout):
    store = LayerStore(layout)
    live = ContentStore(layout).writer(diff_id(b"payload"))
    live.write(b"pay")
    lw = store.ingest(None, TAR, "live layer")                 # (runs a clean-up itself)
    foreign = layout.ingest_dir / "partial-download-of-something"
    foreign.write_bytes(b"not ours")
    stale = layout.ingest_dir / "blob-0123456789abcdef-dead"   # what a killed BlobWriter leaves
    stale.write_bytes(b"half")
    for p in (foreign, stale):
        os.utime(p, (time.time() - 3600, time.time() - 3600))
    assert store.cleanup_ingest() == [stale.name]                 # default: only stale ones
    assert sorted(store.cleanup_ingest(min_age=0)) == []          # live ones are locked
    assert len(os.listdir(layout.ingest_dir)) == 3 and foreign.exists()
    live.write(b"load")
    assert live.commit() == layout.blob_path(diff_id(b"payload"))
    lw.abort()
    assert os.listdir(layout.ingest_dir) == [foreign.name]
