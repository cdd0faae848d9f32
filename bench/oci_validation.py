#!/usr/bin/env python3
"""bench/oci_validation: run the OCI runtime-tools validation suite against runtimes.

The suite (github.com/opencontainers/runtime-tools) is NOT part of this project: build it
yourself (Go >= 1.21, offline from its vendor/ tree) and give its directory:

    cd RTT && GOFLAGS=-mod=vendor GOPROXY=off make runtimetest validation-executables
    sudo /usr/bin/python3 bench/oci_validation.py --suite RTT \
        [--runtime pydocklite --runtime runc --runtime crun] [--mode root --mode rootless] \
        [--only hostname,state] [--oci-version 1.0.2] [--out DIR]

Each validation/*/*.t program is a TAP producer that drives the runtime named by $RUNTIME
with runc's verbs; it runs from the suite directory (it reads rootfs-<arch>.tar.gz and
runtimetest there). An assertion is a line starting with "ok" or "not ok" on its stdout
(skips, "ok ... # SKIP", are counted apart); a program that dies before printing any adds nothing
to the total, so the programs that died (or reported an error without any assertion) are
counted apart. It prints a table; bench/README.md (## oci-validation) has the results, read.

Modes:
  root      the programs run as root.
  rootless  they run as the unprivileged user (--user, default pdltest). The suite writes
            configs for root (no user namespace): a runtime run by a user needs one, so the
            wrapper adds {"type": "user"} and maps 0 -> the user, 1..65536 -> the user's
            subordinate range (what a rootless engine such as Podman gives a runtime) when
            the config has no user namespace. The same wrapper is used for every runtime.
  rootless-as-given   as the user, configs untouched (every runtime refuses most of them).
crun 1.8 refuses this VM's hybrid cgroup layout unless /sys/fs/cgroup/unified is hidden: for
crun each program runs in a private mount namespace (made as root) with it unmounted.
"""
from __future__ import annotations

import argparse
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = "/usr/bin/python3"
_ASSERT_LINE = re.compile(rb"^(?:not ok|ok)\b.*$", re.M)
_SKIP = re.compile(rb"#\s*skip", re.I)

# on `create`: set ociVersion (--oci-version) and/or add a user namespace (mode rootless)
_CONFIG_FILTER = r'''
import json, os, sys
args = sys.argv[1:]
if args and args[0] == "create" and (ADD_USERNS or OCI_VERSION):
    bundle = "."
    for i, a in enumerate(args):
        if a in ("--bundle", "-b") and i + 1 < len(args):
            bundle = args[i + 1]
        elif a.startswith("--bundle="):
            bundle = a.split("=", 1)[1]
    path = os.path.join(bundle, "config.json")
    try:
        with open(path) as f:
            cfg = json.load(f)
    except (OSError, ValueError):
        cfg = None
    if cfg is not None and OCI_VERSION:
        cfg["ociVersion"] = OCI_VERSION
    if cfg is not None and ADD_USERNS:
        lx = cfg.setdefault("linux", {})
        nss = lx.setdefault("namespaces", [])
        if not any(n.get("type") == "user" for n in nss):
            nss.append({"type": "user"})
            lx["uidMappings"] = [{"containerID": 0, "hostID": UID, "size": 1},
                                 {"containerID": 1, "hostID": SUBUID, "size": SUBN}]
            lx["gidMappings"] = [{"containerID": 0, "hostID": GID, "size": 1},
                                 {"containerID": 1, "hostID": SUBGID, "size": SUBGN}]
    if cfg is not None:
        with open(path, "w") as f:
            json.dump(cfg, f)
os.execv(RUNTIME, [RUNTIME] + args)
'''


def _subrange(name: str, user: str) -> tuple:
    try:
        with open(name) as f:
            for line in f:
                parts = line.strip().split(":")
                if len(parts) == 3 and parts[0] == user:
                    return int(parts[1]), int(parts[2])
    except OSError:
        pass
    raise SystemExit(f"{user} has no range in {name}: rootless mode needs one")


