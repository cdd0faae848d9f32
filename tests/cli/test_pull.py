"""`pull`, `images`, `rmi`, `tag`, `image inspect/prune`, `system df`, `login/logout`:
the built tool run as the unprivileged test user against a real registry."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from tests.fixtures.cli_runner import ok

from tests.cli import hostile
from tests.cli.stall_proxy import StallProxy
from tests.fixtures import images
from tests.fixtures.registry_server import FaultProxy, start_registry


def store(home: Path) -> Path:
    return home / ".local" / "share" / "pydocklite"


def committed_layers(home: Path) -> set:
    d = store(home) / "layers" / "sha256"
    return {p.name for p in d.iterdir() if not p.name.startswith(".")} if d.is_dir() else set()


def test_pull_then_images_inspect_tag_rmi(cli, registry, image_cache):
    ref = registry.ref("busybox")
    r = ok(cli("pull", ref))
    lines = r.stdout.splitlines()
    assert lines[0] == "Using default tag: latest" or lines[0].startswith("latest: Pulling")
    assert "Pull complete" in r.stdout
    assert f"Digest: {registry.digests['busybox']}" in r.stdout
    assert lines[-1] == ref
    image = images.build_busybox_image(image_cache)
    config_digest = image.config.digest

    out = ok(cli("images")).stdout.splitlines()
    assert out[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    row = out[1].split()
    assert row[0] == f"{registry.host}/busybox" and row[1] == "latest"
    assert row[2] == config_digest[7:19]
    assert ok(cli("images", "-q")).stdout == config_digest[7:19] + "\n"
    dig = ok(cli("images", "--digests")).stdout
    assert registry.digests["busybox"] in dig
    fmt = ok(cli("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}")).stdout
    assert fmt == f"{registry.host}/busybox:latest {config_digest[7:19]}\n"

    info = json.loads(ok(cli("image", "inspect", ref)).stdout)
    assert info[0]["Id"] == config_digest
    assert info[0]["RootFS"]["Layers"] == [layer.diff_id for layer in image.layers]
    assert info[0]["Config"]["Cmd"] == image.config_json()["config"].get("Cmd")
    assert info[0]["RepoDigests"] == [f"{registry.host}/busybox@{registry.digests['busybox']}"]
    assert ok(cli("image", "inspect", "-f", "{{.Os}}/{{.Architecture}}", ref)).stdout \
        == "linux/amd64\n"
    by_digest = f"{registry.host}/busybox@{registry.digests['busybox']}"
    assert ok(cli("image", "inspect", "-f", "{{.Id}}", by_digest)).stdout.strip() == config_digest
    assert ok(cli("image", "inspect", "-f", "{{.Id}}", config_digest[7:19])).stdout.strip() \
        == config_digest

    ok(cli("tag", ref, "mine/box:v1"))
    listed = ok(cli("images", "--format", "{{.Repository}}:{{.Tag}}")).stdout.split()
    assert sorted(listed) == sorted([f"{registry.host}/busybox:latest", "mine/box:v1"])
    # rmi of one of two tags only untags
    assert ok(cli("rmi", "mine/box:v1")).stdout == "Untagged: mine/box:v1\n"
    r = ok(cli("rmi", ref))
    assert f"Deleted: {config_digest}" in r.stdout
    assert ok(cli("images", "-q")).stdout == ""
    assert committed_layers(cli.home) == set()          # layers garbage-collected
    r = cli("rmi", ref)
    assert r.returncode == 1 and "No such image" in r.stderr


def test_pull_quiet_and_up_to_date(cli, registry):
    ref = registry.ref("multilayer")
    r = ok(cli("pull", "-q", ref))
    assert r.stdout == ref + "\n"
    r = ok(cli("pull", ref))
    assert r.stdout.count("Already exists") == 3
    assert "Status: Image is up to date" in r.stdout


def test_zstd_and_gzip_layers_stored_once(cli, registry, image_cache):
    ok(cli("pull", registry.ref("busybox-zstd")))
    before = committed_layers(cli.home)
    assert len(before) == 1
    r = ok(cli("pull", registry.ref("busybox")))
    assert "Already exists" in r.stdout            # same DiffID: stored once
    assert committed_layers(cli.home) == before
    layer_dir = store(cli.home) / "layers" / "sha256" / before.pop()
    diff_id = images.build_busybox_image(image_cache).layers[0].diff_id
    assert layer_dir.name == diff_id[7:]
    assert (layer_dir / "index").is_file()
    blob = layer_dir / "blob"
    import hashlib
    assert "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest() == diff_id


def test_platform_selection(cli, registry):
    for name in ("multiplatform", "multiplatform-list"):
        ref = registry.ref(name)
        ok(cli("pull", "--platform", "linux/arm64", ref))
        arch = ok(cli("image", "inspect", "--format", "{{.Architecture}}", ref)).stdout.strip()
        assert arch == "arm64"
        ok(cli("pull", ref))      # default: this host
        arch = ok(cli("image", "inspect", "--format", "{{.Architecture}}", ref)).stdout.strip()
        assert arch == "amd64"
    r = cli("pull", "--platform", "linux/s390x", registry.ref("multiplatform"))
    assert r.returncode == 125
    assert "s390x" in r.stderr and r.stderr.count("\n") == 1


def test_image_prune_and_system_df(cli, registry):
    ok(cli("pull", "-q", registry.ref("busybox")))
    ok(cli("pull", "-q", registry.ref("multilayer")))
    df = ok(cli("system", "df")).stdout.splitlines()
    assert df[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    assert df[1].split()[:3] == ["Images", "2", "0"]
    # untag busybox: it becomes dangling, prune removes it, multilayer stays
    ok(cli("tag", registry.ref("busybox"), "keep:me"))
    ok(cli("rmi", registry.ref("busybox")))
    ok(cli("rmi", "keep:me"))
    r = ok(cli("image", "prune", "-f"))
    assert "Total reclaimed space" in r.stdout
    assert ok(cli("images", "--format", "{{.Repository}}")).stdout.strip() == \
        f"{registry.host}/multilayer"
    r = ok(cli("image", "prune", "-a", "-f"))
    assert "deleted: sha256:" in r.stdout
    assert ok(cli("images", "-q")).stdout == ""
    assert committed_layers(cli.home) == set()


def test_concurrent_pulls_of_one_image(cli, registry):
    ref = registry.ref("multilayer")
    procs = [cli.popen("pull", "-q", ref, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True) for _ in range(3)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert out == ref + "\n"
    assert len(committed_layers(cli.home)) == 3
    assert len(ok(cli("images", "-q")).stdout.split()) == 1


def test_bad_reference_and_missing_image(cli, registry):
    r = cli("pull", "Busybox")
    assert r.returncode == 125 and "lowercase" in r.stderr
    r = cli("pull", registry.ref("does-not-exist"))
    assert r.returncode == 125 and "not found" in r.stderr


# --- faults -----------------------------------------------------------------------------

@pytest.fixture
def fault_proxy(registry):
    proxy = FaultProxy(registry.url).start()
    yield proxy
    proxy.stop()


def test_registry_500_then_success(cli, fault_proxy):
    fault_proxy.fail_next(times=2, status=500, path_contains="/blobs/")
    ok(cli("pull", "-q", f"{fault_proxy.host}/busybox"))
    assert fault_proxy.pending() == 0


def test_blob_cut_midway_is_resumed(cli, fault_proxy):
    fault_proxy.cut_next_blob(after=100_000, path_contains="/blobs/sha256:")
    ok(cli("pull", "-q", f"{fault_proxy.host}/busybox"))
    assert fault_proxy.pending() == 0
    assert len(committed_layers(cli.home)) == 1


def test_corrupt_blob_is_refused_and_nothing_kept(cli, fault_proxy, registry, image_cache):
    layer = images.build_busybox_image(image_cache).layers[0].blob.digest
    fault_proxy.corrupt_next(times=10, path_contains=f"/blobs/{layer}")
    r = cli("pull", f"{fault_proxy.host}/busybox")
    assert r.returncode == 125
    err = r.stderr.strip().splitlines()[-1]
    assert "digest" in err.lower() or "damaged" in err.lower()
    assert committed_layers(cli.home) == set()
    assert ok(cli("images", "-q")).stdout == ""
    # the store is still usable: a clean pull finishes
    ok(cli("pull", "-q", registry.ref("busybox")))


def test_sigkill_mid_pull_keeps_store_consistent(cli, registry, image_cache):
    image = images.build_multilayer_image(image_cache)
    last = image.layers[-1]
    proxy = StallProxy(registry.url, last.blob.digest, after=1).start()
    try:
        ref = f"{proxy.host}/multilayer"
        p = cli.popen("pull", ref, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proxy.stalled.wait(60), "the pull never reached the stalled layer"
        deadline = time.time() + 30
        while len(committed_layers(cli.home)) < 2 and time.time() < deadline:
            time.sleep(0.05)
        os.kill(p.pid, signal.SIGKILL)
        p.wait(10)
        proxy.release.set()
    finally:
        proxy.stop()
    done = committed_layers(cli.home)
    assert done == {l.diff_id[7:] for l in image.layers[:-1]}
    assert ok(cli("images", "-q")).stdout == ""             # no half image visible
    r = ok(cli("pull", registry.ref("multilayer")))
    assert r.stdout.count("Already exists") == 2 and r.stdout.count("Pull complete") == 1
    assert len(committed_layers(cli.home)) == 3


# --- hostile images -----------------------------------------------------------------------

@pytest.mark.parametrize("name,entries,needle", [
    ("dotdot", [hostile.entry("../evil")], "../evil"),
    ("absolute", [hostile.entry("/etc/evil")], "/etc/evil"),
    ("hardlink-out", [hostile.entry("x", tarfile.LNKTYPE, "../../etc/shadow")], "x"),
    ("hardlink-missing", [hostile.entry("y", tarfile.LNKTYPE, "nothere")], "y"),
])
def test_escaping_tar_entries_are_refused(cli, registry, name, entries, needle):
    tar = hostile.tar_of([hostile.entry("ok.txt")] + entries)
    hostile.push_image(registry.url, f"hostile/{name}", [tar])
    r = cli("pull", f"{registry.host}/hostile/{name}")
    assert r.returncode == 125
    err = r.stderr.strip().splitlines()[-1]
    assert needle in err and "sha256:" in err        # names the entry and the layer
    assert committed_layers(cli.home) == set()
    assert ok(cli("images", "-q")).stdout == ""


def test_device_nodes_and_setuid_are_recorded_not_created(cli, registry):
    dev = hostile.entry("dev/null2", tarfile.CHRTYPE, mode=0o666)
    dev.devmajor, dev.devminor = 1, 3
    suid = hostile.entry("bin/su2", mode=0o4755)
    tar = hostile.tar_of([hostile.entry("dev", tarfile.DIRTYPE, mode=0o755),
                          hostile.entry("bin", tarfile.DIRTYPE, mode=0o755), dev, suid],
                         {"bin/su2": b"#!/bin/sh\n"})
    hostile.push_image(registry.url, "hostile/devnodes", [tar])
    ok(cli("pull", f"{registry.host}/hostile/devnodes"))
    (layer,) = committed_layers(cli.home)
    layer_dir = store(cli.home) / "layers" / "sha256" / layer
    assert sorted(p.name for p in layer_dir.iterdir()) == ["blob", "index"]
    # nothing under the store is a device node or set-uid
    for root, dirs, files in os.walk(store(cli.home)):
        for f in files:
            st = os.lstat(os.path.join(root, f))
            assert not (st.st_mode & 0o6000)
            assert not (st.st_mode & 0o170000 in (0o020000, 0o060000))


def test_wrong_diff_id_and_wrong_size_are_refused(cli, registry):
    tar = hostile.tar_of([hostile.entry("a.txt")], {"a.txt": b"hello"})
    hostile.push_image(registry.url, "hostile/diffid", [tar], diff_ids=[hostile.sha(b"other")])
    r = cli("pull", f"{registry.host}/hostile/diffid")
    assert r.returncode == 125 and "diff" in r.stderr.lower()
    hostile.push_image(registry.url, "hostile/size", [tar], sizes=[7])
    r = cli("pull", f"{registry.host}/hostile/size")
    assert r.returncode == 125 and ("size" in r.stderr.lower() or "bytes" in r.stderr.lower())
    assert committed_layers(cli.home) == set()
    assert ok(cli("images", "-q")).stdout == ""


# --- auth and TLS -------------------------------------------------------------------------

def test_basic_auth_login_pull_logout(cli, tmp_path, image_cache):
    with start_registry(tmp_path / "reg", auth="basic", anonymous_pull=False) as srv:
        images.push(images.build_busybox_image(image_cache), srv.url, "private/box",
                    auth=("alice", "wonderland"))
        ref = f"{srv.host}/private/box"
        r = cli("pull", ref)
        assert r.returncode == 125 and "login" in r.stderr
        r = cli("login", "-u", "alice", "--password-stdin", srv.host, input="wrong\n")
        assert r.returncode == 125 and "incorrect" in r.stderr.lower()
        r = ok(cli("login", "-u", "alice", "--password-stdin", srv.host, input="wonderland\n"))
        assert r.stdout.strip() == "Login Succeeded"
        conf = json.loads((cli.home / ".docker" / "config.json").read_text())
        assert srv.host in conf["auths"]
        ok(cli("pull", "-q", ref))
        r = ok(cli("logout", srv.host))
        assert r.stdout.strip() == f"Removing login credentials for {srv.host}"
        ok(cli("rmi", ref))
        assert cli("pull", ref).returncode == 125


def test_token_auth_flow(cli, tmp_path, image_cache):
    with start_registry(tmp_path / "reg", auth="token") as srv:
        images.push(images.build_busybox_image(image_cache), srv.url, "tok/box",
                    auth=("alice", "wonderland"))
        ok(cli("pull", "-q", f"{srv.host}/tok/box"))     # anonymous bearer token
        ok(cli("login", "-u", "alice", "--password-stdin", srv.host, input="wonderland\n"))
        ok(cli("pull", "-q", f"{srv.host}/tok/box"))


def test_tls_registry_needs_its_ca(cli, tmp_path, image_cache):
    with start_registry(tmp_path / "reg", tls=True) as srv:
        images.push(images.build_busybox_image(image_cache), srv.url, "tls/box", ca=srv.ca_file)
        ref = f"{srv.host}/tls/box"
        r = cli("pull", ref)
        assert r.returncode == 125 and "certificate" in r.stderr.lower()
        certs = cli.home / ".config" / "pydocklite" / "certs.d" / srv.host
        certs.mkdir(parents=True)
        (certs / "ca.crt").write_bytes(Path(srv.ca_file).read_bytes())
        os.system(f"chown -R {os.environ.get('PDL_TEST_USER', 'pdltest')} "
                  f"{cli.home / '.config'}")
        ok(cli("pull", "-q", ref))


def _read_as_user(path: Path) -> subprocess.CompletedProcess:
    from tests import unpriv
    return subprocess.run(unpriv.user_cmd(["cat", str(path)]), capture_output=True)


def test_pulled_layers_merge_with_overlay_semantics(cli, registry):
    """mount (podman image mount): the merged view of a pulled multi-layer image, with the
    deleted file and the opaque directory's old contents gone."""
    from tests import unpriv
    ref = registry.ref("multilayer")
    ok(cli("pull", "-q", ref))
    target = Path(ok(cli("mount", ref)).stdout.strip())
    try:
        exp = images.MULTILAYER_EXPECTED
        for rel, data in exp["files"].items():
            r = _read_as_user(target / rel)
            assert r.returncode == 0 and r.stdout == data, rel
        for rel in exp["absent"]:
            r = subprocess.run(unpriv.user_cmd(["stat", str(target / rel)]),
                               capture_output=True)
            assert r.returncode != 0, f"{rel} should be gone"
        for rel, link in exp["symlinks"].items():
            r = subprocess.run(unpriv.user_cmd(["readlink", str(target / rel)]),
                               capture_output=True, text=True)
            assert r.stdout.strip() == link
        for rel, mode in exp["modes"].items():
            r = subprocess.run(unpriv.user_cmd(["stat", "-c", "%a", str(target / rel)]),
                               capture_output=True, text=True)
            assert int(r.stdout.strip(), 8) == mode
    finally:
        ok(cli("unmount", ref))
    assert str(target) not in Path("/proc/mounts").read_text()


def test_platform_variant_content(cli, registry):
    ref = registry.ref("multiplatform")
    ok(cli("pull", "-q", "--platform", "linux/arm64", ref))
    target = Path(ok(cli("mount", ref)).stdout.strip())
    try:
        assert _read_as_user(target / "etc" / "pdl-platform").stdout == b"linux/arm64\n"
    finally:
        ok(cli("unmount", ref))
