"""One snapshotter conformance suite, run against every mounting backend.

Everything runs as the unprivileged test user, inside a fresh user+mount namespace
(`unshare --map-auto -r -m`: root inside is the user, uids 1.. map to its subuid range), the
way the shim mounts a container's rootfs. Layers are real tars ingested by LayerStore.
"""
from __future__ import annotations

import errno
import io
import os
import stat
import tarfile

import pytest

from fsutil import (C, D, F, H, L, O, P, W, UserSession, chown_to_user, make_tar,
                    read_only_binding, rmtree, user_tmpdir, userns_idmap)

BACKENDS = ["fuse", "overlay", "vfs"]

BASE = [D("etc"), F("etc/passwd", b"root:x:0:0\n"), F("etc/hosts", b"127.0.0.1 localhost\n"),
        D("var"), D("var/lib"), F("var/lib/a", b"A"), F("var/lib/b", b"B"),
        D("var/cache"), F("var/cache/c1", b"c1"), D("tmp", 0o1777),
        F("bin/sh", b"#!/bin/sh\n", 0o755), H("bin/sh2", "bin/sh"), L("bin/link", "/bin/sh"),
        P("run/fifo"), C("dev/null", 1, 3),
        D("home/u", 0o750, uid=1000, gid=1000),
        F("home/u/notes", b"secret", 0o640, uid=1000, gid=1000, xattrs={"user.tag": b"v1"}),
        F("opt/big", bytes(range(256)) * 4096)]
TOP = [W("etc/hosts"), O("var/lib"), F("var/lib/c", b"C"), F("etc/passwd", b"root:x:0:0\nu:x\n"),
       F("tmp/t", b"t"), W("no/such/thing")]


@pytest.fixture
def session():
    base = user_tmpdir()
    try:
        yield UserSession(base)
    finally:
        rmtree(base)


def ingest(s: UserSession, layers) -> list:
    paths = []
    for i, specs in enumerate(layers):
        p = s.base / f"layer{s.n}-{i}.tar"
        p.write_bytes(make_tar(specs))
        paths.append(str(p))
    return s.py(f"""
        from snapshotter.store import LayerStore
        ls = LayerStore(StoreLayout(Path(STORE)))
        out([ls.ingest_file(None, "application/vnd.oci.image.layer.v1.tar", Path(p)).diff_id
             for p in {paths!r}])
    """, userns=False)


def mounted(s, driver, key, chain, body, prepare=True, parent_kind="chain"):
    """Prepare (or reuse) snapshot `key`, mount it at <base>/mnt-<key>, run body (which can
    use MNT and must call out(...)), unmount."""
    mnt = s.base / f"mnt-{key}"
    if not mnt.exists():
        mnt.mkdir()
        chown_to_user(mnt)
    import textwrap
    body = textwrap.indent(textwrap.dedent(body), "    ")
    head = (f"snap = Snapshotter(StoreLayout(Path(STORE)), driver={driver!r})\n"
            f"mounts = snap.prepare({key!r}, {chain!r}) if {prepare!r} else snap.mounts({key!r})\n"
            f"MNT = {str(mnt)!r}\n"
            "active = mount_all(mounts, MNT)\n"
            "try:\n")
    return s.py(head + body + "\nfinally:\n    active.unmount()\n")


