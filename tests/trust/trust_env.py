"""The test-side view of one signature test: its home (as the unprivileged test user), the
session registry, a trusted key pair, policy writing, signing with the independent signer,
and the checks every refusal test makes (exit 125, one error line naming the policy entry,
nothing stored)."""
from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path

from tests import unpriv
from tests.fixtures import images
from tests.fixtures.cli_runner import ok
from tests.trust import indep


class Trust:
    """One test's view: its home, the registry, a trusted key pair, policy writing, checks."""

    def __init__(self, cli, registry, image_cache, name: str) -> None:
        self.cli, self.registry, self.cache = cli, registry, image_cache
        self.url, self.host = registry.url, registry.host
        self.prefix = "trust/" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] + \
            "-" + uuid.uuid4().hex[:6]
        self.key = indep.Keypair.generate()
        self.pub = self.write("trusted.pub", self.key.public_pem())

    def write(self, name: str, data: bytes) -> Path:
        path = self.cli.home / name
        unpriv.make_user_dir(path.parent) if os.geteuid() == 0 else path.parent.mkdir(
            parents=True, exist_ok=True)
        path.write_bytes(data)
        if os.geteuid() == 0:
            os.chown(path, unpriv.test_user().pw_uid, unpriv.test_user().pw_gid)
        return path

    def policy(self, docker: dict = None, default=None, **transports) -> Path:
        doc = {"default": default or [{"type": "reject"}], "transports": {}}
        if docker is not None:
            doc["transports"]["docker"] = docker
        for name, scopes in transports.items():
            doc["transports"][name.replace("_", "-")] = scopes
        return self.write(".config/containers/policy.json", json.dumps(doc).encode())

    def sigstore(self, pub: Path = None, identity: dict = None) -> list:
        req = {"type": "sigstoreSigned", "keyPath": str(pub or self.pub)}
        if identity:
            req["signedIdentity"] = identity
        return [req]

    def repo(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    def scope(self, name: str) -> str:
        """The policy scope of a repository: fully expanded, with the registry host."""
        return f"{self.host}/{self.repo(name)}"

    def push_busybox(self, name: str, tag: str = "v1") -> str:
        return images.push(images.build_busybox_image(self.cache), self.url, self.repo(name), tag)

    def ref(self, name: str, tag: str = "v1") -> str:
        return f"{self.host}/{self.repo(name)}:{tag}"

    def sign(self, name: str, digest: str, claim: str = None, key=None, **kw) -> bytes:
        claim = claim or self.ref(name)
        return indep.sign_image(self.url, self.repo(name), digest, key or self.key, claim, **kw)

    def generate_key(self, prefix: str = "k") -> Path:
        """`key generate` as the user, passphrase "pw" in ~/pw; the private key's path."""
        self.write("pw", b"pw\n")
        ok(self.cli("key", "generate", "--output-prefix", str(self.cli.home / prefix),
                    "--passphrase-file", str(self.cli.home / "pw")))
        return self.cli.home / f"{prefix}.private"

    def signed_push(self, name: str) -> tuple:
        """pydocklite pulls busybox, tags it `name`:v1 and pushes it signed with a key it
        generates: (push output, pushed manifest digest); the local images are removed."""
        key = self.generate_key()
        self.push_busybox("src")
        ok(self.cli("pull", "-q", self.ref("src")))
        ok(self.cli("tag", self.ref("src"), self.ref(name)))
        out = ok(self.cli("push", "--sign-by-sigstore-private-key", str(key),
                          "--sign-passphrase-file", str(self.cli.home / "pw"),
                          self.ref(name))).stdout
        ok(self.cli("rmi", self.ref("src"), self.ref(name)))
        return out, re.search(r"digest: (sha256:[0-9a-f]{64})", out).group(1)

    def data_root(self) -> Path:
        return self.cli.home / ".local" / "share" / "pydocklite"

    def assert_nothing_stored(self) -> None:
        root = self.data_root()
        for sub in ("blobs/sha256", "layers/sha256", "ingest"):
            d = root / sub
            left = sorted(p.name for p in d.iterdir()) if d.is_dir() else []
            assert not left, f"{sub} holds {left} after a refused image"
        db = root / "images.json"
        if db.exists():
            doc = json.loads(db.read_text())
            assert not doc.get("images") and not doc.get("tags"), doc
        assert ok(self.cli("images", "-q")).stdout == ""

    def refused(self, *args, expect: str, entry: str = None) -> str:
        r = self.cli(*args)
        assert r.returncode == 125, f"rc={r.returncode}\n{r.stdout}\n{r.stderr}"
        err = r.stderr
        assert "refused by signature policy" in err or "signature policy" in err, err
        assert re.search(expect, err), f"wanted {expect!r} in:\n{err}"
        if entry:
            assert entry in err, err
        errors = [line for line in err.splitlines() if line.startswith("Error")]
        assert len(errors) == 1 and "refused" in errors[0] or "policy" in errors[0], \
            f"not one error line:\n{err}"
        assert "Traceback" not in err
        return err
