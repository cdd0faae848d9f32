"""The runtime-spec field table (runtime/spec_fields.py): every field is implemented (a test
shows its effect), applied-or-refused by the host's LSM, warned or refused; a config carrying a
field gets that treatment; AppArmor/SELinux settings are refused on this host (neither LSM is
enabled here) with nothing left behind, and planned for exec where the LSM is enabled."""
from __future__ import annotations

import ast
import json
import subprocess
from pathlib import Path

import pytest

from pydocklite.runtime import lsm, spec_fields
from pydocklite.runtime.cgroup_resources import plan as resource_plan
from pydocklite.runtime.errors import SpecError
from pydocklite.runtime.plan import make_plan
from pydocklite.runtime.spec import parse_spec
from tests import unpriv

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
RT = "tests/runtime/"

# Where each implemented field's effect is shown (file::test). Resource leaves are shown by
# test_every_resource_leaf_is_planned below plus the enforcement tests it names.
_EFFECTS = {
    "ociVersion": RT + "test_oci_conformance.py::test_oci_version_checked",
    "root": RT + "test_runtime.py::test_isolation_from_inside",
    "root.path": RT + "test_runtime.py::test_isolation_from_inside",
    "root.readonly": RT + "test_spec_fields.py::test_process_and_linux_fields_take_effect",
    "mounts[]": RT + "test_runtime.py::test_mount_target_symlink_cannot_escape",
    "mounts[].destination": RT + "test_runtime.py::test_mount_target_symlink_cannot_escape",
    "mounts[].source": RT + "test_spec_fields.py::test_process_and_linux_fields_take_effect",
    "mounts[].type": RT + "test_spec_fields.py::test_process_and_linux_fields_take_effect",
    "mounts[].options": RT + "test_spec_fields.py::test_process_and_linux_fields_take_effect",
    "process": RT + "test_runtime.py::test_exit_code_passed_through",
    "process.terminal": RT + "test_runtime.py::test_terminal_through_console_socket",
    "process.consoleSize": RT + "test_runtime.py::test_terminal_through_console_socket",
    "process.consoleSize.height": RT + "test_runtime.py::test_terminal_through_console_socket",
    "process.consoleSize.width": RT + "test_runtime.py::test_terminal_through_console_socket",
    "process.args": RT + "test_runtime.py::test_exit_code_passed_through",
    "process.rlimits[]": RT + "test_runtime.py::test_rlimit_above_hard_limit_is_clamped_with_a_message",
    "process.rlimits[].type": RT + "test_runtime.py::test_rlimit_above_hard_limit_is_clamped_with_a_message",
    "process.rlimits[].soft": RT + "test_runtime.py::test_rlimit_above_hard_limit_is_clamped_with_a_message",
    "process.rlimits[].hard": RT + "test_runtime.py::test_rlimit_above_hard_limit_is_clamped_with_a_message",
    "process.user.uid": RT + "test_runtime.py::test_capabilities_as_configured_for_non_root_user",
    "process.user.gid": RT + "test_runtime.py::test_capabilities_as_configured_for_non_root_user",
    "linux.namespaces[]": RT + "test_runtime.py::test_isolation_from_inside",
    "linux.namespaces[].type": RT + "test_runtime.py::test_isolation_from_inside",
    "linux.namespaces[].path": RT + "test_runtime.py::test_library_create_joins_a_user_namespace_made_ahead",
    "linux.uidMappings[]": RT + "test_runtime.py::test_uid_mapping_root_inside_subuid_outside",
    "linux.gidMappings[]": RT + "test_runtime.py::test_uid_mapping_root_inside_subuid_outside",
    "linux.devices[]": RT + "test_oci_conformance.py::test_devices_are_made_with_mode_and_owner",
    "linux.cgroupsPath": RT + "test_oci_conformance.py::test_cgroups_path_nested_and_absolute_removed_parents_kept",
    "linux.resources": RT + "test_cgroups.py::test_v1_limits_enforced_for_unprivileged_user",
    "linux.resources.devices[]": RT + "test_oci_conformance.py::test_device_rules_enforced_for_root_containers",
    "linux.seccomp": RT + "test_runtime.py::test_seccomp_default_profile_blocks_unshare",
    "linux.seccomp.flags": RT + "test_seccomp.py::test_filter_flags",
    "linux.seccomp.architectures": RT + "test_seccomp.py::test_default_arches",
    "linux.maskedPaths": RT + "test_runtime.py::test_isolation_from_inside",
    "linux.readonlyPaths": RT + "test_runtime.py::test_isolation_from_inside",
    "linux.personality": RT + "test_spec_fields.py::test_process_and_linux_fields_take_effect",
    "linux.personality.domain": RT + "test_spec_fields.py::test_process_and_linux_fields_take_effect",
    "linux.personality.flags": RT + "test_spec_fields.py::test_personality_flags_and_bad_domain_refused",
    "hooks": RT + "test_runtime.py::test_hooks_get_the_state_on_stdin",
}
for _k in ("linux.uidMappings[].", "linux.gidMappings[]."):
    for _f in ("containerID", "hostID", "size"):
        _EFFECTS[_k + _f] = RT + "test_runtime.py::test_uid_mapping_root_inside_subuid_outside"