def make_wrapper(workdir: str, name: str, mode: str, user, oci_version: str,
                 pdl_path: str) -> str:
    """An executable for $RUNTIME: the runtime itself, or a filter of config.json in front."""
    if name == "pydocklite":
        real = os.path.join(workdir, "pydocklite-runtime")
        with open(real, "w") as f:
            # --log: the runtime's own warnings (settings it ignores) per program, counted in
            # the "passed while ignoring a setting" column
            f.write(f"#!/bin/sh\nPYTHONPATH={pdl_path} exec {PY} -m pydocklite runtime "
                    f"${{OCIVAL_LOG:+--log \"$OCIVAL_LOG\"}} \"$@\"\n")
        os.chmod(real, 0o755)
    else:
        real = shutil.which(name) or name
        if not os.access(real, os.X_OK):
            raise SystemExit(f"runtime {name!r} not found")
    add_userns = mode == "rootless"
    if not add_userns and not oci_version:
        return real
    su = sn = sg = sgn = 0
    if add_userns:
        su, sn = _subrange("/etc/subuid", user.pw_name)
        sg, sgn = _subrange("/etc/subgid", user.pw_name)
    body = _CONFIG_FILTER.replace("RUNTIME", repr(real)).replace("SUBUID", str(su)) \
        .replace("SUBN", str(sn)).replace("SUBGID", str(sg)).replace("SUBGN", str(sgn)) \
        .replace("ADD_USERNS", repr(add_userns)).replace("OCI_VERSION", repr(oci_version)) \
        .replace("UID", str(user.pw_uid)).replace("GID", str(user.pw_gid))
    path = os.path.join(workdir, f"{os.path.basename(name)}-filtered")
    with open(path, "w") as f:
        f.write(f"#!{PY}\n{body}")
    os.chmod(path, 0o755)
    return path


def make_cwd(suite: str, home: str, user, rootless: bool) -> str:
    """The programs' working directory: runtimetest and the rootfs tarball. Each program
    copies runtimetest keeping its owner (lchown), which only root may do for another
    user's file: as the user, run beside a copy the user owns."""
    if not rootless:
        return suite
    cwd = os.path.join(home, "suite")
    os.makedirs(cwd, exist_ok=True)
    shutil.copy2(os.path.join(suite, "runtimetest"), os.path.join(cwd, "runtimetest"))
    for name in os.listdir(suite):
        if name.startswith("rootfs-") and name.endswith(".tar.gz"):
            os.symlink(os.path.join(suite, name), os.path.join(cwd, name))
    for path in (cwd, os.path.join(cwd, "runtimetest")):
        os.lchown(path, user.pw_uid, user.pw_gid)
    return cwd


def kill_left_behind(top: str) -> None:
    """Kill container processes a program left (one that exits between create and delete,
    e.g. delete_only_create_resources rootless): their cmdline names a bundle under top."""
    mark = top.encode()
    killed = 0
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                if mark not in f.read():
                    continue
            os.kill(int(name), 9)
            killed += 1
        except OSError:
            continue
    if killed:
        sys.stderr.write(f"killed {killed} container processes left under {top}\n")


def unmount_under(top: str) -> None:
    """Unmount what a runtime left mounted under top (a container without a mount namespace
    mounts in the caller's), so the work dir can be removed."""
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].replace("\\040", " ")
            if mp == top or mp.startswith(top.rstrip("/") + "/"):
                found.append(mp)
    for mp in sorted(found, key=len, reverse=True):
        subprocess.run(["umount", "-l", mp], check=False, stderr=subprocess.DEVNULL)
    if found:
        sys.stderr.write(f"unmounted {len(found)} mounts left under {top}\n")


