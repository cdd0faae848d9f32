"""Unit tests of pydocklite/trust: secretbox, key files, signatures, payloads, policy parsing,
scopes, identity rules and the verdict, each checked against the independent implementation
in indep.py (PyNaCl, hashlib.scrypt) where there is something to compare."""
from __future__ import annotations

import base64
import functools
import json
import os
from pathlib import Path

import nacl.secret
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, x25519

from pydocklite.trust import keyfile, keys, payload, secretbox
from pydocklite.trust.errors import KeyFileError, PolicyError, SignatureRefused
from pydocklite.trust.identity import matches
from pydocklite.trust.policy import IdentityRule, parse_policy
from pydocklite.trust.verify import check
from registry.reference import Reference
from tests.trust import indep

pytestmark = pytest.mark.filterwarnings("ignore:DSA is deprecated")
KEY_TYPES = ("ecdsa-p256", "ecdsa-p384", "ed25519", "rsa-3072")
D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


# --- secretbox ----------------------------------------------------------------------------

@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 31, 32, 63, 64, 65, 129, 1000, 2600])
def test_secretbox_matches_libsodium(size):
    key, nonce, msg = os.urandom(32), os.urandom(24), os.urandom(size)
    theirs = nacl.secret.SecretBox(key).encrypt(msg, nonce).ciphertext
    assert secretbox.seal(key, nonce, msg) == theirs
    assert secretbox.open_box(key, nonce, theirs) == msg


def test_secretbox_refuses_altered_or_wrong_key():
    key, nonce = os.urandom(32), os.urandom(24)
    sealed = secretbox.seal(key, nonce, b"private key bytes")
    for bad in (sealed[:-1] + bytes([sealed[-1] ^ 1]), bytes([sealed[0] ^ 1]) + sealed[1:],
                sealed[:10]):
        with pytest.raises(secretbox.BoxError):
            secretbox.open_box(key, nonce, bad)
    with pytest.raises(secretbox.BoxError):
        secretbox.open_box(os.urandom(32), nonce, sealed)
    with pytest.raises(ValueError):
        secretbox.seal(b"short", nonce, b"x")


# --- key files ------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KEY_TYPES)
def test_keys_we_write_open_with_libsodium(kind):
    key = keys.generate(kind)
    pem = keys.encrypted_pem(key, b"s3cret")
    pem_type, params, der = indep.open_key(pem, b"s3cret")
    assert pem_type == "ENCRYPTED COSIGN PRIVATE KEY"   # what skopeo 1.9 / Podman 4.3 accept
    assert params == {"N": 32768, "r": 8, "p": 1}
    assert der == key.pkcs8()
    with pytest.raises(Exception):
        indep.open_key(pem, b"wrong")


@pytest.mark.parametrize("kind", KEY_TYPES)
@pytest.mark.parametrize("block", ["ENCRYPTED COSIGN PRIVATE KEY",
                                   "ENCRYPTED SIGSTORE PRIVATE KEY"])
def test_keys_written_by_libsodium_load(kind, block):
    theirs = indep.Keypair.generate(kind)
    pem = indep.seal_key(theirs.pkcs8(), b"pw", n=16384, kind=block)
    ours = keys.load_private_key(pem, "k.private", lambda: b"pw")
    assert ours.pkcs8() == theirs.pkcs8()
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        keys.load_private_key(pem, "k.private", lambda: b"nope")


def test_plain_and_password_protected_pkcs8_load():
    kp = indep.Keypair.generate()
    plain = kp.private.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())
    asked = []
    assert keys.load_private_key(plain, "p", lambda: asked.append(1) or b"").kind == \
        "ECDSA P-256"
    assert not asked, "an unencrypted key must not ask for a passphrase"
    enc = kp.private.private_bytes(serialization.Encoding.PEM,
                                   serialization.PrivateFormat.PKCS8,
                                   serialization.BestAvailableEncryption(b"pw"))
    assert keys.load_private_key(enc, "p", lambda: b"pw").pkcs8() == kp.pkcs8()
    with pytest.raises(KeyFileError, match="passphrase"):
        keys.load_private_key(enc, "p", lambda: b"bad")


