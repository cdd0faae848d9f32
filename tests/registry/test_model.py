"""Unit tests: data model, platforms, image configs, auth parsing, credentials, transport rules."""
from __future__ import annotations

import base64
import json
import subprocess
import sys

import pytest

from registry import model as m
from registry.auth import format_scopes, parse_challenge, parse_scopes, request_scope
from registry.credentials import Credentials, DockerConfig, config_key, normalize_host
from registry.errors import ImageConfigError, ManifestError, PlatformNotFound
from registry.model import Descriptor, Index, Manifest, Platform, host_platform
from registry.transport import api_host, is_loopback, parse_retry_after

D1, D2, D3 = ("sha256:" + c * 64 for c in "123")


def desc(digest=D1, size=10, mt=m.OCI_LAYER_GZIP, platform=None, **extra):
    d = {"mediaType": mt, "digest": digest, "size": size, **extra}
    if platform:
        d["platform"] = platform
    return d


def manifest_json(mt=m.OCI_MANIFEST, layers=2, **extra):
    doc = {"schemaVersion": 2, "mediaType": mt,
           "config": desc(D1, 100, m.OCI_CONFIG),
           "layers": [desc(D2, 5 + i) for i in range(layers)], **extra}
    return json.dumps(doc).encode()


def test_parse_oci_and_docker_manifests():
    for mt in (m.OCI_MANIFEST, m.DOCKER_MANIFEST):
        raw = manifest_json(mt, annotations={"a": "b"})
        man = m.parse_manifest(raw)
        assert isinstance(man, Manifest)
        assert man.media_type == mt and man.raw == raw
        assert man.digest == m.sha256_digest(raw)
        assert man.config.digest == D1 and man.config.size == 100
        assert [layer.size for layer in man.layers] == [5, 6]
        assert dict(man.annotations) == {"a": "b"}


def test_media_type_from_content_type_or_shape():
    doc = json.loads(manifest_json())
    del doc["mediaType"]
    raw = json.dumps(doc).encode()
    assert m.parse_manifest(raw, m.DOCKER_MANIFEST + "; charset=utf-8").media_type == m.DOCKER_MANIFEST
    assert m.parse_manifest(raw).media_type == m.OCI_MANIFEST
    idx = json.dumps({"schemaVersion": 2, "manifests": []}).encode()
    assert isinstance(m.parse_manifest(idx), Index)


@pytest.mark.parametrize("raw, why", [
    (b"not json", "not valid JSON"),
    (b"[]", "not a JSON object"),
    (json.dumps({"schemaVersion": 1, "name": "x"}).encode(), "schema1"),
    (json.dumps({"schemaVersion": 3}).encode(), "schemaVersion"),
    (json.dumps({"schemaVersion": 2, "mediaType": m.OCI_MANIFEST, "layers": []}).encode(),
     "no config"),
    (json.dumps({"schemaVersion": 2, "mediaType": m.OCI_MANIFEST, "config": desc(),
                 "layers": [desc("sha256:xyz")]}).encode(), "invalid digest"),
    (json.dumps({"schemaVersion": 2, "mediaType": m.OCI_MANIFEST, "config": desc(),
                 "layers": [desc(size=-1)]}).encode(), "invalid size"),
    (json.dumps({"schemaVersion": 2, "mediaType": "application/x-other"}).encode(),
     "unsupported manifest media type"),
    (json.dumps({"schemaVersion": 2, "mediaType": m.OCI_INDEX}).encode(), "no 'manifests'"),
])
def test_bad_manifests(raw, why):
    with pytest.raises(ManifestError) as e:
        m.parse_manifest(raw, name="img")
    assert why in str(e.value) and "img" in str(e.value)


def index_json(mt=m.OCI_INDEX):
    return json.dumps({"schemaVersion": 2, "mediaType": mt, "manifests": [
        desc(D1, 1, m.OCI_MANIFEST, {"os": "linux", "architecture": "amd64"}),
        desc(D2, 2, m.OCI_MANIFEST, {"os": "linux", "architecture": "arm64", "variant": "v8"}),
        desc(D3, 3, m.OCI_MANIFEST, {"os": "linux", "architecture": "arm", "variant": "v6"}),
        desc("sha256:" + "4" * 64, 4, m.OCI_MANIFEST, {"os": "unknown", "architecture": "unknown"},
             annotations={"vnd.docker.reference.type": "attestation-manifest"}),
    ]}).encode()


