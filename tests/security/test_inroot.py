"""Class 6's resolver (pydocklite/runtime/inroot.py): paths inside a rootfs opened by fds,
symlinks re-rooted, never leading out — with openat2 (RESOLVE_IN_ROOT) and with the
component-by-component walk older kernels get."""
from __future__ import annotations

import errno
import os

import pytest

from pydocklite.runtime import inroot, syscalls


@pytest.fixture(params=["openat2", "walk"])
def resolver(request, monkeypatch):
    if request.param == "walk":
        def no_openat2(*a, **k):
            raise OSError(errno.ENOSYS, "openat2")
        monkeypatch.setattr(syscalls, "openat2", no_openat2)
    return request.param


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "root"
    (r / "etc").mkdir(parents=True)
    (r / "tmp").mkdir()
    (r / "etc" / "passwd").write_text("inside\n")
    os.symlink("/../../../../tmp", r / "abs")
    os.symlink("../../../..", r / "etc" / "up")
    os.symlink("/etc/passwd", r / "pw")
    os.symlink("loop2", r / "loop1")
    os.symlink("loop1", r / "loop2")
    os.symlink("/nowhere/deeper", r / "dangling")
    os.symlink("etc/passwd", r / "file")
    fd = inroot.open_root(str(r))
    yield r, fd
    os.close(fd)


def where(fd: int) -> str:
    try:
        return os.readlink(inroot.fd_path(fd))
    finally:
        os.close(fd)


def test_symlinks_stay_inside(root, resolver):
    r, fd = root
    assert where(inroot.resolve(fd, "/abs")) == f"{r}/tmp"
    assert where(inroot.resolve(fd, "/etc/up/abs")) == f"{r}/tmp"
    assert where(inroot.resolve(fd, "../../..")) == str(r)
    assert where(inroot.resolve(fd, "pw")) == f"{r}/etc/passwd"
    assert where(inroot.resolve(fd, "/")) == str(r)
    with pytest.raises(FileNotFoundError):
        inroot.resolve(fd, "/missing/x")
    with pytest.raises(OSError) as e:
        inroot.resolve(fd, "/loop1/x")
    assert e.value.errno == errno.ELOOP
    with pytest.raises(NotADirectoryError):
        inroot.resolve(fd, "/file/x")


def test_ensure_creates_inside_even_through_dangling_links(root, resolver):
    r, fd = root
    assert where(inroot.ensure(fd, "/abs/new/dir", True)) == f"{r}/tmp/new/dir"
    assert (r / "tmp" / "new" / "dir").is_dir()
    assert where(inroot.ensure(fd, "/etc/up/abs/f", False)) == f"{r}/tmp/f"
    assert (r / "tmp" / "f").is_file()
    # a dangling absolute link: its target is made inside the root, not on the host
    assert where(inroot.ensure(fd, "/dangling/m", True)) == f"{r}/nowhere/deeper/m"
    assert not os.path.exists("/nowhere")
    # "a/b/../c" is normalised first: nothing named b is made
    assert where(inroot.ensure(fd, "/x/b/../c", True)) == f"{r}/x/c"
    assert not (r / "x" / "b").exists()


def test_mount_id_and_same_file(root):
    r, fd = root
    a = inroot.resolve(fd, "etc/passwd")
    b = inroot.resolve(fd, "pw")
    try:
        assert inroot.same_file(a, b)
        assert inroot.mount_id(a) == inroot.mount_id(b) > 0
    finally:
        os.close(a)
        os.close(b)


@pytest.mark.parametrize("path,rel", [("/", ""), ("", ""), ("/a/../../b", "b"),
                                      ("a//b/./c/", "a/b/c"), ("../..", "")])
def test_clean(path, rel):
    assert inroot.clean(path) == rel


# --- the mount side, as the unprivileged test user in its own user + mount namespace -------
BIND_SCRIPT = r"""
import errno, json, os, sys
from pydocklite.runtime import inroot, mounts, syscalls as sc
root, src, mode = sys.argv[1:4]
if mode != "new-api":
    def enosys(*a, **k):
        raise OSError(errno.ENOSYS, "not on this kernel")
    sc.open_tree = enosys                      # as on kernels before 5.2 / 5.12
if mode == "swapped":                          # the name points elsewhere once mounted
    real = inroot.resolve
    inroot.resolve = lambda fd, p: real(fd, "/elsewhere") if p == "/a/b" else real(fd, p)
sc.mount(None, "/", None, sc.MS_PRIVATE | sc.MS_REC)
rfd = inroot.open_root(root)
out = {}
target = mounts._target(rfd, "/a/b", True)
try:
    mounts.bind(rfd, src, "/a/b", target, False, sc.MS_RDONLY | sc.MS_NOSUID, print)
    out["listing"] = sorted(os.listdir(root + "/a/b"))
    try:
        open(root + "/a/b/new", "w").close()
        out["write"] = "allowed"
    except OSError as e:
        out["write"] = errno.errorcode[e.errno]
except OSError as e:
    out["error"] = str(e)
try:                                           # a symlink to "/" as the target: refused
    mounts._target(rfd, "/evil", True)
    out["root_target"] = "accepted"
except OSError as e:
    out["root_target"] = errno.errorcode[e.errno]
print(json.dumps(out))
"""


@pytest.mark.parametrize("mode", ["new-api", "classic", "swapped"])
def test_bind_is_read_only_from_the_start_and_checked(mode):
    import json
    import shutil
    from pathlib import Path
    from tests import unpriv
    if os.geteuid() != 0:
        pytest.skip("needs root to run the check as the test user")
    top = Path(os.environ.get("PDL_TEST_ROOT", "/tmp/pdlt"))
    top.mkdir(parents=True, exist_ok=True)
    base = top / f"inroot-{os.getpid()}-{mode}"
    shutil.rmtree(base, ignore_errors=True)
    for d in ("root/a", "root/elsewhere", "src"):
        (base / d).mkdir(parents=True)
    (base / "src" / "data").write_text("x")
    os.symlink("/", base / "root" / "evil")
    for dirpath, dirs, files in os.walk(base):
        for n in dirs + files + [""]:
            os.lchown(os.path.join(dirpath, n), *unpriv.test_ids())
    script = base / "bind.py"
    script.write_text(BIND_SCRIPT)
    r = unpriv.run_as_user(["unshare", "-Urm", unpriv.SYSTEM_PYTHON, str(script),
                            str(base / "root"), str(base / "src"), mode], base)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["root_target"] == "EXDEV"
    if mode == "swapped":
        assert "changed while it was being mounted" in got["error"]
    else:
        assert got == {"listing": ["data"], "write": "EROFS", "root_target": "EXDEV"}
    shutil.rmtree(base, ignore_errors=True)
