"""Signatures end to end, as the unprivileged test user, against the real docker-registry:
images signed by the independent signer (indep.py) pass a sigstoreSigned policy and are
refused, with the policy entry and the reason and with NOTHING stored, for every reason a
hostile or mistaken registry can give; scopes and identity rules; an index; run/create/build
of a refused image; load under archive policies; what pydocklite signs (push, image sign)
verifies with the independent verifier; and `cryptography` stays unimported when no
signature is needed."""
from __future__ import annotations

import json
import os

import pytest
import requests

from tests import unpriv
from tests.fixtures import images
from tests.fixtures.cli_runner import ok
from tests.trust import indep
from tests.trust.trust_env import Trust

@pytest.fixture
def t(cli, registry, image_cache, request) -> Trust:
    return Trust(cli, registry, image_cache, request.node.name)


def _inspect_trust(cli, ref: str) -> dict:
    return json.loads(ok(cli("image", "inspect", ref)).stdout)[0]["Trust"]


# --- accepted ---------------------------------------------------------------------------------

def test_signed_image_is_pulled_and_inspect_says_verified(t):
    digest = t.push_busybox("app")
    t.sign("app", digest)
    t.policy({t.scope("app"): t.sigstore()})
    out = ok(t.cli("pull", t.ref("app"))).stdout
    assert f"Digest: {digest}" in out
    trust = _inspect_trust(t.cli, t.ref("app"))
    assert trust["Verified"] is True
    assert trust["PolicyEntry"] == f'transports.docker["{t.scope("app")}"]'
    assert trust["Policy"] == str(t.cli.home / ".config/containers/policy.json")
    (sig,) = trust["Signatures"]
    assert sig["ManifestDigest"] == digest and sig["Identity"] == t.ref("app")
    assert sig["KeyType"] == "ECDSA P-256"
    ok(t.cli("run", "--rm", t.ref("app"), "true"))


def test_accept_anything_records_an_unverified_verdict(t):
    t.push_busybox("plain")
    policy = t.write("accept.json", json.dumps(
        {"default": [{"type": "insecureAcceptAnything"}]}).encode())
    ok(t.cli("pull", "-q", "--signature-policy", str(policy), t.ref("plain")))
    trust = _inspect_trust(t.cli, t.ref("plain"))
    assert trust["Verified"] is False and trust["Requirements"] == ["insecureAcceptAnything"]


def test_several_signatures_one_good(t):
    digest = t.push_busybox("multi")
    stranger = indep.Keypair.generate()
    bad = indep.make_payload(t.ref("multi"), digest)
    extra = [indep.signature_layer(t.url, t.repo("multi"), bad, stranger.sign(bad)),
             indep.signature_layer(t.url, t.repo("multi"), b"{}", None, media_type="text/x")]
    t.sign("multi", digest, extra_layers=extra)
    t.policy({t.scope("multi"): t.sigstore()})
    ok(t.cli("pull", "-q", t.ref("multi")))


# --- every refusal reason, nothing stored -----------------------------------------------------

def _big_annotation_layer(t, name, size):
    payload = indep.make_payload(t.ref(name), "sha256:" + "0" * 64)
    layer = indep.signature_layer(t.url, t.repo(name), payload, b"x")
    layer["annotations"]["padding"] = "p" * size
    return layer