@pytest.mark.parametrize("mt", [m.OCI_INDEX, m.DOCKER_MANIFEST_LIST])
def test_index_select(mt):
    idx = m.parse_manifest(index_json(mt))
    assert isinstance(idx, Index) and idx.media_type == mt
    assert idx.select(Platform.parse("linux/amd64")).digest == D1
    assert idx.select(Platform.parse("linux/arm64")).digest == D2      # arm64 == arm64/v8
    assert idx.select(Platform.parse("linux/aarch64")).digest == D2
    assert idx.select(Platform.parse("linux/arm/v7")).digest == D3     # v7 runs v6
    assert [str(p) for p in idx.platforms()] == ["linux/amd64", "linux/arm64/v8", "linux/arm/v6"]
    with pytest.raises(PlatformNotFound) as e:
        idx.select(Platform.parse("linux/arm/v5"), name="busybox:latest")
    assert "busybox:latest" in str(e.value) and "linux/arm64/v8" in str(e.value)
    with pytest.raises(PlatformNotFound):
        idx.select(Platform.parse("linux/s390x"))
    with pytest.raises(PlatformNotFound):
        idx.select(Platform.parse("windows/amd64"))


def test_index_prefers_exact_variant():
    raw = json.dumps({"schemaVersion": 2, "mediaType": m.OCI_INDEX, "manifests": [
        desc(D1, 1, m.OCI_MANIFEST, {"os": "linux", "architecture": "arm", "variant": "v6"}),
        desc(D2, 1, m.OCI_MANIFEST, {"os": "linux", "architecture": "arm", "variant": "v7"}),
    ]}).encode()
    assert m.parse_manifest(raw).select(Platform.parse("linux/arm/v7")).digest == D2
    assert m.parse_manifest(raw).select(Platform.parse("linux/arm/v6")).digest == D1


def test_platform_normalisation():
    assert Platform.parse("linux/arm64") == Platform.parse("linux/arm64/v8")
    assert str(Platform.parse("linux/x86_64")) == "linux/amd64"
    assert str(Platform.parse("arm")) == "linux/arm/v7"
    assert str(Platform.of("linux", "armv6l")) == "linux/arm/v6"
    assert str(Platform.of("linux", "i686")) == "linux/386"
    assert Platform.parse("linux/amd64").match_rank(Platform.parse("linux/amd64")) == 0
    assert Platform.parse("linux/amd64").match_rank(None) is None
    hp = host_platform()
    assert hp.os == "linux" and hp.architecture in ("amd64", "arm64", "arm", "386", "ppc64le",
                                                    "s390x", "riscv64")
    for bad in ("", "linux/", "a/b/c/d"):
        with pytest.raises(ValueError):
            Platform.parse(bad)


CONFIG = {
    "architecture": "arm64", "variant": "v8", "os": "linux", "created": "2024-01-01T00:00:00Z",
    "author": "me",
    "config": {"Env": ["PATH=/bin", "A=b"], "Cmd": ["nginx", "-g", "daemon off;"],
               "Entrypoint": None, "WorkingDir": "/srv", "User": "101:101",
               "ExposedPorts": {"80/tcp": {}, "443/tcp": {}}, "Labels": {"k": "v"},
               "StopSignal": "SIGQUIT", "Volumes": {"/data": {}},
               "Healthcheck": {"Test": ["CMD", "true"], "Interval": 30000000000, "Retries": 3}},
    "rootfs": {"type": "layers", "diff_ids": [D1, D2]},
    "history": [{"created_by": "ADD x"}, {"created_by": "ENV A=b", "empty_layer": True},
                {"created_by": "RUN y"}],
}


