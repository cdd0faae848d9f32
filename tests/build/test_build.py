"""`build` end to end as the unprivileged test user: a Dockerfile corpus over busybox from the
test registry, then `run` of the built images; cache, errors, no partial images."""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests import unpriv


def ok(r):
    assert r.returncode == 0, f"rc={r.returncode}\nstdout:{r.stdout}\nstderr:{r.stderr}"
    return r


def build(cli, context: Path, *args: str, env=None, timeout: float = 300):
    """`pydocklite build ARGS CONTEXT` (through the module entry until main.py has the verb)."""
    from pydocklite.cli import main
    argv = [*args, str(context)]
    if "build" in main.COMMANDS:
        return cli("build", *argv, env=env, timeout=timeout)
    prefix = list(cli.session.prefix)
    if prefix[-2:] != ["-m", "pydocklite"]:
        pytest.skip("the zipapp has no build verb yet (run with PDL_TEST_USE_PACKAGE=1)")
    cmd = unpriv.user_cmd(prefix[:-1] + ["pydocklite.cli.build", *argv])
    return subprocess.run(cmd, env=cli.environ(env), timeout=timeout, capture_output=True,
                          text=True, cwd=str(cli.home), stdin=subprocess.DEVNULL)


def write_tree(root: Path, files: dict) -> Path:
    """Files {relpath: text or (text, mode)}; directories made readable for the test user."""
    root.mkdir(parents=True, exist_ok=True)
    for rel, content in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        mode = 0o644
        if isinstance(content, tuple):
            content, mode = content
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content)
        p.chmod(mode)
    for d, dirs, _ in os.walk(root):
        os.chmod(d, 0o755)
    return root


@pytest.fixture(autouse=True)
def _no_strays(cli):
    yield
    subprocess.run(["pkill", "-KILL", "-f", str(cli.home)], check=False)


@pytest.fixture
def busybox(cli, registry):
    ref = registry.ref("busybox")
    ok(cli("pull", "-q", ref))
    return ref


def image_config(cli, name: str) -> dict:
    r = ok(cli("image", "inspect", name))
    return json.loads(r.stdout)[0]


def test_smoke(cli, busybox):
    os.environ["PDL_BUILD_DEBUG"] = "1"
    ctx = write_tree(cli.home / "ctx", {
        "Dockerfile": f"FROM {busybox}\nRUN echo hello > /greeting\nCMD [\"cat\", \"/greeting\"]\n",
    })
    r = ok(build(cli, ctx, "-t", "smoke:1"))
    print(r.stdout)
    assert "Successfully tagged smoke:1" in r.stdout
    r = ok(cli("run", "--rm", "smoke:1"))
    assert r.stdout == "hello\n"
