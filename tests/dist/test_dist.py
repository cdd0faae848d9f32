"""Image distribution end to end, as the unprivileged test user against real registries:
push (mount / already exists / recompress + chunked upload / basic auth after login), pull
back and run; save/load in Docker and OCI formats (read by skopeo too); import of a rootfs
tarball; commit of a container; history; and Podman pulling and running an image we pushed.
"""
from __future__ import annotations

import http.server
import io
import json
import os
import shutil
import subprocess
import tarfile
import threading
from pathlib import Path

import pytest

from tests.fixtures.cli_runner import ok
from tests.fixtures.podman import configure_podman

from tests import unpriv
from tests.fixtures.registry_server import start_registry

def image_id(cli, name: str) -> str:
    return ok(cli("image", "inspect", "-f", "{{.Id}}", name)).stdout.strip()


def inspect_config(cli, name: str) -> dict:
    return json.loads(ok(cli("image", "inspect", name)).stdout)[0]["Config"]


def user_file(cli, name: str) -> Path:
    """A path in the test user's home that both we (root) and it can use."""
    return cli.home / name


def busybox_rootfs_tar(path: Path, extra: dict) -> Path:
    """A tiny rootfs: Debian's static busybox, sh/cat/ls links, and `extra` files."""
    bb = shutil.which("busybox") or "/bin/busybox"
    with tarfile.open(path, "w:gz") as tf:
        for d in ("bin", "etc", "tmp"):
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            tf.addfile(ti)
        tf.add(os.path.realpath(bb), "bin/busybox")
        for applet in ("sh", "cat", "ls", "echo", "test"):
            ti = tarfile.TarInfo(f"bin/{applet}")
            ti.type, ti.linkname = tarfile.SYMTYPE, "busybox"
            tf.addfile(ti)
        for name, text in extra.items():
            data = text.encode()
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode = len(data), 0o644
            tf.addfile(ti, io.BytesIO(data))
    os.chmod(path, 0o644)
    return path


def test_push_mount_exists_pull_back_run(cli, registry, busybox):
    original = image_id(cli, busybox)
    config = inspect_config(cli, busybox)
    target = f"{registry.host}/dist/box:v1"
    ok(cli("tag", busybox, target))
    r = ok(cli("push", target))
    lines = r.stdout.splitlines()
    assert lines[0] == f"The push refers to repository [{registry.host}/dist/box]"
    assert any(line.endswith(": Mounted from busybox") for line in lines), r.stdout
    # every layer was reused: the manifest is pushed unchanged, same digest as the source
    assert lines[-1].startswith(f"v1: digest: {registry.digests['busybox']} size: ")
    r = ok(cli("push", target))
    assert ": Layer already exists" in r.stdout and "Pushed" not in r.stdout
    ok(cli("rmi", target, busybox))
    assert ok(cli("images", "-q")).stdout == ""
    ok(cli("pull", "-q", target))
    assert image_id(cli, target) == original
    assert inspect_config(cli, target) == config
    r = ok(cli("run", "--rm", target, "sh", "-c", "echo hi; ls /bin | grep -c ."))
    assert r.stdout.splitlines()[0] == "hi" and int(r.stdout.splitlines()[1]) > 10


def test_push_basic_auth_after_login_recompress_chunked(cli, registry, busybox, tmp_path):
    original = image_id(cli, busybox)
    with start_registry(tmp_path / "reg", auth="basic", users={"alice": "s3cret"}) as reg:
        target = f"{reg.host}/alice/box:latest"
        ok(cli("tag", busybox, target))
        r = cli("push", target)
        assert r.returncode != 0 and "login" in r.stderr, r.stderr
        ok(cli("login", "--username", "alice", "--password-stdin", reg.host, input="s3cret\n"))
        r = ok(cli("push", "--chunk-size", "65536", target))
        assert ": Pushed" in r.stdout, r.stdout
        pushed = r.stdout.splitlines()[-1].split()[2]
        # another registry: the layer was recompressed, so the manifest is new
        assert pushed.startswith("sha256:") and pushed != registry.digests["busybox"]
        r = ok(cli("push", target))
        assert ": Layer already exists" in r.stdout
        assert r.stdout.splitlines()[-1].split()[2] == pushed   # deterministic gzip
        ok(cli("rmi", target, busybox))
        ok(cli("pull", "-q", target))
        assert image_id(cli, target) == original
        assert ok(cli("run", "--rm", target, "echo", "authed")).stdout == "authed\n"


