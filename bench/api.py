#!/usr/bin/env python3
"""bench/api: the same docker client (/usr/local/bin/docker 28.x) against three Engine API
servers in one run, images from a local registry:

  pydocklite   `pydocklite.pyz system service --time 0` as the unprivileged test user
  podman       rootless `podman system service --time 0` as the test user (Podman 4.3, runc,
               its own graph/run roots: tests/fixtures/podman.configure_podman)
  dockerd      root dockerd 20.10 (Debian's docker.io), started here with private --data-root,
               --exec-root, --pidfile and socket, --iptables=false --ip-masq=false
               --bridge=none (the host's firewall and the other users' networks stay
               untouched; with no bridge there is no -p, so dockerd's nginx runs with
               --network host on a free port), its socket given to the test user's
               group (as a Docker host's docker group), stopped by pid
Every client runs as the test user through the same setpriv wrapper (~1.4 ms of it).

    sudo /usr/bin/python3 bench/api.py [--reps 10] [--no-readme] [--peers podman,dockerd]

Measures (medians, and the min-max spread): `docker run --rm busybox true`; `docker run -d`
nginx to its first HTTP 200; `docker ps` and `docker logs` (four calls a round, peer after
peer); `docker exec true`; 50 `docker ps` at once (wall time of the batch, three batches);
`ps` and the batches also against bench/floor_server.py ("floor": a server replaying
pydocklite's recorded replies and doing nothing else, so what it takes is the client's own
time, which no server can take away); the service's idle memory (PSS of the service process
itself with pydocklite's shim zygote while it lingers, and for Podman of its service
process), 2 s after the last request and again 35 s later (the zygote has left by then).
"""
from __future__ import annotations

import argparse
import grp
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.pull import prepare_host, write_section  # noqa: E402
from bench.run import free_port, release_work, wait_http  # noqa: E402
from tests import unpriv  # noqa: E402
from tests.fixtures import images  # noqa: E402
from tests.fixtures.podman import configure_podman  # noqa: E402
from tests.fixtures.registry_server import start_registry  # noqa: E402

DOCKER = "/usr/local/bin/docker"


class Peer:
    """One API server and the docker client pointed at it."""

    def __init__(self, name: str, host: str, home: Path, proc, env=None):
        self.name, self.host, self.home = name, host, home
        self.proc = proc
        self.env = dict(env or {})

    def docker(self, *args, check=True, timeout=300):
        env = {"DOCKER_HOST": self.host, "DOCKER_CONFIG": str(self.home / ".docker"),
               "DOCKER_CLI_HINTS": "false", "HOME": str(self.home), **self.env}
        r = unpriv.run_as_user([DOCKER, *args], self.home, env=env, timeout=timeout,
                               stdin=subprocess.DEVNULL)
        if check and r.returncode != 0:
            raise SystemExit(f"{self.name}: docker {' '.join(args)} failed: {r.stderr[-1500:]}")
        return r

    def timed(self, *args) -> float:
        t = time.monotonic()
        self.docker(*args)
        return time.monotonic() - t

    def pss_kb(self) -> int:
        """The service process's PSS, and for pydocklite its shim zygote's while it lingers
        (a fork of the service's first shim: the pages they share are split between them,
        so the service alone would look smaller than it is)."""
        pids = [self.proc.pid] + [pid for pid, cmd in unpriv.user_processes()
                                  if "__shim-zygote" in cmd and str(self.home) in cmd]
        total = 0
        for pid in pids:
            try:
                text = Path(f"/proc/{pid}/smaps_rollup").read_text()
            except OSError:
                continue
            total += sum(int(ln.split()[1]) for ln in text.splitlines() if ln.startswith("Pss:"))
        return total

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _wait_socket(path: Path, proc, what: str, timeout: float = 60) -> None:
    import socket
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited ({proc.returncode})")
        if path.exists():
            s = socket.socket(socket.AF_UNIX)
            try:
                s.connect(str(path))
                return
            except OSError:
                pass
            finally:
                s.close()
        time.sleep(0.05)
    raise SystemExit(f"{what} did not listen on {path}")


