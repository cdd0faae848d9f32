"""Fixtures for the runtime tests: busybox bundles owned by the unprivileged test user and a
helper running `python3 -m pydocklite.runtime.runc_cli` as that user."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests import unpriv  # noqa: E402

BUSYBOX = "/bin/busybox"


def _has_userns() -> bool:
    try:
        with open("/proc/sys/user/max_user_namespaces") as f:
            return int(f.read()) > 0
    except OSError:
        return True


class Runtime:
    """Runs the runtime CLI as the test user with its own --root."""

    def __init__(self, home: Path):
        self.home = home
        self.root = home / "run" / "rt-root"

    def cmd(self, *args) -> list:
        return [unpriv.SYSTEM_PYTHON, "-m", "pydocklite.runtime.runc_cli", "--root",
                str(self.root), *[str(a) for a in args]]

    def __call__(self, *args, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
        if "create" not in args:
            return unpriv.run_as_user(self.cmd(*args), self.home, timeout=timeout, **kw)
        # the container's init inherits create's stdio (passed through untouched, like
        # runc): capture into files, a pipe would stay open as long as the container lives
        import tempfile
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            r = unpriv.run_as_user(self.cmd(*args), self.home, timeout=timeout,
                                   capture_output=False, text=False, stdout=out, stderr=err,
                                   **kw)
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(r.args, r.returncode, out.read().decode(),
                                               err.read().decode())

    def popen(self, *args, **kw) -> subprocess.Popen:
        (self.home / "run").mkdir(exist_ok=True)
        return subprocess.Popen(unpriv.user_cmd(self.cmd(*args)),
                                env=unpriv.user_env(self.home), **kw)


def make_root_bundle(top: Path, rootfs_template: Path, args, mutate=None) -> Path:
    """A bundle for a container run by root (as engines run them: no user namespace): a
    root-owned copy of the busybox rootfs, runc's default root spec running `args`."""
    from pydocklite.runtime.spec_template import default_spec
    b = top / uuid.uuid4().hex[:8]
    b.mkdir()
    subprocess.run(["cp", "-a", str(rootfs_template), str(b / "rootfs")], check=True)
    subprocess.run(["chown", "-R", "-h", "0:0", str(b / "rootfs")], check=True)
    cfg = default_spec(rootless=False)
    cfg["root"] = {"path": "rootfs", "readonly": False}
    cfg["process"]["args"] = list(args)
    cfg["process"]["terminal"] = False
    cfg["linux"].pop("resources", None)
    if mutate:
        mutate(cfg)
    (b / "config.json").write_text(json.dumps(cfg))
    return b


@pytest.fixture(scope="session")
def rt_home():
    if not os.path.exists(BUSYBOX):
        pytest.skip("busybox-static is not installed (/bin/busybox)")
    if not _has_userns():
        pytest.skip("user namespaces are disabled on this host")
    base = Path(f"/tmp/pdl-rt-{uuid.uuid4().hex[:8]}")
    base.mkdir(mode=0o755)
    home = unpriv.make_user_dir(base / "home")
    (home / "run").mkdir()
    user = unpriv.test_user()
    os.chown(home / "run", user.pw_uid, user.pw_gid)
    yield home
    rt = Runtime(home)
    if rt.root.is_dir():           # containers a failed test left: kill them, then remove
        for cid in os.listdir(rt.root):
            if (rt.root / cid / "state.json").exists():
                rt("delete", "--force", cid)
    subprocess.run(["rm", "-rf", "--one-file-system", str(base)], check=False)


@pytest.fixture(scope="session")
def rootfs_template(rt_home):
    """A busybox rootfs owned by the test user (it becomes root:root in the container)."""
    tpl = rt_home / "template"
    rootfs = tpl / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
    applets = subprocess.run([BUSYBOX, "--list-full"], capture_output=True, text=True,
                             check=True).stdout.split()
    for applet in applets:
        if applet == "bin/busybox":      # the binary itself, not a link to itself
            continue
        link = rootfs / applet
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to("/bin/busybox")
    for d in ("proc", "sys", "dev", "tmp", "etc", "root"):
        (rootfs / d).mkdir(exist_ok=True)
    (rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (rootfs / "etc" / "group").write_text("root:x:0:\ntty:x:5:\n")
    subprocess.run(["chown", "-R", "-h", f"{unpriv.TEST_USER}:", str(tpl)], check=True)
    return rootfs


@pytest.fixture(scope="session")
def rootless_config(rt_home, rootfs_template):
    """config.json as written by `runtime spec --rootless` run by the test user."""
    d = unpriv.make_user_dir(rt_home / "specgen")
    rt = Runtime(rt_home)
    r = rt("spec", "--rootless", "--bundle", d)
    assert r.returncode == 0, r.stderr
    return json.loads((d / "config.json").read_text())


@pytest.fixture
def rt(rt_home):
    return Runtime(rt_home)


@pytest.fixture
def make_bundle(rt_home, rootfs_template, rootless_config):
    """make_bundle(args, mutate=None) -> bundle dir with a copy of the rootfs."""
    made = []

    def make(args, mutate=None, copy_rootfs=True) -> Path:
        b = rt_home / "bundles" / uuid.uuid4().hex[:10]
        b.mkdir(parents=True)
        if copy_rootfs:
            subprocess.run(["cp", "-a", str(rootfs_template), str(b / "rootfs")], check=True)
        cfg = json.loads(json.dumps(rootless_config))
        cfg["process"]["args"] = list(args)
        cfg["process"]["terminal"] = False
        if mutate:
            mutate(cfg)
        (b / "config.json").write_text(json.dumps(cfg))
        subprocess.run(["chown", "-R", "-h", f"{unpriv.TEST_USER}:", str(b)], check=True)
        subprocess.run(["chown", f"{unpriv.TEST_USER}:", str(b.parent)], check=True)
        made.append(b)
        return b

    yield make
    for b in made:
        subprocess.run(["rm", "-rf", "--one-file-system", str(b)], check=False)


@pytest.fixture
def cid():
    return "t" + uuid.uuid4().hex[:10]
