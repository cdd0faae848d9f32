#!/usr/bin/env python3
"""bench/net: networks and shared image mounts, pydocklite beside rootless Podman in one
run, both as the unprivileged test user, images from a local registry.

    sudo /path/to/venv/bin/python bench/net.py [--reps 20] [--rounds 1] [--no-readme]

Each tool has a user-defined network (`network create benchnet`; Podman 4.3: netavark +
aardvark-dns, its rootless network namespace with slirp4netns). Measured:
- `run --rm busybox true` (the default network: pydocklite's bridge in its namespace host,
  Podman's default slirp4netns), median of --reps;
- `run -d --network benchnet -p P:80 nginx` until the first HTTP 200 through the published
  port, for the second and later containers of the image (one nginx of it keeps running, as
  in a Compose project), median of --reps / 2;
- helper memory per idle container: PSS of every helper process (pydocklite: the shims,
  the namespace host, its pause process, slirp4netns, the shared lowers' FUSE servers;
  Podman: conmon, its pause process, the rootless network namespace's slirp4netns,
  aardvark-dns, rootlessport, fuse-overlayfs when used) with 10 idle nginx on benchnet,
  divided by 10: 2 s after the last start, and again 35 s later (pydocklite's shim zygote
  has left by then);
- container to container on benchnet: HTTP latency and requests/s of nginx's index page
  (wrk, 2 threads, 4 connections, 4 s) and bulk download of a 1 GiB file (curl), run from
  the network namespace of a second container (nsenter into it, the host's wrk and curl:
  the same client for both tools); both tools' pairs run at once, the tries alternate
  between them, C2C_REPS each, medians.
--rounds N repeats the whole measurement and reports each round's numbers (spread). The
timed steps alternate between the tools rep by rep, so a load change (the machine is shared)
hits both alike.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.pull import write_section  # noqa: E402
from bench.run import Tool, bench_tools, free_port, release_work, wait_http  # noqa: E402
from tests import unpriv  # noqa: E402
from tests.fixtures import images  # noqa: E402
from tests.fixtures.registry_server import start_registry  # noqa: E402

PDL_HELPERS = ("__shim", "__nshost", "nshost-pause", "slirp4netns ", "pasta ")
POD_HELPERS = ("conmon", "rootlessport", "slirp4netns", "fuse-overlayfs", "aardvark-dns",
               "catatonit", "podman pause", "pasta")


class Q(float):
    """A number with its unit, for the table (seconds are plain floats, shown in ms)."""

    def __new__(cls, value: float, unit: str):
        q = float.__new__(cls, value)
        q.unit = unit
        return q


def _pause_cmd(cmd: str, cmds: dict) -> str:
    """The command line of the process whose namespaces a slirp4netns or pasta names
    (/proc/PID/ns/...), else ""."""
    m = re.search(r"/proc/(\d+)/ns/", cmd)
    return cmds.get(int(m.group(1)), "") if m else ""


def helpers_pss_kb(podman: bool, home: Path) -> int:
    """The helpers' PSS; pydocklite's only those of this bench's home (a shim, namespace
    host or pause process names its directories; the outbound helper names its pause
    process): the test user's other homes may have helpers running (a developer's).
    Podman's: never a process of pydocklite's (its slirp4netns has Podman's name for the
    outbound helper, and both tools run as the test user)."""
    procs = unpriv.user_processes()
    cmds = dict(procs)
    total = 0
    for pid, cmd in procs:
        mine = any(k in cmd for k in (POD_HELPERS if podman else PDL_HELPERS))
        if mine and not podman and str(home) not in cmd:
            mine = str(home) in _pause_cmd(cmd, cmds)      # slirp4netns, pasta: the pause's
        if podman and ("pydocklite" in cmd or "pydocklite" in _pause_cmd(cmd, cmds)):
            continue
        if podman and not mine:
            # podman's pause process is `podman` re-exec'd as "catatonit -P"-like
            mine = Path(f"/proc/{pid}/comm").exists() and \
                Path(f"/proc/{pid}/comm").read_text().strip() in ("catatonit", "podman pause")
        if not mine:
            continue
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        m = re.search(r"^Pss:\s+(\d+)", rollup, re.M)
        total += int(m.group(1)) if m else 0
    return total


def inside(tool: Tool, container: str, argv: list, timeout: float = 120):
    """Run a host program in the network namespace of `container` (nsenter as the user:
    its user namespace is the user's own)."""
    pid = tool.run("inspect", "-f", "{{.State.Pid}}", container).stdout.strip()
    return unpriv.run_as_user(["nsenter", "-t", pid, "-U", "-n", "--preserve-credentials",
                               *argv], tool.home, env=tool.env, timeout=timeout)


BULK_BYTES = 1 << 30          # the bulk file: long enough (~0.3 s here) to be timed steadily
C2C_REPS = 5


def c2c_setup(tool: Tool, nginx: str, busybox: str, net: str) -> str:
    """A server (nginx with a BULK_BYTES file) and a client (busybox) on `net`; the
    server's address once it answers."""
    tool.run("run", "-d", "--name", "srv", "--network", net, nginx)
    tool.run("run", "-d", "--name", "cli", "--network", net, busybox, "sleep", "3600")
    ip = tool.run("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                  "srv").stdout.strip()
    tool.run("exec", "srv", "sh", "-c", f"head -c {BULK_BYTES} /dev/zero > /var/www/html/big.bin")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        r = inside(tool, "cli", ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                 f"http://{ip}/"])
        if r.stdout.strip() == "200":
            return ip
        time.sleep(0.05)
    raise SystemExit(f"{tool.name}: no HTTP 200 from the server container at {ip}")


def c2c_wrk(tool: Tool, ip: str) -> tuple:
    """(p50 latency in seconds, requests/s) of nginx's index page, wrk 2 threads, 4
    connections, 4 s, from the client container's network namespace."""
    r = inside(tool, "cli", ["wrk", "-t2", "-c4", "-d4s", "--latency", f"http://{ip}/"])
    # the distribution's line ("     50%  190.00us"), not a "...50%" in the thread stats
    lat = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s)\b", r.stdout, re.M)
    rps = re.search(r"Requests/sec:\s+(\S+)", r.stdout)
    if not lat or not rps:
        raise SystemExit(f"{tool.name}: wrk said {r.stdout[-500:]!r} {r.stderr[-500:]!r}")
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1.0}[lat.group(2)]
    return float(lat.group(1)) * scale, float(rps.group(1))