def test_image_config():
    raw = json.dumps(CONFIG).encode()
    cfg = m.parse_image_config(raw, m.sha256_digest(raw), name="nginx")
    assert cfg.platform == Platform.parse("linux/arm64/v8")
    assert cfg.diff_ids == (D1, D2)
    c = cfg.config
    assert c.env == ("PATH=/bin", "A=b") and c.cmd == ("nginx", "-g", "daemon off;")
    assert c.entrypoint is None and c.working_dir == "/srv" and c.user == "101:101"
    assert c.exposed_ports == ("443/tcp", "80/tcp") and dict(c.labels) == {"k": "v"}
    assert c.stop_signal == "SIGQUIT" and c.volumes == ("/data",)
    assert c.healthcheck.test == ("CMD", "true") and c.healthcheck.retries == 3
    assert [h.empty_layer for h in cfg.history] == [False, True, False]
    assert cfg.to_dict() == CONFIG
    empty = m.parse_image_config(json.dumps({"rootfs": {"type": "layers", "diff_ids": []},
                                             "config": {"Cmd": []}}).encode())
    assert empty.config.cmd == () and empty.config.entrypoint is None


def test_image_config_errors():
    raw = json.dumps(CONFIG).encode()
    with pytest.raises(ImageConfigError, match="digest"):
        m.parse_image_config(raw, D3)
    with pytest.raises(ImageConfigError, match="rootfs"):
        m.parse_image_config(b'{"config": {}}')
    with pytest.raises(ImageConfigError, match="Env"):
        m.parse_image_config(json.dumps({**CONFIG, "config": {"Env": [1]}}).encode())
    cfg = m.parse_image_config(raw)
    man = Manifest(m.OCI_MANIFEST, Descriptor(m.OCI_CONFIG, cfg.digest, len(raw)),
                   (Descriptor(m.OCI_LAYER_GZIP, D3, 1),))
    with pytest.raises(ImageConfigError, match="2 diff_ids but the manifest has 1 layers"):
        m.validate_config_for_manifest(cfg, man)
    ok = Manifest(m.OCI_MANIFEST, man.config, man.layers * 2)
    m.validate_config_for_manifest(cfg, ok)


def test_build_manifest_round_trip():
    cfg = Descriptor(m.OCI_CONFIG, D1, 3)
    layers = [Descriptor(m.OCI_LAYER_GZIP, D2, 4, annotations=(("x", "y"),))]
    man = m.parse_manifest(m.build_manifest(cfg, layers))
    assert man.config == cfg and man.layers == tuple(layers)
    plat = Platform.parse("linux/arm64")
    idx = m.parse_manifest(m.build_index([Descriptor(m.OCI_MANIFEST, man.digest, len(man.raw),
                                                     platform=plat)]))
    assert idx.manifests[0].platform == plat


def test_digest():
    d = m.Digest.parse(D1)
    assert str(d) == D1 and d.algorithm == "sha256"
    assert m.Digest.of(b"abc").matches(b"abc") and not m.Digest.of(b"abc").matches(b"abd")


def test_challenge_and_scopes():
    scheme, p = parse_challenge(
        'Bearer realm="https://auth.example/token",service="registry.example",'
        'scope="repository:a/b:pull,push"')
    assert scheme == "bearer"
    assert p == {"realm": "https://auth.example/token", "service": "registry.example",
                 "scope": "repository:a/b:pull,push"}
    assert parse_challenge('Basic realm="x"') == ("basic", {"realm": "x"})
    s = parse_scopes(["repository:a/b:pull,push"])
    assert s == {("repository:a/b", "pull"), ("repository:a/b", "push")}
    assert format_scopes(s) == ["repository:a/b:pull,push"]
    assert request_scope("GET", "https://h/v2/a/b/manifests/latest") == {("repository:a/b", "pull")}
    assert request_scope("PUT", "https://h/v2/a/b/manifests/x") == s
    mount = request_scope("POST", "https://h/v2/a/b/blobs/uploads/?mount=sha256:1&from=c/d")
    assert ("repository:c/d", "pull") in mount and ("repository:a/b", "push") in mount
    assert request_scope("GET", "https://h/v2/") == frozenset()


