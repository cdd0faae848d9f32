#!/usr/bin/env python3
"""bench/runtime: N sequential `/bin/true` containers from one bundle, rootless, with
pydocklite runtime, crun and runc in the same run; prints a table (ms per container).

Run as root (it prepares bundles owned by the test user and drops to it):
    sudo /usr/bin/python3 bench/runtime.py [-n 100] [--user pdltest] [--engines-n 20]
./pydocklite-runtime (build.sh's runc-compatible executable, the zipapp as engines run it) is
timed beside `python3 -m pydocklite.runtime.runc_cli` from the checkout.
Engines (--engines-n N rounds, 0 to skip): `ctr run --rm` of busybox `true` under one
containerd (root, private state dirs) with --runc-binary ours / runc / crun, and rootful
`podman --runtime X run --rm --network none` the same; containerd and Podman run in the same
private mount namespace with /sys/fs/cgroup/unified hidden, so crun 1.8 works (FACTS.md).
Each tool runs its own `spec --rootless` bundle over the same busybox rootfs. runc's and crun's
rootless specs map one id; pydocklite's maps the full subordinate range (two extra setuid
helper runs: newuidmap + newgidmap), so it is also measured with a single-id map.
crun 1.8 refuses this VM's hybrid cgroup layout unless /sys/fs/cgroup/unified is hidden: the
driver runs in a private mount namespace made by root, then drops to the user (FACTS.md).
The driver (`--drive`) runs as the user and times each container start-to-exit, the tools
interleaved round by round so that the machine's load (shared here) hits them alike.
"""
from __future__ import annotations

import json
import os
import pwd
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = "/usr/bin/python3"


def drive(n: int, cases: list) -> None:
    """As the user: n rounds, each running every case's argv once (ID replaced by a fresh
    id), so that the machine's load hits every tool alike; prints timings as JSON."""
    times = {name: [] for name, _ in cases}
    cpu = {name: [] for name, _ in cases}
    failures = {name: 0 for name, _ in cases}
    for i in range(n):
        for name, argv_template in cases:
            argv = [a.replace("{ID}", f"b{os.getpid()}x{i}") for a in argv_template]
            t0 = time.perf_counter()
            pid = os.posix_spawn(argv[0], argv, os.environ)
            _, status, usage = os.wait4(pid, 0)
            times[name].append((time.perf_counter() - t0) * 1000)
            # CPU time of the runtime and what it reaped (the container): less sensitive than
            # wall time to the other jobs sharing this machine
            cpu[name].append((usage.ru_utime + usage.ru_stime) * 1000)
            if status != 0:
                failures[name] += 1
    print(json.dumps({"times": times, "cpu": cpu, "failures": failures}))