def c2c_bulk(tool: Tool, ip: str) -> float:
    """Bytes/s of one download of the bulk file (curl, to /dev/null)."""
    r = inside(tool, "cli", ["curl", "-s", "-o", "/dev/null", "-w", "%{size_download} "
                             "%{speed_download}", f"http://{ip}/big.bin"])
    size, speed = (float(x) for x in r.stdout.split())
    if size != BULK_BYTES:
        raise SystemExit(f"{tool.name}: the bulk download got {size:.0f} bytes")
    return speed


def c2c(tools, nginx: str, busybox: str, net: str, res: dict) -> None:
    """Container to container on `net`, both tools' pairs up at once and the tries
    interleaved tool by tool (C2C_REPS each), so a load change hits both alike; medians."""
    ips = {t.name: c2c_setup(t, nginx, busybox, net) for t in tools}
    lat = {t.name: [] for t in tools}
    rps = {t.name: [] for t in tools}
    bulk = {t.name: [] for t in tools}
    for _ in range(C2C_REPS):
        for t in tools:
            p50, n = c2c_wrk(t, ips[t.name])
            lat[t.name].append(p50)
            rps[t.name].append(n)
        for t in tools:
            bulk[t.name].append(c2c_bulk(t, ips[t.name]))
    for t in tools:
        t.run("rm", "-f", "srv", "cli")
        res[t.name]["c2c HTTP p50 latency (wrk)"] = Q(statistics.median(lat[t.name]) * 1e6,
                                                        "us")
        res[t.name]["c2c HTTP requests/s (wrk)"] = Q(statistics.median(rps[t.name]), "req/s")
        res[t.name]["c2c bulk download (1 GiB)"] = Q(statistics.median(bulk[t.name]) / 1e6,
                                                      "MB/s")


