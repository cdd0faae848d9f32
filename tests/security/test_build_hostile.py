"""Class 3 (issue 10): builds of someone else's Dockerfile and context, as an attacker
writes them, through the zipapp as the unprivileged test user.

- RUN --network=host only with `build --allow network.host` (cached steps included);
  `build --network none` is not undone by `RUN --network=default`;
- RUN --mount=type=bind,rw writes to a throw-away copy, never to the context;
- COPY/ADD sources stay inside the context: no symlink (absolute, `../`, on a directory on
  the way, through a wildcard, as a bind source) brings a host file into an image;
- ADD of an archive or a URL is bounded (PYDOCKLITE_MAX_LAYER_SIZE).
"""
from __future__ import annotations

import hashlib
import http.server
import io
import os
import tarfile
import threading
from pathlib import Path

import pytest

from tests import unpriv
from tests.fixtures.cli_runner import ok

SECRET = b"TOP-SECRET-host-file-3f1c"


def tree(root: Path, files: dict) -> Path:
    """{relpath: text | bytes | ("->", link target)}, all owned by the test user."""
    root.mkdir(parents=True, exist_ok=True)
    for rel, content in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, tuple):
            os.symlink(content[1], p)
        elif isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content)
    for dirpath, dirs, files in os.walk(root):
        for n in dirs + files + [""]:
            os.lchown(os.path.join(dirpath, n), *unpriv.test_ids())
    return root


def build(cli, ctx: Path, *args: str, env=None):
    return cli("build", *args, str(ctx), env=env, timeout=300)


def digest_tree(root: Path) -> str:
    h = hashlib.sha256()
    for dirpath, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        for n in sorted(dirs + files):
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            h.update(f"{os.path.relpath(p, root)}:{st.st_mode:o}:{st.st_size}".encode())
            if os.path.islink(p):
                h.update(os.readlink(p).encode())
            elif os.path.isfile(p):
                h.update(Path(p).read_bytes())
    return h.hexdigest()


def store_contains(home: Path, needle: bytes) -> list:
    """Files anywhere in the user's store (layers, blobs, snapshots) holding `needle`."""
    hits = []
    for dirpath, _dirs, files in os.walk(home / ".local" / "share" / "pydocklite"):
        for n in files:
            p = os.path.join(dirpath, n)
            try:
                if not os.path.islink(p) and needle in Path(p).read_bytes():
                    hits.append(p)
            except OSError:
                pass
    return hits


def interfaces(cli, image: str) -> list:
    return ok(cli("run", "--rm", "--network", "none", image, "cat", "/ifaces")).stdout.split()


def test_run_network_host_needs_the_entitlement(cli, busybox):
    """Fails on main 79d52f7: RUN --network=host ran on the host's network unasked."""
    ctx = tree(cli.home / "ctx", {"Dockerfile": f"FROM {busybox}\n"
                                  "RUN --network=host ls /sys/class/net > /ifaces\n"})
    r = build(cli, ctx, "-t", "hostnet")
    assert r.returncode == 1
    assert "granting entitlement network.host is not allowed" in r.stderr
    assert "--allow network.host" in r.stderr
    assert cli("image", "inspect", "hostnet").returncode != 0
    ok(build(cli, ctx, "--allow", "network.host", "-t", "hostnet"))
    assert sorted(interfaces(cli, "hostnet")) == sorted(os.listdir("/sys/class/net"))
    # cached now: the entitlement is still required
    r = build(cli, ctx, "-t", "hostnet2")
    assert r.returncode == 1 and "network.host is not allowed" in r.stderr
    r = build(cli, ctx, "--allow", "network.everything", "-t", "x")
    assert r.returncode == 125 and "invalid entitlement" in r.stderr


def test_build_network_none_is_not_undone_by_the_dockerfile(cli, busybox):
    """Fails on main 79d52f7: RUN --network=default got the private network under
    `build --network none`."""
    ctx = tree(cli.home / "ctx", {"Dockerfile": f"FROM {busybox}\n"
                                  "RUN --network=default ls /sys/class/net > /ifaces\n"})
    ok(build(cli, ctx, "--network", "none", "-t", "nonet"))
    assert interfaces(cli, "nonet") == ["lo"]