@pytest.mark.parametrize("driver", BACKENDS + ["overlay+fusepy"])
def test_layered_view_whiteouts_opaque(session, driver):
    fallback = driver.endswith("+fusepy")
    driver = read_only_binding(session, driver)
    chain = ingest(session, [BASE, TOP])
    r = mounted(session, driver, "k1", chain, """
        m = Path(MNT)
        def st(p):
            s = os.lstat(m / p)
            return [stat.S_IFMT(s.st_mode), s.st_mode & 0o7777, s.st_uid, s.st_gid, s.st_nlink]
        out({"etc": sorted(os.listdir(m / "etc")), "lib": sorted(os.listdir(m / "var/lib")),
             "passwd": (m / "etc/passwd").read_text(), "tmp": st("tmp"),
             "home": st("home/u"), "notes": st("home/u/notes"),
             "notes_x": os.getxattr(m / "home/u/notes", "user.tag").decode(),
             "sh": st("bin/sh"), "ino": os.lstat(m / "bin/sh").st_ino == os.lstat(m / "bin/sh2").st_ino,
             "link": os.readlink(m / "bin/link"), "fifo": st("run/fifo"),
             "null": [st("dev/null")[0], os.major(os.lstat(m / "dev/null").st_rdev),
                      os.minor(os.lstat(m / "dev/null").st_rdev)],
             "big": (m / "opt/big").read_bytes() == bytes(range(256)) * 4096,
             "nothing": sorted(os.listdir(m / "no/such")),
             "root": sorted(os.listdir(m)),
             # this session's mounts only (another user's FUSE mount shows here too)
             "fstypes": sorted(l.split(" - ")[1].split()[0] for l in open(
                 "/proc/self/mountinfo") if " - fuse.pydocklite" in l and
                 l.split()[4].startswith(os.path.dirname(MNT) + "/"))})
    """)
    assert r["etc"] == ["passwd"]
    assert r["lib"] == ["c"]
    assert r["passwd"] == "root:x:0:0\nu:x\n"
    assert r["tmp"][:2] == [stat.S_IFDIR, 0o1777]
    assert r["home"][:4] == [stat.S_IFDIR, 0o750, 1000, 1000]
    assert r["notes"][:4] == [stat.S_IFREG, 0o640, 1000, 1000] and r["notes_x"] == "v1"
    assert r["sh"][4] == 2 and r["ino"]
    assert r["link"] == "/bin/sh"
    assert r["fifo"][0] == stat.S_IFIFO
    if driver == "vfs":   # a plain copy can't mknod without privileges: a placeholder file
        assert r["null"][0] == stat.S_IFREG
    else:
        assert r["null"] == [stat.S_IFCHR, 1, 3]
    assert r["big"] and r["nothing"] == []
    assert not any(n.startswith(".wh.") for n in r["root"])
    # read-only lowers are served through libfuse3's low-level API (subtype pydocklite3)
    # unless told otherwise; writable FUSE mounts through fusepy
    assert r["fstypes"] == {"overlay": ["fuse.pydocklite" if fallback else "fuse.pydocklite3"],
                            "fuse": ["fuse.pydocklite"], "vfs": []}[driver]


@pytest.mark.parametrize("driver", BACKENDS)
def test_copy_up_preserves_mode_owner_xattrs(session, driver):
    chain = ingest(session, [BASE])
    r = mounted(session, driver, "k1", chain, """
        m = Path(MNT)
        with open(m / "home/u/notes", "a") as f:
            f.write("+more")
        os.chmod(m / "bin/sh", 0o700)
        os.chown(m / "etc/passwd", 1000, 1000)
        s = os.lstat(m / "home/u/notes")
        out({"notes": [s.st_mode & 0o7777, s.st_uid, s.st_gid, (m / "home/u/notes").read_text(),
                       os.getxattr(m / "home/u/notes", "user.tag").decode()],
             "sh": [os.lstat(m / "bin/sh").st_mode & 0o7777, (m / "bin/sh").read_bytes().decode()],
             "passwd": [os.lstat(m / "etc/passwd").st_uid, (m / "etc/passwd").read_text()]})
    """)
    assert r["notes"] == [0o640, 1000, 1000, "secret+more", "v1"]
    assert r["sh"] == [0o700, "#!/bin/sh\n"]
    assert r["passwd"] == [1000, "root:x:0:0\n"]
    # on disk (host view), the upper (vfs: full) copy belongs to the user's subuid for container uid 1000
    info = session.py("""
        out(Snapshotter(StoreLayout(Path(STORE))).stat("k1").path)
    """, userns=False)
    up = os.path.join(info, "fs" if driver == "vfs" else "upper", "home/u/notes")
    assert os.lstat(up).st_uid == userns_idmap()["uids"][1][1] + 1000 - 1
    assert os.getxattr(up, "user.tag") == b"v1"