def start_pydocklite(work: Path, zipapp: str) -> Peer:
    home = unpriv.make_user_dir(work / "pdl")
    app = work / "pydocklite.pyz"
    shutil.copy2(zipapp, app)
    os.chmod(app, 0o755)
    env = unpriv.user_env(home, {"SHIV_ROOT": str(unpriv.make_user_dir(work / "shiv")),
                                 "PYTHONPATH": "", "PYTHONDONTWRITEBYTECODE": ""})
    (home / "run").mkdir(exist_ok=True)
    os.chown(home / "run", unpriv.test_user().pw_uid, unpriv.test_user().pw_gid)
    os.chmod(home / "run", 0o700)
    sock = home / "run" / "pydocklite" / "docker.sock"
    proc = subprocess.Popen(unpriv.user_cmd([unpriv.SYSTEM_PYTHON, str(app), "system",
                                             "service", "--time", "0"]),
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_socket(sock, proc, "pydocklite system service")
    return Peer("pydocklite", f"unix://{sock}", home, proc)


def start_podman(work: Path, registry_host: str) -> Peer:
    home = unpriv.make_user_dir(work / "podman")
    configure_podman(home)
    conf = home / ".config" / "containers" / "registries.conf"
    conf.write_text(f'[[registry]]\nlocation = "{registry_host}"\ninsecure = true\n')
    subprocess.run(["chown", "-R", unpriv.TEST_USER, str(conf.parent)], check=True)
    (home / "run").mkdir(exist_ok=True)
    sock = home / "podman.sock"
    env = unpriv.user_env(home)
    proc = subprocess.Popen(unpriv.user_cmd(["podman", "system", "service", "--time", "0",
                                             f"unix://{sock}"]),
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            cwd=str(home))
    subprocess.run(["chown", unpriv.TEST_USER, str(home / "run")], check=False)
    _wait_socket(sock, proc, "podman system service")
    return Peer("podman", f"unix://{sock}", home, proc)


def start_dockerd(work: Path, registry_host: str) -> Peer:
    root = work / "dockerd"
    root.mkdir()
    sock = root / "docker.sock"
    argv = ["dockerd", f"--data-root={root / 'data'}", f"--exec-root={root / 'exec'}",
            f"--pidfile={root / 'dockerd.pid'}", f"--host=unix://{sock}", "--iptables=false",
            "--ip-masq=false", "--bridge=none", f"--insecure-registry={registry_host}",
            "--storage-driver=overlay2", "--default-ulimit=nofile=1024:4096",
            f"--group={grp.getgrgid(unpriv.test_user().pw_gid).gr_name}"]
    log = open(root / "dockerd.log", "w")
    proc = subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True)
    log.close()
    _wait_socket(sock, proc, "dockerd", timeout=90)
    # its socket belongs to the test user's group (as to the docker group of a Docker
    # host): the same client as the same user through the same wrapper as the other peers
    return Peer("dockerd", f"unix://{sock}", unpriv.make_user_dir(work / "dockerd-client"),
                proc)


def record_reply(sock: str, request: bytes) -> bytes:
    """One reply of a server, raw (its head and a Content-Length body)."""
    import socket
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock)
    try:
        s.sendall(request)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                raise SystemExit(f"{sock}: no reply to {request!r}")
            buf += chunk
        head, _, body = buf.partition(b"\r\n\r\n")
        length = [int(ln.split(b":", 1)[1]) for ln in head.split(b"\r\n")
                  if ln.lower().startswith(b"content-length:")]
        if not length:
            raise SystemExit(f"{sock}: a reply without Content-Length to {request!r}")
        while len(body) < length[0]:
            chunk = s.recv(65536)
            if not chunk:
                raise SystemExit(f"{sock}: a short reply to {request!r}")
            body += chunk
        return head + b"\r\n\r\n" + body
    finally:
        s.close()