for _f in ("type", "path", "major", "minor", "fileMode", "uid", "gid"):
    _EFFECTS["linux.devices[]." + _f] = \
        RT + "test_oci_conformance.py::test_devices_are_made_with_mode_and_owner"
for _f in ("bounding", "effective", "inheritable", "permitted", "ambient"):
    _EFFECTS["process.capabilities." + _f] = \
        RT + "test_runtime.py::test_capabilities_as_configured_for_non_root_user"
_EFFECTS["process.capabilities"] = _EFFECTS["process.capabilities.bounding"]
for _f in ("process.cwd", "process.env", "process.user", "process.user.umask",
           "process.user.additionalGids", "process.noNewPrivileges", "process.oomScoreAdj",
           "hostname", "domainname", "linux", "linux.rootfsPropagation", "linux.sysctl{}",
           "annotations{}"):
    _EFFECTS[_f] = RT + "test_spec_fields.py::test_process_and_linux_fields_take_effect"
for _f in ("defaultAction", "defaultErrnoRet", "syscalls[]", "syscalls[].names",
           "syscalls[].action", "syscalls[].errnoRet", "syscalls[].args[]",
           "syscalls[].args[].index", "syscalls[].args[].value", "syscalls[].args[].valueTwo",
           "syscalls[].args[].op"):
    _EFFECTS["linux.seccomp." + _f] = RT + "test_seccomp.py::test_real_filters_as_unprivileged_user"
for _h in spec_fields.HOOKS:
    for _leaf in ("[]", "[].path", "[].args", "[].env"):
        _EFFECTS[f"hooks.{_h}{_leaf}"] = RT + "test_runtime.py::test_hooks_get_the_state_on_stdin"
    _EFFECTS[f"hooks.{_h}[].timeout"] = RT + "test_spec_fields.py::test_hook_timeout_takes_effect"
for _k, _v in spec_fields.FIELDS.items():
    if _k.startswith("linux.resources.") and _v == spec_fields.IMPLEMENTED:
        _EFFECTS[_k] = RT + "test_spec_fields.py::test_every_resource_leaf_is_planned"


def _test_names(path: Path) -> set:
    tree = ast.parse(path.read_text())
    return {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}


def test_every_field_has_a_treatment_and_implemented_ones_an_effect_test():
    kinds = {spec_fields.IMPLEMENTED, spec_fields.LSM, spec_fields.WARNED, spec_fields.REFUSED}
    names = {}
    for path in spec_fields.FIELDS:
        kind, note = spec_fields.treatment(path)
        assert kind in kinds, path
        if kind in (spec_fields.WARNED, spec_fields.REFUSED):
            assert note, f"{path}: a {kind} field needs the reason in the table"
        if kind != spec_fields.IMPLEMENTED:
            continue
        assert path in _EFFECTS, f"{path} is marked implemented but no test shows its effect"
        where = _EFFECTS[path]
        fname, test = where.split("::")
        f = TESTS.parent / fname
        if f not in names:
            names[f] = _test_names(f)
        assert test in names[f], f"{path}: {where} does not exist"
    stale = set(_EFFECTS) - {p for p in spec_fields.FIELDS
                             if spec_fields.treatment(p)[0] == spec_fields.IMPLEMENTED}
    assert not stale, f"effect tests listed for fields not implemented: {sorted(stale)}"


