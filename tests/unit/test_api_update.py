"""POST /containers/{id}/update's body (what the docker CLI and the SDK send) to the engine's
UpdateOptions: 0 or absent leaves a limit alone, Docker's refusals are 400s."""
from __future__ import annotations

import pytest

from pydocklite.api.containers import update_options
from pydocklite.api.http import HttpError


def test_the_docker_clis_body():
    # `docker update --memory 64m --memory-swap 128m --cpus 1.5 --pids-limit 50
    #  --restart on-failure:2`: the CLI sends every Resources field, most of them 0
    body = {"Memory": 64 << 20, "MemorySwap": 128 << 20, "NanoCpus": 1_500_000_000,
            "CpuShares": 0, "CpuQuota": 0, "CpuPeriod": 0, "BlkioWeight": 0,
            "PidsLimit": 50, "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 2}}
    want, warnings = update_options(body)
    assert (want.memory, want.memory_swap, want.cpus, want.pids_limit, want.restart) == \
        (64 << 20, 128 << 20, 1.5, 50, "on-failure:2")
    assert warnings == []


def test_zeros_change_nothing_and_quota_means_cpus():
    want, _ = update_options({"Memory": 0, "MemorySwap": 0, "NanoCpus": 0,
                              "RestartPolicy": {"Name": "", "MaximumRetryCount": 0}})
    assert want.empty()
    want, _ = update_options({"CpuQuota": 50000, "CpuPeriod": 100000})
    assert want.cpus == 0.5
    want, _ = update_options({"MemorySwap": -1, "PidsLimit": -1})
    assert want.memory_swap == -1 and want.pids_limit == -1


def test_what_this_engine_cant_apply_is_a_warning():
    want, warnings = update_options({"CpuShares": 512, "BlkioWeight": 0})
    assert want.empty() and warnings == ["CpuShares is not supported by pydocklite: ignored"]


@pytest.mark.parametrize("body, message", [
    ({"Memory": "64m"}, "invalid Memory"),
    ({"Memory": True}, "invalid Memory"),
    ({"Memory": -1}, "can't be negative"),
    ({"Memory": 1 << 20}, "Minimum memory limit allowed is 6MB"),
    ({"MemorySwap": -2}, "can't be negative"),
    ({"NanoCpus": -5}, "can't be negative"),
    ({"NanoCpus": 10**9, "CpuQuota": 50000}, "cannot both be set"),
    ({"RestartPolicy": "always"}, "give an object"),
    ({"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": "x"}}, "whole number"),
    ({"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": -3}}, "whole number"),
])
def test_bad_bodies_are_400s(body, message):
    with pytest.raises(HttpError) as e:
        update_options(body)
    assert e.value.status == 400 and message in str(e.value)