def test_rw_bind_mount_writes_go_to_a_throw_away_copy(cli, busybox):
    """Fails on main 79d52f7: the rw bind was the context directory itself."""
    ctx = tree(cli.home / "ctx", {
        "Dockerfile": f"FROM {busybox}\n"
                      "RUN --mount=type=bind,rw,target=/ctx sh -c 'cat /ctx/data > /seen; "
                      "echo pwned > /ctx/data; touch /ctx/new; rm /ctx/Dockerfile; "
                      "ln -s /etc /ctx/etc; chmod 000 /ctx/sub; ls /ctx/sub/.. >/dev/null'\n"
                      "RUN --mount=type=bind,rw,source=sub,target=/s sh -c "
                      "'cat /s/f >> /seen; echo x > /s/f'\n",
        "data": "original\n",
        "sub/f": "in sub\n",
        ".dockerignore": "secret.env\n",
        "secret.env": "API_KEY=1\n",
    })
    before = digest_tree(ctx)
    ok(build(cli, ctx, "-t", "rwbind"))
    assert digest_tree(ctx) == before
    assert ok(cli("run", "--rm", "rwbind", "cat", "/seen")).stdout == "original\nin sub\n"
    scratch = cli.home / ".local" / "share" / "pydocklite" / "build-scratch"
    assert not scratch.exists() or os.listdir(scratch) == []
    # the copy is the context as sent: .dockerignore applies
    ctx2 = tree(cli.home / "ctx2", {
        "Dockerfile": f"FROM {busybox}\nRUN --mount=type=bind,rw,target=/c ls -a /c > /l\n",
        ".dockerignore": "secret.env\n", "secret.env": "API_KEY=1\n", "ok.txt": "x"})
    ok(build(cli, ctx2, "-t", "rwbind2"))
    assert "secret.env" not in ok(cli("run", "--rm", "rwbind2", "cat", "/l")).stdout


@pytest.mark.parametrize("dockerfile", [
    "COPY sub*/secret /x",                  # a directory link on the way, through a wildcard
    "COPY */secret /x",
    "COPY dirlink/secret /x",               # a directory link on the way
    "COPY abslink /x",                      # an absolute link as the source
    "COPY rellink /x",                      # ../../.. out of the context
    "ADD abslink /x",
    "COPY . /all/",                         # links inside are copied as links
    "COPY nested/ /n/",
    "RUN --mount=type=bind,source=dirlink,target=/s cat /s/secret > /x || true",
    "RUN --mount=type=bind,source=abslink,target=/s cat /s > /x || true",
    "RUN --mount=type=bind,rw,source=nested,target=/s cat /s/link > /x || true",
])
def test_copy_sources_stay_inside_the_context(cli, busybox, dockerfile):
    """Each Dockerfile line tries to pull a host file into the image; the host file never
    reaches the store (the build fails, or copies the link itself). Fails on main 79d52f7
    for the wildcard and directory-link lines (COPY read the host's file)."""
    outside = tree(cli.home / "outside", {"secret": SECRET})
    ctx = tree(cli.home / "ctx", {
        "Dockerfile": f"FROM {busybox}\n{dockerfile}\n",
        "sub1": ("->", str(outside)),
        "dirlink": ("->", str(outside)),
        "abslink": ("->", str(outside / "secret")),
        "rellink": ("->", "../outside/secret"),
        "nested/link": ("->", str(outside / "secret")),
        "nested/ok": "fine\n",
    })
    r = build(cli, ctx, "-t", "leak")
    assert store_contains(cli.home, SECRET) == [], (r.stdout, r.stderr)
    if r.returncode == 0 and "COPY . /all/" in dockerfile:
        out = ok(cli("run", "--rm", "leak", "sh", "-c",
                     "readlink /all/abslink; readlink /all/nested/link"))
        assert out.stdout.split() == [str(outside / "secret")] * 2
    elif r.returncode != 0:
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr


