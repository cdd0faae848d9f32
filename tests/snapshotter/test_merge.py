"""Merge (overlay semantics over layer indexes) and the union view, without FUSE."""
from __future__ import annotations

import errno
import os
import stat

import pytest

from fsutil import C, D, F, H, L, O, P, W, index_to_files, make_tar, rmtree, user_tmpdir
from snapshotter.layer_index import LayerIndex
from snapshotter.merge import LOWER_INO_BASE, LowerData, MergedTree
from snapshotter.union import Union
from snapshotter.upper import OPAQUE_XATTR, UpperDir, is_whiteout


def build(tmp_path, layers):
    lowers = [index_to_files(make_tar(specs), tmp_path / f"l{i}") for i, specs in
              enumerate(layers)]
    tree = MergedTree([LayerIndex.load(i) for i, _ in lowers])
    return tree, LowerData([b for _, b in lowers])


BASE = [D("etc"), F("etc/passwd", b"root:x:0:0\n"), F("etc/hosts", b"127.0.0.1 localhost\n"),
        D("var", 0o755), D("var/lib"), F("var/lib/a", b"A"), F("var/lib/b", b"B"),
        D("tmp", 0o1777), F("bin/sh", b"#!sh", 0o755), H("bin/sh2", "bin/sh"),
        L("bin/link", "/bin/sh"), P("run/fifo"), C("dev/null", 1, 3),
        D("home/u", 0o700, uid=1000, gid=1000), F("home/u/x", b"x", xattrs={"user.k": b"v"})]


def test_layers_whiteouts_opaque(tmp_path):
    top = [W("etc/hosts"), O("var/lib"), F("var/lib/c", b"C"), F("etc/passwd", b"new\n"),
           F("tmp/new", b"n"), W("does/not/exist"), W("etc/nothere")]
    tree, data = build(tmp_path, [BASE, top])
    assert tree.get("etc/hosts") is None
    assert sorted(tree.children("var/lib")) == ["c"]
    assert data.read(tree.get("etc/passwd"), 0, 100) == b"new\n"
    # an implied parent ("tmp" from "tmp/new") keeps the lower layer's attributes
    assert tree.get("tmp").mode == stat.S_IFDIR | 0o1777
    # a whiteout for a missing path is ignored (its parents are implied, as tar would make them)
    assert tree.children("does/not") == [] and ".wh.nothere" not in tree.children("etc")
    assert not any(".wh." in p for p in tree.paths())


def test_types_links_and_counts(tmp_path):
    tree, data = build(tmp_path, [BASE])
    sh, sh2 = tree.get("bin/sh"), tree.get("bin/sh2")
    assert sh is sh2 and sh.nlink == 2 and sh.ino > LOWER_INO_BASE
    assert data.read(sh2, 0, 10) == b"#!sh"
    assert stat.S_ISLNK(tree.get("bin/link").mode) and tree.get("bin/link").linkname == "/bin/sh"
    assert stat.S_ISFIFO(tree.get("run/fifo").mode)
    dev = tree.get("dev/null")
    assert stat.S_ISCHR(dev.mode) and os.major(dev.rdev) == 1 and os.minor(dev.rdev) == 3
    home = tree.get("home/u")
    assert (home.uid, home.gid, home.mode & 0o7777) == (1000, 1000, 0o700)
    assert tree.get("home/u/x").xattrs == {"user.k": b"v"}
    assert tree.get("var").nlink == 3   # itself, ".", and lib's ".."


def test_hardlink_count_drops_when_a_name_is_whited_out(tmp_path):
    tree, _ = build(tmp_path, [BASE, [W("bin/sh2")]])
    assert tree.get("bin/sh").nlink == 1


def test_file_replaces_dir_and_dir_replaces_file(tmp_path):
    tree, _ = build(tmp_path, [BASE, [F("var/lib", b"now a file"), D("etc/passwd")]])
    assert stat.S_ISREG(tree.get("var/lib").mode) and tree.get("var/lib/a") is None
    assert stat.S_ISDIR(tree.get("etc/passwd").mode)


def test_whiteout_and_recreate_in_same_layer(tmp_path):
    # a whiteout only hides lower layers: the same layer may put a new entry there
    tree, data = build(tmp_path, [BASE, [W("var/lib"), D("var/lib"), F("var/lib/z", b"z")]])
    assert tree.children("var/lib") == ["z"]