@functools.lru_cache(maxsize=None)
def _wrong_type_keys():
    d = dsa.generate_private_key(2048)
    x = x25519.X25519PrivateKey.generate()
    p521 = indep.Keypair.generate("ecdsa-p521")
    weak = indep.Keypair.generate("rsa-1024")
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    pem = serialization.Encoding.PEM
    return {"DSA": d.public_key().public_bytes(pem, spki),
            "X25519": x.public_key().public_bytes(pem, spki),
            "secp521r1": p521.public_pem(), "too weak": weak.public_pem()}


@pytest.mark.parametrize("name", ["DSA", "X25519", "secp521r1", "too weak"])
def test_public_keys_of_the_wrong_type_are_refused(name):
    with pytest.raises(KeyFileError, match=name):
        keys.load_public_key(_wrong_type_keys()[name], "key.pub")


@pytest.mark.parametrize("data, message", [
    (b"", "no PEM block"),
    (b"\x30\x82\xff\xfe binary DER", "binary"),
    (b"-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE", "truncated"),
    (b"-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----\n", "base64"),
    (b"-----BEGIN PUBLIC KEY-----\nMFkwEwYH\n-----END PUBLIC KEY-----\n", "cannot be read"),
    (b"-----BEGIN CERTIFICATE-----\nMFkw\n-----END CERTIFICATE-----\n", "not a public key"),
])
def test_damaged_public_keys_are_refused_with_a_reason(data, message):
    with pytest.raises(KeyFileError, match=message):
        keys.load_public_key(data, "key.pub")


def test_private_and_public_keys_are_not_confused():
    kp = indep.Keypair.generate()
    sealed = indep.seal_key(kp.pkcs8(), b"pw")
    with pytest.raises(KeyFileError, match="private key"):
        keys.load_public_key(sealed, "x")
    with pytest.raises(KeyFileError, match="public key"):
        keys.load_private_key(kp.public_pem(), "x", lambda: b"")
    with pytest.raises(KeyFileError, match="2 PEM blocks"):
        keys.load_public_key(kp.public_pem() * 2, "x")


@pytest.mark.parametrize("doc, message", [
    (b"not json", "damaged"),
    (json.dumps({"kdf": {"name": "argon2", "params": {"N": 2, "r": 1, "p": 1}, "salt": ""},
                 "cipher": {"name": "nacl/secretbox", "nonce": ""}, "ciphertext": ""}).encode(),
     "unsupported key encryption"),
    (json.dumps({"kdf": {"name": "scrypt", "params": {"N": 1 << 30, "r": 8, "p": 1},
                         "salt": ""},
                 "cipher": {"name": "nacl/secretbox", "nonce": base64.b64encode(b"n" * 24)
                            .decode()}, "ciphertext": ""}).encode(), "scrypt parameters"),
    (json.dumps({"kdf": {"name": "scrypt", "params": {"N": 1000, "r": 8, "p": 1},
                         "salt": ""},
                 "cipher": {"name": "nacl/secretbox", "nonce": ""}, "ciphertext": ""}).encode(),
     "scrypt parameters"),
])
def test_damaged_encrypted_keys_are_refused(doc, message):
    pem = keyfile.to_pem("ENCRYPTED COSIGN PRIVATE KEY", doc)
    with pytest.raises(KeyFileError, match=message):
        keys.load_private_key(pem, "k", lambda: b"pw")


# --- signatures -----------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KEY_TYPES)
def test_signatures_cross_verify(kind):
    data = indep.make_payload("reg.example/app:1", D1)
    ours = keys.generate(kind)
    assert indep.verify_signature(ours.public.pem(), data, ours.sign(data))
    theirs = indep.Keypair.generate(kind)
    pub = keys.load_public_key(theirs.public_pem(), "pub")
    sig = theirs.sign(data)
    assert pub.verify(data, sig)
    assert not pub.verify(data + b" ", sig)
    assert not pub.verify(data, sig[:-2])
    assert not pub.verify(data, b"")
    assert not pub.verify(data, os.urandom(len(sig)))