def _base() -> dict:
    return {"ociVersion": "1.0.2", "root": {"path": "rootfs"},
            "process": {"args": ["/bin/true"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "linux": {"namespaces": [{"type": "mount"}]}}


def _set(cfg: dict, path: str, value) -> dict:
    """Put value at a table path, making the lists and objects on the way."""
    parts = path.replace("{}", "").split(".")
    node = cfg
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        is_list = part.endswith("[]")
        key = part[:-2] if is_list else part
        if is_list:
            lst = node.setdefault(key, [])
            if last:
                lst.append(value)
                return cfg
            if not lst:
                lst.append({})
            node = lst[0]
        elif last:
            node[key] = value
        else:
            node = node.setdefault(key, {})
    return cfg


def _sample(path: str):
    return {"ociVersion": "1.0.2"}.get(path, {"x": 1} if path.endswith("{}") else 1)


def _refused_name(path: str) -> str:
    """The name a refusal of path gives: its outermost refused ancestor's (or its own)."""
    parts = path.split(".")
    for i in range(1, len(parts) + 1):
        p = ".".join(parts[:i])
        if p in spec_fields.FIELDS and spec_fields.treatment(p)[0] == spec_fields.REFUSED:
            return p.replace("{}", "")
    return path.replace("{}", "")


_REFUSED = sorted(p for p in spec_fields.FIELDS
                  if spec_fields.treatment(p)[0] == spec_fields.REFUSED)
_WARNED = sorted(p for p in spec_fields.FIELDS
                 if spec_fields.treatment(p)[0] == spec_fields.WARNED)


@pytest.mark.parametrize("path", _REFUSED)
def test_refused_fields_raise_naming_the_field(path):
    cfg = _set(_base(), path, _sample(path))
    with pytest.raises(SpecError) as e:
        spec_fields.check(cfg)
    assert _refused_name(path) in str(e.value)
    # unset (empty) is not a request: accepted (unless a refused parent is then set)
    if _refused_name(path) == path.replace("{}", ""):
        spec_fields.check(_set(_base(), path, [] if path.endswith("[]") else {}))


@pytest.mark.parametrize("path", _WARNED)
def test_warned_fields_warn_naming_the_field(path):
    warnings = spec_fields.check(_set(_base(), path, _sample(path)))
    assert any(path.replace("{}", "") in w and "ignored" in w for w in warnings), warnings


def test_unknown_properties_ignored_with_a_warning_and_implemented_ones_silent():
    cfg = _base()
    cfg["linux"]["resources"] = {"memory": {"limit": 1 << 20}, "pids": {"limit": 10}}
    cfg["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
    cfg["annotations"] = {"anything.goes": "yes"}
    assert spec_fields.check(cfg) == []
    cfg["process"]["futureThing"] = True
    cfg["novel"] = {"a": 1}
    (w,) = spec_fields.check(cfg)
    assert "process.futureThing" in w and "novel" in w
    # a process.json for `exec --process` is checked with the process. prefix
    with pytest.raises(SpecError, match="process.ioPriority"):
        spec_fields.check({"args": ["sh"], "ioPriority": {"class": "IOPRIO_CLASS_RT"}},
                          "process")


_RESOURCE_ITEMS = {
    "devices": {"allow": False, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
    "blockIO.weightDevice": {"major": 8, "minor": 0, "weight": 500},
    "hugepageLimits": {"pageSize": "2MB", "limit": 1 << 21},
}
_GROUP_SAMPLES = {"memory": {"limit": 1 << 20}, "cpu": {"shares": 512},
                  "blockIO": {"weight": 500}, "pids": {"limit": 10}}
_SCALARS = {"disableOOMKiller": True, "cpus": "0", "mems": "0"}


def _resources_for(leaf: str) -> tuple:
    """(linux.resources object setting that leaf, prefix of the limit name it plans)."""
    if leaf in _GROUP_SAMPLES:
        return {leaf: _GROUP_SAMPLES[leaf]}, leaf + "."
    if leaf == "unified{}":
        return {"unified": {"memory.high": "1000000"}}, "unified."
    if "[]" in leaf:
        lst = leaf.split("[]")[0]
        item = _RESOURCE_ITEMS.get(lst, {"major": 8, "minor": 0, "rate": 1000})
        return _set({}, lst + "[]", item), lst
    group, name = leaf.split(".", 1)
    return {group: {name: _SCALARS.get(name, 2)}}, leaf


def test_every_resource_leaf_is_planned():
    """Each implemented linux.resources leaf turns into a cgroup file write (or, where one
    cgroup version lacks it, a NotApplied reason naming it) on v1 and v2: never nothing.
    The writes are carried out and enforced in test_cgroups.py's enforcement tests."""
    for path in spec_fields.FIELDS:
        if not path.startswith("linux.resources.") or \
                spec_fields.treatment(path)[0] != spec_fields.IMPLEMENTED:
            continue
        res, want = _resources_for(path[len("linux.resources."):])
        for version in ("v1", "v2"):
            p = resource_plan(res, version)
            planned = [w.limit for w in p.writes] + [n.limit for n in p.not_applied]
            # v2 writes the period together with the quota (cpu.max)
            wants = (want, "cpu.quota") if want == "cpu.period" else (want,)
            assert any(x.startswith(wants) for x in planned), (path, version, res, planned)


def test_lsm_plan_where_the_host_enforces_it():
    raw = _base()
    raw["process"]["apparmorProfile"] = "pdl-test"
    raw["process"]["selinuxLabel"] = "system_u:system_r:container_t:s0:c1,c2"
    raw["linux"]["mountLabel"] = "system_u:object_r:container_file_t:s0:c1,c2"
    raw["mounts"] = [{"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                      "options": ["nosuid", "mode=1777"]},
                     {"destination": "/proc", "type": "proc", "source": "proc"},
                     {"destination": "/data", "type": "bind", "source": "/srv",
                      "options": ["rbind"]}]
    spec = parse_spec(raw)
    both = lsm.HostLsm(True, True, frozenset({"pdl-test"}), ("apparmor", "selinux"))
    p = make_plan(spec, None, both)
    assert p.proc.apparmor_profile == "pdl-test"
    assert p.proc.selinux_label.endswith("c1,c2")
    data = {s.dest: s.data for s in p.rootfs_steps if hasattr(s, "dest") and
            hasattr(s, "fstype")}
    assert data["/tmp"] == 'mode=1777,context="system_u:object_r:container_file_t:s0:c1,c2"'
    assert "context" not in data["/proc"] and "context" not in data["/data"]
    # a profile that is not loaded is refused, even where AppArmor is on
    missing = lsm.HostLsm(True, True, frozenset({"other"}), ())
    with pytest.raises(SpecError, match="no such AppArmor profile"):
        make_plan(spec, None, missing)
    # profiles unreadable (None): left to the kernel's answer at exec
    assert make_plan(spec, None, lsm.HostLsm(True, True, None, ())).proc.apparmor_profile


@pytest.mark.parametrize("field,value,needle", [
    ("apparmorProfile", "pdl-test", "AppArmor is disabled"),
    ("selinuxLabel", "system_u:system_r:container_t:s0", "SELinux is disabled"),
    ("mountLabel", "system_u:object_r:container_file_t:s0", "SELinux is disabled"),
])
def test_lsm_refused_in_plan_without_the_lsm(field, value, needle):
    raw = _base()
    (raw["linux"] if field == "mountLabel" else raw["process"])[field] = value
    with pytest.raises(SpecError, match=needle):
        make_plan(parse_spec(raw), None, lsm.NONE)
    # empty = not asked for
    (raw["linux"] if field == "mountLabel" else raw["process"])[field] = ""
    make_plan(parse_spec(raw), None, lsm.NONE)


def test_this_host_has_neither_lsm():
    host = lsm.detect()
    if host.apparmor or host.selinux:
        pytest.fail(f"this test documents the CI host, which enforces no LSM; got {host}")
    assert "none" in lsm.describe(host)


def test_personality_flags_and_bad_domain_refused():
    raw = _base()
    raw["linux"]["personality"] = {"domain": "LINUX", "flags": ["SHORT_INODE"]}
    with pytest.raises(SpecError, match="personality.flags"):
        parse_spec(raw)
    raw["linux"]["personality"] = {"domain": "PER_BSD"}
    with pytest.raises(SpecError, match="personality.domain"):
        parse_spec(raw)


def test_features_follow_the_table():
    f = spec_fields.features()
    assert f["ociVersionMax"] == spec_fields.OCI_VERSION_MAX
    assert f["hooks"] == list(spec_fields.HOOKS)
    assert "idmap" not in f["mountOptions"] and "rbind" in f["mountOptions"]
    assert f["linux"]["apparmor"]["enabled"] and f["linux"]["selinux"]["enabled"]
    assert not f["linux"]["intelRdt"]["enabled"]
    assert not f["linux"]["mountExtensions"]["idmap"]["enabled"]
    assert "SCMP_ACT_NOTIFY" not in f["linux"]["seccomp"]["actions"]
    assert "SCMP_ACT_ERRNO" in f["linux"]["seccomp"]["actions"]
    assert "time" in f["linux"]["namespaces"]


# ---- through the runtime's command line, as the unprivileged user ----

def _leftovers(rt, cid) -> list:
    out = []
    if (rt.root / cid).exists():
        out.append(str(rt.root / cid))
    for pid in unpriv.user_processes():
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if cid.encode() in cmd:
            out.append(f"pid {pid}")
    with open("/proc/self/mountinfo") as f:
        out += [line for line in f if cid in line]
    return out


@pytest.mark.parametrize("where,field,value,needle", [
    ("process", "apparmorProfile", "pdl-test", "AppArmor is disabled"),
    ("process", "selinuxLabel", "system_u:system_r:container_t:s0:c1,c2", "SELinux is disabled"),
    ("linux", "mountLabel", "system_u:object_r:container_file_t:s0", "SELinux is disabled"),
])
def test_lsm_settings_refused_by_create_leaving_nothing(rt, make_bundle, cid, where, field,
                                                         value, needle):
    def mutate(c):
        c[where][field] = value
        c["linux"]["resources"] = {"pids": {"limit": 100}}
    b = make_bundle(["true"], mutate)
    r = rt("create", "--bundle", b, cid)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert f"{where}.{field}" in r.stderr and needle in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1, "one line"
    assert _leftovers(rt, cid) == []
    assert rt("state", cid).returncode != 0


@pytest.mark.parametrize("path", _REFUSED)
def test_refused_fields_refused_by_create(rt, make_bundle, cid, path):
    b = make_bundle(["true"], lambda c: _set(c, path, _sample(path)), copy_rootfs=False)
    (b / "rootfs").mkdir()
    r = rt("create", "--bundle", b, cid)
    assert r.returncode == 1 and _refused_name(path) in r.stderr, r.stderr
    assert _leftovers(rt, cid) == []


def test_warned_fields_run_with_a_warning(rt, make_bundle, cid):
    def mutate(c):
        for path in ("linux.resources.memory.useHierarchy", "process.commandLine",
                     "windows{}"):
            _set(c, path, _sample(path))
        c["mounts"].append({"destination": "/run", "type": "tmpfs", "source": "tmpfs",
                            "options": ["tmpcopyup"]})
    b = make_bundle(["true"], mutate)
    r = rt("run", "--bundle", b, cid)
    assert r.returncode == 0, r.stderr
    for needle in ("memory.useHierarchy is ignored", "process.commandLine is ignored",
                   "windows is ignored", "tmpcopyup"):
        assert needle in r.stderr, r.stderr


def test_process_and_linux_fields_take_effect(rt, make_bundle, cid, rt_home):
    script = (
        "echo cwd=$(pwd); echo env=$PDL_ONE; echo umask=$(umask); echo groups=$(id -G);"
        "echo nnp=$(grep NoNewPrivs /proc/self/status | cut -f2);"
        "echo oom=$(cat /proc/self/oom_score_adj); echo host=$(hostname);"
        "echo domain=$(cat /proc/sys/kernel/domainname);"
        "echo fwd=$(cat /proc/sys/net/ipv4/ip_forward); echo arch=$(uname -m);"
        "if touch /pdl-probe 2>/dev/null; then echo root=rw; else echo root=ro; fi;"
        "echo data=$(cat /data/hello); if touch /data/x 2>/dev/null; then echo data=rw;"
        " else echo data=ro; fi; grep ' /data ' /proc/self/mountinfo | grep -q nosuid &&"
        " echo datanosuid=yes; echo prop=$(awk '$5 == \"/\"' /proc/self/mountinfo |"
        " grep -o 'shared:[0-9]*')")
    src = rt_home / "bundles" / f"src-{cid}"
    src.mkdir(parents=True)
    (src / "hello").write_text("hi\n")
    subprocess.run(["chown", "-R", f"{unpriv.TEST_USER}:", str(src)], check=True)

    def mutate(c):
        p = c["process"]
        p["cwd"] = "/tmp"
        p["env"] = p["env"] + ["PDL_ONE=one"]
        p["user"] = {"uid": 0, "gid": 0, "umask": 0o027, "additionalGids": [5]}
        p["noNewPrivileges"] = True
        p["oomScoreAdj"] = 500
        c["hostname"] = "pdl-fields"
        c["domainname"] = "pdl.example"
        c["root"]["readonly"] = True
        c["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
        c["linux"]["personality"] = {"domain": "LINUX32"}
        c["linux"]["rootfsPropagation"] = "rshared"
        c["annotations"] = {"org.example.pdl": "fields"}
        c["mounts"].append({"destination": "/data", "type": "bind", "source": str(src),
                            "options": ["rbind", "ro", "nosuid"]})
        c["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                            "options": ["mode=1777"]})
        if not any(n["type"] == "network" for n in c["linux"]["namespaces"]):
            c["linux"]["namespaces"].append({"type": "network"})
    b = make_bundle(["sh", "-c", script], mutate)
    r = rt("create", "--bundle", b, cid)
    assert r.returncode == 0, r.stderr
    st = json.loads(rt("state", cid).stdout)
    assert st["annotations"] == {"org.example.pdl": "fields"}
    rt("delete", "--force", cid)
    r = rt("run", "--bundle", b, cid + "r")
    assert r.returncode == 0, r.stderr
    kv = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
    assert kv["cwd"] == "/tmp" and kv["env"] == "one" and kv["umask"] == "0027"
    assert kv["groups"].split() == ["0", "5"]
    assert kv["nnp"] == "1" and kv["oom"] == "500"
    assert kv["host"] == "pdl-fields" and kv["domain"] == "pdl.example"
    assert kv["fwd"] == "1" and kv["arch"] == "i686"
    assert kv["root"] == "ro" and kv["data"] in ("hi", "ro") and "datanosuid" in kv
    assert "hi" in r.stdout and "data=ro" in r.stdout
    assert kv["prop"].startswith("shared:"), r.stdout


def test_hook_timeout_takes_effect(rt, make_bundle, cid, rt_home):
    hook = rt_home / "bundles" / f"slow-{cid}.sh"
    hook.parent.mkdir(parents=True, exist_ok=True)
    hook.write_text("#!/bin/sh\nsleep 30\n")
    hook.chmod(0o755)

    def mutate(c):
        c["hooks"] = {"createRuntime": [{"path": str(hook), "timeout": 1}]}
    b = make_bundle(["true"], mutate)
    r = rt("create", "--bundle", b, cid, timeout=20)
    assert r.returncode == 1 and "timed out after 1s" in r.stderr, r.stderr
    assert _leftovers(rt, cid) == []