def test_read_past_blob_end_is_layer_corrupt(tmp_path):
    from snapshotter.errors import LayerCorruptError
    tree, data = build(tmp_path, [BASE])
    node = tree.get("etc/passwd")
    node.offset = 10 ** 9
    with pytest.raises(LayerCorruptError):
        data.read(node, 0, 10)


@pytest.fixture
def union(tmp_path):
    tree, data = build(tmp_path, [BASE])
    up = tmp_path / "upper"
    up.mkdir()
    return Union(tree, data, UpperDir(up)), up


def test_union_copy_up_and_whiteouts(union):
    u, up = union
    fh = u.open("home/u/x", os.O_RDWR)
    u.write(fh, b"Y", 0)
    u.release(fh)
    st = os.lstat(up / "home/u/x")
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (0, 0, 0o644)
    assert os.getxattr(up / "home/u/x", "user.k") == b"v"
    assert os.lstat(up / "home/u").st_uid == 1000
    u.unlink("etc/hosts")
    assert is_whiteout(os.lstat(up / "etc/hosts"))
    assert "hosts" not in u.readdir("etc")
    with pytest.raises(FileNotFoundError):
        u.getattr("etc/hosts")
    u.rmdir("tmp")
    u.mkdir("tmp", 0o755, (0, 0))
    assert os.getxattr(up / "tmp", OPAQUE_XATTR) == b"y"
    assert u.readdir("tmp") == []


def test_union_setgid_dirs_pass_their_group_on(tmp_path):
    tree, data = build(tmp_path, [BASE + [D("srv", 0o2775, 0, 50)]])
    up = tmp_path / "upper"
    up.mkdir()
    u = Union(tree, data, UpperDir(up))
    u.release(u.create("srv/f", 0o644, os.O_RDWR, (1000, 1000)))
    u.mkdir("srv/d", 0o755, (1000, 1000))
    f, d = u.getattr("srv/f"), u.getattr("srv/d")
    assert (f["st_uid"], f["st_gid"]) == (1000, 50)
    assert (d["st_gid"], d["st_mode"] & 0o7777) == (50, 0o2755)


def test_union_rename_dir_and_file(union):
    u, up = union
    u.rename("var/lib", "var/lib2")
    assert sorted(u.readdir("var/lib2")) == ["a", "b"]
    with pytest.raises(FileNotFoundError):
        u.getattr("var/lib")
    fh = u.open("var/lib2/a", os.O_RDONLY)
    assert u.read(fh, 10, 0) == b"A"
    u.release(fh)
    u.rename("etc/passwd", "etc/hosts")   # over an existing lower file
    fh = u.open("etc/hosts", os.O_RDONLY)
    assert u.read(fh, 100, 0) == b"root:x:0:0\n"
    u.release(fh)
    assert sorted(u.readdir("etc")) == ["hosts"]
    with pytest.raises(OSError) as ei:
        u.rename("etc", "home/u")   # non-empty target dir
    assert ei.value.errno == errno.ENOTEMPTY


def test_union_overrides_when_chown_is_denied(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to drop privileges in-process")
    base = user_tmpdir()
    tree, data = build(base, [BASE])
    up = base / "upper"
    up.mkdir()
    from unpriv import test_ids
    uid, gid = test_ids()
    os.chown(up, uid, gid)
    pid = os.fork()
    if pid == 0:
        try:
            os.setgid(gid)
            os.setuid(uid)
            u = Union(tree, data, UpperDir(up))
            u.chmod("etc/passwd", 0o600)
            a = u.getattr("etc/passwd")
            ok = (a["st_uid"], a["st_mode"]) == (0, stat.S_IFREG | 0o600)
            u.mknod("dev/zero", stat.S_IFCHR | 0o666, os.makedev(1, 5), (0, 0))
            z = u.getattr("dev/zero")
            ok = ok and stat.S_ISCHR(z["st_mode"]) and z["st_rdev"] == os.makedev(1, 5)
            os._exit(0 if ok else 1)
        except BaseException:
            import traceback
            traceback.print_exc()
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    rmtree(base)
    assert os.waitstatus_to_exitcode(status) == 0
