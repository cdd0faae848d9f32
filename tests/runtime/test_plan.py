"""Pure parts of the runtime: spec validation, the planner, option parsing,
derived state. No root, no namespaces."""
from __future__ import annotations

import copy
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pydocklite.runtime import plan as pl  # noqa: E402
from pydocklite.runtime import state as st  # noqa: E402
from pydocklite.runtime import syscalls as sc  # noqa: E402
from pydocklite.runtime.errors import SpecError  # noqa: E402
from pydocklite.runtime.record import Record  # noqa: E402
from pydocklite.runtime.runc_cli import UsageError, _parse  # noqa: E402
from pydocklite.runtime.runc_verbs import _signal  # noqa: E402
from pydocklite.runtime.spec import IdMapping, parse_spec  # noqa: E402
from pydocklite.runtime.spec_template import MASKED_PATHS, default_spec  # noqa: E402

MAPS = ((IdMapping(0, 1001, 1), IdMapping(1, 100000, 65536)),
        (IdMapping(0, 1001, 1), IdMapping(1, 100000, 65536)))


def base(**over) -> dict:
    spec = default_spec(rootless=False)
    spec["linux"]["namespaces"].append({"type": "user"})
    spec["root"]["path"] = "/r"
    spec.update(over)
    return spec


def plan_of(raw: dict, maps=MAPS):
    return pl.make_plan(parse_spec(raw), maps)


# ---- spec ---------------------------------------------------------------------------------

def test_unknown_fields_tolerated():
    raw = base()
    raw["vendorThing"] = [1, 2]
    raw["process"]["newField"] = {"a": 1}
    spec = parse_spec(raw)
    assert spec.process.args == ("sh",)


@pytest.mark.parametrize("path,value,field", [
    (("process", "args"), "sh", "process.args must be a list"),
    (("process", "terminal"), "yes", "process.terminal must be a boolean"),
    (("process", "user", "uid"), True, "process.user.uid must be an integer"),
    (("linux", "sysctl"), [], "linux.sysctl must be an object"),
    (("hostname",), 5, "hostname must be a string"),
    (("root",), "rootfs", "root must be an object"),
])
def test_wrong_types_name_the_field(path, value, field):
    raw = base()
    d = raw
    for k in path[:-1]:
        d = d[k]
    d[path[-1]] = value
    with pytest.raises(SpecError, match=field.replace(".", r"\.").replace("[", r"\[")):
        parse_spec(raw)


def test_list_items_and_namespace_types_checked():
    raw = base()
    raw["process"]["args"] = ["sh", 3]
    with pytest.raises(SpecError, match=r"process\.args\[1\] must be a string"):
        parse_spec(raw)
    raw = base()
    raw["linux"]["namespaces"].append({"type": "bogus"})
    with pytest.raises(SpecError, match="bogus"):
        parse_spec(raw)
    raw = base()
    raw["linux"]["namespaces"].append({"type": "pid"})
    with pytest.raises(SpecError, match="twice"):
        parse_spec(raw)


def test_missing_root_and_relative_mount_destination():
    raw = base()
    del raw["root"]
    with pytest.raises(SpecError, match="root.path is required"):
        parse_spec(raw)
    raw = base()
    raw["mounts"][0]["destination"] = "proc"
    with pytest.raises(SpecError, match="absolute"):
        parse_spec(raw)


# ---- planner ------------------------------------------------------------------------------

def test_namespaces_user_first_and_join_by_path():
    raw = base()
    raw["linux"]["namespaces"] = [{"type": "mount", "path": "/proc/1/ns/mnt"},
                                  {"type": "network", "path": "/run/netns/x"},
                                  {"type": "pid"}, {"type": "user"}, {"type": "uts"}]
    p = plan_of(raw)
    assert p.userns.uid_maps == MAPS[0]
    assert p.join == (("network", "/run/netns/x"), ("mount", "/proc/1/ns/mnt"))
    assert p.unshare_flags == sc.CLONE_NEWPID | sc.CLONE_NEWUTS
    assert p.new_pid_ns and not p.new_net_ns


