"""Class 4 of issue 10: walking a container's upper directory (commit, build's layer commit)
never follows a link the container placed or swaps in, and the upper dir's own markers
(user.pydocklite.* / user.overlay.* xattrs) can't be forged by an image or a container."""
from __future__ import annotations

import io
import json
import os
import tarfile
import time

import pytest

from tests import unpriv
from tests.fixtures.cli_runner import ok
from tests.security.hostile_images import FORGED_OVERRIDE, xattr_image

SECRET = b"TOP-SECRET-OF-THE-USER"


def _layer_tars(cli, image: str) -> list:
    """The layer tars of `image` (bytes), from `save` (into the user's home)."""
    archive = cli.home / "img.tar"
    ok(cli("save", "-o", str(archive), image))
    out = []
    with tarfile.open(archive) as tf:
        manifest = json.loads(tf.extractfile("manifest.json").read())[0]
        for name in manifest["Layers"]:
            out.append(tf.extractfile(name).read())
    return out


def _members(layer: bytes) -> dict:
    with tarfile.open(fileobj=io.BytesIO(layer)) as tf:
        return {m.name.rstrip("/"): m for m in tf.getmembers()}


def test_commit_never_follows_a_link_swapped_in_mid_walk(cli, registry, image_cache):
    """The container exchanges /d (a directory) and /l (a link to the user's home) every
    millisecond (renameat2 RENAME_EXCHANGE: /d is always one or the other) while
    `commit --pause=false` walks its upper dir; the user's secret must never end up in a
    layer. Names sorted after d keep the walker busy between looking at d and reading it."""
    ref = registry.push(xattr_image(image_cache), "xattr-hostile")
    ok(cli("pull", "-q", ref))
    home = cli.home
    (home / "secret.txt").write_bytes(SECRET)
    os.chown(home / "secret.txt", unpriv.test_user().pw_uid, unpriv.test_user().pw_gid)
    swap = ("mkdir -p /d && echo inside > /d/f && "
            "i=0; while [ $i -lt 300 ]; do echo x > /e$i; i=$((i+1)); done; "
            f"ln -s {home} /l && touch /ready && exec setx swap /d /l 1000")
    ok(cli("run", "-d", "--name", "racer", ref, "sh", "-c", swap))
    deadline = time.time() + 30
    while cli("exec", "racer", "test", "-e", "/ready").returncode != 0:
        assert time.time() < deadline
        time.sleep(0.1)
    kinds = set()
    try:
        for i in range(16):
            r = cli("commit", "--pause=false", "racer", f"racer:{i}")
            if r.returncode != 0:
                # main's walker listed the user's home through the link, then failed
                # reading it a moment later (or read it: the check below)
                assert "secret.txt" not in r.stderr, "the walk followed the container's link"
                continue
            layer = _layer_tars(cli, f"racer:{i}")[-1]
            assert SECRET not in layer, f"commit {i}: the user's file is in the layer"
            m = _members(layer)
            assert "d/secret.txt" not in m and "l/secret.txt" not in m
            kinds |= {("dir" if m[n].isdir() else "link" if m[n].issym() else "?")
                      for n in ("d", "l") if n in m}
            ok(cli("rmi", f"racer:{i}"))
    finally:
        ok(cli("rm", "-f", "racer"))
    assert kinds == {"dir", "link"}, kinds


@pytest.mark.parametrize("driver", ["overlay", "fuse"])
def test_internal_xattrs_cannot_be_forged(cli, registry, image_cache, driver):
    """An image's layer carries user.pydocklite.override ("char device 1:3") and
    user.overlay.opaque; the container sets user.pydocklite.override on a file of its own.
    Neither reaches the committed layer: no device node comes out of a commit."""
    ref = registry.push(xattr_image(image_cache), "xattr-hostile")
    ok(cli("pull", "-q", ref))
    g = ["--storage-driver", driver]
    ok(cli(*g, "run", "--name", "xbox", ref, "sh", "-c",
           "ls /opaque-dir >/dev/null; chmod 0640 /forged; echo mine > /mine; "
           f"setx set /mine user.pydocklite.override {FORGED_OVERRIDE}; "
           "setx set /mine user.kept yes; setx list /forged > /lower-xattrs; "
           "setx list /mine > /mine-xattrs; true"))
    ok(cli(*g, "commit", "xbox", "xbox:committed"))
    layer = _layer_tars(cli, "xbox:committed")[-1]
    m = _members(layer)
    for name in ("forged", "mine"):
        assert m[name].isreg(), (name, m[name].type)
        assert not any(k.startswith(("SCHILY.xattr.user.pydocklite.",
                                     "SCHILY.xattr.user.overlay."))
                       for k in m[name].pax_headers), m[name].pax_headers
    assert m["forged"].mode == 0o640
    # what the container saw of the lower file: its own xattr, never the markers
    seen = tarfile.open(fileobj=io.BytesIO(layer)).extractfile("lower-xattrs").read().decode()
    assert "user.kept" in seen and "pydocklite" not in seen and "overlay" not in seen
    ok(cli(*g, "rm", "xbox"))


def test_build_commit_never_deletes_through_a_link(tmp_path):
    """Build's layer commit drops the empty mount-point files the runtime made (etc/hosts...)
    from the RUN step's upper dir; an etc/ that is a link to the user's files must not lead
    it there (main deleted the user's empty 'hosts' file)."""
    from pydocklite.builder.runstep import _drop_mount_points

    class NoLower:
        present = set()
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "hosts").write_bytes(b"")
    (victim / "resolv.conf").write_bytes(b"")
    upper = tmp_path / "upper"
    upper.mkdir()
    (upper / "etc").symlink_to(victim)
    _drop_mount_points(str(upper), NoLower(), False)
    assert (victim / "hosts").exists() and (victim / "resolv.conf").exists()
    assert (upper / "etc").is_symlink()
    # and the runtime's own empty files in a real etc/ still go
    (upper / "etc").unlink()
    (upper / "etc").mkdir()
    (upper / "etc" / "hosts").write_bytes(b"")
    _drop_mount_points(str(upper), NoLower(), False)
    assert not (upper / "etc").exists()


def test_upper_walk_unit_never_follows_links(tmp_path):
    """snapshotter.diff walks by fds: a symlinked directory is stored as a link, whatever
    its target, and a file that is a link is never opened."""
    from snapshotter.diff import write_upper_diff
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(SECRET)
    upper = tmp_path / "upper"
    upper.mkdir()
    (upper / "d").symlink_to(outside)
    (upper / "f").symlink_to(outside / "secret.txt")
    (upper / "real").mkdir()
    (upper / "real" / "x").write_bytes(b"x")
    buf = io.BytesIO()
    write_upper_diff(upper, buf)
    data = buf.getvalue()
    assert SECRET not in data
    m = _members(data)
    assert m["d"].issym() and m["f"].issym() and m["real/x"].isreg()
    assert set(m) == {"d", "f", "real", "real/x"}