def test_ecdsa_verification_imports_only_what_it_needs():
    """keys.py's import diet, in a fresh interpreter: verifying with an ECDSA key loads
    neither cryptography's OpenSSL backend (ec.ECDSA's __init__ would) nor the
    serialization package's SSH code, and still tells good signatures from bad."""
    import subprocess
    import sys
    theirs = indep.Keypair.generate()
    data = b"payload"
    code = (
        "import sys, json; from pydocklite.trust import keys\n"
        "k = keys.load_public_key(bytes.fromhex(sys.argv[1]), 'k')\n"
        "ok = k.verify(b'payload', bytes.fromhex(sys.argv[2]))\n"
        "bad = k.verify(b'payloaD', bytes.fromhex(sys.argv[2]))\n"
        "print(json.dumps([ok, bad, [m for m in ('cryptography.hazmat.backends.openssl.backend',"
        " 'cryptography.hazmat.primitives.serialization.ssh') if m in sys.modules]]))\n")
    r = subprocess.run([sys.executable, "-c", code, theirs.public_pem().hex(),
                        theirs.sign(data).hex()], capture_output=True, text=True,
                       cwd=str(Path(__file__).resolve().parents[2]))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == [True, False, []]


def test_rsa_pss_signatures_verify():
    theirs = indep.Keypair.generate("rsa-2048")
    pub = keys.load_public_key(theirs.public_pem(), "pub")
    assert pub.verify(b"data", theirs.sign(b"data", rsa_pss=True))
    assert not pub.verify(b"datA", theirs.sign(b"data", rsa_pss=True))


# --- payloads ----------------------------------------------------------------------------------

def test_payload_round_trip_and_cosign_shape():
    p = payload.parse_payload(payload.make_payload("reg/app:1", D1, timestamp=5))
    assert (p.docker_reference, p.manifest_digest, p.creator, p.timestamp) == \
        ("reg/app:1", D1, "pydocklite", 5)
    cosign = indep.make_payload("reg/app", D1, optional=None)     # cosign writes null
    assert payload.parse_payload(cosign).docker_reference == "reg/app"


def _payload_with(**change) -> bytes:
    doc = json.loads(indep.make_payload("reg/app:1", D1))
    for path, value in change.items():
        node = doc
        *parents, last = path.split("__")
        for p in parents:
            node = node[p]
        if value is KeyError:
            del node[last]
        else:
            node[last] = value
    return json.dumps(doc).encode()


@pytest.mark.parametrize("data, message", [
    (b"{", "not valid JSON"),
    (b"[]", "not a JSON object"),
    (b'{"critical": {}, "critical": {}, "optional": null}', "duplicate"),
    (_payload_with(extra=1), "unknown field"),
    (_payload_with(critical__extra=1), "unknown field"),
    (_payload_with(critical__identity=KeyError), "lacks"),
    (_payload_with(critical__type="atomic container signature"), "unknown signature type"),
    (_payload_with(critical__image__docker_manifest_digest=1), "unknown field"),
    (_payload_with(**{"critical__image": {"docker-manifest-digest": "sha256:zz"}}),
     "invalid docker-manifest-digest"),
    (_payload_with(**{"critical__identity": {"docker-reference": 7}}), "strings"),
    (_payload_with(optional=[1]), "optional"),
    (_payload_with(optional__timestamp=1.5), "timestamp"),
    (_payload_with(optional__creator=3), "creator"),
    (b"[" * 100000, "not valid JSON"),
])
def test_malformed_payloads_are_refused(data, message):
    with pytest.raises(payload.PayloadError, match=message):
        payload.parse_payload(data)


# --- policy files -----------------------------------------------------------------------------

def _policy(doc, path="/etc/containers/policy.json"):
    return parse_policy(json.dumps(doc).encode(), path)