def test_push_token_auth_mounts_across_repos(cli, registry, busybox, tmp_path):
    with start_registry(tmp_path / "reg", auth="token", users={"bob": "pw"}) as reg:
        ok(cli("login", "--username", "bob", "--password-stdin", reg.host, input="pw\n"))
        first, second = f"{reg.host}/bob/one:latest", f"{reg.host}/bob/two:latest"
        ok(cli("tag", busybox, first))
        ok(cli("tag", busybox, second))
        assert ": Pushed" in ok(cli("push", first)).stdout
        r = ok(cli("push", second))
        assert ": Mounted from bob/one" in r.stdout, r.stdout
        # the mount asked for pull on the source repository and push on the target
        scopes = " ".join(" ".join(s) for _, s in reg.token_service.requests)
        assert "repository:bob/one:pull" in scopes and "repository:bob/two:" in scopes
        ok(cli("rmi", "-f", busybox))
        ok(cli("pull", "-q", second))
        assert ok(cli("run", "--rm", second, "echo", "tok")).stdout == "tok\n"


def test_push_zstd(cli, registry, busybox):
    target = f"{registry.host}/dist/zbox:latest"
    ok(cli("tag", busybox, target))
    ok(cli("push", "--compress", "zstd", target))
    ok(cli("rmi", target, busybox))
    ok(cli("pull", "-q", target))
    r = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false",
                        f"docker://{target}"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    manifest = json.loads(r.stdout)
    assert [x["mediaType"] for x in manifest["layers"]] == \
        ["application/vnd.oci.image.layer.v1.tar+zstd"]
    assert ok(cli("run", "--rm", target, "echo", "z")).stdout == "z\n"


