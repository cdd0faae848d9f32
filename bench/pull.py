#!/usr/bin/env python3
"""bench/pull: cold pulls from a local registry, pydocklite beside podman (rootless) and
skopeo, all in the same run, all as the unprivileged test user.

    sudo /path/to/venv/bin/python bench/pull.py [--reps 3] [--no-big] [--no-readme]

Images: debian bookworm minbase (debootstrap) and a ~500 MB one (minbase + 400 MB of data),
built by tests/fixtures/images.py (cached) and pushed to a fresh docker-registry.
Each rep starts from an empty store: a new XDG_DATA_HOME for pydocklite, a new
rootless_storage_path for podman, a new oci: directory for skopeo.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests import unpriv  # noqa: E402
from tests.fixtures import images  # noqa: E402
from tests.fixtures.podman import configure_podman  # noqa: E402
from tests.fixtures.registry_server import start_registry  # noqa: E402


def timed(argv, home: Path, env=None) -> float:
    return timed_cpu(argv, home, env)[0]


def timed_cpu(argv, home: Path, env=None) -> tuple:
    """(wall seconds, CPU seconds of the command and its children): CPU time hardly moves
    with the load other jobs put on this shared machine, wall time does."""
    import resource
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.monotonic()
    r = unpriv.run_as_user(argv, home, env=env, timeout=900)
    dt = time.monotonic() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({r.returncode}):\n{r.stderr[-2000:]}")
    return dt, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def fresh_home(base: Path, name: str) -> Path:
    home = base / name
    if home.exists():
        subprocess.run(["rm", "-rf", str(home)], check=False)
    return unpriv.make_user_dir(home)


def _pdl_env(base: Path) -> dict:
    return {"SHIV_ROOT": str(base / "shiv"), "PYTHONPATH": "",
            "PYTHONDONTWRITEBYTECODE": ""}  # a user's python caches bytecode


def bench_pydocklite(zipapp: Path, ref: str, base: Path, policy: str = "",
                     cpu: bool = False):
    """A cold pull's wall seconds (with cpu: (wall, CPU seconds)); `policy`: the JSON of
    the user's containers policy.json (none: the host's /etc/containers/policy.json, if
    any, applies)."""
    home = fresh_home(base, "pdl")
    env = _pdl_env(base)
    if policy:
        conf = unpriv.make_user_dir(home / ".config" / "containers")
        (conf / "policy.json").write_text(policy)
    unpriv.run_as_user([str(zipapp), "--version"], home, env=env)   # shiv's first unpack
    both = timed_cpu([str(zipapp), "pull", "-q", ref], home, env=env)
    return both if cpu else both[0]


ACCEPT_POLICY = '{"default": [{"type": "insecureAcceptAnything"}]}'


def sign_for_bench(zipapp: Path, ref: str, base: Path) -> str:
    """Sign `ref` in its registry with a key pydocklite generates; the policy JSON that
    requires that signature for its repository."""
    home = unpriv.make_user_dir(base / "signer")
    env = _pdl_env(base)
    (home / "pw").write_text("bench\n")
    for argv in (["key", "generate", "--output-prefix", str(home / "k"),
                  "--passphrase-file", str(home / "pw")],
                 ["image", "sign", "--sign-by-sigstore-private-key", str(home / "k.private"),
                  "--sign-passphrase-file", str(home / "pw"), ref]):
        timed([str(zipapp), *argv], home, env=env)
    repo = ref.rsplit(":", 1)[0]
    return json.dumps({"default": [{"type": "reject"}], "transports": {"docker": {
        repo: [{"type": "sigstoreSigned", "keyPath": str(home / "k.pub")}]}}})


def signed_overhead(zipapp: Path, ref: str, base: Path, reps: int) -> dict:
    """Cold pulls of one image with and without signature verification, interleaved (the
    machine is shared: each pair sees the same load), alternating which goes first."""
    signed_policy = sign_for_bench(zipapp, ref, base)
    out = {"unsigned": [], "signed": []}
    for i in range(reps):
        order = ("unsigned", "signed") if i % 2 == 0 else ("signed", "unsigned")
        for kind in order:
            policy = signed_policy if kind == "signed" else ACCEPT_POLICY
            out[kind].append(bench_pydocklite(zipapp, ref, base, policy, cpu=True))
            if kind == "signed" and i == 0:      # outside the timing: it was verified
                r = unpriv.run_as_user([str(zipapp), "image", "inspect", "-f",
                                        "{{.Trust.Verified}}", ref], base / "pdl",
                                       env=_pdl_env(base))
                if r.stdout.strip() != "true":
                    raise SystemExit(f"the signed pull was not verified: {r.stdout}{r.stderr}")
    return out


def overhead_table(times: dict) -> str:
    rows = []
    for i, what in ((0, "wall"), (1, "CPU")):
        u = [x[i] for x in times["unsigned"]]
        s = [x[i] for x in times["signed"]]
        pairs = [b - a for a, b in zip(u, s)]
        mu, ms, mp = statistics.median(u), statistics.median(s), statistics.median(pairs)
        rows.append(f"| {what} s | {mu:.3f} ({min(u):.3f}-{max(u):.3f}) | "
                    f"{ms:.3f} ({min(s):.3f}-{max(s):.3f}) | {mp * 1000:+.0f} ms "
                    f"({mp / mu * 100:+.1f}%) | {min(pairs) * 1000:+.0f} to "
                    f"{max(pairs) * 1000:+.0f} ms | {(ms - mu) * 1000:+.0f} ms |")
    n = len(times["signed"])
    return "\n".join([
        f"| cold pull of debian minbase, {n} pairs | insecureAcceptAnything: median (range) | "
        "sigstoreSigned, verified: median (range) | signed - unsigned, median of pairs | "
        "pairs range | difference of medians |",
        "|---|---|---|---|---|---|", *rows])


def bench_podman(ref: str, base: Path) -> float:
    home = fresh_home(base, "podman")
    configure_podman(home)
    return timed(["podman", "pull", "-q", "--tls-verify=false", ref], home)


def bench_skopeo(ref: str, base: Path) -> float:
    home = fresh_home(base, "skopeo")
    return timed(["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{ref}",
                  f"oci:{home}/layout:img"], home)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--no-big", action="store_true", help="skip the ~500 MB image")
    ap.add_argument("--no-readme", action="store_true")
    ap.add_argument("--signed-reps", type=int, default=9,
                    help="pairs of cold debian pulls without/with signature verification")
    ap.add_argument("--only-signed", action="store_true",
                    help="only the signed-pull comparison (no podman/skopeo, no big image)")
    ap.add_argument("--zipapp", default=str(REPO / "pydocklite.pyz"))
    args = ap.parse_args()
    prepare_host()
    zipapp = Path(args.zipapp)
    if not zipapp.exists():
        subprocess.run([str(REPO / "build.sh")], check=True)
    work = Path(tempfile.mkdtemp(prefix="pdl-bench-pull-", dir="/var/tmp"))
    os.chmod(work, 0o755)
    app = work / "pydocklite.pyz"
    shutil.copy2(zipapp, app)
    os.chmod(app, 0o755)
    unpriv.make_user_dir(work / "shiv")
    cache = images.cache_dir()
    todo = [("debian minbase", images.build_debian_image(cache))]
    if not args.no_big:
        todo.append(("~500 MB image", images.build_big_image(cache)))
    tools = [("pydocklite", lambda ref: bench_pydocklite(app, ref, work)),
             ("podman pull", lambda ref: bench_podman(ref, work))]
    if shutil.which("skopeo"):
        tools.append(("skopeo copy", lambda ref: bench_skopeo(ref, work)))
    rows = []
    signed = None
    if args.only_signed:
        todo, tools = todo[:1], tools[:1]
    with start_registry(work / "registry") as srv:
        if args.signed_reps:
            images.push(todo[0][1], srv.url, "bench/signed")
            signed = signed_overhead(app, f"{srv.host}/bench/signed:latest", work,
                                     args.signed_reps)
            print(overhead_table(signed))
        for label, image in ([] if args.only_signed else todo):
            name = label.split()[0].strip("~").lower()
            images.push(image, srv.url, f"bench/{name}")
            ref = f"{srv.host}/bench/{name}:latest"
            size = sum(layer.blob.size for layer in image.layers)
            times = {}
            for tool, fn in tools:
                times[tool] = [fn(ref) for _ in range(args.reps)]
            base = statistics.median(times["podman pull"])
            for tool, _ in tools:
                med = statistics.median(times[tool])
                rows.append((label, f"{size / 1e6:.0f} MB", tool, f"{med:.2f}",
                             f"{min(times[tool]):.2f}", f"{med / base:.2f}x"))
    subprocess.run(["rm", "-rf", str(work)], check=False)
    header = ("image", "compressed", "tool", "median s", "best s", "vs podman")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    table = "\n".join(lines)
    print(table)
    if not args.no_readme and not args.only_signed:
        body = (f"`bench/pull.py` (as the unprivileged test user, cold store each "
                f"rep, median of {args.reps}, local docker-registry over HTTP; "
                f"{time.strftime('%Y-%m-%d')}, load average "
                f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs).\n\n{table}\n")
        if signed:
            body += ("\nSigned pull (issue 13): the debian image signed by `pydocklite image "
                     "sign` (ECDSA P-256), pulled cold with a user policy.json of "
                     "insecureAcceptAnything (what this host's /etc/containers/policy.json "
                     "says) and with sigstoreSigned for its repository; the two alternate "
                     "rep by rep (shared machine). No peer can verify sigstore here (Debian "
                     "builds skopeo and Podman without it).\n\n"
                     + overhead_table(signed) + "\n")
        write_section("pull", body)
    return 0


def prepare_host() -> None:
    """What every bench needs first: root (the tools run as the test user through setpriv)
    and the host set up as for the tests (tests/setup_host.sh)."""
    if os.geteuid() != 0:
        raise SystemExit("run as root: the tools run as the unprivileged test user via setpriv")
    subprocess.run(["bash", str(REPO / "tests" / "setup_host.sh")], check=True)


def write_section(name: str, body: str) -> None:
    """Replace `## name` in bench/README.md (other sections belong to other benches)."""
    path = REPO / "bench" / "README.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    head = f"## {name}\n"
    if head in text:
        start = text.index(head)
        nxt = text.find("\n## ", start + len(head))
        end = len(text) if nxt < 0 else nxt + 1
        text = text[:start] + head + "\n" + body + "\n" + text[end:].lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + head + "\n" + body
    path.write_text(text if text.endswith("\n") else text + "\n")


if __name__ == "__main__":
    sys.exit(main())