SIG = {"type": "sigstoreSigned", "keyData": base64.b64encode(b"pem").decode()}


@pytest.mark.parametrize("doc, message", [
    ({}, "lacks the field 'default'"),
    ({"default": [], }, "non-empty list"),
    ({"default": [{"type": "reject"}], "extra": 1}, "unknown field"),
    ({"default": [{"type": "reject", "x": 1}]}, "unknown field"),
    ({"default": [{"type": "trustMe"}]}, "unknown requirement type"),
    ({"default": [{"type": "reject"}], "transports": {"ftp": {}}}, "unknown transport"),
    ({"default": [{"type": "reject"}],
      "transports": {"docker-archive": {"/a.tar": [{"type": "reject"}]}}}, "only the default"),
    ({"default": [{"type": "reject"}],
      "transports": {"oci-archive": {"rel/a.tar": [{"type": "reject"}]}}}, "absolute"),
    ({"default": [{"type": "reject"}],
      "transports": {"docker": {"ex*ample.com": [{"type": "reject"}]}}}, "wildcard"),
    ({"default": [{"type": "sigstoreSigned"}]}, "exactly one of keyPath"),
    ({"default": [{**SIG, "keyPath": "/k.pub"}]}, "exactly one of keyPath"),
    ({"default": [{"type": "sigstoreSigned", "keyData": "***"}]}, "not valid base64"),
    ({"default": [{"type": "sigstoreSigned", "keyPaths": []}]}, "non-empty list"),
    ({"default": [{**SIG, "signedIdentity": {"type": "matchAnything"}}]},
     "unknown identity type"),
    ({"default": [{**SIG, "signedIdentity": {"type": "exactReference",
                                             "dockerReference": "reg/app"}}]},
     "neither a tag nor a digest"),
    ({"default": [{**SIG, "signedIdentity": {"type": "exactRepository",
                                             "dockerRepository": "no spaces/allowed here"}}]},
     "not a valid reference"),
    ({"default": [{**SIG, "signedIdentity": {"type": "remapIdentity", "prefix": "a b",
                                             "signedPrefix": "reg.example"}}]}, "prefix"),
    ({"default": [{**SIG, "signedIdentity": {"type": "matchRepository", "x": 1}}]},
     "unknown field"),
])
def test_invalid_policies_name_the_file_and_entry(doc, message):
    with pytest.raises(PolicyError, match=message) as e:
        _policy(doc)
    assert "/etc/containers/policy.json" in str(e.value)


def test_invalid_json_and_duplicates():
    with pytest.raises(PolicyError, match="not valid JSON"):
        parse_policy(b"{", "/p.json")
    with pytest.raises(PolicyError, match="duplicate field 'default'"):
        parse_policy(b'{"default": [{"type": "reject"}], "default": []}', "/p.json")


def test_relative_key_paths_are_under_the_policy_directory(tmp_path):
    pol = _policy({"default": [{"type": "sigstoreSigned", "keyPath": "keys/a.pub"},
                               {"type": "sigstoreSigned", "keyPaths": ["/abs/b.pub"]}]},
                  str(tmp_path / "policy.json"))
    assert pol.default[0].keys == (("path", str(tmp_path / "keys/a.pub")),)
    assert pol.default[1].keys == (("path", "/abs/b.pub"),)


SCOPED = {
    "default": [{"type": "reject"}],
    "transports": {
        "docker": {
            "": [{"type": "insecureAcceptAnything"}],
            "reg.example.com:5000/team/app:1.0": [{"type": "reject"}],
            "reg.example.com:5000/team/app": [SIG],
            "reg.example.com:5000/team": [SIG, {"type": "insecureAcceptAnything"}],
            "reg.example.com:5000": [{"type": "insecureAcceptAnything"}, SIG],
            "*.example.com": [{"type": "reject"}, SIG],
            "*.com": [{"type": "reject"}],
            "docker.io/library/busybox": [SIG],
        },
        "oci-archive": {"/srv/images": [SIG], "/srv/images/ok.tar": [{"type": "reject"}]},
        "docker-archive": {"": [SIG]},
    }}


