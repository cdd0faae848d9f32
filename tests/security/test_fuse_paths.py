"""Class 9 of issue 10: the FUSE servers never leave the layer blobs and the upper directory,
whatever names, links and races a container (or a request) throws at them."""
from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest

from tests import unpriv

SECRET = "TOP-SECRET-OF-THE-USER"


def _secret(cli) -> Path:
    p = cli.home / "secret.txt"
    p.write_text(SECRET + "\n")
    os.chown(p, unpriv.test_user().pw_uid, unpriv.test_user().pw_gid)
    return p


def test_links_in_the_upper_dir_never_lead_the_server_to_host_files(cli, busybox):
    """With the FUSE upper (--storage-driver fuse) the container makes links to the user's
    files and asks the server to act on the links themselves: hard-link them (link(2) of a
    symlink links the symlink), set their times and owners. (A regression test: main's
    server was not led out this way -- the kernel and libfuse's path locking stand in front
    of it; the unit tests below show what it followed when a link appeared behind its back.)"""
    secret = _secret(cli)
    before = os.stat(secret)
    script = (f"ln -s {secret} /s && ln /s /h; cat /h; "
              f"ln -s {cli.home} /d && ln /d /dh; ls /dh/; "
              "touch -h -d '2001-01-01 00:00' /s; chown -h 1:1 /s; echo done")
    r = cli("--storage-driver", "fuse", "run", "--rm", busybox, "sh", "-c", script)
    assert "done" in r.stdout, r.stderr
    assert SECRET not in r.stdout, "the server linked the user's file into the container"
    assert "secret.txt" not in r.stdout
    after = os.stat(secret)
    assert (after.st_nlink, after.st_mtime, after.st_uid) == \
        (before.st_nlink, before.st_mtime, before.st_uid)


def _union(tmp_path):
    from snapshotter.merge import LowerData, MergedTree
    from snapshotter.union import Union
    from snapshotter.upper import UpperDir
    upper = tmp_path / "upper"
    upper.mkdir()
    return Union(MergedTree([]), LowerData([]), UpperDir(upper)), upper


@pytest.mark.parametrize("name", ["..", "../..", "a/../../x", "../etc/passwd", ".", "a//b",
                                  "a/./b", "/etc/passwd", "a\0b"])
def test_names_that_are_not_plain_paths_are_refused(tmp_path, name):
    """The kernel never sends these; a request that does gets EINVAL, never a host file."""
    u, _ = _union(tmp_path)
    for op in (lambda: u.getattr(name), lambda: u.readdir(name),
               lambda: u.mkdir(name, 0o755, (0, 0)), lambda: u.listxattr(name)):
        with pytest.raises(OSError) as e:
            op()
        assert e.value.errno in (errno.EINVAL, errno.ENOENT), (name, e.value)


def test_union_never_follows_a_link_it_did_not_create_itself(tmp_path):
    """Links placed in the upper dir behind the server's back (or swapped in while it works)
    are entries, never ways out: every operation works on the link itself or refuses."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text(SECRET)
    u, upper = _union(tmp_path)
    (upper / "d").symlink_to(outside)                   # a directory link
    (upper / "f").symlink_to(outside / "secret.txt")    # a file link
    assert u.readlink("d") == str(outside)
    for op in (lambda: u.getattr("d/secret.txt"), lambda: u.readdir("d"),
               lambda: u.create("d/new", 0o644, os.O_WRONLY, (0, 0)),
               lambda: u.mkdir("d/newdir", 0o755, (0, 0)),
               lambda: u.open("f", os.O_RDONLY), lambda: u.truncate("f", 0),
               lambda: u.setxattr("d/secret.txt", "user.x", b"1", 0)):
        with pytest.raises(OSError):
            op()
    u.link("h", "f")                 # links the symlink, not the file behind it
    assert os.path.islink(upper / "h") and os.readlink(upper / "h") == str(
        outside / "secret.txt")
    u.chmod("f", 0o600)
    u.utimens("f", (0, 0))
    assert (outside / "secret.txt").read_text() == SECRET
    assert sorted(os.listdir(outside)) == ["secret.txt"]
    assert os.stat(outside / "secret.txt").st_nlink == 1


def test_rename_races_never_lead_outside(tmp_path):
    """One thread swaps an upper directory with a link to outside (RENAME_EXCHANGE, behind
    the server's back); another keeps creating and reading files below it through the
    union. Nothing is ever created or read outside."""
    import ctypes
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text(SECRET)
    u, upper = _union(tmp_path)
    (upper / "d").mkdir()
    (upper / "d" / "secret.txt").write_text("inside")
    (upper / "l").symlink_to(outside)
    libc = ctypes.CDLL(None, use_errno=True)
    stop = threading.Event()

    def swapper():
        d, link = str(upper / "d").encode(), str(upper / "l").encode()
        while not stop.is_set():
            libc.syscall(316, -100, d, -100, link, 2)     # renameat2 RENAME_EXCHANGE
    t = threading.Thread(target=swapper, daemon=True)
    t.start()
    seen = set()
    try:
        for i in range(3000):
            try:
                fh = u.open("d/secret.txt", os.O_RDONLY)
                seen.add(u.read(fh, 100, 0))
                u.release(fh)
            except OSError:
                pass
            try:
                u.release(u.create(f"d/n{i}", 0o644, os.O_WRONLY, (0, 0)))
            except OSError:
                pass
    finally:
        stop.set()
        t.join()
    assert SECRET.encode() not in seen
    assert sorted(os.listdir(outside)) == ["secret.txt"]


def test_the_upper_roots_own_markers_are_its_own(tmp_path):
    """The root directory's markers (opaque, override) are read from and written to the
    directory itself, not to the /proc link that names it."""
    from snapshotter.upper import OPAQUE_XATTR, UpperDir
    upper = tmp_path / "upper"
    upper.mkdir()
    os.setxattr(upper, OPAQUE_XATTR, b"y")
    u = UpperDir(upper)
    assert "" in u.opaque
    u.set_override("", 0, 0, 0o40755, 0)
    assert u.override("") == (0, 0, 0o40755, 0)
    assert os.getxattr(upper, "user.pydocklite.override") == b"0:0:16877:0"
    u.close()
