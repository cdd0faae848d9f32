"""POSIX behaviour of a mounted snapshot, checked with real programs, as the test user.

Also: bad input (index past the blob's end, whiteouts for missing paths, tar entries escaping
the root), a killed FUSE server, and a host-side (fusermount) mount like `pydocklite mount`.
"""
from __future__ import annotations

import io
import os
import shutil
import tarfile

import pytest

from fsutil import (C, D, F, H, L, P, W, UserSession, chown_to_user, index_to_files, make_tar,
                    read_only_binding, rmtree, user_tmpdir)
from test_conformance import BACKENDS, ingest, mounted

LAYER = [D("etc", 0o755), F("etc/passwd", b"root:x:0:0\n"), F("etc/shadow", b"x", 0o640, 0, 42),
         D("usr/bin"), F("usr/bin/tool", b"\x7fELF" + bytes(5000), 0o4755),
         H("usr/bin/tool2", "usr/bin/tool"), L("usr/bin/rel", "tool"), L("abs", "/etc/passwd"),
         P("run/ctl", 0o600), C("dev/zero", 1, 5), D("srv", 0o2775, 0, 50),
         F("srv/data.bin", bytes(range(256)) * 1000, 0o644, 33, 33),
         F("home/user/.profile", b"PS1=x", 0o600, 1000, 1000)]


@pytest.fixture
def session():
    base = user_tmpdir()
    try:
        yield UserSession(base)
    finally:
        rmtree(base)


def _members(data: bytes) -> dict:
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        by_name = {}
        for m in tf.getmembers():
            name = m.name[2:] if m.name.startswith("./") else m.name
            name = name.rstrip("/")
            if not name or name == ".":
                continue
            by_name[name] = m
            if m.islnk():   # compare hardlinks as the file (inode) they share
                target = m.linkname[2:] if m.linkname.startswith("./") else m.linkname
                m = by_name[target]
                body = tf.extractfile(m).read()
                kind = tarfile.REGTYPE
            else:
                body = tf.extractfile(m).read() if m.isreg() else b""
                kind = m.type
            out[name] = (kind, m.mode & 0o7777, m.uid, m.gid, body, m.linkname if m.issym()
                         else "", m.devmajor if m.ischr() else 0, m.devminor if m.ischr() else 0,
                         int(m.mtime))
    return out


@pytest.mark.parametrize("driver", BACKENDS + ["overlay+fusepy"])
def test_tar_of_the_tree_equals_the_layer(session, driver):
    driver = read_only_binding(session, driver)
    chain = ingest(session, [LAYER])
    out = session.home / "out.tar"
    r = mounted(session, driver, "k", chain, f"""
        sh("tar --numeric-owner -cf {out} .", cwd=MNT)
        out("ok")
    """)
    assert r == "ok"
    got = _members(out.read_bytes())
    want = _members(make_tar(LAYER))
    for implied in ("usr", "run", "dev", "home", "home/user"):
        got.pop(implied, None)
    if driver == "vfs":   # an unprivileged plain copy holds a placeholder for device nodes
        assert got.pop("dev/zero")[0] == tarfile.REGTYPE
        want.pop("dev/zero")
    assert got == want


