"""The client against real docker-registry processes (plain, basic, token, TLS) and the
fault-injecting proxy."""
from __future__ import annotations

import json
import os
import stat
import time

import pytest

from registry import model as m
from registry.client import RegistryClient
from registry.credentials import Credentials, DockerConfig
from registry.errors import (AuthError, BlobVerifyError, ImageConfigError, ManifestVerifyError,
                             NotFoundError, PlatformNotFound, TransportError)
from registry.model import Descriptor, Platform

USER, PASSWORD = "alice", "wonderland"   # the conftest's registry users


def new_client(**kw):
    kw.setdefault("auth", False)
    kw.setdefault("backoff", 0.01)
    kw.setdefault("certs_dirs", [])
    return RegistryClient(**kw)


def pull_all(client, ref, **kw):
    img = client.resolve(ref, **kw)
    blobs = [b"".join(client.stream_blob(img.ref, d, chunk_size=kw.get("chunk", 256)))
             for d in img.manifest.layers]
    return img, blobs


# -- plain registry -------------------------------------------------------------------------
def test_push_and_pull_round_trip(plain_registry, client, helpers):
    repo = f"{plain_registry.host}/rt/app"
    pushed = helpers.push_test_image(client, repo, "v1", seed="rt")
    img, blobs = pull_all(client, f"{repo}:v1")
    assert img.manifest_digest == pushed.manifest_digest and img.index is None
    assert img.manifest.raw == pushed.manifest_raw and img.config_bytes == pushed.config_raw
    assert blobs == pushed.layers
    assert img.config.config.cmd == ("/bin/sh",) and dict(img.config.config.labels) == {"seed": "rt"}
    # by digest, and tag+digest
    by_digest = client.resolve(f"{repo}@{pushed.manifest_digest}")
    assert by_digest.manifest.raw == pushed.manifest_raw
    assert client.get_manifest(f"{repo}:v1@{pushed.manifest_digest}").digest == pushed.manifest_digest
    assert client.list_tags(repo) == ["v1"]
    head = client.head_manifest(f"{repo}:v1")
    assert head.digest == pushed.manifest_digest and head.size == len(pushed.manifest_raw)
    assert client.head_manifest(f"{repo}:nope") is None


def test_not_found(plain_registry, client):
    with pytest.raises(NotFoundError, match="missing/repo"):
        client.get_manifest(f"{plain_registry.host}/missing/repo:latest")
    d = Descriptor(m.OCI_LAYER_GZIP, "sha256:" + "0" * 64, 3)
    with pytest.raises(NotFoundError):
        client.get_blob_bytes(f"{plain_registry.host}/missing/repo", d)


def test_push_operations(plain_registry, client):
    repo = f"{plain_registry.host}/push/one"
    blob = os.urandom(70_000)
    digest = m.sha256_digest(blob)
    assert client.blob_exists(repo, digest) is False
    assert client.upload_blob(repo, blob, chunk_size=16_384) == digest      # chunked PATCHes
    assert client.blob_exists(repo, digest) is True
    assert client.get_blob_bytes(repo, Descriptor("application/octet-stream", digest,
                                                  len(blob))) == blob
    # a file object, monolithic
    other = os.urandom(5000)
    import io
    assert client.upload_blob(repo, io.BytesIO(other), m.sha256_digest(other), len(other)) \
        == m.sha256_digest(other)
    # a file object, chunked
    third = os.urandom(40_000)
    assert client.upload_blob(repo, io.BytesIO(third), m.sha256_digest(third), len(third),
                              chunk_size=10_000) == m.sha256_digest(third)
    assert client.get_blob_bytes(repo, Descriptor("x", m.sha256_digest(third), 40_000)) == third
    # cross-repo mount
    target = f"{plain_registry.host}/push/two"
    assert client.mount_blob(target, digest, "push/one") is True
    assert client.blob_exists(target, digest)
    absent = "sha256:" + "9" * 64
    assert client.mount_blob(target, absent, "push/one") is False
    with pytest.raises(BlobVerifyError):
        client.upload_blob(repo, b"abc", size=4)