def run_program(suite: str, cwd: str, prog: str, runtime: str, name: str, mode: str, user,
                home: str, timeout: float) -> tuple:
    """(exit code, stdout, stderr, seconds) of one .t program."""
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "RUNTIME": runtime, "LANG": "C.UTF-8", "TMPDIR": os.path.join(home, "tmp"),
           "OCIVAL_LOG": runtime_log(home, prog)}
    cmd = [os.path.join(suite, prog)]
    if mode.startswith("rootless"):
        env.update({"HOME": home, "USER": user.pw_name, "LOGNAME": user.pw_name,
                    "XDG_RUNTIME_DIR": os.path.join(home, "run")})
        cmd = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}",
               "--init-groups", "--"] + cmd
    if os.path.basename(name) == "crun" and os.path.isdir("/sys/fs/cgroup/unified"):
        cmd = ["unshare", "-m", "--propagation", "private", "sh", "-c",
               'umount -l /sys/fs/cgroup/unified 2>/dev/null; exec "$@"', "sh"] + cmd
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=timeout, start_new_session=True)
        code, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        code, out, err = "timeout", e.stdout or b"", e.stderr or b""
    return code, out, err, time.monotonic() - t0


def runtime_log(home: str, prog: str) -> str:
    return os.path.join(home, "tmp", os.path.basename(prog) + ".runtime-log")


# what pydocklite's runtime logs when it runs a container without a runtime-spec setting it
# was given (properties outside the runtime-spec are ignored as the spec requires: not counted)
_IGNORED = re.compile(rb"level=warning .*(?: is ignored \(|option .* is not supported and is "
                      rb"ignored)")


def ignored_settings(home: str, prog: str) -> list:
    """The runtime's warnings, during one program, that it ignored a setting of the config
    (only runtimes that pass --log through the wrapper say so: pydocklite)."""
    try:
        with open(runtime_log(home, prog), "rb") as f:
            return [m.group(0).decode(errors="replace") for m in _IGNORED.finditer(f.read())]
    except OSError:
        return []


def count(out: bytes) -> dict:
    """Assertions in a TAP stdout (nested TAP printed raw counts too): ok (skips apart)."""
    ok = skip = bad = 0
    for line in _ASSERT_LINE.findall(out):
        if line.startswith(b"not ok"):
            bad += 1
        elif _SKIP.search(line):
            skip += 1
        else:
            ok += 1
    return {"ok": ok, "skip": skip, "not_ok": bad}


def programs(suite: str, only) -> list:
    vdir = os.path.join(suite, "validation")
    progs = []
    for d in sorted(os.listdir(vdir)):
        t = os.path.join("validation", d, d + ".t")
        if os.path.exists(os.path.join(suite, t)) and (not only or d in only):
            progs.append(t)
    if not progs:
        raise SystemExit(f"no validation/*/*.t under {suite}: build the suite first")
    return progs


def run_suite(suite: str, name: str, mode: str, user, out_dir: str, only, timeout,
              oci_version: str, pdl_path: str = REPO) -> dict:
    label = os.path.basename(name)
    work = tempfile.mkdtemp(prefix=f"ocival-{label}-{mode}-", dir="/var/tmp")
    os.chmod(work, 0o755)
    rootless = mode.startswith("rootless")
    home = os.path.join(work, "home")
    for d in (home, os.path.join(home, "run"), os.path.join(home, "tmp")):
        os.makedirs(d, exist_ok=True)
        if rootless:
            os.chown(d, user.pw_uid, user.pw_gid)
    os.chmod(os.path.join(home, "run"), 0o700)
    runtime = make_wrapper(work, name, mode, user, oci_version, pdl_path)
    cwd = make_cwd(suite, home, user, rootless)
    results = {}
    try:
        for prog in programs(suite, only):
            code, out, err, secs = run_program(suite, cwd, prog, runtime, name, mode, user,
                                               home, timeout)
            test = os.path.basename(os.path.dirname(prog))
            res = dict(count(out), exit=code, seconds=round(secs, 2))
            res["error_without_assertions"] = (res["ok"] + res["skip"] + res["not_ok"] == 0
                                               and (code != 0 or b'"error"' in out))
            res["ignored"] = ignored_settings(home, prog) if label == "pydocklite" else None
            results[test] = res
            if out_dir:
                base = os.path.join(out_dir, f"{label}-{mode}", test)
                os.makedirs(os.path.dirname(base), exist_ok=True)
                with open(base + ".out", "wb") as f:
                    f.write(out)
                with open(base + ".err", "wb") as f:
                    f.write(err)
            sys.stderr.write(f"{label} {mode} {test}: ok={res['ok']} skip={res['skip']} "
                             f"not_ok={res['not_ok']} exit={code} {secs:.1f}s\n")
    finally:
        kill_left_behind(work)
        unmount_under(work)
        subprocess.run(["rm", "-rf", work], check=False)
    return results