@pytest.mark.parametrize("driver", BACKENDS)
def test_rename_and_hardlinks(session, driver):
    chain = ingest(session, [BASE])
    r = mounted(session, driver, "k1", chain, """
        m = Path(MNT)
        os.rename(m / "etc/passwd", m / "etc/hosts")           # over an existing lower file
        (m / "new").write_text("n")
        os.rename(m / "new", m / "var/lib/a")                   # upper file over lower file
        # a lower directory (kernel overlayfs in a user namespace answers EXDEV, which mv
        # handles by copying; the FUSE backend renames it)
        sh("mv var/cache var/cache2", cwd=m)
        os.link(m / "var/lib/b", m / "var/lib/b2")
        os.link(m / "var/lib/b", m / "var/lib/b3")
        os.unlink(m / "bin/sh2")
        try:
            os.rename(m / "etc", m / "var/lib")
            notempty = False
        except OSError as e:
            notempty = e.errno
        out({"etc": sorted(os.listdir(m / "etc")), "hosts": (m / "etc/hosts").read_text(),
             "a": (m / "var/lib/a").read_text(), "cache2": sorted(os.listdir(m / "var/cache2")),
             "cache": os.path.exists(m / "var/cache"), "c1": (m / "var/cache2/c1").read_text(),
             "b3_links": os.lstat(m / "var/lib/b3").st_nlink, "notempty": notempty,
             "b_links": [time.sleep(1.1), os.lstat(m / "var/lib/b").st_nlink][1]})
    """)
    assert r["etc"] == ["hosts"] and r["hosts"] == "root:x:0:0\n"
    assert r["a"] == "n"
    assert r["cache2"] == ["c1"] and not r["cache"] and r["c1"] == "c1"
    assert r["b3_links"] == 3
    # other names of the file: at once with overlay, after the 1 s attr timeout with fuse rw
    assert r["b_links"] == 3
    # renaming a dir over a non-empty one fails (overlayfs in a userns says EXDEV first)
    assert r["notempty"] == (errno.EXDEV if driver == "overlay" else errno.ENOTEMPTY)


def _tar_summary(data: bytes) -> dict:
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        for m in tf.getmembers():
            body = tf.extractfile(m).read() if m.isreg() else b""
            out[m.name] = (m.type, body, m.uid, m.mode & 0o7777)
    return out


@pytest.mark.parametrize("driver", BACKENDS)
def test_commit_diff_has_exactly_the_changes(session, driver):
    chain = ingest(session, [BASE])
    mounted(session, driver, "k1", chain, """
        m = Path(MNT)
        (m / "etc/added").write_text("added")
        with open(m / "etc/passwd", "a") as f:
            f.write("x:1\\n")
        os.unlink(m / "etc/hosts")
        sh("rm -rf var/cache && mkdir var/cache && echo fresh > var/cache/f", cwd=m)
        sh("rm -rf var/lib", cwd=m)
        os.chown(m / "etc/added", 1000, 1000)
        out("ok")
    """)
    # commit from the host, mapping the subuids back (fuse, overlay), or from inside the
    # user namespace where ids are already the container's (vfs: its copy has 0750 dirs of
    # other uids that only the namespace's root may read)
    host = driver != "vfs"
    ids = userns_idmap()
    idmap = (f"IdMap(tuple(map(tuple, {ids['uids']!r})), "
             f"tuple(map(tuple, {ids['gids']!r})))") if host else "None"
    r = session.py(f"""
        from snapshotter.diff import IdMap
        snap = Snapshotter(StoreLayout(Path(STORE)), driver={driver!r})
        info = snap.commit("c1", "k1", idmap={idmap})
        lay = StoreLayout(Path(STORE))
        out({{"diff_id": info.diff_id, "blob": str(lay.layer_blob(info.diff_id)),
             "chain": list(snap.stat("c1").chain)}})
    """, userns=not host)
    assert r["chain"] == chain + [r["diff_id"]]
    members = _tar_summary(open(r["blob"], "rb").read())
    files = {k: v for k, v in members.items() if v[0] != tarfile.DIRTYPE}
    # a vfs copy has no record of "emptied and recreated": it whites out each old child
    recreated = "var/cache/.wh.c1" if driver == "vfs" else "var/cache/.wh..wh..opq"
    assert set(files) == {"etc/added", "etc/passwd", "etc/.wh.hosts", recreated,
                          "var/cache/f", "var/.wh.lib"}, members.keys()
    assert files["etc/added"][1:3] == (b"added", 1000)
    assert files["etc/passwd"][1] == b"root:x:0:0\nx:1\n"
    assert files["var/cache/f"][1] == b"fresh\n"
    dirs = {k for k, v in members.items() if v[0] == tarfile.DIRTYPE}
    assert dirs <= {"etc", "var", "var/cache"}
    # the committed snapshot is a parent: a new snapshot on it sees the changes
    r2 = mounted(session, driver, "k2", "c1", """
        m = Path(MNT)
        out({"etc": sorted(os.listdir(m / "etc")), "var": sorted(os.listdir(m / "var")),
             "cache": sorted(os.listdir(m / "var/cache")),
             "owner": os.lstat(m / "etc/added").st_uid})
    """)
    assert r2 == {"etc": ["added", "passwd"], "var": ["cache"], "cache": ["f"], "owner": 1000}