@pytest.mark.skipif(not shutil.which("skopeo"), reason="skopeo is not installed")
def test_save_load_docker_and_oci(cli, registry):
    ref = registry.ref("multilayer")
    ok(cli("pull", "-q", ref))
    original = image_id(cli, ref)
    layers = json.loads(ok(cli("image", "inspect", ref)).stdout)[0]["RootFS"]["Layers"]
    archive = user_file(cli, "img.tar")
    ok(cli("save", "-o", str(archive), ref))
    with tarfile.open(archive) as tf:
        names = set(tf.getnames())
        manifest = json.load(tf.extractfile("manifest.json"))
    assert {"manifest.json", "repositories", original[7:] + ".json"} <= names
    assert manifest[0]["RepoTags"] == [ref] and len(manifest[0]["Layers"]) == len(layers)
    r = subprocess.run(["skopeo", "inspect", f"docker-archive:{archive}"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["Layers"] == layers

    # to stdout: the same bytes (a save is reproducible)
    streamed = ok(cli("save", ref, text=False)).stdout
    assert streamed == archive.read_bytes()

    ok(cli("rmi", ref))
    r = ok(cli("load", "-i", str(archive)))
    assert r.stdout == f"Loaded image: {ref}\n"
    assert image_id(cli, ref) == original
    # stdin works too, and a second load changes nothing
    with open(archive, "rb") as f:
        r = ok(cli("load", stdin=f, text=False))
    assert r.stdout == f"Loaded image: {ref}\n".encode()
    assert ok(cli("run", "--rm", ref, "sh", "-c", "echo loaded")).stdout == "loaded\n"

    # a Docker archive written by skopeo loads too
    foreign = user_file(cli, "skopeo-docker.tar")
    r = subprocess.run(["skopeo", "copy", "--quiet", "--src-tls-verify=false",
                        f"docker://{registry.ref('busybox')}",
                        f"docker-archive:{foreign}:from/skopeo:v1"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    os.chmod(foreign, 0o644)
    assert ok(cli("load", "-i", str(foreign))).stdout == \
        "Loaded image: from/skopeo:v1\n"
    assert ok(cli("run", "--rm", "from/skopeo:v1", "echo", "sk1")).stdout == "sk1\n"

    oci = user_file(cli, "img-oci.tar")
    ok(cli("save", "--format", "oci-archive", "-o", str(oci), ref))
    with tarfile.open(oci) as tf:
        index = json.load(tf.extractfile("index.json"))
        assert "oci-layout" in tf.getnames()
    assert index["manifests"][0]["annotations"]["io.containerd.image.name"] == \
        f"{registry.host}/multilayer:latest"
    r = subprocess.run(["skopeo", "inspect", f"oci-archive:{oci}"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["Layers"] == layers     # uncompressed: digest = diff_id
    ok(cli("rmi", ref))
    assert ok(cli("load", "-i", str(oci))).stdout == f"Loaded image: {ref}\n"
    assert image_id(cli, ref) == original
    ocidir = user_file(cli, "oci-dir")
    ok(cli("save", "--format", "oci-dir", "-o", str(ocidir), ref))
    assert (ocidir / "oci-layout").is_file()
    ok(cli("rmi", ref))
    assert ok(cli("load", "-i", str(ocidir))).stdout == f"Loaded image: {ref}\n"
    assert image_id(cli, ref) == original

    # an OCI layout directory written by skopeo (compressed layers) loads as well
    layout = user_file(cli, "skopeo-layout")
    r = subprocess.run(["skopeo", "copy", "--quiet", f"docker-archive:{archive}",
                        f"oci:{layout}:other/name:v2"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    subprocess.run(["chown", "-R", unpriv.TEST_USER, str(layout)], check=True)
    ok(cli("rmi", ref))
    r = ok(cli("load", "-i", str(layout)))
    assert r.stdout == "Loaded image: other/name:v2\n"
    # skopeo rewrites the config for OCI (so the id is that of its config blob)
    index = json.loads((layout / "index.json").read_text())
    mdigest = index["manifests"][0]["digest"].split(":")[1]
    oci_manifest = json.loads((layout / "blobs" / "sha256" / mdigest).read_text())
    assert oci_manifest["layers"][0]["mediaType"].endswith("tar+gzip")
    assert image_id(cli, "other/name:v2") == oci_manifest["config"]["digest"]
    assert json.loads(ok(cli("image", "inspect", "other/name:v2")).stdout)[0]["RootFS"][
        "Layers"] == layers
    assert ok(cli("run", "--rm", "other/name:v2", "echo", "sk")).stdout == "sk\n"


def test_import_tarball_and_run(cli):
    tarball = busybox_rootfs_tar(user_file(cli, "rootfs.tgz"), {"etc/hello": "imported\n"})
    r = ok(cli("import", "-c", "CMD [\"cat\", \"/etc/hello\"]", "-m", "first import",
               str(tarball), "imported/box:1"))
    iid = r.stdout.strip()
    assert iid.startswith("sha256:") and len(iid) == 71
    assert image_id(cli, "imported/box:1") == iid
    assert ok(cli("run", "--rm", "imported/box:1")).stdout == "imported\n"
    with open(tarball, "rb") as f:
        r = ok(cli("import", "-", stdin=f, text=False))
    assert r.stdout.decode().startswith("sha256:")
    # from a URL
    data = tarball.read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/rootfs.tgz"
        r = ok(cli("import", "--change", "ENV FROM_URL=1", url, "imported/url"))
    finally:
        server.shutdown()
        server.server_close()
    r = ok(cli("run", "--rm", "imported/url", "sh", "-c", "cat /etc/hello; echo $FROM_URL"))
    assert r.stdout.split() == ["imported", "1"]
    r = ok(cli("history", "imported/box:1"))
    rows = r.stdout.splitlines()
    assert rows[0].split()[:2] == ["IMAGE", "CREATED"] and len(rows) == 2
    assert rows[1].startswith(iid[7:19]) and rows[1].rstrip().endswith("first import")


def test_commit_history_push_and_podman(cli, registry, busybox, tmp_path):
    ok(cli("run", "--name", "work", busybox, "sh", "-c",
           "echo made-here > /newfile && rm /bin/ls && mkdir -p /data && echo x > /data/x && "
           "chown 1234:2345 /data/x"))
    r = ok(cli("commit", "-p", "-m", "my change", "-a", "Tester <t@example.com>",
               "-c", "CMD [\"cat\", \"/newfile\"]", "-c", "ENV MODE=committed",
               "work", "committed/app:v1"))
    iid = r.stdout.strip()
    assert image_id(cli, "committed/app:v1") == iid
    assert ok(cli("run", "--rm", "committed/app:v1")).stdout == "made-here\n"
    r = ok(cli("run", "--rm", "committed/app:v1", "sh", "-c",
               'test -e /bin/ls && echo present || echo gone; echo $MODE; cat /data/x; '
               'stat -c "%u:%g" /newfile /data/x'))
    # owners as seen inside: subordinate host ids were mapped back by the commit
    assert r.stdout.split() == ["gone", "committed", "x", "0:0", "1234:2345"]
    info = json.loads(ok(cli("image", "inspect", "committed/app:v1")).stdout)[0]
    assert info["Author"] == "Tester <t@example.com>" and info["Comment"] == "my change"
    assert len(info["RootFS"]["Layers"]) == 2

    rows = ok(cli("history", "committed/app:v1")).stdout.splitlines()
    assert rows[0].split() == ["IMAGE", "CREATED", "CREATED", "BY", "SIZE", "COMMENT"]
    assert len(rows) == 3 and rows[1].startswith(iid[7:19]) and "my change" in rows[1]
    assert rows[2].startswith("<missing>")
    q = ok(cli("history", "-q", "--no-trunc", "committed/app:v1")).stdout.split()
    assert q == [iid, "<missing>"]
    fmt = ok(cli("history", "--no-trunc", "--format", "{{.CreatedBy}}|{{.Comment}}",
                 "committed/app:v1")).stdout.splitlines()
    assert fmt[0].startswith("sh -c echo made-here") and fmt[0].endswith("|my change")

    # push it (one layer mounted, one compressed here), then Podman pulls and runs it
    target = f"{registry.host}/committed/app:v1"
    ok(cli("tag", "committed/app:v1", target))
    r = ok(cli("push", target))
    assert ": Mounted from busybox" in r.stdout and ": Pushed" in r.stdout, r.stdout
    if not shutil.which("podman"):
        pytest.skip("podman is not installed: the interoperability half is not checked")
    pod_home = cli.home / "podman"
    configure_podman(pod_home)
    env = unpriv.user_env(pod_home)
    env["XDG_RUNTIME_DIR"] = str(cli.home / "run")
    r = unpriv.run_as_user(["podman", "run", "--rm", "--tls-verify=false", "--network", "none",
                            target, "sh", "-c", "cat /newfile; test -e /bin/ls || echo gone"],
                           pod_home, env=env, timeout=180)
    try:
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == ["made-here", "gone"]
    finally:
        unpriv.run_as_user(["podman", "system", "reset", "--force"], pod_home, env=env,
                           timeout=120)


def test_bad_input_and_edges(cli, registry, busybox):
    r = cli("push", f"{registry.host}/nothing/here:v9")
    assert r.returncode != 0 and "does not exist locally" in r.stderr
    junk = user_file(cli, "junk.bin")
    junk.write_bytes(b"this is not a tar" * 100)
    r = cli("load", "-i", str(junk))
    assert r.returncode == 125 and "not a tar archive" in r.stderr, r.stderr
    empty = user_file(cli, "empty.tar")
    with tarfile.open(empty, "w"):
        pass
    r = cli("load", "-i", str(empty))
    assert r.returncode == 125 and "not an image archive" in r.stderr, r.stderr
    r = cli("commit", "no-such-container")
    assert r.returncode != 0 and "No such container" in r.stderr
    r = cli("import", str(user_file(cli, "missing.tar")))
    assert r.returncode == 125 and "missing.tar" in r.stderr
    r = cli("import", "-c", "RUN echo no", "-")
    assert r.returncode == 125 and "not supported" in r.stderr

    # saved by id: no name inside, so load reports the id
    iid = image_id(cli, busybox)
    byid = user_file(cli, "byid.tar")
    ok(cli("save", "-o", str(byid), iid[7:19]))
    assert ok(cli("load", "-i", str(byid))).stdout == f"Loaded image ID: {iid}\n"
    # sizes in bytes without -H
    size = json.loads(ok(cli("image", "inspect", busybox)).stdout)[0]["Size"]
    out = ok(cli("history", "--human=false", "--format", "{{.Size}}", busybox)).stdout
    assert out.split()[0] == str(size)

    # push -a: every tag of the repository
    for tag in ("a", "b"):
        ok(cli("tag", busybox, f"{registry.host}/dist/all:{tag}"))
    r = ok(cli("push", "-a", f"{registry.host}/dist/all"))
    assert [line.split(":")[0] for line in r.stdout.splitlines() if "digest:" in line] == \
        ["a", "b"]