@pytest.mark.parametrize("name, entry", [
    ("reg.example.com:5000/team/app:1.0", '"reg.example.com:5000/team/app:1.0"'),
    ("reg.example.com:5000/team/app:2.0", '"reg.example.com:5000/team/app"'),
    ("reg.example.com:5000/team/app@" + D1, '"reg.example.com:5000/team/app"'),
    ("reg.example.com:5000/team/other", '"reg.example.com:5000/team"'),
    ("reg.example.com:5000/elsewhere/x", '"reg.example.com:5000"'),
    ("reg.example.com/team/app", '"*.example.com"'),
    ("a.b.example.com:443/x", '"*.example.com"'),
    ("other.com/x", '"*.com"'),
    ("busybox", '"docker.io/library/busybox"'),
    ("nginx", '""'),
    ("localhost:5000/x", '""'),
])
def test_docker_scopes_most_specific_first(name, entry):
    sel = _policy(SCOPED).for_docker(Reference.parse(name))
    assert sel.entry == f"transports.docker[{entry}]"


def test_path_scopes_and_the_default():
    pol = _policy(SCOPED)
    assert pol.for_path("oci-archive", "/srv/images/ok.tar").entry.endswith('["/srv/images/ok.tar"]')
    assert pol.for_path("oci-archive", "/srv/images/sub/x.tar").entry.endswith('["/srv/images"]')
    assert pol.for_path("oci-archive", "/tmp/x.tar").entry == "default"
    assert pol.for_path("docker-archive", "/anything.tar").entry == 'transports.docker-archive[""]'
    assert pol.for_path("oci", "/srv/images/dir").entry == "default"


def test_an_archive_on_stdin_gets_no_path_scope(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)          # "" must not turn into the current directory
    real = os.path.realpath(tmp_path)
    pol = _policy({"default": [{"type": "reject"}], "transports": {
        "oci-archive": {real: [{"type": "insecureAcceptAnything"}]}}})
    assert pol.for_path("oci-archive", str(tmp_path / "x.tar")).entry == \
        f'transports.oci-archive["{real}"]'
    assert pol.for_path("oci-archive", "").entry == "default"
    assert _policy({"default": [SIG]}).for_docker(Reference.parse("x")).entry == "default"


# --- signedIdentity -----------------------------------------------------------------------

R = "reg.example/app"


@pytest.mark.parametrize("rule, image, signed, ok", [
    (IdentityRule("matchRepoDigestOrExact"), f"{R}:1", f"{R}:1", True),
    (IdentityRule("matchRepoDigestOrExact"), f"{R}:1", f"{R}:2", False),
    (IdentityRule("matchRepoDigestOrExact"), f"{R}:1", R, False),
    (IdentityRule("matchRepoDigestOrExact"), f"{R}@{D1}", f"{R}:2", True),
    (IdentityRule("matchRepoDigestOrExact"), f"{R}@{D1}", "other/app:2", False),
    (IdentityRule("matchRepoDigestOrExact"), "busybox:latest", "docker.io/library/busybox",
     False),
    (IdentityRule("matchRepoDigestOrExact"), "docker.io/library/busybox:latest", "busybox:latest",
     True),
    (IdentityRule("matchExact"), f"{R}:1", f"{R}:1", True),
    (IdentityRule("matchExact"), f"{R}@{D1}", f"{R}:1", False),
    (IdentityRule("matchRepository"), f"{R}:1", f"{R}:7", True),
    (IdentityRule("matchRepository"), f"{R}:1", R, True),
    (IdentityRule("matchRepository"), f"{R}:1", "reg.example/app2:1", False),
    (IdentityRule("exactReference", "vendor.example/p:1"), f"{R}:1", "vendor.example/p:1", True),
    (IdentityRule("exactReference", "vendor.example/p:1"), f"{R}:1", f"{R}:1", False),
    (IdentityRule("exactRepository", "vendor.example/p"), f"{R}:1", "vendor.example/p:9", True),
    (IdentityRule("exactRepository", "vendor.example/p"), f"{R}:1", f"{R}:1", False),
    (IdentityRule("remapIdentity", prefix="mirror:5000/vendor", signed_prefix="vendor.example"),
     "mirror:5000/vendor/p/img:1", "vendor.example/p/img:1", True),
    (IdentityRule("remapIdentity", prefix="mirror:5000/vendor", signed_prefix="vendor.example"),
     "mirror:5000/vendor/p/img:1", "mirror:5000/vendor/p/img:1", False),
    (IdentityRule("remapIdentity", prefix="mirror:5000/vendor", signed_prefix="vendor.example"),
     "mirror:5000/vendorx/img:1", "mirror:5000/vendorx/img:1", True),
    (IdentityRule("matchRepoDigestOrExact"), f"{R}:1", "NOT A REFERENCE", False),
    (IdentityRule("matchRepository"), None, f"{R}:1", False),
])
def test_identity_rules(rule, image, signed, ok):
    assert matches(rule, image, signed) is ok