def test_multi_platform_index(plain_registry, client, helpers):
    repo = f"{plain_registry.host}/multi/app"
    amd = helpers.push_test_image(client, repo, "amd64", arch="amd64", seed="amd")
    arm = helpers.push_test_image(client, repo, "arm64", arch="arm64", variant="v8", seed="arm")
    entries = [
        Descriptor(m.OCI_MANIFEST, amd.manifest_digest, len(amd.manifest_raw),
                   platform=Platform.parse("linux/amd64")),
        Descriptor(m.OCI_MANIFEST, arm.manifest_digest, len(arm.manifest_raw),
                   platform=Platform.parse("linux/arm64/v8")),
    ]
    for mt, tag in ((m.OCI_INDEX, "oci"), (m.DOCKER_MANIFEST_LIST, "docker")):
        client.put_manifest(f"{repo}:{tag}", m.build_index(entries, mt))
        img = client.resolve(f"{repo}:{tag}", Platform.parse("linux/arm64"))
        assert img.index is not None and img.index.media_type == mt
        assert img.manifest_digest == arm.manifest_digest and img.config.architecture == "arm64"
        assert img.config.variant == "v8"
        img = client.resolve(f"{repo}:{tag}", Platform.parse("linux/amd64"))
        assert img.manifest_digest == amd.manifest_digest
        with pytest.raises(PlatformNotFound) as e:
            client.resolve(f"{repo}:{tag}", Platform.parse("linux/s390x"))
        assert "linux/amd64" in str(e.value) and "linux/arm64/v8" in str(e.value)
    if m.host_platform().architecture == "amd64":
        assert client.resolve(f"{repo}:oci").manifest_digest == amd.manifest_digest
    # a single-platform image asked for another platform
    with pytest.raises(PlatformNotFound):
        client.resolve(f"{repo}:amd64", Platform.parse("linux/arm64"))


def test_registry_accepts_inconsistent_images_but_client_rejects(plain_registry, client, helpers):
    repo = f"{plain_registry.host}/broken/app"
    helpers.push_test_image(client, repo, "diffids", wrong_diff_ids=True)
    with pytest.raises(ImageConfigError, match="diff_ids"):
        client.resolve(f"{repo}:diffids")
    for delta in (+1, -1):
        tag = f"size{delta}".replace("-", "m")
        helpers.push_test_image(client, repo, tag, layer_size_delta=delta, seed=tag)
        img = client.resolve(f"{repo}:{tag}")
        with pytest.raises(BlobVerifyError, match="manifest declares"):
            b"".join(client.stream_blob(img.ref, img.manifest.layers[0]))


# -- fault proxy ----------------------------------------------------------------------------
@pytest.fixture
def proxied(plain_registry, fault_proxy, client, helpers):
    """An image pushed directly, pulled through the proxy."""
    repo_path = "faulty/app"
    big, _ = helpers.make_layer({"random.bin": os.urandom(200_000)})
    pushed = helpers.push_test_image(client, f"{plain_registry.host}/{repo_path}", "v1", seed="f")
    client.upload_blob(f"{plain_registry.host}/{repo_path}", big)
    desc = Descriptor(m.OCI_LAYER_GZIP, m.sha256_digest(big), len(big))
    return f"{fault_proxy.host}/{repo_path}", pushed, big, desc


def test_500_then_success(fault_proxy, proxied):
    ref, pushed, _, _ = proxied
    fault_proxy.fail_next(2, status=500, path_contains="/manifests/")
    fault_proxy.fail_next(1, status=503, path_contains="/blobs/")
    c = new_client(plain_http=[fault_proxy.host])
    img, blobs = pull_all(c, f"{ref}:v1")
    assert blobs == pushed.layers
    statuses = [s for (_, p, s, _) in fault_proxy.log]
    assert statuses.count(500) == 2 and statuses.count(503) == 1
    assert fault_proxy.pending() == 0


def test_retries_exhausted(fault_proxy, proxied):
    ref, _, _, _ = proxied
    fault_proxy.fail_next(10, status=502, path_contains="/manifests/")
    c = new_client(plain_http=[fault_proxy.host], retries=2)
    with pytest.raises(TransportError) as e:
        c.get_manifest(f"{ref}:v1")
    assert e.value.status == 502
    assert sum(1 for (_, _, s, _) in fault_proxy.log if s == 502) == 3


def test_429_honours_retry_after(fault_proxy, proxied):
    ref, pushed, _, _ = proxied
    fault_proxy.rate_limit_next(1, retry_after="1", path_contains="/manifests/")
    c = new_client(plain_http=[fault_proxy.host])
    t0 = time.monotonic()
    assert c.get_manifest(f"{ref}:v1").digest == pushed.manifest_digest
    assert time.monotonic() - t0 >= 0.95


