"""Class 6 (issue 10): a container sharing a volume races symlinks against another
container's mounts (runc's CVE-2021-30465 pattern), through the zipapp as the test user.

The attacker swaps, as fast as renameat2(RENAME_EXCHANGE) goes, a directory `sub` and a
symlink `alt -> /` in a volume. The victim is started again and again with that volume and a
host directory bound read-only on a path inside it. Resolving the target as a string and
mounting, then remounting read-only by path, lets the swap put the bind on one name and the
read-only remount on another (the host's "/" in the victim's mount namespace): the victim
then writes into the host directory the user granted read-only. Resolved and mounted by fds
with the flags set before the mount is attached, neither can happen.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests import unpriv
from tests.fixtures.cli_runner import ok

SWAPPER_C = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE 2
#endif
/* swap DIR and LINK (made here: a directory, a symlink to TARGET) forever */
int main(int argc, char **argv) {
    if (argc != 4) return 2;
    mkdir(argv[1], 0755);
    if (symlink(argv[3], argv[2]) != 0) { perror("symlink"); return 1; }
    puts("swapping"); fflush(stdout);
    for (;;)
        syscall(SYS_renameat2, AT_FDCWD, argv[1], AT_FDCWD, argv[2], RENAME_EXCHANGE);
}
"""

VICTIM_RUNS = 30


def swapper_binary() -> Path:
    """A static swapper, built once per source text (cached beside the session's homes)."""
    root = Path(os.environ.get("PDL_TEST_ROOT", "/tmp/pdlt"))
    key = hashlib.sha256(SWAPPER_C.encode()).hexdigest()[:12]
    out = root / f"swapper-{key}"
    if not out.exists():
        src = root / f"swapper-{key}.c"
        src.write_text(SWAPPER_C)
        tmp = root / f"swapper-{key}.tmp{os.getpid()}"
        r = subprocess.run(["gcc", "-static", "-Os", "-o", str(tmp), str(src)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            pytest.fail(f"gcc -static failed (gcc and libc6-dev are CI packages): {r.stderr}")
        tmp.chmod(0o755)
        os.replace(tmp, out)
    return out


@pytest.mark.slow
def test_racing_symlinks_in_a_shared_volume_cannot_redirect_mounts(cli, busybox):
    swap = swapper_binary()
    granted = cli.home / "granted-ro"
    granted.mkdir()
    (granted / "data").write_text("read me, never write me\n")
    os.chown(granted, *unpriv.test_ids())
    ok(cli("volume", "create", "shared"))
    ok(cli("run", "-d", "--name", "attacker", "--network", "none", "-v", "shared:/v",
           "-v", f"{swap}:/swap:ro", "--entrypoint", "/swap", busybox,
           "/v/sub", "/v/alt", "/"))
    deadline = time.monotonic() + 30
    while "swapping" not in cli("logs", "attacker").stdout:
        assert time.monotonic() < deadline, cli("logs", "attacker")
        time.sleep(0.1)
    results = []
    try:
        for _ in range(VICTIM_RUNS):
            r = cli("run", "--rm", "--network", "none", "-v", "shared:/v",
                    "-v", f"{granted}:/v/sub:ro", busybox, "sh", "-c",
                    # the grant is under whichever name the directory has at the moment
                    "for i in 1 2 3 4 5 6 7 8; do touch /v/sub/pwned /v/alt/pwned; "
                    "cat /v/sub/data /v/alt/data; done 2>/dev/null | head -1; true",
                    timeout=60)
            results.append(r)
    finally:
        cli("rm", "-f", "attacker")
    assert sorted(os.listdir(granted)) == ["data"], \
        "the victim wrote into the directory granted read-only"
    # every start either mounted the grant where it belongs (read-only), or was refused
    # because the target resolved to the container's root; nothing else
    started = [r for r in results if r.returncode == 0]
    for r in results:
        assert r.returncode == 0 or "resolves to the root of the container" in r.stderr, \
            (r.returncode, r.stdout, r.stderr)
    assert started, "no victim start succeeded"
    assert all("read me, never write me" in r.stdout for r in started)