@pytest.mark.parametrize("driver", BACKENDS)
def test_real_programs(session, driver):
    chain = ingest(session, [LAYER])
    r = mounted(session, driver, "k", chain, """
        m = Path(MNT)
        res = {}
        sh("cp -a usr usr-copy && diff -r usr usr-copy", cwd=m)
        s1, s2 = os.lstat(m / "usr-copy/bin/tool"), os.lstat(m / "usr-copy/bin/tool2")
        res["cp_links"] = [s1.st_ino == s2.st_ino, s1.st_mode & 0o7777]
        res["find"] = len(sh("find . -ls", cwd=m).splitlines())
        sh("ln etc/passwd etc/passwd.hard && ln -s passwd etc/passwd.sym && mkfifo run/f2", cwd=m)
        res["ln"] = [os.lstat(m / "etc/passwd.hard").st_nlink, os.readlink(m / "etc/passwd.sym"),
                     stat.S_ISFIFO(os.lstat(m / "run/f2").st_mode)]
        sh("mkdir repo && cd repo && git init -q && echo hi > a && git add a && "
           "git -c user.email=t@e -c user.name=t commit -qm first && "
           "echo more >> a && git -c user.email=t@e -c user.name=t commit -qam second && "
           "git gc -q && git fsck --strict", cwd=m)
        res["git"] = sh("git log --format=%s", cwd=m / "repo").split()
        sh("sqlite3 db.sqlite 'create table t(x); insert into t values (1),(2),(3);'", cwd=m)
        sh("sqlite3 db.sqlite 'pragma journal_mode=wal; insert into t select x+3 from t;'", cwd=m)
        res["sqlite"] = sh("sqlite3 db.sqlite 'select sum(x) from t; pragma integrity_check;'",
                           cwd=m).split()
        tmp = m / "etc/.passwd.tmp"
        with open(tmp, "w") as f:
            f.write("replaced\\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, m / "etc/passwd")
        dfd = os.open(m / "etc", os.O_RDONLY)
        os.fsync(dfd)
        os.close(dfd)
        res["replace"] = [(m / "etc/passwd").read_text(), sorted(os.listdir(m / "etc"))]
        out(res)
    """)
    assert r["cp_links"] == [True, 0o4755]
    assert r["find"] >= 20
    assert r["ln"] == [2, "passwd", True]
    assert r["git"] == ["second", "first"]
    assert r["sqlite"] == ["21", "ok"] or r["sqlite"] == ["wal", "21", "ok"]
    assert r["replace"][0] == "replaced\n"
    assert r["replace"][1] == ["passwd", "passwd.hard", "passwd.sym", "shadow"]


@pytest.mark.parametrize("binding", ["libfuse3", "fusepy"])
def test_index_past_blob_end_gives_eio_and_server_survives(session, binding):
    from snapshotter.layer_index import LayerIndex
    if binding == "fusepy":
        read_only_binding(session, "view+fusepy")
    idx_path, blob = index_to_files(make_tar(LAYER), session.base / "bad")
    idx = LayerIndex.load(idx_path)
    entries = [e._replace(offset=10 ** 9) if e.path == "srv/data.bin" else e
               for e in idx.entries]
    LayerIndex(entries).save(idx_path)
    mnt = session.base / "mnt"
    mnt.mkdir()
    chown_to_user(mnt)
    r = session.py(f"""
        from snapshotter.fuse_fs import spawn_fuse
        srv = spawn_fuse({str(mnt)!r}, [(Path({str(idx_path)!r}), Path({str(blob)!r}))], None)
        try:
            try:
                open({str(mnt)!r} + "/srv/data.bin", "rb").read()
                err = None
            except OSError as e:
                err = e.errno
            ok = open({str(mnt)!r} + "/etc/passwd").read()
            out({{"err": err, "ok": ok, "alive": srv.alive()}})
        finally:
            srv.unmount()
    """)
    assert r == {"err": 5, "ok": "root:x:0:0\n", "alive": True}


def test_whiteout_for_missing_path_and_escaping_entries(session):
    chain = ingest(session, [LAYER, [W("etc/nothere"), W("nowhere")]])
    r = mounted(session, "fuse", "k", chain, """
        out(sorted(os.listdir(MNT)))
    """)
    assert r == ["abs", "dev", "etc", "home", "run", "srv", "usr"]
    listing = """
        layout = StoreLayout(Path(STORE))
        out({"layers": sorted(os.listdir(layout.layers_dir)),
             "ingest": sorted(os.listdir(layout.ingest_dir))})
    """
    before = session.py(listing, userns=False)
    evil = session.base / "evil.tar"
    evil.write_bytes(make_tar([F("../escape", b"x")]))
    with pytest.raises(AssertionError, match="UnsafeLayerEntryError"):
        ingest_path = str(evil)
        session.py(f"""
            from snapshotter.store import LayerStore
            LayerStore(StoreLayout(Path(STORE))).ingest_file(
                None, "application/vnd.oci.image.layer.v1.tar", Path({ingest_path!r}))
        """, userns=False)
    # refused before anything could be mounted: no new layer, nothing left being ingested
    assert session.py(listing, userns=False) == before