def test_cut_blob_resumes_with_range(fault_proxy, proxied):
    ref, _, big, desc = proxied
    fault_proxy.cut_next_blob(after=50_000)
    c = new_client(plain_http=[fault_proxy.host])
    data = b"".join(c.stream_blob(ref, desc, chunk_size=4096))
    assert data == big
    blob_reqs = [(p, r) for (meth, p, s, r) in fault_proxy.log if desc.digest in p]
    assert len(blob_reqs) == 2
    assert blob_reqs[0][1] == "" and blob_reqs[1][1].startswith("bytes=")
    start = int(blob_reqs[1][1][len("bytes="):].rstrip("-"))
    assert 0 < start <= 50_000


def test_cut_manifest_and_tag_list_are_fetched_again(fault_proxy, proxied):
    ref, pushed, _, _ = proxied
    c = new_client(plain_http=[fault_proxy.host])
    fault_proxy.cut_next_blob(after=20, path_contains="/manifests/")
    assert c.get_manifest(f"{ref}:v1").digest == pushed.manifest_digest
    fault_proxy.cut_next_blob(after=5, path_contains="/tags/list")
    assert c.list_tags(ref) == ["v1"]
    assert fault_proxy.pending() == 0


def test_cut_blob_server_ignoring_range_restarts(fault_proxy, proxied):
    ref, _, big, desc = proxied
    fault_proxy.ignore_range = True
    fault_proxy.cut_next_blob(after=50_000, times=2)
    c = new_client(plain_http=[fault_proxy.host])
    assert b"".join(c.stream_blob(ref, desc, chunk_size=4096)) == big
    assert sum(1 for (_, p, _, _) in fault_proxy.log if desc.digest in p) == 3


def test_corrupt_blob_raises(fault_proxy, proxied):
    ref, _, _, desc = proxied
    fault_proxy.corrupt_next(1, path_contains=desc.digest)
    c = new_client(plain_http=[fault_proxy.host])
    with pytest.raises(BlobVerifyError, match="digest"):
        b"".join(c.stream_blob(ref, desc))


def test_corrupt_manifest_by_digest_raises(fault_proxy, proxied):
    ref, pushed, _, _ = proxied
    c = new_client(plain_http=[fault_proxy.host])
    fault_proxy.corrupt_next(1, path_contains="/manifests/")
    with pytest.raises(ManifestVerifyError):
        c.get_manifest(f"{ref}@{pushed.manifest_digest}")
    fault_proxy.corrupt_next(1, path_contains="/manifests/")
    with pytest.raises(ManifestVerifyError):   # by tag: Docker-Content-Digest disagrees
        c.get_manifest(f"{ref}:v1")


def test_push_through_proxy_with_faults(fault_proxy, plain_registry, helpers):
    c = new_client(plain_http=[fault_proxy.host])
    fault_proxy.fail_next(1, status=500, method="PUT", path_contains="/blobs/uploads/")
    fault_proxy.fail_next(1, status=503, method="PATCH")
    fault_proxy.fail_next(1, status=502, method="PUT", path_contains="/manifests/")
    blob = os.urandom(30_000)
    repo = f"{fault_proxy.host}/viaproxy/app"
    assert c.upload_blob(repo, blob, chunk_size=8192) == m.sha256_digest(blob)
    pushed = helpers.push_test_image(c, repo)
    assert fault_proxy.pending() == 0
    # the upload Location pointed back at the proxy (the registry honours Host)
    assert any(meth == "PATCH" for (meth, _, _, _) in fault_proxy.log)
    direct = new_client()
    assert direct.get_manifest(f"{plain_registry.host}/viaproxy/app:latest").digest == \
        pushed.manifest_digest


def test_http_scheme_probe_for_loopback(plain_registry):
    c = new_client()   # no plain_http hint: HTTPS is tried first, then HTTP for loopback
    assert c.transport.base_url(plain_registry.host) == plain_registry.url
    assert c.ping(plain_registry.host) is None


# -- basic auth -----------------------------------------------------------------------------
def test_basic_auth(basic_registry, helpers):
    repo = f"{basic_registry.host}/basic/app"
    good = new_client(auth=Credentials(USER, PASSWORD))
    pushed = helpers.push_test_image(good, repo)
    assert pull_all(good, f"{repo}:latest")[1] == pushed.layers
    with pytest.raises(AuthError, match="rejected the credentials"):
        new_client(auth=(USER, "wrong")).get_manifest(f"{repo}:latest")
    with pytest.raises(AuthError, match="requires authentication"):
        new_client().get_manifest(f"{repo}:latest")
    scheme, _ = new_client().ping(basic_registry.host)
    assert scheme == "basic"
    good.login(basic_registry.host, Credentials(USER, PASSWORD))
    with pytest.raises(AuthError, match="incorrect username or password"):
        new_client().login(basic_registry.host, Credentials(USER, "nope"))


