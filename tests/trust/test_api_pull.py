"""The Engine API's pull (`POST /images/create`, what `docker pull` sends to `system service`)
checks the same signature policy the CLI does: the service calls the image service, where the
check lives. A refused image ends the progress stream with an error naming the policy entry
and leaves nothing stored; a signed one is pulled and its Trust shows in the image's JSON."""
from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from tests.api.conftest import Api, start_service
from tests.fixtures.cli_runner import ok
from tests.trust.trust_env import Trust


@pytest.fixture
def t(cli, registry, image_cache, request) -> Trust:
    return Trust(cli, registry, image_cache, request.node.name)


@pytest.fixture
def api(cli):
    proc, sock = start_service(cli, "--time", "0")
    service = Api(cli, proc, sock)
    yield service
    service.stop()


def _pull(api, ref: str) -> list:
    status, _, body = api.request("POST", f"/v1.44/images/create?fromImage={quote(ref)}",
                                  timeout=120)
    assert status == 200, body
    return [json.loads(line) for line in body.decode().splitlines() if line.strip()]


def test_api_pull_is_checked_against_the_policy(t, api):
    digest = t.push_busybox("api")
    t.policy({t.scope("api"): t.sigstore()})
    lines = _pull(api, t.ref("api"))
    error = lines[-1].get("error", "")
    assert "refused by signature policy" in error and "none exists" in error, lines
    assert f'transports.docker["{t.scope("api")}"]' in error
    assert lines[-1]["errorDetail"]["message"] == error
    t.assert_nothing_stored()
    r = api.docker("pull", t.ref("api"))            # the real docker CLI says it too
    assert r.returncode != 0 and "refused by signature policy" in r.stderr, r
    t.assert_nothing_stored()
    t.sign("api", digest)
    lines = _pull(api, t.ref("api"))
    assert not any("error" in line for line in lines), lines
    assert any(line.get("status", "").startswith("Status: Downloaded newer image")
               for line in lines)
    status, _, body = api.request("GET", f"/v1.44/images/{quote(t.ref('api'), safe='')}/json")
    assert status == 200
    trust = json.loads(body)["Trust"]
    assert trust["Verified"] and trust["Signatures"][0]["ManifestDigest"] == digest
    ok(t.cli("image", "inspect", t.ref("api")))
