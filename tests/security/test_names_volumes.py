"""Class 5 (issue 10): names and paths from the user or the API, as an attacker writes them.

A volume name is one path component under the volumes directory (dockerd's
`[a-zA-Z0-9][a-zA-Z0-9_.-]+`); `rm -v` removes only anonymous volumes, never a named one or
a bind mount's source; `volume rm`/`prune` refuse or skip volumes in use. All through the
zipapp as the unprivileged test user.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.api.conftest import api  # noqa: F401 (the fixture: the API service)
from tests.fixtures.cli_runner import ok
from tests import unpriv


def store(home: Path) -> Path:
    return home / ".local" / "share" / "pydocklite"


def canary(home: Path, name: str = "canary") -> Path:
    """A directory of the user's that nothing pydocklite does may delete."""
    d = home / name
    d.mkdir()
    (d / "keep").write_text("precious\n")
    os.chown(d, *unpriv.test_ids())
    os.chown(d / "keep", *unpriv.test_ids())
    return d


def volume_names(cli) -> list:
    return ok(cli("volume", "ls", "-q")).stdout.split()


def test_dotdot_volume_name_is_refused_and_rm_v_deletes_nothing_above(cli):
    """Fails on 2026-12-07's main: `-v x/../../..:/d` was taken as a volume named
    "x/../../..", and `rm -v` then deleted <store>/volumes/x/../../.. = the store's parent."""
    keep = canary(cli.home)
    ok(cli("run", "--rm", "hello"))                   # a store with an image in it
    before = sorted(p.name for p in store(cli.home).iterdir())
    r = cli("create", "--name", "evil", "-v", "x/../../..:/d", "hello")
    assert r.returncode == 125
    assert "invalid characters for a local volume name" in r.stderr
    assert "use absolute path" in r.stderr
    assert cli("rm", "-v", "evil").returncode != 0     # never created
    assert (keep / "keep").read_text() == "precious\n"
    assert sorted(p.name for p in store(cli.home).iterdir()) == before
    assert ok(cli("images", "-q")).stdout.strip()    # the store is still there


@pytest.mark.parametrize("name", ["../x", "a/b", "..", ".hidden", "x", "a b", "semi;colon",
                                  "new\nline", "dollar$", "\u00e9t\u00e9", "x" * 300])
def test_bad_volume_names_make_nothing(cli, name):
    r = cli("volume", "create", name)
    assert r.returncode == 125, r
    assert "volume name" in r.stderr
    if not name.startswith("."):        # "./x", "../x" are relative bind sources, as Docker
        r = cli("create", "-v", f"{name}:/d", "hello")
        assert r.returncode == 125 and "volume name" in r.stderr, r
    assert not (store(cli.home) / "volumes").exists() or volume_names(cli) == []
    assert ok(cli("ps", "-a", "-q")).stdout == ""


@pytest.mark.parametrize("name", ["../web", "web/x", "web\n", ".web", "w"])
def test_bad_container_names_are_refused(cli, name):
    r = cli("create", "--name", name, "hello")
    assert r.returncode == 125 and "Invalid container name" in r.stderr
    assert ok(cli("ps", "-a", "-q")).stdout == ""


def test_rm_v_removes_only_anonymous_volumes(cli, busybox):
    keep = canary(cli.home)
    ok(cli("volume", "create", "--label", "team=a", "named"))
    ok(cli("run", "--name", "c1", "-v", "named:/n", "-v", "/anon", "-v", f"{keep}:/bind",
           busybox, "sh", "-c", "echo n > /n/f; echo a > /anon/f; echo b > /bind/f"))
    mounts = json.loads(ok(cli("inspect", "c1")).stdout)[0]["Mounts"]
    kinds = {m["Destination"]: (m["Type"], m.get("Name")) for m in mounts
             if m["Destination"] in ("/n", "/anon", "/bind")}
    assert kinds["/n"] == ("volume", "named") and kinds["/bind"] == ("bind", None)
    anon = kinds["/anon"][1]
    assert kinds["/anon"][0] == "volume" and len(anon) == 64
    info = json.loads(ok(cli("volume", "inspect", anon)).stdout)[0]
    assert info["Labels"] == {"com.docker.volume.anonymous": ""}
    assert sorted(volume_names(cli)) == sorted([anon, "named"])
    ok(cli("rm", "-v", "c1"))
    assert volume_names(cli) == ["named"]                 # the anonymous one went
    assert (store(cli.home) / "volumes" / "named" / "_data" / "f").read_text() == "n\n"
    assert sorted(p.name for p in keep.iterdir()) == ["f", "keep"]   # the bind source stays


