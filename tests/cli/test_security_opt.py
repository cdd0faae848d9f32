"""--security-opt apparmor=/label= on run/create: passed to the runtime as the spec's AppArmor
profile and SELinux labels; refused, with nothing left behind, on a host whose LSM can't apply
them (this one enforces neither); `info` says which LSMs the host has."""
from __future__ import annotations

import json

import pytest

from pydocklite.containers.options import RunOptions, parse_security_opts
from pydocklite.containers.spec_builder import build_spec, lsm_settings
from pydocklite.errors import UsageError
from tests.cli.test_containers import NOTHING, leftovers
from tests.fixtures.cli_runner import ok


def _opts(*security_opts) -> RunOptions:
    return RunOptions(image="x", command=("true",), extra=parse_security_opts(security_opts))


def test_security_opts_become_the_specs_lsm_fields():
    spec = build_spec({}, _opts("apparmor=pdl-prof", "label=type:pdl_t", "label=level:s0:c1,c2"),
                      container_id="c" * 64, rootfs="/r", passwd="", group="", hostname="h",
                      extra_mounts=[])
    assert spec["process"]["apparmorProfile"] == "pdl-prof"
    assert spec["process"]["selinuxLabel"] == "system_u:system_r:pdl_t:s0:c1,c2"
    assert spec["linux"]["mountLabel"] == "system_u:object_r:container_file_t:s0:c1,c2"
    # the older colon spelling, and what asks for nothing
    assert lsm_settings(_opts("apparmor:p2")) == ("p2", "", "")
    for nothing in (("apparmor=unconfined",), ("label=disable",), ("label=user:u", "label=disable")):
        assert lsm_settings(_opts(*nothing)) == ("", "", "")
    assert lsm_settings(_opts("label=user:u", "label=role:r")) == \
        ("", "u:r:container_t:s0", "system_u:object_r:container_file_t:s0")
    spec = build_spec({}, _opts(), container_id="c" * 64, rootfs="/r", passwd="", group="",
                      hostname="h", extra_mounts=[])
    assert "apparmorProfile" not in spec["process"] and "mountLabel" not in spec["linux"]
    for bad in ("apparmor=", "label=colour:red", "label=type:", "selinux=on"):
        with pytest.raises(UsageError, match="invalid --security-opt"):
            parse_security_opts([bad])


@pytest.mark.parametrize("verb", ["run", "create"])
@pytest.mark.parametrize("opt,needle", [
    ("apparmor=pdl-test", "AppArmor is disabled"),
    ("label=type:pdl_t", "SELinux is disabled"),
])
def test_lsm_options_refused_here_leaving_nothing(cli, busybox, verb, opt, needle):
    r = cli(verb, "--security-opt", opt, "--name", "conf", busybox, "true")
    assert r.returncode == 125, (r.stdout, r.stderr)
    assert needle in r.stderr and "--security-opt " + opt.split("=")[0] in r.stderr, r.stderr
    assert leftovers(cli.home) == NOTHING
    assert ok(cli("ps", "-a", "-q")).stdout.strip() == ""


def test_lsm_options_that_ask_for_nothing_run(cli, busybox):
    r = ok(cli("run", "--rm", "--security-opt", "apparmor=unconfined", "--security-opt",
               "label=disable", busybox, "echo", "ran"))
    assert r.stdout.strip() == "ran"
    r = cli("run", "--rm", "--security-opt", "label=colour:red", busybox, "true")
    assert r.returncode == 125 and "invalid --security-opt" in r.stderr


def test_info_names_the_lsms(cli):
    out = ok(cli("info")).stdout
    line = next(l for l in out.splitlines() if l.strip().startswith("LSMs:"))
    assert "neither AppArmor nor SELinux" in line
    info = json.loads(ok(cli("info", "--format", "{{json .}}")).stdout)
    assert "name=seccomp,profile=builtin" in info["SecurityOptions"]
    assert "name=rootless" in info["SecurityOptions"]
    assert not any(o in info["SecurityOptions"] for o in ("name=apparmor", "name=selinux"))
