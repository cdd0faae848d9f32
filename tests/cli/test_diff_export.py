"""`diff` and `export` as the unprivileged test user: Docker's A/C/D lines (the runtime's
mount points left out), links the container planted never followed, files of the
container's other users read in its user namespace; a tar of a running or stopped
container's filesystem, nothing half-written on failure."""
from __future__ import annotations

import io
import subprocess
import tarfile

from tests.fixtures.cli_runner import ok

CHANGES = ("mkdir /newdir && echo x > /newdir/f && echo extra >> /etc/passwd && "
           "rm /bin/sleep && ln -s /etc /link && mkdir -p /d && ln -s / /d/up && "
           "mkdir /priv && echo secret > /priv/f && chown -R 1000:1000 /priv && chmod 700 /priv")


def _diff(cli, ref: str) -> list:
    return ok(cli("diff", ref)).stdout.splitlines()


def test_diff_lines(cli, busybox):
    cid = ok(cli("run", "-d", "--name", "dd", busybox, "sh", "-c", CHANGES)).stdout.strip()
    ok(cli("wait", cid))
    got = _diff(cli, "dd")
    assert got == sorted(got, key=lambda line: line[2:])
    assert set(got) == {"C /bin", "D /bin/sleep", "A /d", "A /d/up", "C /etc", "C /etc/passwd",
                        "A /link", "A /newdir", "A /newdir/f", "A /priv", "A /priv/f"}, got
    # nothing of /etc/hosts, /etc/hostname, /etc/resolv.conf (the runtime's mount points)
    assert not any("hosts" in line or "resolv" in line for line in got)
    # the same for a running container, and `container diff`
    run = ok(cli("run", "-d", busybox, "sh", "-c", "touch /tmp-file; sleep 60")).stdout.strip()
    import time
    deadline = time.monotonic() + 10
    while "A /tmp-file" not in _diff(cli, run):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert ok(cli("container", "diff", run)).stdout == "A /tmp-file\n"
    ok(cli("rm", "-f", cid, run))


def test_diff_of_a_fresh_container_is_empty_and_errors(cli, busybox):
    cid = ok(cli("create", "-v", "/data", busybox, "true")).stdout.strip()
    ok(cli("start", "-a", cid))
    assert _diff(cli, cid) == []
    r = cli("diff", "nosuchcontainer")
    assert r.returncode != 0 and "No such container" in r.stderr
    ok(cli("rm", "-v", cid))


def test_export_of_a_stopped_and_a_running_container(cli, busybox):
    cid = ok(cli("run", "-d", busybox, "sh", "-c", CHANGES)).stdout.strip()
    ok(cli("wait", cid))
    out = cli.home / "fs.tar"
    ok(cli("export", "-o", str(out), cid))
    with tarfile.open(out) as tf:
        names = {m.name.rstrip("/") for m in tf.getmembers()}
        assert {"bin/busybox", "newdir/f", "priv/f", "etc/passwd", "link", "d/up"} <= names
        assert "bin/sleep" not in names
        assert tf.getmember("link").issym() and tf.getmember("link").linkname == "/etc"
        assert tf.extractfile("priv/f").read() == b"secret\n"
        assert tf.getmember("priv/f").uid == 1000          # the container's own ids
        assert b"extra" in tf.extractfile("etc/passwd").read()
    run = ok(cli("run", "-d", busybox, "sh", "-c", "echo live > /live; sleep 60")).stdout.strip()
    r = subprocess.run(cli.argv("container", "export", run), env=cli.environ(),
                       cwd=str(cli.home), capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr
    with tarfile.open(fileobj=io.BytesIO(r.stdout)) as tf:
        names = {m.name.rstrip("/") for m in tf.getmembers()}
        assert "bin/busybox" in names and not any(n.startswith("proc/") for n in names)
    ok(cli("rm", "-f", cid, run))


def test_export_refuses_a_terminal_and_leaves_no_partial_file(cli, busybox):
    import os
    import pty
    cid = ok(cli("create", busybox, "true")).stdout.strip()
    master, slave = pty.openpty()
    p = cli.popen("export", cid, stdout=slave, stderr=subprocess.PIPE)
    os.close(slave)
    _, err = p.communicate(timeout=60)
    os.close(master)
    assert p.returncode == 125 and b"cowardly refusing" in err
    r = cli("export", "-o", str(cli.home / "x.tar"), "nosuchcontainer")
    assert r.returncode != 0 and not list(cli.home.glob("x.tar*"))
    ok(cli("rm", cid))