def test_docker_config_auths_and_helpers(basic_registry, tmp_path, monkeypatch, helpers):
    repo = f"{basic_registry.host}/cfg/app"
    pushed = helpers.push_test_image(new_client(auth=(USER, PASSWORD)), repo)
    # 1. base64 "auth" in auths
    cfg = DockerConfig(tmp_path / "plain" / "config.json")
    cfg.save(basic_registry.host, Credentials(USER, PASSWORD))
    assert new_client(auth=cfg).get_manifest(f"{repo}:latest").digest == pushed.manifest_digest
    # 2. credsStore / credHelpers with a fake docker-credential-test on PATH
    bindir, store = tmp_path / "bin", tmp_path / "helper-store.json"
    bindir.mkdir()
    helper = bindir / "docker-credential-test"
    helper.write_text(f"""#!/usr/bin/python3
import json, sys
path = {str(store)!r}
try:
    db = json.load(open(path))
except FileNotFoundError:
    db = {{}}
verb, data = sys.argv[1], sys.stdin.read()
if verb == "get":
    if data.strip() not in db:
        print("credentials not found in native keychain"); sys.exit(1)
    user, secret = db[data.strip()]
    print(json.dumps({{"ServerURL": data.strip(), "Username": user, "Secret": secret}}))
elif verb == "store":
    d = json.loads(data); db[d["ServerURL"]] = [d["Username"], d["Secret"]]
    json.dump(db, open(path, "w"))
elif verb == "erase":
    db.pop(data.strip(), None); json.dump(db, open(path, "w"))
""")
    helper.chmod(helper.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    for key, value in (("credsStore", "test"),
                       ("credHelpers", {basic_registry.host: "test"})):
        if store.exists():
            store.unlink()
        path = tmp_path / key / "config.json"
        path.parent.mkdir()
        path.write_text(json.dumps({key: value}))
        hcfg = DockerConfig(path)
        assert hcfg.get(basic_registry.host) is None
        hcfg.save(basic_registry.host, Credentials(USER, PASSWORD))
        assert json.loads(store.read_text()) == {basic_registry.host: [USER, PASSWORD]}
        assert "auth" not in json.dumps(json.loads(path.read_text()).get("auths", {}))
        c = new_client(auth=hcfg)
        assert c.get_manifest(f"{repo}:latest").digest == pushed.manifest_digest
        assert hcfg.erase(basic_registry.host) is True
        assert hcfg.get(basic_registry.host) is None
        with pytest.raises(AuthError):
            new_client(auth=hcfg).get_manifest(f"{repo}:latest")
    # a configured helper that does not exist is a clear error
    path = tmp_path / "missing" / "config.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"credsStore": "nonexistent-xyz"}))
    with pytest.raises(AuthError, match="docker-credential-nonexistent-xyz not found"):
        new_client(auth=DockerConfig(path)).get_manifest(f"{repo}:latest")


# -- bearer tokens (the real registry validating our token service's JWTs) -----------------
def test_bearer_token_flow(token_registry, helpers):
    ts = token_registry.token_service
    repo = f"{token_registry.host}/tok/app"
    scheme, params = new_client().ping(token_registry.host)
    assert scheme == "bearer" and params["realm"] == ts.realm and params["service"] == ts.service
    with pytest.raises(AuthError, match="requires authentication"):
        helpers.push_test_image(new_client(), repo)          # anonymous users may only pull
    pusher = new_client(auth=Credentials(USER, PASSWORD))
    ts.requests.clear()
    pushed = helpers.push_test_image(pusher, repo)
    assert ts.requests and all(user == USER for user, _ in ts.requests)
    assert any("repository:tok/app:pull,push" in scopes for _, scopes in ts.requests)
    n_tokens = len(ts.requests)
    anon = new_client()
    img, blobs = pull_all(anon, f"{repo}:latest")
    assert blobs == pushed.layers
    assert len(ts.requests) == n_tokens + 1, "one anonymous pull token, then reused from cache"
    assert ts.requests[-1] == (None, ["repository:tok/app:pull"])
    with pytest.raises(AuthError, match="refused access"):
        new_client(auth=(USER, "bad")).get_manifest(f"{repo}:latest")
    pusher.login(token_registry.host, Credentials(USER, PASSWORD))
    with pytest.raises(AuthError):
        new_client().login(token_registry.host, Credentials(USER, "bad"))
    # the registry itself checks the token signature: one signed by an unknown key fails
    import requests
    from tests.fixtures.registry_server import TokenService
    rogue = TokenService(token_registry.workdir / "rogue")
    forged = rogue.make_token(USER, [{"type": "repository", "name": "tok/app",
                                      "actions": ["pull"]}])
    good = ts.make_token(USER, [{"type": "repository", "name": "tok/app", "actions": ["pull"]}])
    url = f"{token_registry.url}/v2/tok/app/manifests/latest"
    accept = {"Accept": m.OCI_MANIFEST}
    assert requests.get(url, headers={"Authorization": "Bearer " + forged, **accept}
                        ).status_code == 401
    assert requests.get(url, headers={"Authorization": "Bearer " + good, **accept}
                        ).status_code == 200
    # cross-repo mount needs pull on the source repository as well
    assert pusher.mount_blob(f"{token_registry.host}/tok/other",
                             m.sha256_digest(pushed.layers[0]), "tok/app") is True


# -- TLS ------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:Unverified HTTPS request")  # the insecure case, on purpose
def test_tls_with_custom_ca(tls_registry, tmp_path, helpers):
    repo = f"{tls_registry.host}/tls/app"
    c = new_client(ca_file=str(tls_registry.ca_file))
    assert c.transport.base_url(tls_registry.host) == f"https://{tls_registry.host}"
    pushed = helpers.push_test_image(c, repo)
    assert pull_all(c, f"{repo}:latest")[1] == pushed.layers
    # certs.d layout: <dir>/<host:port>/ca.crt
    certs = tmp_path / "certs.d" / tls_registry.host
    certs.mkdir(parents=True)
    (certs / "ca.crt").write_bytes(tls_registry.ca_file.read_bytes())
    c2 = new_client(certs_dirs=[tmp_path / "certs.d"])
    assert c2.get_manifest(f"{repo}:latest").digest == pushed.manifest_digest
    # without the CA: an error naming the fix, never a silent fallback to HTTP
    with pytest.raises(TransportError, match="certificate|CA"):
        new_client().get_manifest(f"{repo}:latest")
    # explicitly insecure: TLS without verification
    c3 = new_client(insecure={tls_registry.host})
    assert c3.get_manifest(f"{repo}:latest").digest == pushed.manifest_digest


def test_identity_token_from_docker_config(token_registry, tmp_path, helpers):
    """An identity (refresh) token in config.json is exchanged via the OAuth2 POST flow."""
    ts = token_registry.token_service
    refresh = ts.issue_refresh_token(USER)
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"auths": {token_registry.host: {"identitytoken": refresh}}}))
    c = new_client(auth=DockerConfig(path))
    ts.requests.clear()
    pushed = helpers.push_test_image(c, f"{token_registry.host}/ident/app")
    assert ts.requests and all(user == USER for user, _ in ts.requests)
    assert c.get_manifest(f"{token_registry.host}/ident/app:latest").digest == \
        pushed.manifest_digest
    path.write_text(json.dumps({"auths": {token_registry.host: {"identitytoken": "bogus"}}}))
    with pytest.raises(AuthError, match="refused"):
        new_client(auth=DockerConfig(path)).get_manifest(f"{token_registry.host}/ident/app")