REFUSALS = {
    "unsigned": "a signature is required but none exists",
    "wrong-key": "not made by the policy's key",
    "other-identity": "claims identity '.*/evil:v1'",
    "other-image": "it is for manifest sha256:0{64}, not sha256:",
    "malformed-payload": "its payload is malformed",
    "no-annotation": "annotation is missing",
    "not-base64": "annotation is not base64",
    "huge-manifest": "larger than 1048576 bytes",
    "too-many": "lists 300 signatures, more than the 256",
    "huge-payload": "payload is 300000 bytes, more than the 262144 allowed",
    "not-a-manifest": "not an OCI image manifest",
    "only-other-media": "attachments hold 1 item\\(s\\) of other media types",
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refusal_reasons_store_nothing(t, case):
    digest = t.push_busybox(case)
    repo = t.repo(case)
    good = indep.make_payload(t.ref(case), digest)
    if case == "wrong-key":
        t.sign(case, digest, key=indep.Keypair.generate())
    elif case == "other-identity":
        t.sign(case, digest, claim=f"{t.host}/{t.prefix}/evil:v1")
    elif case == "other-image":
        t.sign(case, digest, payload=indep.make_payload(t.ref(case), "sha256:" + "0" * 64))
    elif case == "malformed-payload":
        t.sign(case, digest, payload=json.dumps({"critical": {"type": "x"}}).encode())
    elif case == "no-annotation":
        indep.attach(t.url, repo, digest, [indep.signature_layer(t.url, repo, good, None)])
    elif case == "not-base64":
        indep.attach(t.url, repo, digest,
                     [indep.signature_layer(t.url, repo, good, None, annotation="@@@")])
    elif case == "huge-manifest":
        indep.attach(t.url, repo, digest, [_big_annotation_layer(t, case, 1_100_000)])
    elif case == "too-many":
        layer = indep.signature_layer(t.url, repo, good, t.key.sign(good))
        indep.attach(t.url, repo, digest, [layer] * 300)
    elif case == "huge-payload":
        big = good + b" " * (300_000 - len(good))
        indep.attach(t.url, repo, digest, [indep.signature_layer(t.url, repo, big,
                                                                 t.key.sign(big))])
    elif case == "not-a-manifest":
        images.push(images.build_multiplatform_index(t.cache), t.url, repo,
                    digest.replace(":", "-") + ".sig")
    elif case == "only-other-media":
        indep.attach(t.url, repo, digest, [indep.signature_layer(
            t.url, repo, good, t.key.sign(good), media_type="application/vnd.example+json")])
    t.policy({t.scope(case): t.sigstore()})
    t.refused("pull", t.ref(case), expect=REFUSALS[case],
              entry=f'transports.docker["{t.scope(case)}"]')
    t.assert_nothing_stored()


def test_reject_and_unsupported_and_invalid_policies(t):
    t.push_busybox("x")
    t.policy({})
    t.refused("pull", t.ref("x"), expect='rejects every image here \\("reject"\\)',
              entry="default")
    t.policy({t.scope("x"): [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/k.gpg"}]})
    t.refused("pull", t.ref("x"), expect="signedBy .* is not supported by pydocklite")
    t.policy({t.scope("x"): [{"type": "sigstoreSigned", "keyPath": str(t.pub),
                             "surprise": True}]})
    t.refused("pull", t.ref("x"), expect="has unknown field\\(s\\) surprise")
    missing = t.cli.home / "nope.json"
    t.refused("pull", "--signature-policy", str(missing), t.ref("x"),
              expect="nope.json: No such file")
    t.policy({t.scope("x"): t.sigstore(pub=t.cli.home / "absent.pub")})
    t.refused("pull", t.ref("x"), expect="keyPath .*absent.pub: No such file")
    cut = t.write("cut.pub", t.key.public_pem()[:70])
    t.policy({t.scope("x"): t.sigstore(pub=cut)})
    t.refused("pull", t.ref("x"), expect="truncated")
    t.assert_nothing_stored()


# --- scopes and identities --------------------------------------------------------------------

def test_scopes_pick_the_most_specific_entry(t):
    for name in ("a", "b"):
        t.push_busybox(name)
    t.push_busybox("a", "v2")
    t.policy({t.ref("a", "v2"): [{"type": "insecureAcceptAnything"}],
              t.scope("a"): t.sigstore(),
              t.host: [{"type": "insecureAcceptAnything"}]})
    ok(t.cli("pull", "-q", t.ref("a", "v2")))                       # exact reference: accept
    t.refused("pull", t.ref("a"), expect="none exists",           # repository: signed only
              entry=f'transports.docker["{t.scope("a")}"]')
    ok(t.cli("pull", "-q", t.ref("b")))                              # host: accept
    t.policy({"": [{"type": "reject"}]}, default=[{"type": "insecureAcceptAnything"}])
    t.refused("pull", t.ref("b"), expect="reject", entry='transports.docker[""]')


def test_identity_rules_on_pulls(t):
    digest = t.push_busybox("id")
    t.sign("id", digest, claim=t.ref("id", "v9"))      # signed as :v9, pulled as :v1
    t.policy({t.scope("id"): t.sigstore()})
    t.refused("pull", t.ref("id"), expect="claims identity .*:v9.* matchRepoDigestOrExact")
    by_digest = f"{t.host}/{t.repo('id')}@{digest}"
    ok(t.cli("pull", "-q", by_digest))                 # by digest: same repository suffices
    ok(t.cli("rmi", by_digest))
    t.policy({t.scope("id"): t.sigstore(identity={"type": "matchRepository"})})
    ok(t.cli("pull", "-q", t.ref("id")))
    ok(t.cli("rmi", t.ref("id")))
    t.policy({t.scope("id"): t.sigstore(identity={"type": "matchExact"})})
    t.refused("pull", by_digest, expect="matchExact")
    t.policy({t.scope("id"): t.sigstore(identity={
        "type": "exactReference", "dockerReference": t.ref("id", "v9")})})
    ok(t.cli("pull", "-q", t.ref("id")))
    ok(t.cli("rmi", t.ref("id")))
    t.policy({t.scope("id"): t.sigstore(identity={
        "type": "remapIdentity", "prefix": f"{t.host}/{t.prefix}",
        "signedPrefix": "vendor.example.com/mirror"})})
    t.sign("id", digest, claim="vendor.example.com/mirror/id:v1")
    ok(t.cli("pull", "-q", t.ref("id")))
    assert _inspect_trust(t.cli, t.ref("id"))["Signatures"][0]["Identity"] == \
        "vendor.example.com/mirror/id:v1"


def test_index_digest_or_platform_manifest(t):
    index = images.build_multiplatform_index(t.cache)
    idx_digest = images.push(index, t.url, t.repo("idx"), "v1")
    host_child = next(c for c in index.images if c.architecture == "amd64")
    other_child = next(c for c in index.images if c is not host_child)
    t.policy({t.scope("idx"): t.sigstore()})
    t.refused("pull", t.ref("idx"), expect=f"{idx_digest.replace(':', '-')}.sig or "
              f"{host_child.manifest.digest.replace(':', '-')}.sig")
    # a signature of the other platform's manifest, attached to this one: refused
    t.sign("idx", host_child.manifest.digest,
           payload=indep.make_payload(t.ref("idx"), other_child.manifest.digest))
    t.refused("pull", t.ref("idx"), expect=f"for manifest {other_child.manifest.digest}")
    t.assert_nothing_stored()
    t.sign("idx", host_child.manifest.digest)                  # the platform manifest's
    ok(t.cli("pull", "-q", t.ref("idx")))
    assert _inspect_trust(t.cli, t.ref("idx"))["Signatures"][0]["ManifestDigest"] == \
        host_child.manifest.digest
    ok(t.cli("rmi", t.ref("idx")))
    indep.attach(t.url, t.repo("idx"), host_child.manifest.digest, [])
    t.sign("idx", idx_digest)                                   # the index's
    ok(t.cli("pull", "-q", t.ref("idx")))
    assert _inspect_trust(t.cli, t.ref("idx"))["Signatures"][0]["ManifestDigest"] == idx_digest


# --- run, create, build, load ----------------------------------------------------------------

def test_run_create_build_of_a_refused_image_start_nothing(t):
    t.push_busybox("bad")
    t.policy({t.scope("bad"): t.sigstore()})
    t.refused("run", "--rm", t.ref("bad"), "true", expect="none exists")
    t.refused("create", "--name", "c1", t.ref("bad"), expect="none exists")
    ctx = t.cli.home / "ctx"
    t.write("ctx/Dockerfile", f"FROM {t.ref('bad')}\nRUN touch /x\n".encode())
    r = t.cli("build", "-t", "local/out:1", str(ctx))
    assert r.returncode != 0 and "none exists" in (r.stderr + r.stdout), r
    assert ok(t.cli("ps", "-a", "-q")).stdout == ""
    cdir = t.data_root() / "containers"
    assert not cdir.is_dir() or not list(cdir.iterdir())
    t.assert_nothing_stored()
    mine = [cmd for _, cmd in unpriv.user_processes() if str(t.cli.home) in cmd]
    assert not mine, f"processes left behind: {mine}"


def test_load_under_archive_policies(t, tmp_path):
    t.push_busybox("arch")
    ok(t.cli("pull", "-q", t.ref("arch")))
    docker_tar, oci_tar = t.cli.home / "img.tar", t.cli.home / "sub" / "img-oci.tar"
    unpriv.make_user_dir(oci_tar.parent) if os.geteuid() == 0 else oci_tar.parent.mkdir()
    ok(t.cli("save", "-o", str(docker_tar), t.ref("arch")))
    ok(t.cli("save", "--format", "oci-archive", "-o", str(oci_tar), t.ref("arch")))
    ok(t.cli("rmi", t.ref("arch")))
    t.policy({}, docker_archive={"": t.sigstore()})
    t.refused("load", "-i", str(docker_tar), expect="archives and layout directories carry "
              "no signatures", entry='transports.docker-archive[""]')
    t.refused("load", "-i", str(oci_tar), expect="reject", entry="default")
    t.assert_nothing_stored()
    t.policy({}, oci_archive={str(oci_tar.parent): [{"type": "insecureAcceptAnything"}]})
    ok(t.cli("load", "-i", str(oci_tar)))
    t.refused("load", "-i", str(docker_tar), expect="reject", entry="default")
    policy = t.write("p.json", json.dumps({"default": [{"type": "insecureAcceptAnything"}]})
                     .encode())
    ok(t.cli("load", "--signature-policy", str(policy), "-i", str(docker_tar)))
    # a loaded image carries no verdict: Trust still answers, with Verified false
    assert ok(t.cli("image", "inspect", "-f", "{{.Trust.Verified}} {{.Trust.Policy}}|",
                    t.ref("arch"))).stdout == "false |\n"


# --- signing ---------------------------------------------------------------------------------

def test_key_generate_writes_what_skopeo_reads(t):
    t.write("pw", b"correct horse\nsecond line ignored\n")
    out = ok(t.cli("key", "generate", "--output-prefix", str(t.cli.home / "k"),
                   "--passphrase-file", str(t.cli.home / "pw"))).stdout
    assert out == f'Key written to "{t.cli.home}/k.private" and "{t.cli.home}/k.pub"\n'
    private, public = t.cli.home / "k.private", t.cli.home / "k.pub"
    assert private.stat().st_mode & 0o777 == 0o600
    kind, params, der = indep.open_key(private.read_bytes(), b"correct horse")
    assert kind == "ENCRYPTED COSIGN PRIVATE KEY" and params == {"N": 32768, "r": 8, "p": 1}
    from cryptography.hazmat.primitives import serialization
    key = serialization.load_der_private_key(der, None)
    assert key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo) == \
        public.read_bytes()
    r = t.cli("key", "generate", "--output-prefix", str(t.cli.home / "k"),
              "--passphrase-file", str(t.cli.home / "pw"))
    assert r.returncode == 125 and "refusing to overwrite" in r.stderr
    r = t.cli("key", "generate", "--output-prefix", str(t.cli.home / "k2"))
    assert r.returncode == 125 and "--passphrase-file" in r.stderr
    assert not (t.cli.home / "k2.private").exists()
    ok(t.cli("key", "generate", "--key-type", "ed25519", "--output-prefix",
             str(t.cli.home / "ed"), "--passphrase-file", str(t.cli.home / "pw")))
    assert b"BEGIN PUBLIC KEY" in (t.cli.home / "ed.pub").read_bytes()


def test_push_signs_and_the_independent_verifier_agrees(t):
    out, digest = t.signed_push("signed")
    dest = t.ref("signed")
    assert "Signing manifest using a sigstore signature" in out
    pub = (t.cli.home / "k.pub").read_bytes()
    (claim,) = indep.verify_image(t.url, t.repo("signed"), digest, pub)
    assert claim["critical"]["identity"]["docker-reference"] == dest
    # image sign adds a second signature (another identity) next to the first
    out = ok(t.cli("image", "sign", "--sign-by-sigstore-private-key",
                   str(t.cli.home / "k.private"), "--sign-passphrase-file",
                   str(t.cli.home / "pw"), "--sign-identity", t.ref("signed", "release"),
                   dest)).stdout
    assert digest in out
    claims = indep.verify_image(t.url, t.repo("signed"), digest, pub)
    assert sorted(c["critical"]["identity"]["docker-reference"] for c in claims) == \
        sorted([dest, t.ref("signed", "release")])
    t.policy({t.scope("signed"): t.sigstore(pub=t.cli.home / "k.pub")})
    ok(t.cli("pull", "-q", dest))
    assert _inspect_trust(t.cli, dest)["Verified"]


def test_unusable_signing_keys_fail_before_any_upload(t):
    t.generate_key()
    t.write("bad", b"wrong\n")
    t.write("cut.private", (t.cli.home / "k.private").read_bytes()[:120])
    t.push_busybox("src")
    ok(t.cli("pull", "-q", t.ref("src")))
    dest = t.ref("never")
    ok(t.cli("tag", t.ref("src"), dest))
    for key, pw, message in (("k.private", "bad", "wrong passphrase"),
                             ("cut.private", "pw", "truncated"),
                             ("k.pub", "pw", "public key, not a private key"),
                             ("missing.private", "pw", "No such file"),
                             ("k.private", None, "--sign-passphrase-file")):
        args = ["push", "--sign-by-sigstore-private-key", str(t.cli.home / key)]
        if pw:
            args += ["--sign-passphrase-file", str(t.cli.home / pw)]
        r = t.cli(*args, dest)
        assert r.returncode == 125 and message in r.stderr, (key, r.stderr)
        assert "Preparing" not in r.stdout and "Pushing" not in r.stdout
        tags = requests.get(f"{t.url}/v2/{t.repo('never')}/tags/list")
        assert tags.status_code == 404, f"{key}: something was uploaded: {tags.text}"


# --- what gets imported ----------------------------------------------------------------------

def _imports(r) -> str:
    return "\n".join(line for line in r.stderr.splitlines() if line.startswith("import time"))


def test_cryptography_is_imported_only_when_signatures_matter(t):
    digest = t.push_busybox("imp")
    t.sign("imp", digest)
    env = {"PYTHONPROFILEIMPORTTIME": "1"}
    t.policy({t.scope("imp"): [{"type": "insecureAcceptAnything"}]})
    r = ok(t.cli("pull", "-q", t.ref("imp"), env=env))
    assert "pydocklite.trust.policy" in _imports(r)
    assert "cryptography" not in _imports(r)
    for args in (("ps", "-a"), ("images",), ("run", "--rm", t.ref("imp"), "true")):
        r = ok(t.cli(*args, env=env))
        assert "cryptography" not in _imports(r), args
    ok(t.cli("rmi", t.ref("imp")))
    t.policy({t.scope("imp"): t.sigstore()})
    r = ok(t.cli("pull", "-q", t.ref("imp"), env=env))
    assert "cryptography" in _imports(r)       # the check above can see an import