@pytest.mark.parametrize("driver", BACKENDS)
def test_remove_leaves_nothing(session, driver):
    chain = ingest(session, [BASE])
    r = mounted(session, driver, "k1", chain, """
        from snapshotter.errors import MountError
        (Path(MNT) / "f").write_text("x")
        # something only the namespace's uid 1000 (a subuid on the host) may delete
        os.makedirs(Path(MNT) / "home/u/private/deep")
        (Path(MNT) / "home/u/private/deep/x").write_text("x")
        os.chown(Path(MNT) / "home/u/private/deep", 1000, 1000)
        os.chown(Path(MNT) / "home/u/private", 1000, 1000)
        os.chmod(Path(MNT) / "home/u/private/deep", 0o500)
        snap2 = Snapshotter(StoreLayout(Path(STORE)), driver={driver!r})
        try:
            snap2.remove("k1")
            refused = False
        except MountError:
            refused = True
        out({"refused": refused, "dir": snap2.stat("k1").path})
    """.replace("{driver!r}", repr(driver)))
    assert os.path.isdir(r["dir"])
    assert r["refused"]   # refused while mounted
    # removed from the host, outside any user namespace (the CLI's `rm` after the shim left)
    left = session.py("""
        snap = Snapshotter(StoreLayout(Path(STORE)))
        snap.remove("k1")
        out([s.key for s in snap.walk()])
    """, userns=False)
    assert left == []
    assert not os.path.exists(r["dir"])
    with open("/proc/self/mountinfo") as f:
        assert str(session.base) not in f.read()
    snaps = os.listdir(os.path.dirname(r["dir"]))
    assert [n for n in snaps if not n.startswith("metadata.db") and n != "trees"] == []


def test_api_errors_and_walk(tmp_path):
    """Snapshotter bookkeeping, no mounts: keys, parents, kinds, usage, driver choice."""
    from snapshotter.errors import (MountError, SnapshotExistsError, SnapshotNotFoundError,
                                    SnapshotterError)
    from snapshotter.layout import StoreLayout
    from snapshotter.overlay import choose_driver
    from snapshotter.snapshots import FUSE_TYPE, Snapshotter
    from snapshotter.store import LayerStore
    layout = StoreLayout(tmp_path / "store").ensure()
    p = tmp_path / "l.tar"
    p.write_bytes(make_tar(BASE))
    d = LayerStore(layout).ingest_file(None, "application/vnd.oci.image.layer.v1.tar", p).diff_id
    snap = Snapshotter(layout, "overlay")
    ms = snap.prepare("a", [d])
    assert [m.type for m in ms] == [FUSE_TYPE, "overlay"]
    assert "userxattr" in ms[1].options and ms[0].option("ro") == ""
    assert [m.type for m in snap.mounts("a", driver="fuse")] == [FUSE_TYPE]
    assert [m.type for m in snap.view("v", d)] == [FUSE_TYPE]
    with pytest.raises(SnapshotExistsError):
        snap.prepare("a", [d])
    with pytest.raises(SnapshotNotFoundError):
        snap.prepare("b", "no-such-parent")
    with pytest.raises(SnapshotNotFoundError):
        snap.prepare("b", ["sha256:" + "0" * 64])
    with pytest.raises(SnapshotterError):
        snap.commit("c", "v")          # a view can't be committed
    with pytest.raises(SnapshotterError):
        snap.prepare("b", "a")         # an active snapshot can't be a parent
    assert sorted(s.key for s in snap.walk()) == ["a", "v"]
    assert snap.usage("a").inodes == 0
    snap.remove("a")
    snap.remove("v")
    assert snap.walk() == [] and not snap.tree_cache_path([d]).exists()
    snap.warm([d])
    assert snap.tree_cache_path([d]).exists()
    c = choose_driver("auto")
    assert c.driver in ("overlay", "fuse", "vfs") and c.reason
    with pytest.raises(MountError):
        choose_driver("zfs")