def _as_user(user, argv: list, env: dict) -> dict:
    """Run argv as the user inside a private mount namespace where root has hidden
    /sys/fs/cgroup/unified (crun 1.8 refuses this VM's hybrid layout otherwise)."""
    setpriv = [shutil.which("setpriv"), f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}",
               "--init-groups", "--"]
    inner = " ".join(f"'{a}'" for a in setpriv + argv)
    cmd = ["unshare", "-m", "--propagation", "private", "sh", "-c",
           f"(mountpoint -q /sys/fs/cgroup/unified && "
           f"mount -t tmpfs tmpfs /sys/fs/cgroup/unified); exec {inner}"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
    if r.returncode != 0:
        raise SystemExit(f"driver failed: {' '.join(cmd)}\n{r.stderr}")
    return json.loads(r.stdout)


def _rootfs(dst: str) -> None:
    os.makedirs(os.path.join(dst, "bin"))
    shutil.copy2("/bin/busybox", os.path.join(dst, "bin", "busybox"))
    for applet in subprocess.run(["/bin/busybox", "--list-full"], capture_output=True,
                                 text=True, check=True).stdout.split():
        if applet == "bin/busybox":
            continue
        link = os.path.join(dst, applet)
        os.makedirs(os.path.dirname(link), exist_ok=True)
        if not os.path.lexists(link):
            os.symlink("/bin/busybox", link)
    for d in ("proc", "sys", "dev", "tmp", "etc"):
        os.makedirs(os.path.join(dst, d), exist_ok=True)


def _bundle(base: str, name: str, user, env: dict, spec_cmd: list, single_id=False) -> str:
    b = os.path.join(base, name)
    os.makedirs(b)
    shutil.copytree(os.path.join(base, "rootfs"), os.path.join(b, "rootfs"), symlinks=True)
    subprocess.run(["chown", "-R", "-h", f"{user.pw_uid}:{user.pw_gid}", b], check=True)
    subprocess.run([shutil.which("setpriv"), f"--reuid={user.pw_uid}",
                    f"--regid={user.pw_gid}", "--init-groups", "--"] + spec_cmd,
                   cwd=b, env=env, check=True)
    path = os.path.join(b, "config.json")
    with open(path) as f:
        cfg = json.load(f)
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = ["/bin/true"]
    if single_id:
        cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": user.pw_uid, "size": 1}]
        cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": user.pw_gid, "size": 1}]
        for m in cfg["mounts"]:
            if m["type"] == "devpts" and "gid=5" in m.get("options", []):
                m["options"].remove("gid=5")
    with open(path, "w") as f:
        json.dump(cfg, f)
    return b


def _rows(res: dict, cases: list) -> list:
    rows = []
    for name, _ in cases:
        t = sorted(res["times"][name])
        c = res.get("cpu", {}).get(name)
        rows.append((name, len(t), res["failures"][name], statistics.median(t),
                     statistics.mean(t), t[max(int(len(t) * 0.9) - 1, 0)],
                     statistics.median(c) if c else None, t[0], t[-1]))
    return rows


def _print_table(title: str, rows: list, base_name: str) -> None:
    base = next((r for r in rows if r[0].startswith(base_name)), None)
    print(title)
    print(f"| {'runtime':<40} | runs | failed | median ms | mean ms | p90 ms | min-max ms | "
          f"vs runc | CPU ms (median) | CPU vs runc |")
    print(f"|{'-' * 42}|------|--------|-----------|---------|--------|------------|---------|"
          f"-----------------|-------------|")
    for name, runs, failed, med, mean, p90, cpu, lo, hi in rows:
        ratio = f"{med / base[3]:.2f}x" if base else "-"
        cratio = f"{cpu / base[6]:.2f}x" if base and cpu and base[6] else "-"
        cpu_text = f"{cpu:.1f}" if cpu is not None else "-"
        print(f"| {name:<40} | {runs:>4} | {failed:>6} | {med:>9.1f} | {mean:>7.1f} | "
              f"{p90:>6.1f} | {lo:.0f}-{hi:.0f} | {ratio:>7} | {cpu_text:>15} | {cratio:>11} |")


def engines_bench(n: int, runtime_bin: str) -> None:
    """ctr run --rm and podman run --rm of busybox `true` with ours, runc and crun."""
    sys.path.insert(0, REPO)
    from tests.fixtures import engines, images
    base = tempfile.mkdtemp(prefix="pdlbe-", dir="/tmp")
    os.chmod(base, 0o711)
    try:
        archive = engines.docker_archive(images.build_busybox_image(images.cache_dir()),
                                         __import__("pathlib").Path(base) / "busybox.tar",
                                         "busybox:latest")
        script = os.path.join(base, "inner.py")
        with open(script, "w") as f:
            f.write(_ENGINE_DRIVER)
        cmd = ["unshare", "-m", "--propagation", "private", "sh", "-c",
               "(mountpoint -q /sys/fs/cgroup/unified && umount -l /sys/fs/cgroup/unified); "
               f"exec {PY} {script} {n} {base} {archive} {runtime_bin} {REPO}"]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=7200)
        if r.returncode != 0:
            raise SystemExit(f"engine bench failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
        res = json.loads(r.stdout.splitlines()[-1])
    finally:
        engines.kill_leftovers(base)
        subprocess.run(["rm", "-rf", "--one-file-system", base], check=False)
    for engine in ("ctr", "podman"):
        cases = [(k, None) for k in res["times"] if k.startswith(engine)]
        sub = {"times": {k: res["times"][k] for k, _ in cases},
               "cpu": {k: res["cpu"][k] for k, _ in cases},
               "failures": {k: res["failures"][k] for k, _ in cases}}
        _print_table(f"\n{n} rounds of `{engine} run --rm` busybox `true` as root, one per "
                     f"runtime per round (load {os.getloadavg()[0]:.2f})",
                     _rows(sub, cases), f"{engine} + runc")


# Runs as root inside the private mount namespace: one containerd, one rootful Podman home.
# CPU per run: the engine's whole stack for that container, robust to the machine's load --
# the client (ctr / podman, with what it waits for: podman's own runtime calls), what gets
# reparented to this driver (a child subreaper) and reaped once the run is over: containerd's
# shim and its runtime calls, conmon and its runtime calls, podman's cleanup process; and
# containerd's own CPU meanwhile (/proc/PID/stat utime..cstime).
_ENGINE_DRIVER = r"""
import ctypes, json, os, subprocess, sys, time
n, base, archive, ours, repo = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
sys.path.insert(0, repo)
from pathlib import Path
from tests.fixtures import engines
runtimes = [("pydocklite-runtime", ours), ("runc", "/usr/sbin/runc"), ("crun", "/usr/bin/crun")]
times, cpu, failures = {}, {}, {}
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)       # PR_SET_CHILD_SUBREAPER
TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")


def proc_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) * TICK_MS


def reap(quiet_s=0.3, cap_s=3.0):
    # rusage (ms) of the orphans reaped until none came for quiet_s
    total, last, start = 0.0, time.monotonic(), time.monotonic()
    while time.monotonic() - last < quiet_s and time.monotonic() - start < cap_s:
        try:
            pid, _, ru = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            pid = 0
        if pid:
            total += (ru.ru_utime + ru.ru_stime) * 1000
            last = time.monotonic()
        else:
            time.sleep(0.02)
    return total


devnull = os.open(os.devnull, os.O_RDWR)
cbase = Path(base) / "c"
pbase = Path(base) / "p"
(pbase / "tmp").mkdir(parents=True)
penv = engines.podman_root_conf(pbase)
engines.warm_runtime(ours, cbase / "home")
engines.warm_runtime(ours, pbase / "home")
with engines.Containerd(cbase) as c:
    c.ctr("images", "import", archive, check=True)
    subprocess.run(["podman", "load", "-i", archive], env=penv, check=True,
                   capture_output=True)
    cases = []
    for name, path in runtimes:
        cases.append((f"ctr + {name}", ["ctr", "--address", str(c.sock), "-n", c.namespace,
                      "run", "--rm", "--runc-binary", path, "docker.io/library/busybox:latest",
                      "{ID}", "true"], dict(engines.ENV, HOME=str(cbase / "home"))))
        cases.append((f"podman + {name}", ["podman", "--runtime", path, "run", "--rm",
                      "--network", "none", "busybox", "true"], penv))
    for name, _, _ in cases:
        times[name], cpu[name], failures[name] = [], [], 0
    reap()
    for i in range(n + 2):
        for name, argv, env in cases:
            argv = [a.replace("{ID}", f"b{i}") for a in argv]
            err = os.open(f"{base}/run.err", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            c0 = proc_cpu(c.proc.pid)
            t0 = time.perf_counter()
            pid = os.posix_spawnp(argv[0], argv, env, file_actions=[
                (os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, devnull, 1),
                (os.POSIX_SPAWN_DUP2, err, 2)])
            _, status, ru = os.wait4(pid, 0)
            dt = (time.perf_counter() - t0) * 1000
            os.close(err)
            used = (ru.ru_utime + ru.ru_stime) * 1000 + reap() + proc_cpu(c.proc.pid) - c0
            if i < 2:
                continue            # warm-up: first runs of each runtime and engine
            times[name].append(dt)
            cpu[name].append(used)
            if status != 0:
                failures[name] += 1
                with open(f"{base}/run.err") as f:
                    sys.stderr.write(f"{name}: {f.read()[-500:]}\n")
subprocess.run(["podman", "system", "reset", "-f"], env=penv, capture_output=True)
print(json.dumps({"times": times, "cpu": cpu, "failures": failures}))
"""


def main(argv: list) -> int:
    if argv[:1] == ["--drive"]:
        drive(int(argv[1]), json.loads(argv[2]))       # --drive N CASES_JSON
        return 0
    n = 100
    engines_n = 20
    user_name = "pdltest"
    if "-n" in argv:
        n = int(argv[argv.index("-n") + 1])
    if "--engines-n" in argv:
        engines_n = int(argv[argv.index("--engines-n") + 1])
    if "--user" in argv:
        user_name = argv[argv.index("--user") + 1]
    if os.geteuid() != 0:
        print("run as root: it prepares bundles for, and drops to, the test user",
              file=sys.stderr)
        return 1
    user = pwd.getpwnam(user_name)
    # the user can't write __pycache__ in the repo: compile once, as a zipapp build would
    subprocess.run([PY, "-m", "compileall", "-q", os.path.join(REPO, "pydocklite", "runtime"),
                    os.path.join(REPO, "pydocklite", "__init__.py")],
                   check=True, stdout=subprocess.DEVNULL)
    base = tempfile.mkdtemp(prefix="pdl-bench-rt-")
    os.chmod(base, 0o755)
    run_dir = os.path.join(base, "run")
    os.makedirs(run_dir)
    os.chown(run_dir, user.pw_uid, user.pw_gid)
    os.chmod(run_dir, 0o700)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": base,
           "XDG_RUNTIME_DIR": run_dir, "PYTHONPATH": REPO, "LANG": "C.UTF-8",
           "SHIV_ROOT": os.path.join(run_dir, "shiv")}     # where ./pydocklite-runtime unpacks
    try:
        _rootfs(os.path.join(base, "rootfs"))
        pdl = [PY, "-m", "pydocklite.runtime.runc_cli"]
        runtime_bin = os.path.join(base, "pydocklite-runtime")
        shutil.copy2(os.path.join(REPO, "pydocklite-runtime"), runtime_bin)
        os.chmod(runtime_bin, 0o755)
        b_pdl = _bundle(base, "pdl", user, env, pdl + ["spec", "--rootless"])
        b_pdl1 = _bundle(base, "pdl1", user, env, pdl + ["spec", "--rootless"], single_id=True)
        b_runc = _bundle(base, "runc", user, env, ["runc", "spec", "--rootless"])
        b_crun = _bundle(base, "crun", user, env, ["runc", "spec", "--rootless"])
        cases = [
            ("./pydocklite-runtime (single-id map)", [runtime_bin, "--root", f"{run_dir}/pdlz",
                                                      "run", "--bundle", b_pdl1, "{ID}"]),
            ("pydocklite (full subuid map)", pdl + ["--root", f"{run_dir}/pdl", "run",
                                                   "--bundle", b_pdl, "{ID}"]),
            ("pydocklite (single-id map)", pdl + ["--root", f"{run_dir}/pdl1", "run",
                                                 "--bundle", b_pdl1, "{ID}"]),
            ("crun " + _version("crun"), [shutil.which("crun"), "--root", f"{run_dir}/crun",
                                          "run", "--bundle", b_crun, "{ID}"]),
            ("runc " + _version("runc"), [shutil.which("runc"), "--root", f"{run_dir}/runc",
                                          "run", "--bundle", b_runc, "{ID}"]),
        ]
        drv = [PY, os.path.abspath(__file__), "--drive"]
        _as_user(user, drv + ["2", json.dumps(cases)], env)          # warm-up
        res = _as_user(user, drv + [str(n), json.dumps(cases)], env)
        rows = _rows(res, cases)
    finally:
        subprocess.run(["rm", "-rf", "--one-file-system", base], check=False)
    _print_table(f"{n} rounds of sequential rootless `/bin/true` containers, one per tool per "
                 f"round, one bundle per tool ({os.cpu_count()} CPUs, load "
                 f"{os.getloadavg()[0]:.2f})", rows, "runc")
    if engines_n:
        engines_bench(engines_n, os.path.join(REPO, "pydocklite-runtime"))
    return 0


def _version(tool: str) -> str:
    try:
        out = subprocess.run([tool, "--version"], capture_output=True, text=True).stdout
        return out.split()[2] if out.split()[:2] in (["crun", "version"], ["runc", "version"]) \
            else ""
    except OSError:
        return "(missing)"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