def _zeros_tar(mib: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo("zeros")
        info.size = mib << 20
        tf.addfile(info, io.BytesIO(bytes(info.size)))
    return buf.getvalue()


def test_add_of_an_archive_bomb_is_bounded(cli, busybox):
    """Fails on main 79d52f7: ADD unpacked whatever the archive held."""
    bomb = _zeros_tar(24)
    assert len(bomb) < 100_000
    ctx = tree(cli.home / "ctx", {"Dockerfile": f"FROM {busybox}\nADD bomb.tar.gz /b/\n",
                                  "bomb.tar.gz": bomb})
    env = {"PYDOCKLITE_MAX_LAYER_SIZE": "8m"}
    r = build(cli, ctx, "-t", "bomb", env=env)
    assert r.returncode == 1 and "unpacks to more than 8388608 bytes" in r.stderr, r.stderr
    assert "PYDOCKLITE_MAX_LAYER_SIZE" in r.stderr
    assert cli("image", "inspect", "bomb").returncode != 0
    ok(build(cli, ctx, "-t", "bomb", env={"PYDOCKLITE_MAX_LAYER_SIZE": "64m"}))


def _hostile_tar(extra: str = "") -> bytes:
    """An absolute name, a device node, a link to a host file, a file name repeated, and
    with `extra` a name that climbs out or a hard link to a member that isn't there."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        def add(name, data=b"", **kw):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            for k, v in kw.items():
                setattr(info, k, v)
            tf.addfile(info, io.BytesIO(data) if data else None)
        if extra == "climb":
            add("../../escape.txt", b"climbed\n")
        add("/abs.txt", b"absolute\n")
        add("dev-null", type=tarfile.CHRTYPE, devmajor=1, devminor=3)
        add("hostlink", type=tarfile.SYMTYPE, linkname="/etc/shadow")
        add("same", b"first\n")
        add("hard", type=tarfile.LNKTYPE, linkname="same")
        add("same", b"second, longer\n")
        if extra == "dangling":
            add("nolink", type=tarfile.LNKTYPE, linkname="not-in-the-archive")
    return buf.getvalue()


def test_add_of_a_hostile_archive_stays_in_the_layer(cli, busybox):
    """ADD of an archive someone else made: a member that climbs out fails the build, as in
    Docker; an absolute name lands under the target; no device node; a link stays a link
    inside the image; a hard link copies the member it named (not a later one of the same
    name); a hard link to nothing is a one-line error (main 9f389f6: a KeyError traceback,
    and a climbing member silently dropped)."""
    ctx = tree(cli.home / "ctx", {"Dockerfile": f"FROM {busybox}\nADD a.tar.gz /b/\n",
                                  "a.tar.gz": _hostile_tar("climb")})
    for extra, message in (("climb", "member '../../escape.txt' is outside of the target"),
                           ("dangling", "hard link nolink names 'not-in-the-archive'")):
        (ctx / "a.tar.gz").write_bytes(_hostile_tar(extra))
        r = build(cli, ctx, "-t", "hostile")
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        assert message in r.stderr.strip().splitlines()[-1], r.stderr
        assert cli("image", "inspect", "hostile").returncode != 0
    (ctx / "a.tar.gz").write_bytes(_hostile_tar())
    ok(build(cli, ctx, "-t", "hostile"))
    out = ok(cli("run", "--rm", "hostile", "sh", "-c",
                 "echo $(ls -A /b); cat /b/abs.txt /b/hard /b/same; readlink /b/hostlink"))
    lines = out.stdout.splitlines()
    assert lines == ["abs.txt hard hostlink same", "absolute", "first", "second, longer",
                     "/etc/shadow"], lines


class _Big(http.server.BaseHTTPRequestHandler):
    size = 24 << 20

    def do_GET(self):                       # noqa: N802 (http.server's name)
        self.send_response(200)
        if "nolength" not in self.path:
            self.send_header("Content-Length", str(self.size))
        self.end_headers()
        chunk = bytes(1 << 20)
        try:
            for _ in range(self.size >> 20):
                self.wfile.write(chunk)
        except OSError:
            pass

    def log_message(self, *a):
        pass


def test_add_of_a_url_is_bounded(cli, busybox):
    """Fails on main 79d52f7: the whole body was read into memory, whatever its size."""
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Big)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}"
        env = {"PYDOCKLITE_MAX_LAYER_SIZE": "8m"}
        for path in ("/big.bin", "/nolength.bin"):
            ctx = tree(cli.home / f"ctx{path[1:4]}",
                       {"Dockerfile": f"FROM {busybox}\nADD {url}{path} /big\n"})
            r = build(cli, ctx, "-t", "url", env=env)
            assert r.returncode == 1 and "is larger than 8388608 bytes" in r.stderr, r.stderr
        assert cli("image", "inspect", "url").returncode != 0
        ingest = cli.home / ".local" / "share" / "pydocklite" / "ingest"
        assert not ingest.exists() or os.listdir(ingest) == []
    finally:
        srv.shutdown()