def measure(tools, busybox: str, nginx: str, reps: int) -> dict:
    """One round: the timed steps interleaved tool by tool, rep by rep (the machine's load,
    shared with other jobs, then hits both alike); memory tool after tool."""
    res = {t.name: {} for t in tools}
    for t in tools:
        t.run("run", "--rm", busybox, "true")                      # warm caches
    times = {t.name: [] for t in tools}
    for _ in range(reps):
        for t in tools:
            times[t.name].append(t.timed("run", "--rm", busybox, "true"))
    for t in tools:
        res[t.name]["run --rm busybox true"] = statistics.median(times[t.name])
        t.run("run", "-d", "--name", "keeper", "--network", "benchnet", nginx)
    ready = {t.name: [] for t in tools}
    for i in range(max(5, reps // 2)):
        for t in tools:
            port = free_port()
            t0 = time.monotonic()
            t.run("run", "-d", "--name", f"web{i}", "--network", "benchnet", "-p",
                  f"{port}:80", nginx)
            wait_http(port)
            ready[t.name].append(time.monotonic() - t0)
            t.run("rm", "-f", f"web{i}")
    for t in tools:
        res[t.name]["run -d nginx -> first 200 (2nd+ of the image)"] = \
            statistics.median(ready[t.name])
        for i in range(9):
            t.run("run", "-d", "--name", f"idle{i}", "--network", "benchnet", nginx)
    # both tools' ten at once; again once pydocklite's shim zygote has left (it exits after
    # 30 s without a request: shim/zygote.py)
    for label, pause in (("", 2), (", 35 s later", 33)):
        time.sleep(pause)
        for t in tools:
            res[t.name][f"helper PSS per idle container (10 nginx{label})"] = \
                Q(helpers_pss_kb(t.name == "podman", t.home) / 10 / 1024, "MiB")
    for t in tools:
        t.run("rm", "-f", "keeper", *[f"idle{i}" for i in range(9)])
    c2c(tools, nginx, busybox, "benchnet", res)
    return res


def fmt(v) -> str:
    if isinstance(v, Q):
        return f"{v:.1f} {v.unit}" if v < 100 else f"{v:.0f} {v.unit}"
    if isinstance(v, float):
        return f"{v * 1000:.0f} ms"
    return str(v)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--no-readme", action="store_true")
    ap.add_argument("--zipapp", default=str(REPO / "pydocklite.pyz"))
    args = ap.parse_args()
    work, tools = bench_tools(args.zipapp, "pdl-bench-net-")
    cache = images.cache_dir()
    rounds = []
    with start_registry(work / "registry") as srv:
        images.push(images.build_busybox_image(cache), srv.url, "bench/busybox")
        images.push(images.build_nginx_image(cache), srv.url, "bench/nginx")
        busybox = f"{srv.host}/bench/busybox:latest"
        nginx = f"{srv.host}/bench/nginx:latest"
        for t in tools:
            tls = ["--tls-verify=false"] if t.name == "podman" else []
            t.run("pull", "-q", *tls, busybox)
            t.run("pull", "-q", *tls, nginx)
            t.run("network", "create", "benchnet")
        for _ in range(args.rounds):
            rounds.append(measure(tools, busybox, nginx, args.reps))
    release_work(work)
    first = rounds[0]
    metrics = list(dict.fromkeys(m for t in tools for m in first[t.name]))
    header = ["metric"] + [t.name for t in tools] + (["ratio"] if len(tools) > 1 else [])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for m in metrics:
        vals = [first[t.name].get(m) for t in tools]
        cells = [m] + [fmt(v) for v in vals]
        if len(tools) > 1 and all(isinstance(v, (int, float)) for v in vals) and vals[1]:
            cells.append(f"{vals[0] / vals[1]:.2f}x")
        elif len(tools) > 1:
            cells.append("")
        lines.append("| " + " | ".join(cells) + " |")
    if len(rounds) > 1:
        lines.append("")
        lines.append("Each round (pydocklite / podman):")
        for m in metrics:
            per = ["/".join(fmt(r[t.name].get(m)) for t in tools) for r in rounds]
            lines.append(f"- {m}: " + ", ".join(per))
    table = "\n".join(lines)
    print(table)
    if not args.no_readme:
        write_section("net", f"`bench/net.py` (as the unprivileged test user; {args.reps} reps "
                      f"of `run --rm`, {max(5, args.reps // 2)} nginx starts, {args.rounds} "
                      f"round(s); {time.strftime('%Y-%m-%d')}, load average "
                      f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; podman 4.3 "
                      f"rootless, runc, netavark + aardvark-dns).\n\n{table}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
