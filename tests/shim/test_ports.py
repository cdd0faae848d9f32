"""Port publishing: Docker's -p syntax, and the rootless forwarder run as the test user
against servers inside a real `unshare -Urn` network namespace (tests/shim/ports_scenario.py)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pydocklite.shim.ports import (PortError, PortMapping, inspect_ports, parse_publish,
                                   publish_all, unprivileged_port_start)
from tests.unpriv import python_as_user

SCENARIO = Path(__file__).with_name("ports_scenario.py")


@pytest.mark.parametrize("spec, expected", [
    ("80", [PortMapping(80)]),
    ("8080:80", [PortMapping(80, "tcp", "", 8080)]),
    ("127.0.0.1:8080:80", [PortMapping(80, "tcp", "127.0.0.1", 8080)]),
    ("127.0.0.1::80", [PortMapping(80, "tcp", "127.0.0.1", 0)]),
    ("8080:80/udp", [PortMapping(80, "udp", "", 8080)]),
    ("53/UDP", [PortMapping(53, "udp")]),
    ("[::1]:8080:80", [PortMapping(80, "tcp", "::1", 8080)]),
    ("8000-8001:80-81", [PortMapping(80, "tcp", "", 8000), PortMapping(81, "tcp", "", 8001)]),
    ("8000-8010:80", [PortMapping(80, "tcp", "", 8000, 8010)]),
    ("80-82", [PortMapping(80), PortMapping(81), PortMapping(82)]),
])
def test_parse_publish(spec, expected):
    assert parse_publish(spec) == expected


@pytest.mark.parametrize("spec, msg", [
    ("80/sctpx", "invalid protocol"),
    ("abc", "invalid container port"),
    ("0:80", "ports are 1-65535"),
    ("70000", "ports are 1-65535"),
    ("8000-8002:80-81", "ranges"),
    ("300.1.1.1:80:80", "invalid IP address"),
    ("::1:80:80", "brackets"),
])
def test_parse_publish_errors(spec, msg):
    with pytest.raises(PortError, match=msg):
        parse_publish(spec)


def test_publish_all_and_inspect_shape():
    ms = publish_all(["80/tcp", "53/udp", "8080"])
    assert ms == [PortMapping(80), PortMapping(53, "udp"), PortMapping(8080)]
    bound = [PortMapping(80, "tcp", "127.0.0.1", 32768), PortMapping(80, "tcp", "::1", 32769)]
    assert inspect_ports(bound) == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "32768"},
                                               {"HostIp": "::1", "HostPort": "32769"}]}
    assert bound[0].docker_port_line() == "80/tcp -> 127.0.0.1:32768"
    assert bound[1].docker_port_line() == "80/tcp -> [::1]:32769"


def _need_unshare():
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("unshare(1) or ip(8) missing on this host")


@pytest.mark.parametrize("mode", ["pid", "fork", "pid-nosplice"])
def test_forwarding_into_a_user_netns_as_unprivileged_user(mode, user_home):
    _need_unshare()
    args = [str(SCENARIO)] + mode.split("-")
    r = python_as_user(args, user_home, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("OK "), (r.stdout, r.stderr)
    if unprivileged_port_start() > 80:  # the scenario checked the < 1024 error
        assert "net.ipv4.ip_unprivileged_port_start" in r.stdout