def test_anonymous_volume_used_by_another_container_survives_rm_v(cli, busybox):
    ok(cli("create", "--name", "ca", "-v", "/data", busybox, "true"))
    anon = volume_names(cli)[0]
    ok(cli("create", "--name", "cb", "-v", f"{anon}:/data", busybox, "true"))
    ok(cli("rm", "-v", "ca"))
    assert volume_names(cli) == [anon]
    ok(cli("rm", "-v", "cb"))
    assert volume_names(cli) == []


def test_rm_v_does_not_follow_what_the_container_left_in_its_volume(cli, busybox):
    """The container plants links to the user's files and files owned by its other ids;
    deleting the volume removes them, never what they point at."""
    keep = canary(cli.home)
    ok(cli("run", "--name", "cc", "-v", "/anon", busybox, "sh", "-c",
           f"ln -s {keep} /anon/dirlink; ln -s {keep}/keep /anon/filelink; "
           "mkdir -p /anon/sub/deep; ln -s / /anon/sub/root; chown -R 1000:1000 /anon/sub; "
           "chmod 000 /anon/sub/deep"))
    ok(cli("rm", "-v", "cc"))
    assert volume_names(cli) == []
    assert sorted(os.listdir(store(cli.home) / "volumes")) == [".lock"]
    assert (keep / "keep").read_text() == "precious\n"


def test_volume_verbs_docker_shapes_and_in_use_refusal(cli, busybox):
    assert ok(cli("volume", "create", "--label", "k=v", "data1")).stdout == "data1\n"
    assert ok(cli("volume", "create", "data1")).stdout == "data1\n"    # exists: same volume
    rnd = ok(cli("volume", "create")).stdout.strip()
    assert len(rnd) == 64
    info = json.loads(ok(cli("volume", "inspect", "data1")).stdout)
    assert len(info) == 1
    v = info[0]
    assert sorted(v) == ["CreatedAt", "Driver", "Labels", "Mountpoint", "Name", "Options",
                         "Scope"]
    assert (v["Name"], v["Driver"], v["Scope"], v["Labels"], v["Options"]) == \
        ("data1", "local", "local", {"k": "v"}, None)
    assert v["Mountpoint"] == str(store(cli.home) / "volumes" / "data1" / "_data")
    assert v["CreatedAt"].endswith("Z") and "T" in v["CreatedAt"]
    assert ok(cli("volume", "inspect", "-f", "{{.Name}} {{.Driver}}", "data1")).stdout == \
        "data1 local\n"
    r = cli("volume", "inspect", "nope")
    assert r.returncode == 1 and "no such volume" in r.stderr
    r = cli("volume", "create", "--opt", "type=nfs", "x2")
    assert r.returncode == 125 and "needs root" in r.stderr
    assert cli("volume", "create", "--opt", "bogus=1", "x2").returncode == 125
    # listing
    ls = ok(cli("volume", "ls")).stdout.splitlines()
    assert ls[0].split() == ["DRIVER", "VOLUME", "NAME"]
    assert sorted(line.split()[1] for line in ls[1:]) == sorted(["data1", rnd])
    assert ok(cli("volume", "ls", "-q", "--filter", "label=k=v")).stdout == "data1\n"
    assert ok(cli("volume", "ls", "-q", "--filter", "label=k")).stdout == "data1\n"
    assert ok(cli("volume", "ls", "-q", "--filter", "name=ata")).stdout == "data1\n"
    assert ok(cli("volume", "ls", "--format", "{{.Name}}:{{.Driver}}",
                  "--filter", "label=k")).stdout == "data1:local\n"
    # in use, even by a stopped container
    ok(cli("create", "--name", "user", "-v", "data1:/d", busybox, "true"))
    assert ok(cli("volume", "ls", "-q", "--filter", "dangling=false")).stdout == "data1\n"
    assert ok(cli("volume", "ls", "-q", "--filter", "dangling=true")).stdout == rnd + "\n"
    cid = ok(cli("inspect", "-f", "{{.Id}}", "user")).stdout.strip()
    for force in ([], ["-f"]):
        r = cli("volume", "rm", *force, "data1")
        assert r.returncode == 1
        assert f"remove data1: volume is in use - [{cid}]" in r.stderr
    assert ok(cli("volume", "rm", "-f", "never-was")).stdout == "never-was\n"
    assert cli("volume", "rm", "never-was").returncode == 1
    ok(cli("rm", "user"))                                   # no -v: the volume stays
    assert ok(cli("volume", "rm", "data1")).stdout == "data1\n"
    assert volume_names(cli) == [rnd]


