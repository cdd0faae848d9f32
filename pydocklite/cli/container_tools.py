"""`cp`, `top`, `stats`."""
from __future__ import annotations

import subprocess
import sys

from pydocklite.cli.common import Parser, human_size, print_table
from pydocklite.errors import ContainerStateError, UsageError


def _running(settings, ref):
    from pydocklite.state.store import ContainerStore
    state = ContainerStore(settings.layout.containers_dir).get(ref)
    if not state.status().running:
        raise ContainerStateError(f"container {state.name} is not running: start it first")
    return state


def cmd_cp(settings, argv) -> int:
    p = Parser("cp", "cp [OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-\n       pydocklite cp "
               "[OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH",
               "Copy files/folders between a container and the local filesystem\n\n"
               "Use '-' as the source to read a tar archive from stdin and extract it to a "
               "directory destination in a container.\nUse '-' as the destination to stream a "
               "tar archive of a container source to stdout.\nOn the host, entries that can't "
               "be made safely (device nodes, fifos, links leading outside the destination) "
               "are skipped and listed; set-uid/set-gid bits are dropped.")
    p.add_argument("-a", "--archive", action="store_true", help="Archive mode (copy all "
                   "uid/gid information)")
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress progress output "
                   "during copy")
    p.add_argument("src")
    p.add_argument("dest")
    args = p.parse_args(argv)
    from pydocklite.containers.cp import copy_from_container, copy_to_container

    def split(x):
        if ":" in x and not x.startswith(("/", ".")):
            ref, _, path = x.partition(":")
            return ref, path
        return None, x
    sref, spath = split(args.src)
    dref, dpath = split(args.dest)
    if (sref is None) == (dref is None):
        raise UsageError("copying between containers or between local paths is not "
                         "supported: one side must be CONTAINER:PATH")
    if sref is not None:
        skipped = copy_from_container(settings, sref, spath or "/", dpath)
    else:
        skipped = copy_to_container(settings, dref, spath, dpath or "/", args.archive)
    for name, why in skipped:
        shown = "".join(ch if ch.isprintable() else "?" for ch in f"{name}: {why}")
        sys.stderr.write(f"pydocklite cp: skipped {shown}\n")
    return 0


def cmd_top(settings, argv) -> int:
    p = Parser("top", "top CONTAINER [ps OPTIONS]", "Display the running processes of a "
               "container")
    p.add_argument("container")
    p.add_argument("ps_args", nargs="...")
    args = p.parse_args(argv)
    from pydocklite.containers.procs import container_pids
    state = _running(settings, args.container)
    pids = container_pids(settings, state.id)
    fmt = args.ps_args or ["-o", "user,pid,ppid,c,stime,tty,time,cmd"]
    r = subprocess.run(["ps", *fmt, "-p", ",".join(map(str, pids))], capture_output=True,
                       text=True)
    if r.returncode not in (0, 1):
        raise UsageError(f"ps failed: {r.stderr.strip()}")
    lines = r.stdout.splitlines()
    if lines and not args.ps_args:
        lines[0] = lines[0].replace("USER", "UID", 1)
    sys.stdout.write("".join(line + "\n" for line in lines))
    return 0


def cmd_stats(settings, argv) -> int:
    p = Parser("stats", "stats [OPTIONS] [CONTAINER...]", "Display a live stream of container(s) "
               "resource usage statistics")
    p.add_argument("-a", "--all", action="store_true", help="Show all containers")
    p.add_argument("--no-stream", action="store_true", help="Disable streaming stats and only "
                   "pull the first result")
    p.add_argument("--format", help="Format output using a Go template")
    p.add_argument("--no-trunc", action="store_true", help="Do not truncate output")
    p.add_argument("containers", nargs="*")
    args = p.parse_args(argv)
    from pydocklite.containers.procs import sample_stats
    from pydocklite.state.store import ContainerStore
    store = ContainerStore(settings.layout.containers_dir)
    states = [store.get(c) for c in args.containers] if args.containers else store.list()
    states = [s for s in states if s.status().running]
    cols = [("ID", "CONTAINER ID"), ("Name", "NAME"), ("CPUPerc", "CPU %"),
            ("MemUsage", "MEM USAGE / LIMIT"), ("MemPerc", "MEM %"), ("NetIO", "NET I/O"),
            ("BlockIO", "BLOCK I/O"), ("PIDs", "PIDS")]
    while True:
        rows = []
        for s in sample_stats(settings, states):
            rows.append({"ID": s["id"] if args.no_trunc else s["id"][:12],
                         "Container": s["id"][:12], "Name": s["name"],
                         "CPUPerc": f"{s['cpu']:.2f}%",
                         "MemUsage": f"{human_size(s['mem'])} / {human_size(s['limit'])}",
                         "MemPerc": f"{100.0 * s['mem'] / max(1, s['limit']):.2f}%",
                         "NetIO": "--", "BlockIO": "--", "PIDs": str(s["pids"])})
        if not args.no_stream:
            sys.stdout.write("\x1b[2J\x1b[H")
        print_table(rows, cols, args.format)
        sys.stdout.flush()
        if args.no_stream:
            return 0
