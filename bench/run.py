#!/usr/bin/env python3
"""bench/run: container lifecycle latencies, pydocklite beside rootless Podman in one run,
both as the unprivileged test user, images from a local registry.

    sudo /path/to/venv/bin/python bench/run.py [--reps 20] [--no-readme]

Measures (medians): `run --rm busybox true`; `run -d` nginx until the first HTTP 200 through
the published port; `ps`; `logs`; `stop` of nginx; HTTP latency and throughput through the
port forward (wrk, 4 connections, 5 s); memory (PSS) of the per-container helpers of an idle
container (pydocklite: shim + FUSE server + port helper; podman: conmon + rootlessport/slirp4netns
+ fuse-overlayfs when used).
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.pull import prepare_host, write_section  # noqa: E402
from tests.fixtures.podman import configure_podman  # noqa: E402
from tests import unpriv  # noqa: E402
from tests.fixtures import images  # noqa: E402
from tests.fixtures.registry_server import start_registry  # noqa: E402


class Tool:
    def __init__(self, name: str, argv0: list, home: Path, env: dict):
        self.name, self.argv0, self.home, self.env = name, argv0, home, env

    def run(self, *args, check=True, timeout=300):
        r = unpriv.run_as_user([*self.argv0, *args], self.home, env=self.env, timeout=timeout)
        if check and r.returncode != 0:
            raise SystemExit(f"{self.name} {' '.join(args)} failed: {r.stderr[-1500:]}")
        return r

    def timed(self, *args) -> float:
        t = time.monotonic()
        self.run(*args)
        return time.monotonic() - t


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.002)
    raise SystemExit(f"no HTTP 200 on port {port}")


def helper_pss_kb(home: Path, podman: bool) -> int:
    """Memory of the test user's helper processes (not the container's own), as PSS: pages
    shared between processes (a shim and the servers it forked share most of theirs) are
    split between them instead of counted once per process as RSS would."""
    total = 0
    for pid, cmd in unpriv.user_processes():
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        mine = (any(k in cmd for k in ("conmon", "rootlessport", "slirp4netns",
                                       "fuse-overlayfs", "pasta")) if podman
                else ("__shim" in cmd or cmd.startswith(("pasta ", "slirp4netns "))))
        if mine:
            m = re.search(r"^Pss:\s+(\d+)", rollup, re.M)
            total += int(m.group(1)) if m else 0
    return total


def wrk(port: int):
    if not shutil.which("wrk"):
        return "n/a", "n/a"
    r = subprocess.run(["wrk", "-t2", "-c4", "-d5s", "--latency",
                        f"http://127.0.0.1:{port}/"], capture_output=True, text=True)
    lat = re.search(r"50%\s+(\S+)", r.stdout)
    tput = re.search(r"Transfer/sec:\s+(\S+)", r.stdout)
    rps = re.search(r"Requests/sec:\s+(\S+)", r.stdout)
    return (lat.group(1) if lat else "?"), \
        (f"{rps.group(1)} req/s, {tput.group(1)}/s" if rps and tput else "?")


def bulk_mbps(tool: "Tool", name: str, port: int) -> str:
    """Download speed of a 256 MiB file through the published port (curl, best of 3)."""
    tool.run("exec", name, "sh", "-c",
             "head -c 268435456 /dev/zero > /var/www/html/big.bin")
    best = 0.0
    for _ in range(3):
        r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{speed_download}",
                            f"http://127.0.0.1:{port}/big.bin"], capture_output=True, text=True)
        try:
            best = max(best, float(r.stdout.strip()))
        except ValueError:
            pass
    return f"{best / 1e6:.0f} MB/s"


def kill_leftovers(work: Path) -> None:
    """The test user's processes our peers left (Podman's conmons waiting --exit-delay, its
    pause process), found by the bench's dirs, killed by pid."""
    pids = [pid for pid, cmd in unpriv.user_processes() if str(work) in cmd]
    conf = work / "podman" / ".config" / "containers" / "containers.conf"
    try:
        tmp = [line.split('"')[1] for line in conf.read_text().splitlines()
               if line.startswith("tmp_dir")][0]
        pids.append(int(Path(tmp, "pause.pid").read_text().strip()))
        shutil.rmtree(tmp, ignore_errors=True)
    except (OSError, IndexError, ValueError):
        pass
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def unmount_below(path: Path) -> None:
    """What a peer left mounted under the bench's dirs (dockerd's netns files)."""
    prefix = str(path) + "/"
    try:
        points = [line.split()[4] for line in open("/proc/self/mountinfo")]
    except OSError:
        return
    for point in sorted((p for p in points if p.startswith(prefix)), reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


def release_work(work: Path) -> None:
    """A bench's work dir gone: its peers' leftover processes killed, mounts undone."""
    kill_leftovers(work)
    unmount_below(work)
    subprocess.run(["rm", "-rf", str(work)], check=False)


def bench_tools(zipapp: str, prefix: str):
    """(work dir, [Tool]): the host prepared, a copy of the zipapp and homes for pydocklite
    and (when installed) a rootless Podman confined to its own, both as the test user."""
    prepare_host()
    work = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
    os.chmod(work, 0o755)
    app = work / "pydocklite.pyz"
    shutil.copy2(zipapp, app)
    os.chmod(app, 0o755)
    pdl_home = unpriv.make_user_dir(work / "pdl")
    pod_home = unpriv.make_user_dir(work / "podman")
    configure_podman(pod_home)
    # as a user runs it: no repo on the path, bytecode cached in the extraction
    pdl_env = {"SHIV_ROOT": str(unpriv.make_user_dir(work / "shiv")), "PYTHONPATH": "",
               "PYTHONDONTWRITEBYTECODE": ""}
    tools = [Tool("pydocklite", [str(app)], pdl_home, pdl_env)]
    if shutil.which("podman"):
        tools.append(Tool("podman", ["podman"], pod_home, {}))
    return work, tools


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--no-readme", action="store_true")
    ap.add_argument("--zipapp", default=str(REPO / "pydocklite.pyz"))
    args = ap.parse_args()
    work, tools = bench_tools(args.zipapp, "pdl-bench-run-")
    cache = images.cache_dir()
    results = {t.name: {} for t in tools}
    with start_registry(work / "registry") as srv:
        images.push(images.build_busybox_image(cache), srv.url, "bench/busybox")
        images.push(images.build_nginx_image(cache), srv.url, "bench/nginx")
        busybox = f"{srv.host}/bench/busybox:latest"
        nginx = f"{srv.host}/bench/nginx:latest"
        for t in tools:
            tls = ["--tls-verify=false"] if t.name == "podman" else []
            t.run("pull", "-q", *tls, busybox)
            t.run("pull", "-q", *tls, nginx)
            t.run("run", "--rm", busybox, "true")          # warm caches
            res = results[t.name]
            res["run --rm busybox true"] = statistics.median(
                t.timed("run", "--rm", busybox, "true") for _ in range(args.reps))
            ready, stops, ps_t, logs_t = [], [], [], []
            for i in range(max(5, args.reps // 2)):
                port = free_port()
                t0 = time.monotonic()
                t.run("run", "-d", "--name", f"web{i}", "-p", f"{port}:80", nginx)
                wait_http(port)
                ready.append(time.monotonic() - t0)
                ps_t.append(t.timed("ps"))
                logs_t.append(t.timed("logs", f"web{i}"))
                if i == 0:
                    time.sleep(1)
                    res["helper PSS per idle container"] = helper_pss_kb(t.home,
                                                                         t.name == "podman")
                    res["HTTP p50 latency (wrk)"], res["HTTP throughput (wrk)"] = wrk(port)
                    res["bulk download through the forward"] = bulk_mbps(t, f"web{i}", port)
                stops.append(t.timed("stop", f"web{i}"))
                t.run("rm", f"web{i}")
            if t.name == "podman":
                # the yardstick: slirp4netns's own port forwarding
                port = free_port()
                t.run("run", "-d", "--name", "webslirp", "-p", f"{port}:80", "--network",
                      "slirp4netns:port_handler=slirp4netns", nginx)
                wait_http(port)
                lat, tput = wrk(port)
                res["HTTP p50 latency, slirp4netns port handler"] = lat
                res["HTTP throughput, slirp4netns port handler"] = tput
                res["bulk download, slirp4netns port handler"] = bulk_mbps(t, "webslirp", port)
                t.run("rm", "-f", "webslirp")
            res["run -d nginx -> first 200"] = statistics.median(ready)
            res["ps"] = statistics.median(ps_t)
            res["logs"] = statistics.median(logs_t)
            res["stop nginx"] = statistics.median(stops)
    release_work(work)
    metrics = list(dict.fromkeys(m for t in tools for m in results[t.name]))
    header = ["metric"] + [t.name for t in tools] + (["ratio"] if len(tools) > 1 else [])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for m in metrics:
        cells = [m]
        vals = [results[t.name].get(m) for t in tools]
        for v in vals:
            if isinstance(v, float):
                cells.append(f"{v * 1000:.0f} ms")
            elif isinstance(v, int):
                cells.append(f"{v / 1024:.1f} MiB")
            else:
                cells.append("—" if v is None else str(v))
        if len(tools) > 1 and all(isinstance(v, (int, float)) for v in vals) and vals[1]:
            cells.append(f"{vals[0] / vals[1]:.2f}x")
        elif len(tools) > 1:
            cells.append("")
        lines.append("| " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table)
    if not args.no_readme:
        write_section("run", f"`bench/run.py` (as the unprivileged test user, medians; "
                      f"{args.reps} reps for `run --rm`; {time.strftime('%Y-%m-%d')}, load "
                      f"average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; podman "
                      f"rootless with runc).\n\n{table}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