def test_default_maps_used_only_without_spec_maps():
    raw = base()
    raw["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 1001, "size": 1}]
    raw["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 1001, "size": 1}]
    p = plan_of(raw)
    assert p.userns.uid_maps == (IdMapping(0, 1001, 1),)
    with pytest.raises(SpecError, match="uidMappings"):
        pl.make_plan(parse_spec(base()), None)


def test_step_order_mounts_then_pivot_then_container_steps():
    raw = base(hostname="h")
    raw["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
    p = plan_of(raw)
    kinds = [type(s).__name__ for s in p.rootfs_steps]
    assert kinds[:2] == ["Propagation", "BindRootfs"]
    assert kinds[-1] == "PivotRoot"
    assert kinds.index("Device") > max(i for i, k in enumerate(kinds) if k == "MountStep")
    dests = [s.dest for s in p.rootfs_steps if isinstance(s, pl.MountStep)]
    assert dests == [m["destination"] for m in raw["mounts"]]
    ckinds = [type(s).__name__ for s in p.container_steps]
    assert ckinds[0] == "LoopbackUp"
    assert ckinds.index("Sysctl") < ckinds.index("MaskPath") < ckinds.index("ReadonlyPath") \
        < ckinds.index("RemountRootReadonly") < ckinds.index("Hostname")
    masked = [s.path for s in p.container_steps if isinstance(s, pl.MaskPath)]
    assert masked == MASKED_PATHS and "/proc/kcore" in masked


def test_first_propagation_never_shares_with_the_host():
    raw = base()
    raw["linux"]["rootfsPropagation"] = "rshared"
    p = plan_of(raw)
    assert p.rootfs_steps[0] == pl.Propagation("/", sc.MS_SLAVE | sc.MS_REC)
    assert pl.Propagation("/", sc.MS_SHARED | sc.MS_REC) in p.container_steps


def test_dev_gets_default_devices_and_links():
    p = plan_of(base())
    devs = [s.dest for s in p.rootfs_steps if isinstance(s, pl.Device)]
    assert devs == [f"/dev/{n}" for n in pl.DEFAULT_DEVICES]
    links = {s.link: s.target for s in p.rootfs_steps if isinstance(s, pl.Symlink)}
    assert links["/dev/fd"] == "/proc/self/fd" and links["/dev/ptmx"] == "pts/ptmx"


def test_sysfs_without_private_netns_becomes_readonly_rbind():
    raw = base()
    raw["linux"]["namespaces"] = [n for n in raw["linux"]["namespaces"]
                                  if n["type"] != "network"]
    sysfs = [s for s in plan_of(raw).rootfs_steps
             if isinstance(s, pl.MountStep) and s.dest == "/sys"][0]
    assert sysfs.fstype == "bind" and sysfs.source == "/sys"
    assert sysfs.flags == sc.MS_BIND | sc.MS_REC
    assert sysfs.remount_flags & sc.MS_RDONLY
    with_net = [s for s in plan_of(base()).rootfs_steps
                if isinstance(s, pl.MountStep) and s.dest == "/sys"][0]
    assert with_net.fstype == "sysfs" and with_net.flags & sc.MS_RDONLY


def test_devpts_gid_dropped_when_unmapped():
    single = ((IdMapping(0, 1001, 1),), (IdMapping(0, 1001, 1),))
    p = plan_of(base(), single)
    devpts = [s for s in p.rootfs_steps if isinstance(s, pl.MountStep) and s.fstype == "devpts"]
    assert "gid=5" not in devpts[0].data and "ptmxmode=0666" in devpts[0].data
    assert any("gid 5" in w for w in p.warnings)
    full = [s for s in plan_of(base()).rootfs_steps
            if isinstance(s, pl.MountStep) and s.fstype == "devpts"]
    assert "gid=5" in full[0].data


def test_ro_bind_is_bind_then_remount():
    raw = base()
    raw["mounts"].append({"destination": "/data", "type": "bind", "source": "/srv",
                          "options": ["rbind", "ro", "nosuid", "nodev", "rprivate"]})
    s = plan_of(raw).rootfs_steps
    step = [x for x in s if isinstance(x, pl.MountStep) and x.dest == "/data"][0]
    assert step.flags == sc.MS_BIND | sc.MS_REC
    assert step.remount_flags == (sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | sc.MS_NOSUID
                                  | sc.MS_NODEV)
    assert step.propagation == sc.MS_PRIVATE | sc.MS_REC


def test_parse_options():
    flags, prop, data = pl.parse_options(["ro", "rw", "nosuid", "noexec", "exec", "mode=755",
                                          "size=64k", "rslave", "defaults"])
    assert flags == sc.MS_NOSUID
    assert prop == sc.MS_SLAVE | sc.MS_REC
    assert data == "mode=755,size=64k"


def test_hostname_needs_uts_and_user_must_be_mapped():
    raw = base(hostname="x")
    raw["linux"]["namespaces"] = [n for n in raw["linux"]["namespaces"] if n["type"] != "uts"]
    with pytest.raises(SpecError, match="uts"):
        plan_of(raw)
    raw = base()
    raw["process"]["user"]["uid"] = 70000
    with pytest.raises(SpecError, match="uid 70000 is not mapped"):
        plan_of(raw)


def test_process_plan_carries_the_process():
    raw = base()
    raw["process"]["user"] = {"uid": 5, "gid": 6, "additionalGids": [7], "umask": 18}
    raw["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "hard": 10, "soft": 5}]
    p = plan_of(raw).proc
    assert (p.uid, p.gid, p.additional_gids, p.umask) == (5, 6, (7,), 18)
    assert p.rlimits[0].type == "RLIMIT_NOFILE" and p.no_new_privileges


# ---- records, state, cli parsing (in-root path resolution: tests/security/test_inroot.py) ---------------------------------------------

def test_record_is_frozen_and_compares_by_value():
    class P(Record):
        __slots__ = ("a", "b")
    x = P(1, b=2)
    assert x == P(1, 2) and x != P(1, 3) and tuple(x) == (1, 2)
    with pytest.raises(AttributeError):
        x.a = 5
    assert x._replace(b=9) == P(1, 9)
    with pytest.raises(TypeError, match="missing"):
        P(1)


def test_status_is_derived_and_pid_reuse_cannot_fool_it(tmp_path):
    me = os.getpid()
    real = st.proc_start_time(me)
    assert st.derive_status(str(tmp_path), {"pid": 0}) == "creating"
    assert st.derive_status(str(tmp_path), {"pid": me, "pid_start": real}) == "running"
    (tmp_path / "init.sock").touch()
    assert st.derive_status(str(tmp_path), {"pid": me, "pid_start": real}) == "created"
    # same pid, other start time: a recycled pid
    assert st.derive_status(str(tmp_path), {"pid": me, "pid_start": real + 1}) == "stopped"


def test_cli_parsing():
    """runc's command line as engines write it: global flags first, each verb's own flags
    (-f is --format for ps, --force for delete), exec's command keeps its flags."""
    g, verb, opts, pos = _parse(["--root", "/r", "--log", "/l.json", "--log-format", "json",
                                 "create", "--bundle", "b", "--pid-file=p", "id1"])
    assert g == {"--root": "/r", "--log": "/l.json", "--log-format": "json"}
    assert (verb, opts, pos) == ("create", {"bundle": "b", "pid_file": "p"}, ["id1"])
    g, verb, opts, pos = _parse(["exec", "c", "sh", "-c", "echo -n x"])
    assert (verb, pos, opts) == ("exec", ["c", "sh", "-c", "echo -n x"], {})
    g, verb, opts, pos = _parse(["exec", "--process", "/p.json", "--detach", "--pid-file",
                                 "/e.pid", "c1"])
    assert opts == {"process": "/p.json", "detach": True, "pid_file": "/e.pid"}
    assert pos == ["c1"]
    assert _parse(["delete", "-f", "c1"])[2:] == ({"force": True}, ["c1"])
    assert _parse(["ps", "-f", "json", "c1"])[2:] == ({"format": "json"}, ["c1"])
    assert _parse(["--systemd-cgroup", "--rootless=true", "kill", "--all", "c1", "9"])[:3] == \
        ({"--systemd-cgroup": True, "--rootless": "true"}, "kill", {"all": True})
    assert _parse(["spec", "--rootless"])[2] == {"rootless": True}
    with pytest.raises(UsageError, match="not defined"):
        _parse(["start", "--bogus", "c1"])
    assert _signal("KILL") == 9 and _signal("SIGTERM") == 15 and _signal("10") == 10


def test_spec_template_is_valid_and_rootless_has_user_ns():
    raw = copy.deepcopy(default_spec(rootless=True))
    spec = parse_spec(raw)
    assert any(n.type == "user" for n in spec.linux.namespaces)
    assert spec.linux.uid_mappings and spec.linux.uid_mappings[0].container_id == 0


def test_single_id_fallback_and_told_once(monkeypatch, tmp_path):
    from pydocklite.runtime import idmap
    from pydocklite.runtime.runc_verbs import _single_id_warning_once
    monkeypatch.setattr(idmap, "read_subids", lambda path, uid: [])
    u, g, warn = idmap.default_mappings(1001, 1001)
    assert u == (IdMapping(0, 1001, 1),) and g == (IdMapping(0, 1001, 1),)
    assert warn == idmap.SINGLE_ID_WARNING and "/etc/subuid" in warn
    first = _single_id_warning_once(str(tmp_path), [warn, "other"])
    second = _single_id_warning_once(str(tmp_path), [warn, "other"])
    assert first == [warn, "other"] and second == ["other"]


def test_full_map_when_range_and_helpers(monkeypatch):
    from pydocklite.runtime import idmap
    monkeypatch.setattr(idmap, "read_subids", lambda path, uid: [(200000, 65536)])
    monkeypatch.setattr(idmap, "helpers_available", lambda: True)
    u, g, warn = idmap.default_mappings(1001, 1002)
    assert warn is None
    assert u == (IdMapping(0, 1001, 1), IdMapping(1, 200000, 65536))
    assert g == (IdMapping(0, 1002, 1), IdMapping(1, 200000, 65536))


def test_check_owned_rejects_foreign_ids(monkeypatch):
    from pydocklite.runtime import idmap
    from pydocklite.runtime.errors import IdMapError
    monkeypatch.setattr(idmap, "read_subids", lambda path, uid: [(100000, 65536)])
    monkeypatch.setattr(idmap.os, "geteuid", lambda: 1001)
    idmap.check_owned((IdMapping(0, 1001, 1), IdMapping(1, 100000, 65536)), 1001,
                      "/etc/subuid", "uid")
    with pytest.raises(IdMapError, match="don't own"):
        idmap.check_owned((IdMapping(0, 1001, 1), IdMapping(1, 99999, 2)), 1001,
                          "/etc/subuid", "uid")


@pytest.mark.parametrize("doc", [
    {"a": [1, -2, 3.5, 1e100, "x\u00e9\n\"\\", True, False, None, {}, []], "b": {"c": "d"}},
    [], "just a string", 0, {"nested": [[[{"k": "v"}]]]},
])
def test_minijson_round_trips_like_json(doc):
    import json
    from pydocklite.runtime import minijson
    text = minijson.dumps(doc)
    assert text == json.dumps(doc)
    assert minijson.loads(text) == doc
    assert minijson.loads(" \n" + json.dumps(doc, indent=2) + "\n ") == doc
    assert minijson.loads(("\ufeff" + text).encode()) == doc


def test_minijson_errors_are_jsons():
    import json
    from pydocklite.runtime import minijson
    for bad in ('{"a": }', '{"a": 1} x', "", "[1,]"):
        with pytest.raises(json.JSONDecodeError):
            minijson.loads(bad)
    with pytest.raises(TypeError):
        minijson.dumps({1: 2})
    with pytest.raises(ValueError):
        minijson.dumps(float("nan"))