def start_floor(work: Path, source: Peer) -> Peer:
    """bench/floor_server.py with `source`'s replies to what `docker ps` asks, recorded now
    (while its one container runs): the clients' own time, the floor of every server."""
    root = work / "floor"
    root.mkdir()
    sock = source.host[len("unix://"):]
    for name, request in (("ping", b"GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n"),
                          ("containers", b"GET /v1.44/containers/json HTTP/1.1\r\n"
                                         b"Host: docker\r\n\r\n")):
        (root / name).write_bytes(record_reply(sock, request))
    path = root / "docker.sock"
    proc = subprocess.Popen([sys.executable, str(REPO / "bench" / "floor_server.py"), str(path),
                             str(root / "ping"), str(root / "containers")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_socket(path, proc, "bench/floor_server.py")
    return Peer("floor", f"unix://{path}", unpriv.make_user_dir(work / "floor-client"), proc)


def many_ps(peer: Peer, n: int = 50) -> float:
    threads = [threading.Thread(target=peer.docker, args=("ps", "-q")) for _ in range(n)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.monotonic() - t0


def prepare(peer: Peer, busybox: str, nginx: str) -> None:
    peer.docker("pull", "-q", busybox)
    peer.docker("pull", "-q", nginx)
    peer.docker("run", "--rm", busybox, "true")            # warm caches


def start_nginx(peer: Peer, nginx: str, i: int) -> float:
    """`docker run -d` nginx as web<i>, seconds to its first HTTP 200."""
    port = free_port()
    t0 = time.monotonic()
    if peer.name == "dockerd":
        # no bridge here (--bridge=none, the host firewall untouched): nginx on the host's
        # network, listening on a free port
        peer.docker("run", "-d", "--name", f"web{i}", "--network", "host", nginx, "sh",
                    "-c", f"sed -i -e '/\\[::\\]/d' -e 's/listen *80/listen {port}/' "
                    f"/etc/nginx/sites-enabled/default; exec nginx -g 'daemon off;'")
    else:
        peer.docker("run", "-d", "--name", f"web{i}", "-p", f"{port}:80", nginx)
    wait_http(port)
    return time.monotonic() - t0


CALLS = 4         # `ps` and `logs` calls per peer and round, peer after peer
BATCHES = 3       # batches of 50 `ps` per peer, peer after peer
BATCH = "50 x docker ps at once (median of 3 batches)"


def measure(peers: list, busybox: str, nginx: str, reps: int, work: Path) -> dict:
    """Round by round, every peer in turn, call by call, so that the machine's load (shared
    with other jobs here) hits them alike. `ps` is also timed against the floor server
    (bench/floor_server.py: pydocklite's replies recorded in the first round)."""
    results = {p.name: {} for p in peers}
    for p in peers:
        prepare(p, busybox, nginx)
    for _ in range(reps):
        for p in peers:
            results[p.name].setdefault("run --rm busybox true", []).append(
                p.timed("run", "--rm", busybox, "true"))
    floor = None
    try:
        for i in range(max(3, reps // 2)):
            for p in peers:
                results[p.name].setdefault("run -d nginx -> first 200", []).append(
                    start_nginx(p, nginx, i))
            if floor is None:
                floor = start_floor(work, peers[0])
                results[floor.name] = {}
            for _ in range(CALLS):
                for p in peers + [floor]:
                    results[p.name].setdefault("ps", []).append(p.timed("ps"))
            for _ in range(CALLS):
                for p in peers:
                    results[p.name].setdefault("logs", []).append(p.timed("logs", f"web{i}"))
            for p in peers:
                results[p.name].setdefault("exec true", []).append(
                    p.timed("exec", f"web{i}", "true"))
            if i == 0:
                for _ in range(BATCHES):
                    for p in peers + [floor]:
                        results[p.name].setdefault(BATCH, []).append(many_ps(p))
            for p in peers:
                p.docker("rm", "-f", f"web{i}")
    finally:
        if floor is not None:
            floor.stop()
    # 2 s after the last request, and once pydocklite's shim zygote has left (it exits
    # after 30 s without a request: shim/zygote.py)
    for label, pause in (("", 2), (", 35 s later", 33)):
        time.sleep(pause)
        for p in peers:
            results[p.name][f"service idle PSS{label}"] = p.pss_kb()
    return results


def fmt(v) -> str:
    if isinstance(v, int):
        return f"{v / 1024:.1f} MiB"
    if not v:
        return "—"
    med = statistics.median(v) * 1000
    if len(v) == 1:
        return f"{med:.0f} ms"
    return f"{med:.0f} ms ({min(v) * 1000:.0f}-{max(v) * 1000:.0f})"


def value(v) -> float:
    return float(v) if isinstance(v, int) else statistics.median(v) if v else 0.0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--no-readme", action="store_true")
    ap.add_argument("--zipapp", default=str(REPO / "pydocklite.pyz"))
    ap.add_argument("--peers", default="podman,dockerd")
    args = ap.parse_args()
    prepare_host()
    peers_wanted = [p for p in args.peers.split(",") if p]
    work = Path(tempfile.mkdtemp(prefix="pdl-bench-api-", dir="/var/tmp"))
    os.chmod(work, 0o755)
    cache = images.cache_dir()
    peers = []
    try:
        with start_registry(work / "registry") as srv:
            images.push(images.build_busybox_image(cache), srv.url, "bench/busybox")
            images.push(images.build_nginx_image(cache), srv.url, "bench/nginx")
            busybox = f"{srv.host}/bench/busybox:latest"
            nginx = f"{srv.host}/bench/nginx:latest"
            peers.append(start_pydocklite(work, args.zipapp))
            if "podman" in peers_wanted and shutil.which("podman"):
                peers.append(start_podman(work, srv.host))
            if "dockerd" in peers_wanted and shutil.which("dockerd"):
                peers.append(start_dockerd(work, srv.host))
            results = measure(peers, busybox, nginx, args.reps, work)
    finally:
        for p in peers:
            p.stop()
        release_work(work)
    names = [p.name for p in peers]
    metrics = list(dict.fromkeys(m for n in names for m in results.get(n, {})))
    header = ["metric"] + names + ["floor"] + [f"pydocklite / {n}" for n in names[1:]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for m in metrics:
        cells = [m] + [fmt(results.get(n, {}).get(m)) for n in names + ["floor"]]
        base = value(results["pydocklite"].get(m))
        for n in names[1:]:
            other = value(results[n].get(m))
            cells.append(f"{base / other:.2f}x" if other else "")
        lines.append("| " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table)
    if not args.no_readme:
        write_section("api", f"`bench/api.py` (docker CLI 28.2 against each server; medians "
                      f"with min-max; {args.reps} reps of `run --rm`; "
                      f"{time.strftime('%Y-%m-%d')}, load average {os.getloadavg()[0]:.1f} "
                      f"on {os.cpu_count()} CPUs; floor: the same client against "
                      f"bench/floor_server.py, which replays pydocklite's replies and does "
                      f"nothing else).\n\n{table}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
