"""Signatures between pydocklite and the containers/image tools of this host (Debian's skopeo
1.9.3 and Podman 4.3, built with sigstore compiled out: they cannot sign or verify, but they
copy `.sig` attachments when registries.d sets use-sigstore-attachments).

- skopeo copies an image pydocklite signed, signature included, to another repository: the
  independent verifier accepts the copied signature, pydocklite refuses it there under
  matchRepoDigestOrExact (the signature names the original repository) and accepts it with
  remapIdentity; copied without the attachment config, the image has no signature.
- Podman, with its attachment config, pulls an image pydocklite signed and keeps the
  signature: the one in its storage verifies with the independent verifier.
"""
from __future__ import annotations

import base64
import json
import shutil

import pytest

from tests import unpriv
from tests.fixtures.cli_runner import ok
from tests.fixtures.podman import configure_podman
from tests.trust import indep
from tests.trust.trust_env import Trust

ATTACHMENTS = "default-docker:\n  use-sigstore-attachments: true\n"


@pytest.fixture
def t(cli, registry, image_cache, request) -> Trust:
    return Trust(cli, registry, image_cache, request.node.name)


def _skopeo(t: Trust, *args: str):
    """skopeo with a policy of its own: it reads ~/.config/containers/policy.json too, which
    these tests write for pydocklite."""
    accept = t.write("skopeo-policy.json", b'{"default":[{"type":"insecureAcceptAnything"}]}')
    return unpriv.run_as_user(["skopeo", "--policy", str(accept), *args], t.cli.home,
                              timeout=120)


@pytest.mark.skipif(not shutil.which("skopeo"), reason="skopeo is not installed (.ci/run "
                    "installs it)")
def test_skopeo_copies_the_signature_and_the_moved_one_is_judged(t):
    digest = t.signed_push("orig")[1]
    regd = t.write("registries.d/default.yaml", ATTACHMENTS.encode()).parent
    src, dst = f"docker://{t.ref('orig')}", f"docker://{t.ref('mirror')}"
    r = _skopeo(t, "copy", "--registries.d", str(regd), "--src-tls-verify=false",
                "--dest-tls-verify=false", src, dst)
    assert r.returncode == 0, r.stderr
    assert "Storing signatures" in r.stdout + r.stderr
    pub = (t.cli.home / "k.pub").read_bytes()
    (claim,) = indep.verify_image(t.url, t.repo("mirror"), digest, pub)
    assert claim["critical"]["identity"]["docker-reference"] == t.ref("orig")
    # the signature vouches for .../orig, not .../mirror
    t.policy({t.scope("mirror"): t.sigstore(pub=t.cli.home / "k.pub")})
    t.refused("pull", t.ref("mirror"), expect="claims identity '.*/orig:v1'.*"
              "matchRepoDigestOrExact")
    t.assert_nothing_stored()
    t.policy({t.scope("mirror"): t.sigstore(pub=t.cli.home / "k.pub", identity={
        "type": "remapIdentity", "prefix": t.scope("mirror"), "signedPrefix": t.scope("orig")})})
    ok(t.cli("pull", "-q", t.ref("mirror")))
    trust = json.loads(ok(t.cli("image", "inspect", t.ref("mirror"))).stdout)[0]["Trust"]
    assert trust["Verified"] and trust["Signatures"][0]["Identity"] == t.ref("orig")
    # without the attachment config skopeo leaves the signature behind
    r = _skopeo(t, "copy", "--registries.d", str(t.cli.home / "none.d"),
                "--src-tls-verify=false", "--dest-tls-verify=false", src,
                f"docker://{t.ref('bare')}")
    assert r.returncode == 0, r.stderr
    t.policy({t.scope("bare"): t.sigstore(pub=t.cli.home / "k.pub")})
    t.refused("pull", t.ref("bare"), expect="none exists")


@pytest.mark.skipif(not shutil.which("podman"), reason="podman is not installed (.ci/run "
                    "installs it)")
def test_podman_pulls_our_signed_image_and_keeps_the_signature(t):
    digest = t.signed_push("forpodman")[1]
    home = t.cli.home / "podman"
    configure_podman(home)
    t.write("podman/.config/containers/registries.d/default.yaml", ATTACHMENTS.encode())
    env = {"XDG_RUNTIME_DIR": str(unpriv.make_user_dir(home / "run"))}
    try:
        r = unpriv.run_as_user(["podman", "pull", "--tls-verify=false", t.ref("forpodman")],
                               home, env=env, timeout=180)
        assert r.returncode == 0, r.stderr
        assert "Storing signatures" in r.stderr + r.stdout
        stored = list((home / "storage").rglob("overlay-images/*/signatures"))
        assert len(stored) == 1, stored
        # containers/storage keeps each signature as "\0sigstore-json\n" + JSON
        data = stored[0].read_bytes()
        assert data.startswith(b"\x00sigstore-json\n"), data[:40]
        doc = json.loads(data.split(b"\n", 1)[1])
        payload = base64.b64decode(doc["payload"])
        signature = base64.b64decode(doc["annotations"][indep.SIG_ANNOTATION])
        assert indep.verify_signature((t.cli.home / "k.pub").read_bytes(), payload, signature)
        claim = json.loads(payload)["critical"]
        assert claim["image"]["docker-manifest-digest"] == digest
        assert claim["identity"]["docker-reference"] == t.ref("forpodman")
    finally:
        unpriv.run_as_user(["podman", "system", "reset", "--force"], home, env=env,
                           timeout=120)