# --- the verdict ------------------------------------------------------------------------------

class Item:
    def __init__(self, body: bytes, sig=None, media=payload.MEDIA_TYPE, ann=None):
        self.media_type = media
        self.annotations = ann if ann is not None else (
            {payload.SIGNATURE_ANNOTATION: base64.b64encode(sig).decode()} if sig else {})
        self._body = body

    def payload(self):
        return self._body


@pytest.fixture
def keypair(tmp_path):
    kp = indep.Keypair.generate()
    (tmp_path / "k.pub").write_bytes(kp.public_pem())
    return kp, tmp_path


def _select(tmp_path, req_extra=None, reqs=None):
    req = {"type": "sigstoreSigned", "keyPath": "k.pub", **(req_extra or {})}
    doc = {"default": [{"type": "reject"}],
           "transports": {"docker": {"reg.example/app": reqs or [req]}}}
    return _policy(doc, str(tmp_path / "policy.json")).for_docker(Reference.parse(f"{R}:1"))


def _signed(kp, ref=f"{R}:1", digest=D1, **kw):
    body = indep.make_payload(ref, digest, **kw)
    return Item(body, kp.sign(body))


def test_a_good_signature_is_accepted_and_recorded(keypair):
    kp, tmp = keypair
    verdict = check(_select(tmp), f"{R}:1", (D1,), lambda d: [_signed(kp)])
    assert verdict.verified and verdict.entry == 'transports.docker["reg.example/app"]'
    (sig,) = verdict.signatures
    assert sig.manifest_digest == D1 and sig.identity == f"{R}:1"
    assert sig.key_kind == "ECDSA P-256" and sig.key.startswith("sha256:")


def test_index_or_platform_manifest_signature(keypair):
    kp, tmp = keypair
    sel = _select(tmp)
    on_platform = {D2: [_signed(kp, digest=D2)]}
    assert check(sel, f"{R}:1", (D1, D2), lambda d: on_platform.get(d)).signatures[0] \
        .manifest_digest == D2
    on_index = {D1: [_signed(kp, digest=D1)]}
    asked = []
    check(sel, f"{R}:1", (D1, D2), lambda d: asked.append(d) or on_index.get(d))
    assert asked == [D1], "stops at the first accepted signature"


def _refusal(tmp, items, **kw):
    with pytest.raises(SignatureRefused) as e:
        check(kw.pop("sel", None) or _select(tmp), f"{R}:1", (D1,), lambda d: items)
    msg = str(e.value)
    assert f"{R}:1" in msg and 'transports.docker["reg.example/app"]' in msg
    assert str(tmp / "policy.json") in msg
    return msg