def test_killed_server_gives_enotconn_and_upper_survives(session):
    chain = ingest(session, [LAYER])
    r = mounted(session, "fuse", "k", chain, """
        import signal, errno
        (Path(MNT) / "etc/kept").write_text("kept")
        with open(Path(MNT) / "etc/passwd", "a") as f:
            f.write("more\\n")
        pid = active.servers[0].pid
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        try:
            os.stat(Path(MNT) / "etc/kept")
            err = None
        except OSError as e:
            err = e.errno
        out({"err": err, "alive": active.servers[0].alive(),
             "upper": snap.stat("k").path + "/upper"})
    """)
    assert r["err"] == 107   # ENOTCONN
    assert not r["alive"]
    up = r["upper"]
    assert open(os.path.join(up, "etc/kept")).read() == "kept"
    assert open(os.path.join(up, "etc/passwd")).read() == "root:x:0:0\nmore\n"


def test_host_mount_with_fusermount(session):
    """`pydocklite mount`: the user mounts a view on the host (no user namespace)."""
    chain = ingest(session, [LAYER])
    mnt = session.base / "hostmnt"
    mnt.mkdir()
    chown_to_user(mnt)
    r = session.py(f"""
        snap = Snapshotter(StoreLayout(Path(STORE)), driver="fuse")
        active = mount_all(snap.view("v", {chain!r}), {str(mnt)!r}, allow_other=False)
        try:
            m = Path({str(mnt)!r})
            res = {{"ls": sorted(os.listdir(m)), "passwd": (m / "etc/passwd").read_text(),
                   "owner": os.lstat(m / "home/user/.profile").st_uid}}
            try:
                (m / "new").write_text("x")
            except OSError as e:
                res["write"] = e.errno
            res["mounted"] = {str(mnt)!r} in open("/proc/self/mountinfo").read()
        finally:
            active.unmount()
        res["after"] = {str(mnt)!r} in open("/proc/self/mountinfo").read()
        snap.remove("v")
        out(res)
    """, userns=False)
    assert r["ls"] == ["abs", "dev", "etc", "home", "run", "srv", "usr"]
    assert r["passwd"] == "root:x:0:0\n" and r["owner"] == 1000
    assert r["write"] == 30   # EROFS: a view is read-only
    assert r["mounted"] and not r["after"]
    assert shutil.which("fusermount")


def test_server_holds_no_descriptor_of_the_caller(session):
    """A CLI waiting for EOF on a pipe must get it even though a FUSE server was forked."""
    chain = ingest(session, [LAYER])
    r = mounted(session, "fuse", "k", chain, """
        pid = active.servers[0].pid
        fds = sorted(int(n) for n in os.listdir(f"/proc/{pid}/fd"))
        targets = [os.readlink(f"/proc/{pid}/fd/{n}") for n in fds if n > 2]
        out(targets)
    """)
    # its own: /dev/fuse, the layer blobs, and (since it works relative to it) its upper dir
    assert "/dev/fuse" in r and all(t == "/dev/fuse" or "/layers/" in t or
                                    t.endswith("/upper") for t in r), r


def test_host_mount_of_a_container_snapshot(session):
    """`pydocklite mount <container>`: an overlay snapshot's upper dir, FUSE-mounted on the
    host after the container wrote to it (same upper format for both drivers)."""
    chain = ingest(session, [LAYER])
    mounted(session, "overlay", "c", chain, """
        (Path(MNT) / "etc/new").write_text("from the container")
        os.unlink(Path(MNT) / "etc/shadow")
        out(1)
    """)
    mnt = session.base / "hostmnt2"
    mnt.mkdir()
    chown_to_user(mnt)
    r = session.py(f"""
        from snapshotter.mounter import host_mount, host_unmount
        snap = Snapshotter(StoreLayout(Path(STORE)))
        where = host_mount(snap, "c", {str(mnt)!r})
        try:
            m = Path(where)
            res = {{"etc": sorted(os.listdir(m / "etc")), "new": (m / "etc/new").read_text()}}
        finally:
            host_unmount(where)
        res["after"] = {str(mnt)!r} in open("/proc/self/mountinfo").read()
        out(res)
    """, userns=False)
    assert r == {"etc": ["new", "passwd"], "new": "from the container", "after": False}