def test_parallel_pulls_share_one_client(token_registry, helpers):
    from concurrent.futures import ThreadPoolExecutor
    repo = f"{token_registry.host}/par/app"
    pushed = helpers.push_test_image(new_client(auth=(USER, PASSWORD)), repo, n_layers=6)
    c = new_client()
    img = c.resolve(f"{repo}:latest")
    with ThreadPoolExecutor(4) as pool:
        blobs = list(pool.map(lambda d: c.get_blob_bytes(img.ref, d), img.manifest.layers))
    assert blobs == pushed.layers


def test_unreachable_registry_is_a_transport_error():
    from tests.fixtures.registry_server import free_port
    host = f"127.0.0.1:{free_port()}"
    c = new_client(plain_http=[host], retries=2)
    t0 = time.monotonic()
    with pytest.raises(TransportError, match="cannot reach " + host):
        c.get_manifest(f"{host}/x/y:latest")
    assert time.monotonic() - t0 < 5


def test_tls_certificate_for_another_host_is_rejected(tmp_path):
    """Our SSLContext leaves hostname matching to urllib3: check that it still happens."""
    import http.server
    import ssl
    import threading
    from tests.fixtures.registry_server import make_tls_files
    files = make_tls_files(tmp_path / "tls", hosts=("registry.example",))

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(files["cert"]), str(files["key"]))
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        host = f"127.0.0.1:{server.server_address[1]}"
        with pytest.raises(TransportError, match="certificate|TLS"):
            new_client(ca_file=str(files["ca"]), retries=0).ping(host)
    finally:
        server.shutdown()
        server.server_close()