def test_every_refusal_reason(keypair):
    kp, tmp = keypair
    other = indep.Keypair.generate()
    body = indep.make_payload(f"{R}:1", D1)
    assert "none exists" in _refusal(tmp, None)
    assert "other media types" in _refusal(tmp, [Item(body, kp.sign(body), media="text/x")])
    assert "not made by the policy's key" in _refusal(tmp, [_signed(other)])
    assert "not made by the policy's key" in _refusal(tmp, [Item(body + b" ", kp.sign(body))])
    assert f"not {D1}" in _refusal(tmp, [_signed(kp, digest=D2)])
    assert "claims identity" in _refusal(tmp, [_signed(kp, ref=f"{R}:2")])
    assert "claims identity" in _refusal(tmp, [_signed(kp, ref="reg.example/evil:1")])
    assert "annotation is missing" in _refusal(tmp, [Item(body)])
    assert "not base64" in _refusal(tmp, [Item(body, ann={payload.SIGNATURE_ANNOTATION: "%%"})])
    bad = b'{"critical": 1, "optional": null}'
    assert "payload is malformed" in _refusal(tmp, [Item(bad, kp.sign(bad))])
    msg = _refusal(tmp, [_signed(other)] * 6)
    assert "signature 1:" in msg and "and 2 more" in msg


def test_reject_accept_and_unsupported_requirements(keypair):
    kp, tmp = keypair
    sel = _select(tmp, reqs=[{"type": "insecureAcceptAnything"}])
    verdict = check(sel, f"{R}:1", (D1,), lambda d: pytest.fail("no signature needed"))
    assert not verdict.verified and verdict.requirements == ("insecureAcceptAnything",)
    assert '"reject"' in _refusal(tmp, [], sel=_select(tmp, reqs=[{"type": "reject"}]))
    for req, message in ((
            {"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/k.gpg"}, "GPG"), (
            {"type": "sigstoreSigned", "fulcio": {}}, "fulcio"), (
            {"type": "sigstoreSigned", "keyPath": "k.pub", "rekorPublicKeyPath": "/r"}, "rekor"
    )):
        with pytest.raises(PolicyError, match=message):
            check(_select(tmp, reqs=[req]), f"{R}:1", (D1,), lambda d: [])


def test_all_requirements_must_hold(keypair):
    kp, tmp = keypair
    second = indep.Keypair.generate()
    (tmp / "k2.pub").write_bytes(second.public_pem())
    reqs = [{"type": "sigstoreSigned", "keyPath": "k.pub"},
            {"type": "sigstoreSigned", "keyPath": "k2.pub"}]
    with pytest.raises(SignatureRefused, match="k2.pub"):
        check(_select(tmp, reqs=reqs), f"{R}:1", (D1,), lambda d: [_signed(kp)])
    verdict = check(_select(tmp, reqs=reqs), f"{R}:1", (D1,),
                    lambda d: [_signed(kp), _signed(second)])
    assert len(verdict.signatures) == 2
    any_of = [{"type": "sigstoreSigned", "keyPaths": ["k2.pub", "k.pub"]}]
    assert check(_select(tmp, reqs=any_of), f"{R}:1", (D1,), lambda d: [_signed(kp)]).verified


def test_unusable_policy_keys_name_the_entry(keypair):
    kp, tmp = keypair
    with pytest.raises(PolicyError, match="missing.pub.*No such file"):
        check(_select(tmp, {"keyPath": "missing.pub"}), f"{R}:1", (D1,), lambda d: [])
    (tmp / "priv.pem").write_bytes(indep.seal_key(kp.pkcs8(), b"x"))
    with pytest.raises(PolicyError, match="private key"):
        check(_select(tmp, {"keyPath": "priv.pem"}), f"{R}:1", (D1,), lambda d: [])
    (tmp / "cut.pub").write_bytes(kp.public_pem()[:60])
    with pytest.raises(PolicyError, match="truncated"):
        check(_select(tmp, {"keyPath": "cut.pub"}), f"{R}:1", (D1,), lambda d: [])
    (tmp / "dsa.pub").write_bytes(_wrong_type_keys()["DSA"])
    with pytest.raises(PolicyError, match="DSA"):
        check(_select(tmp, {"keyPath": "dsa.pub"}), f"{R}:1", (D1,), lambda d: [])
