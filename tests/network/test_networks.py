"""Networks end to end, with the built tool as the unprivileged test user: the `network`
verbs, and (test_attached.py) containers on networks in the real namespace host."""
from __future__ import annotations

import json

from tests.fixtures.cli_runner import ok


def test_network_verbs(cli):
    r = ok(cli("network", "ls"))
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    assert [ln.split()[1:] for ln in lines[1:]] == [["bridge", "bridge", "local"],
                                                   ["host", "host", "local"],
                                                   ["none", "null", "local"]]
    net_id = ok(cli("network", "create", "--label", "ci=1", "front")).stdout.strip()
    assert len(net_id) == 64
    ok(cli("network", "create", "--subnet", "10.77.0.0/24", "--gateway", "10.77.0.254",
           "--ip-range", "10.77.0.128/25", "--internal", "back"))
    [front] = json.loads(ok(cli("network", "inspect", net_id[:6])).stdout)
    assert front["Name"] == "front" and front["Id"] == net_id
    assert front["IPAM"]["Config"] == [{"Subnet": "172.18.0.0/16", "Gateway": "172.18.0.1"}]
    assert front["Labels"] == {"ci": "1"} and front["Internal"] is False
    assert front["Containers"] == {} and front["Driver"] == "bridge"
    back = json.loads(ok(cli("network", "inspect", "back")).stdout)[0]
    assert back["IPAM"]["Config"] == [{"Subnet": "10.77.0.0/24", "Gateway": "10.77.0.254",
                                       "IPRange": "10.77.0.128/25"}]
    assert back["Internal"] is True
    assert ok(cli("network", "inspect", "-f", "{{.Name}} {{.Internal}}", "back")).stdout == \
        "back true\n"
    assert ok(cli("network", "ls", "-q", "--filter", "label=ci=1")).stdout == net_id[:12] + "\n"
    assert ok(cli("network", "ls", "--format", "{{.Name}}", "--filter", "type=custom")
              ).stdout == "back\nfront\n"
    ok(cli("network", "rm", "front"))
    assert ok(cli("network", "prune", "-f")).stdout == "Deleted Networks:\nback\n"
    assert ok(cli("network", "ls", "-q")).stdout.count("\n") == 3


def test_network_errors_are_dockers(cli):
    ok(cli("network", "create", "--subnet", "10.78.0.0/16", "one"))
    cases = [
        (("network", "create", "one"), "network with name one already exists"),
        (("network", "create", "--subnet", "10.78.1.0/24", "two"), "Pool overlaps"),
        (("network", "create", "--subnet", "10.79.0.1/16", "two"), "it should be 10.79.0.0/16"),
        (("network", "create", "--subnet", "10.79.0.0/16", "--gateway", "10.80.0.1", "two"),
         "no matching subnet for gateway 10.80.0.1"),
        (("network", "create", "--driver", "overlay", "two"), "not supported"),
        (("network", "create", "bad/name"), "invalid network name"),
        (("network", "rm", "bridge"), "bridge is a pre-defined network and cannot be removed"),
        (("network", "rm", "nope"), "network nope not found"),
        (("network", "inspect", "nope"), "network nope not found"),
    ]
    for argv, msg in cases:
        r = cli(*argv)
        assert r.returncode != 0 and msg in r.stderr, (argv, r.stderr)
    assert ok(cli("network", "ls", "-q", "--filter", "type=custom")).stdout.count("\n") == 1
    assert cli("network", "rm", "-f", "nope").returncode == 0
