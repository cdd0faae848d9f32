"""Helpers for the snapshotter mount tests: build real tar layers, index/ingest them."""
from __future__ import annotations

import hashlib
import io
import sys
import tarfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

MTIME = 1_700_000_000


def F(path, data=b"", mode=0o644, uid=0, gid=0, xattrs=None, mtime=MTIME):
    return ("file", path, data, mode, uid, gid, xattrs or {}, mtime)


def D(path, mode=0o755, uid=0, gid=0, xattrs=None, mtime=MTIME):
    return ("dir", path, b"", mode, uid, gid, xattrs or {}, mtime)


def L(path, target):
    return ("symlink", path, target)


def H(path, target):
    return ("hardlink", path, target)


def P(path, mode=0o644):
    return ("fifo", path, mode)


def C(path, major, minor, mode=0o666):
    return ("char", path, major, minor, mode)


def W(path):
    """A whiteout deleting `path` from the layers below."""
    parent, _, name = path.rpartition("/")
    return F(f"{parent}/.wh.{name}" if parent else f".wh.{name}", b"", 0o600)


def O(dirpath):
    """An opaque-directory marker for `dirpath`."""
    return F(f"{dirpath}/.wh..wh..opq", b"", 0o600)


def make_tar(specs) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for s in specs:
            kind = s[0]
            ti = tarfile.TarInfo(s[1])
            ti.mtime = MTIME
            data = None
            if kind in ("file", "dir"):
                _, path, data, mode, uid, gid, xattrs, mtime = s
                ti.type = tarfile.REGTYPE if kind == "file" else tarfile.DIRTYPE
                ti.mode, ti.uid, ti.gid, ti.mtime = mode, uid, gid, mtime
                ti.size = len(data) if kind == "file" else 0
                if xattrs:
                    ti.pax_headers = {f"SCHILY.xattr.{k}": v.decode("latin-1") if isinstance(
                        v, bytes) else v for k, v in xattrs.items()}
                if kind == "dir":
                    data = None
            elif kind == "symlink":
                ti.type, ti.linkname, ti.mode = tarfile.SYMTYPE, s[2], 0o777
            elif kind == "hardlink":
                ti.type, ti.linkname, ti.mode = tarfile.LNKTYPE, s[2], 0o644
            elif kind == "fifo":
                ti.type, ti.mode = tarfile.FIFOTYPE, s[2]
            elif kind == "char":
                ti.type, ti.devmajor, ti.devminor, ti.mode = tarfile.CHRTYPE, s[2], s[3], s[4]
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def diff_id(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def index_to_files(data: bytes, dirpath: Path):
    """Index a tar with TarIndexer; write blob+index files; return (index_path, blob_path)."""
    from snapshotter.layer_index import TarIndexer
    dirpath.mkdir(parents=True, exist_ok=True)
    ti = TarIndexer("test")
    ti.feed(data)
    idx = ti.finish()
    (dirpath / "blob").write_bytes(data)
    idx.save(dirpath / "index")
    return dirpath / "index", dirpath / "blob"


def ingest(layout, data: bytes, name="test-layer") -> str:
    """Ingest an uncompressed tar layer through helper B's LayerStore; return its diff_id."""
    from snapshotter.store import LayerStore
    store = LayerStore(layout)
    d = diff_id(data)
    if not store.has(d):
        w = store.ingest(d, "application/vnd.oci.image.layer.v1.tar", name)
        for i in range(0, len(data), 1 << 20):
            w.write(data[i:i + (1 << 20)])
        w.commit()
    return d


def wait_for(pred, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def user_tmpdir(prefix="pdl-fs-") -> Path:
    """A fresh directory under /tmp that the unprivileged test user can reach (0755)."""
    import tempfile
    d = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    d.chmod(0o755)
    return d


def rmtree(path: Path) -> None:
    import shutil
    import subprocess
    if path.exists():
        # mount points left behind by a failed test must not be descended into
        subprocess.run(["fusermount", "-u", "-z", str(path / "mnt")], capture_output=True)
        shutil.rmtree(path, ignore_errors=True)


# --- running scenario steps as the unprivileged user ---------------------------------------
def userns_idmap() -> dict:
    """The id map `unshare --map-auto -r` gives the test user: 0 -> the user, 1.. -> its
    subordinate range (read from /etc/subuid and /etc/subgid, not assumed)."""
    from unpriv import subid_start, test_ids
    uid, gid = test_ids()
    return {"uids": [[0, uid, 1], [1, subid_start("/etc/subuid"), 65535]],
            "gids": [[0, gid, 1], [1, subid_start("/etc/subgid"), 65535]]}


def chown_to_user(path) -> None:
    """Give `path` to the test user (mount points its FUSE servers mount on)."""
    import os
    from unpriv import test_ids
    os.chown(path, *test_ids())

PRELUDE = """
import json, os, stat, subprocess, sys, time
from pathlib import Path
from snapshotter.layout import StoreLayout
from snapshotter.snapshots import Snapshotter, Mount
from snapshotter.mounter import mount_all
def out(obj):
    print("\\n@@RESULT@@" + json.dumps(obj))
def sh(cmd, cwd=None):
    r = subprocess.run(cmd, shell=True, cwd=cwd, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"command failed ({r.returncode}): {cmd}\\n{r.stdout}\\n{r.stderr}")
    return r.stdout
"""


def read_only_binding(session, driver: str) -> str:
    """Backend ids "<driver>+fusepy" run read-only FUSE mounts through fusepy (the fallback
    where libfuse3 is missing) instead of the libfuse3 low-level server."""
    if driver.endswith("+fusepy"):
        session.extra_env = {"PYDOCKLITE_FUSE_LOWLEVEL": "0"}
        return driver[:-len("+fusepy")]
    return driver


class UserSession:
    """Runs Python snippets as the test user, optionally in a fresh user+mount namespace
    (root inside = the test user, plus its subuid range: `unshare --map-auto -r -m`)."""

    def __init__(self, base: Path) -> None:
        from unpriv import make_user_dir
        self.base = base
        self.home = make_user_dir(base / "home")
        self.store = make_user_dir(base / "store")
        self.n = 0
        self.extra_env: dict = {}

    def py(self, code: str, userns: bool = True, timeout: float = 120, **fmt):
        from unpriv import SYSTEM_PYTHON, run_as_user
        import json
        import textwrap
        self.n += 1
        script = self.base / f"step{self.n}.py"
        script.write_text(PRELUDE + f"STORE = {str(self.store)!r}\n"
                          + textwrap.dedent(code))
        script.chmod(0o644)
        argv = [SYSTEM_PYTHON, str(script)]
        if userns:
            argv = ["unshare", "--map-auto", "--map-root-user", "--mount"] + argv
        r = run_as_user(argv, self.home, timeout=timeout, env=self.extra_env or None)
        marker = "@@RESULT@@"
        if r.returncode != 0 or marker not in r.stdout:
            raise AssertionError(f"step {self.n} failed (rc={r.returncode}):\n{r.stdout}\n"
                                 f"{r.stderr}")
        return json.loads(r.stdout.rsplit(marker, 1)[1])
