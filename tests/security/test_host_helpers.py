"""Class 1 of issue 10: helpers that work on a container's files from the host never run or
trust what the container controls.

The attacker is the image: its NSS configuration points at its own libnss_*.so, which tries
every way out it can find if any pydocklite process loads it (see hostile_images.py). And the
attacker is the running container: it looks for the helper from inside, to read its memory
or fds. Run as the unprivileged test user, with the built zipapp.
"""
from __future__ import annotations

import io
import os
import socket
import subprocess
import tarfile
import threading
import time
from pathlib import Path

import pytest

from tests import unpriv
from tests.fixtures.nshost import is_host_process
from tests.fixtures.cli_runner import ok
from tests.security.hostile_images import NSS_MARKER, nss_image


class Listener:
    """A TCP listener in the host's network namespace: a connection means image code ran
    with the host's network."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.got = []
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    self.got.append(conn.recv(200))
                except OSError:
                    self.got.append(b"(connected)")

    def close(self) -> list:
        self._stop = True
        self.thread.join(timeout=3)
        self.sock.close()
        return self.got


@pytest.fixture
def hostile(cli, registry, image_cache):
    ref = registry.push(nss_image(image_cache), "nss-hostile")
    ok(cli("pull", "-q", ref))
    listener = Listener()
    ok(cli("run", "-d", "--name", "box", ref, "sh", "-c",
           f"echo {listener.port} > /nss-port; echo data > /srv.txt; touch /ready; sleep 300"))
    deadline = time.time() + 20
    while cli("exec", "box", "test", "-e", "/ready").returncode != 0:
        assert time.time() < deadline, "the container did not start"
        time.sleep(0.1)
    yield ref, listener
    listener.close()
    cli("rm", "-f", "box")


def _pwned_files(home: Path) -> list:
    return [str(p) for p in home.rglob("nss-pwned")]


def test_cp_never_loads_the_containers_nss_modules(cli, hostile):
    _ref, listener = hostile
    out = cli.home / "out"
    unpriv.make_user_dir(out)
    results = [cli("cp", "box:/srv.txt", str(out)), cli("cp", "box:/etc", str(out))]
    (out / "in.txt").write_text("from the host\n")
    os.chown(out / "in.txt", unpriv.test_user().pw_uid, unpriv.test_user().pw_gid)
    results.append(cli("cp", str(out / "in.txt"), "box:/tmp/"))
    results.append(cli("cp", "-a", str(out / "in.txt"), "box:/tmp/again.txt"))
    for r in results:
        ok(r)
        assert NSS_MARKER not in r.stdout + r.stderr
    assert (out / "srv.txt").read_text() == "data\n"
    assert ok(cli("exec", "box", "cat", "/tmp/again.txt")).stdout == "from the host\n"
    loaded = cli("exec", "box", "cat", "/nss-loaded")
    assert loaded.returncode != 0, f"the image's NSS module was loaded: {loaded.stdout}"
    assert listener.close() == [], "image code reached the host's network"
    assert _pwned_files(cli.home) == []


def _tar_head(size: int) -> bytes:
    """A tar header announcing a file of `size` bytes (its data to follow)."""
    info = tarfile.TarInfo("slow.bin")
    info.size = size
    return info.tobuf(format=tarfile.PAX_FORMAT)


def _status(pid: int) -> dict:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out


def _find_helper(init_pid: int, timeout: float = 20.0) -> int:
    """The host pid of the test user's process named pdl-fsaccess inside the container's pid
    namespace."""
    init_ns = os.readlink(f"/proc/{init_pid}/ns/pid")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid, _cmd in unpriv.user_processes():
            try:
                comm = Path(f"/proc/{pid}/comm").read_text().strip()
                if comm == "pdl-fsaccess" and os.readlink(f"/proc/{pid}/ns/pid") == init_ns:
                    return pid
            except OSError:
                continue
        time.sleep(0.05)
    raise AssertionError("no helper inside the container's pid namespace")


def test_the_helper_is_confined_like_the_container(cli, hostile):
    """While a `cp - box:/tmp` waits for data, look at its helper from the host and from the
    container."""
    init_pid = int(ok(cli("inspect", "-f", "{{.State.Pid}}", "box")).stdout)
    size = 1 << 20
    p = cli.popen("cp", "-", "box:/tmp", stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                  stderr=subprocess.PIPE)
    try:
        p.stdin.write(_tar_head(size) + b"x" * 4096)
        p.stdin.flush()
        helper = _find_helper(init_pid)
        st, init = _status(helper), _status(init_pid)
        # its pid namespace (NSpid: host pid, then its pid in the container) and every other
        for ns in ("pid", "mnt", "user", "net", "uts", "ipc", "cgroup"):
            assert os.readlink(f"/proc/{helper}/ns/{ns}") == \
                os.readlink(f"/proc/{init_pid}/ns/{ns}"), ns
        nspid = st["NSpid"].split()
        assert len(nspid) == 2
        # the container's seccomp filter, no_new_privs, its capabilities, nothing more
        assert st["Seccomp"] == "2" and st["NoNewPrivs"] == "1"
        assert int(st["CapEff"], 16) == int(init["CapBnd"], 16)
        assert int(st["CapBnd"], 16) == int(init["CapBnd"], 16)
        # nothing inherited but stdin (the data), stdout, stderr (the status): pipes; what
        # else it has open it opened inside (the destination and the file it writes)
        fds = {int(fd): os.readlink(f"/proc/{helper}/fd/{fd}")
               for fd in os.listdir(f"/proc/{helper}/fd")}
        assert all(fds[i].startswith("pipe:") for i in (0, 1, 2)), fds
        assert all(t in ("/tmp", "/tmp/slow.bin") for fd, t in fds.items() if fd > 2), fds
        # no controlling terminal
        stat_fields = Path(f"/proc/{helper}/stat").read_text().rsplit(")", 1)[1].split()
        assert stat_fields[4] == "0", "the helper has a controlling terminal"
        # seen from the container: there, but its fds, memory and environment are closed
        inside = nspid[1]
        ps = ok(cli("exec", "box", "ps", "-o", "pid,comm")).stdout
        assert any(line.split()[:2] == [inside, "pdl-fsaccess"] for line in ps.splitlines())
        for look in (f"ls /proc/{inside}/fd/", f"cat /proc/{inside}/environ",
                     f"cat /proc/{inside}/maps", f"readlink /proc/{inside}/cwd"):
            r = cli("exec", "box", "sh", "-c", look)
            assert r.returncode != 0, f"from the container, `{look}` worked: {r.stdout}"
        p.stdin.write(b"y" * (size - 4096) + bytes(1024))     # the rest, the end blocks
        p.stdin.close()
        assert p.wait(timeout=60) == 0, p.stderr.read().decode()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    r = ok(cli("exec", "box", "sh", "-c", "wc -c < /tmp/slow.bin"))
    assert r.stdout.strip() == str(size)


def test_cp_errors_name_the_path(cli, hostile):
    r = cli("cp", "box:/no/such/file", str(cli.home))
    assert r.returncode == 125 and "Could not find the file /no/such/file in container box" \
        in r.stderr
    r = cli("cp", "-", "box:/srv.txt", input="")
    assert r.returncode == 125 and "/srv.txt is not a directory" in r.stderr


def test_a_hostile_stream_from_the_helper_is_refused_on_the_host(cli, hostile, tmp_path):
    """cp CONTAINER:PATH - gives the raw stream; the host's extractor must refuse whatever a
    container could put in it. The container can't forge the stream (the helper writes it)
    but can name files: names with '..' never leave the destination."""
    ok(cli("exec", "box", "sh", "-c", "mkdir -p '/x/..a' && echo hi > '/x/..a/f'"))
    out = cli.home / "o2"
    unpriv.make_user_dir(out)
    ok(cli("cp", "box:/x", str(out)))
    assert (out / "x" / "..a" / "f").read_text() == "hi\n"
    raw = ok(subprocess.run(cli.argv("cp", "box:/x", "-"), env=cli.environ(),
                            capture_output=True, cwd=str(cli.home)))
    names = tarfile.open(fileobj=io.BytesIO(raw.stdout)).getnames()
    assert names == ["x", "x/..a", "x/..a/f"]


def test_cp_with_containers_that_have_no_processes(cli, busybox):
    """Created (never started) and exited containers: their snapshot is mounted for the
    helper in a private sandbox, which leaves nothing behind."""
    ok(cli("create", "--name", "later", busybox, "cat", "/etc/config.txt"))
    src = cli.home / "config.txt"
    src.write_text("configured before start\n")
    os.chown(src, unpriv.test_user().pw_uid, unpriv.test_user().pw_gid)
    ok(cli("cp", str(src), "later:/etc/config.txt"))
    st = ok(cli("start", "-a", "later"))
    assert st.stdout == "configured before start\n"
    ok(cli("wait", "later"))
    out = cli.home / "back"
    ok(cli("cp", "later:/etc/config.txt", str(out)))
    assert out.read_text() == "configured before start\n"
    r = cli("cp", "later:/nope", str(out))
    assert r.returncode == 125 and "Could not find the file /nope in container later" in r.stderr
    procs = [cmd for _pid, cmd in unpriv.user_processes() if str(cli.home) in cmd
             and not is_host_process(cmd)]       # the namespace host outlives containers
    assert procs == []
    mounts = [line for line in Path("/proc/mounts").read_text().splitlines()
              if str(cli.home) in line]
    assert mounts == []
    run_dir = cli.home / "run" / "pydocklite"
    assert not [p for p in run_dir.iterdir() if p.name.startswith("fs-")] if run_dir.is_dir() \
        else True
    ok(cli("rm", "later"))


def test_once_inside_no_module_is_loaded_from_disk(tmp_path):
    """After setns the zipapp's extraction path and the stdlib's resolve in the container's
    files: the helper empties the import system first, so a module the image planted there
    is never run, while what was imported before keeps working."""
    import sys
    from pydocklite.runtime import confined
    (tmp_path / "planted_by_the_image.py").write_text(
        "import os\nos.write(2, b'PLANTED MODULE RAN')\n")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 3
        try:
            sys.path.insert(0, str(tmp_path))
            confined.lock_imports()
            import json                                  # noqa: F401  (loaded before: fine)
            try:
                import planted_by_the_image              # noqa: F401
                code = 1
            except ImportError:
                code = 0
        finally:
            os.write(w, bytes([code]))
            os._exit(code)
    os.close(w)
    got = os.read(r, 1)
    os.close(r)
    os.waitpid(pid, 0)
    assert got == b"\0", "a module was imported after the import system was emptied"