def summary(results: dict) -> dict:
    tot = {k: sum(r[k] for r in results.values()) for k in ("ok", "skip", "not_ok")}
    tot.update(programs=len(results),
               failed_programs=sum(1 for r in results.values()
                                   if r["exit"] != 0 or r["error_without_assertions"]),
               seconds=round(sum(r["seconds"] for r in results.values()), 1))
    said = [r for r in results.values() if r.get("ignored") is not None]
    tot["passed_ignoring"] = sum(r["ok"] for r in said if r["ignored"]) if said else None
    return tot


def table(rows: list) -> str:
    lines = ["| runtime | mode | passed | skipped | not ok | assertions | passed+skipped | "
             "programs dead / erroring without assertions | passed while ignoring a setting "
             "| time |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, mode, s in rows:
        total = s["ok"] + s["skip"] + s["not_ok"]
        lines.append(f"| {name} | {mode} | {s['ok']} | {s['skip']} | {s['not_ok']} | {total} | "
                     f"{s['ok'] + s['skip']} | {s['failed_programs']} of {s['programs']} | "
                     f"{'n/a' if s.get('passed_ignoring') is None else s['passed_ignoring']} | "
                     f"{s['seconds']} s |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--suite", required=True, help="built runtime-tools source directory")
    ap.add_argument("--runtime", action="append",
                    help="pydocklite, runc, crun or a path (repeatable; default all three)")
    ap.add_argument("--mode", action="append", choices=["root", "rootless", "rootless-as-given"],
                    help="repeatable; default root and rootless")
    ap.add_argument("--user", default="pdltest")
    ap.add_argument("--only", help="comma-separated test names (validation/<name>)")
    ap.add_argument("--oci-version", default="",
                    help="rewrite config.json's ociVersion to this (for runtimes that refuse "
                         "the suite's newer one, e.g. crun 1.8 and 1.3.0)")
    ap.add_argument("--pydocklite-path", default=REPO,
                    help="the directory holding the pydocklite package to run (default: this "
                         "checkout)")
    ap.add_argument("--out", help="directory for each program's stdout/stderr and results.json")
    ap.add_argument("--timeout", type=float, default=180.0, help="seconds per program")
    a = ap.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("run as root (rootless modes drop to --user per program)")
    suite = os.path.abspath(a.suite)
    user = pwd.getpwnam(a.user)
    only = set(a.only.split(",")) if a.only else None
    rows = []
    every = {}
    for mode in a.mode or ["root", "rootless"]:
        for name in a.runtime or ["pydocklite", "runc", "crun"]:
            res = run_suite(suite, name, mode, user, a.out, only, a.timeout, a.oci_version,
                            os.path.abspath(a.pydocklite_path))
            label = os.path.basename(name) + (f" (ociVersion {a.oci_version})"
                                              if a.oci_version else "")
            every[f"{label}-{mode}"] = res
            rows.append((label, mode, summary(res)))
    text = table(rows)
    sys.stdout.write(text)
    if a.out:
        os.makedirs(a.out, exist_ok=True)
        with open(os.path.join(a.out, "results.json"), "w") as f:
            json.dump(every, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