def test_volume_prune_anonymous_by_default_all_with_a(cli, busybox):
    ok(cli("volume", "create", "--label", "keep=1", "named1"))
    ok(cli("volume", "create", "named2"))
    ok(cli("create", "--name", "gone", "-v", "/x", busybox, "true"))
    ok(cli("create", "--name", "stays", "-v", "/y", busybox, "true"))
    anon_x = json.loads(ok(cli("inspect", "gone")).stdout)[0]["Mounts"][-1]["Name"]
    anon_y = json.loads(ok(cli("inspect", "stays")).stdout)[0]["Mounts"][-1]["Name"]
    ok(cli("rm", "gone"))                       # without -v: its volume is now unused
    # the prompt: nothing happens without a "y"
    r = cli("volume", "prune", input="n\n")
    assert r.returncode == 0 and "anonymous local volumes" in r.stdout
    assert anon_x in volume_names(cli)
    r = ok(cli("volume", "prune", "-f"))
    assert r.stdout.startswith("Deleted Volumes:\n" + anon_x + "\n")
    assert "Total reclaimed space:" in r.stdout
    assert sorted(volume_names(cli)) == sorted(["named1", "named2", anon_y])
    r = ok(cli("volume", "prune", "-a", "-f", "--filter", "label=keep=1"))
    assert sorted(volume_names(cli)) == sorted(["named2", anon_y])
    ok(cli("volume", "prune", "-a", "-f"))
    assert volume_names(cli) == [anon_y]        # in use by "stays"
    df = ok(cli("system", "df", "--format", "{{.Type}}={{.TotalCount}}/{{.Active}}")).stdout
    assert "Local Volumes=1/1" in df.splitlines()
    assert cli("volume", "prune", "-f", "--filter", "bogus=1").returncode == 125


def test_volumes_through_the_api_with_the_docker_cli(api, cli, busybox):
    """The /volumes endpoints are the same service: Docker's CLI sees the same rules."""
    r = api.docker("volume", "create", "--label", "team=a", "named")
    assert r.returncode == 0 and r.stdout == "named\n", r.stderr
    r = api.docker("volume", "create", "../escape")
    assert r.returncode != 0 and "invalid characters for a local volume name" in r.stderr
    ok(cli("create", "--name", "user", "-v", "named:/n", "-v", "/anon", busybox, "true"))
    r = api.docker("volume", "rm", "named")
    assert r.returncode != 0 and "volume is in use" in r.stderr, r.stderr
    info = json.loads(api.docker("volume", "inspect", "named").stdout)[0]
    assert (info["Name"], info["Driver"], info["Scope"], info["Labels"]) == \
        ("named", "local", "local", {"team": "a"})
    ls = api.docker("volume", "ls", "-q", "--filter", "label=team=a").stdout.split()
    assert ls == ["named"]
    ok(cli("rm", "user"))                        # without -v: both volumes stay, unused
    r = api.docker("volume", "prune", "-f")      # anonymous only (API 1.42+)
    assert r.returncode == 0, r.stderr
    assert volume_names(cli) == ["named"]
    r = api.docker("volume", "prune", "-a", "-f")
    assert r.returncode == 0 and "named" in r.stdout, r.stdout + r.stderr
    assert volume_names(cli) == []