def test_transport_rules():
    assert is_loopback("localhost:5000") and is_loopback("127.0.0.1") and is_loopback("[::1]:5000")
    assert is_loopback("127.1.2.3:80") and not is_loopback("example.com:5000")
    assert not is_loopback("10.0.0.1")
    assert api_host("docker.io") == "registry-1.docker.io" and api_host("quay.io") == "quay.io"
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("junk") is None and parse_retry_after(None) is None


def test_docker_config_auths(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"auths": {
        "https://index.docker.io/v1/": {"auth": base64.b64encode(b"hub:pw").decode()},
        "http://localhost:5000": {"auth": base64.b64encode(b"me:p:w").decode()},
        "quay.io": {"identitytoken": "refresh"},
    }}))
    cfg = DockerConfig(path)
    assert cfg.get("docker.io") == Credentials("hub", "pw")
    assert cfg.get("registry-1.docker.io") == Credentials("hub", "pw")
    assert cfg.get("localhost:5000") == Credentials("me", "p:w")
    assert cfg.get("quay.io").identity_token == "refresh"
    assert cfg.get("other.io") is None
    assert "pw" not in repr(cfg.get("docker.io"))
    assert DockerConfig(tmp_path / "absent.json").get("docker.io") is None
    assert config_key("docker.io") == "https://index.docker.io/v1/"
    assert normalize_host("https://host:5000/v2/") == "host:5000"


def test_docker_config_save_erase(tmp_path):
    cfg = DockerConfig(tmp_path / "d" / "config.json")
    cfg.save("localhost:5000", Credentials("u", "p"))
    cfg.save("docker.io", Credentials("hub", "s"))
    doc = json.loads(cfg.path.read_text())
    assert set(doc["auths"]) == {"localhost:5000", "https://index.docker.io/v1/"}
    assert (cfg.path.stat().st_mode & 0o777) == 0o600
    assert cfg.get("localhost:5000") == Credentials("u", "p")
    assert cfg.erase("localhost:5000") is True
    assert cfg.get("localhost:5000") is None and cfg.erase("localhost:5000") is False
    assert cfg.get("docker.io") == Credentials("hub", "s")


def test_import_does_not_load_requests():
    code = ("import sys, registry.client, registry.auth, registry.transport, registry.model; "
            "bad = [m for m in ('requests', 'urllib3', 'cryptography') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=str(__import__("pathlib").Path(__file__).resolve().parents[2]))
    assert p.returncode == 0, p.stdout + p.stderr


def test_token_cache_scopes_and_expiry():
    from registry.auth import RegistryAuth

    class FakeResponse:        # what a requests response opened with stream=True offers
        status_code = 200
        headers: dict = {}

        def __init__(self, n):
            import io
            body = io.BytesIO(json.dumps({"token": f"t{n}", "expires_in": 60}).encode())
            self.raw = type("Raw", (), {"read": lambda _s, n, decode_content=False:
                                        body.read(n)})()

        def close(self):
            pass

    calls = []

    def getter(method, url, **kw):
        calls.append((method, url, kw.get("params"), kw.get("auth")))
        return FakeResponse(len(calls))

    now = [1000.0]
    auth = RegistryAuth(lambda host: Credentials("u", "p"), getter, clock=lambda: now[0])
    host = "reg:5000"
    params = {"realm": "https://auth/token", "service": "svc"}
    push = parse_scopes(["repository:a:pull,push"])
    pull = parse_scopes(["repository:a:pull"])
    assert auth._header_for(host, pull) == ""          # no challenge seen yet
    auth._challenges[host] = ("bearer", params)
    assert auth.fetch_token(host, params, push) == "t1"
    assert calls[0][2] == [("service", "svc"), ("scope", "repository:a:pull,push")]
    assert calls[0][3] == ("u", "p")
    assert auth._header_for(host, pull) == "Bearer t1"  # push token covers pull
    assert auth._header_for(host, parse_scopes(["repository:b:pull"])) == ""
    now[0] += 56                                         # expiry minus a safety margin
    assert auth._header_for(host, pull) == ""
    auth._challenges[host] = ("basic", {})
    assert auth._header_for(host, pull) == "Basic " + base64.b64encode(b"u:p").decode()
    auth.forget(host)
    assert auth._header_for(host, pull) == ""
