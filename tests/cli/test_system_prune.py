"""`system prune` as the unprivileged test user: stopped containers, unused networks,
dangling or (-a) unused images, (--volumes) unused anonymous volumes, build cache; what
runs and what is in use stays; the prompt; filters."""
from __future__ import annotations

import json
import os

from tests import unpriv
from tests.fixtures.cli_runner import ok


def _ids(cli, *args) -> set:
    return set(ok(cli(*args)).stdout.split())


def test_prune_all_with_volumes(cli, busybox):
    ok(cli("run", "-v", "/anon", "--name", "gone", busybox, "true"))
    stopped = ok(cli("inspect", "--format", "{{.Id}}", "gone")).stdout.strip()
    running = ok(cli("run", "-d", "-v", "named:/data", busybox, "sleep", "60")).stdout.strip()
    ctx = cli.home / "ctx"                 # an image of its own (its own id), unused
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {busybox}\nLABEL spare=1\n")
    os.chown(ctx, unpriv.test_user().pw_uid, -1)
    os.chown(ctx / "Dockerfile", unpriv.test_user().pw_uid, -1)
    ok(cli("build", "-q", "-t", "spare:1", str(ctx)))
    ok(cli("network", "create", "unusednet"))
    anon = [v for v in ok(cli("volume", "ls", "-q")).stdout.split() if v != "named"]
    assert len(anon) == 1
    # answered "no": nothing goes
    r = cli("system", "prune", "-a", "--volumes", input="n\n")
    assert r.returncode == 0 and "Are you sure you want to continue? [y/N]" in r.stdout
    assert "all anonymous volumes not used by at least one container" in r.stdout
    assert stopped in _ids(cli, "ps", "-aq", "--no-trunc")
    r = ok(cli("system", "prune", "-a", "--volumes", "-f"))
    out = r.stdout
    assert f"Deleted Containers:\n{stopped}\n" in out
    assert "Deleted Networks:\nunusednet\n" in out
    assert f"Deleted Volumes:\n{anon[0]}\n" in out
    assert "Deleted Images:\ndeleted: sha256:" in out and "Total reclaimed space: " in out
    assert _ids(cli, "ps", "-aq", "--no-trunc") == {running}
    assert set(ok(cli("volume", "ls", "-q")).stdout.split()) == {"named"}
    images = ok(cli("images", "--format", "{{.Repository}}:{{.Tag}}")).stdout.split()
    assert images == [busybox], images           # in use by the running container: kept
    assert "unusednet" not in ok(cli("network", "ls")).stdout
    got = ok(cli("events", "--since", "5m", "--until", "0s", "--filter", "event=destroy",
                 "--format", "{{.ID}}")).stdout.split()
    assert got == [stopped]
    ok(cli("rm", "-f", running))


def test_prune_filters_and_defaults(cli, busybox):
    keep = ok(cli("create", "-l", "keep=yes", busybox, "true")).stdout.strip()
    drop = ok(cli("create", "-l", "keep=no", busybox, "true")).stdout.strip()
    r = ok(cli("system", "prune", "-f", "--filter", "label=keep=no"))
    assert drop in r.stdout and keep not in r.stdout
    assert _ids(cli, "ps", "-aq", "--no-trunc") == {keep}
    r = ok(cli("system", "prune", "-f", "--filter", "until=1h"))    # made just now: kept
    assert _ids(cli, "ps", "-aq", "--no-trunc") == {keep}
    # without -a an image with a tag stays
    ok(cli("rm", keep))
    ok(cli("system", "prune", "-f"))
    assert ok(cli("images", "-q")).stdout.strip() != ""
    r = cli("system", "prune", "-f", "--volumes", "--filter", "until=1h")
    assert r.returncode == 125 and '"until" filter is not supported' in r.stderr
    r = cli("system", "prune", "-f", "--filter", "colour=red")
    assert r.returncode == 125 and "invalid filter" in r.stderr
    assert json.loads(ok(cli("system", "df", "--format", "{{json .}}")).stdout.splitlines()[0])
