#!/usr/bin/env python3
"""bench/fs: pydocklite's snapshotter mounts against kernel overlayfs and fuse-overlayfs.

Run as root (drop_caches for the cold runs; every backend mounts as the same user, on the
host, so they are compared on equal terms):

    /tmp/venv/bin/python bench/fs.py [--workdir /var/tmp/pdl-bench-fs] [--no-readme]

Backends, all over the same layers:
  pdl-fuse      snapshotter driver "fuse": the FUSE overlay (mmap'd blobs + upper dir)
  pdl-overlay   snapshotter driver "overlay": kernel overlayfs, lowerdir = read-only FUSE merge
  kovl          kernel overlayfs over extracted layers (the reference)
  fuse-ovl      fuse-overlayfs (Debian) over extracted layers
Measures: sequential read of a 512 MiB file (cold, warm), find+stat over ~20,000 files of a
10-layer image (cold, warm), untar of a source tree into the upper dir, prepare+mount of the
10-layer image. Writes the table under "## fs" in bench/README.md.
"""
from __future__ import annotations

import argparse
import ctypes
import io
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from snapshotter.layout import StoreLayout  # noqa: E402
from snapshotter.mounter import mount_all  # noqa: E402
from snapshotter.snapshots import Snapshotter  # noqa: E402
from snapshotter.store import LayerStore  # noqa: E402

TAR = "application/vnd.oci.image.layer.v1.tar"
BIG = 512 << 20
LIBC = ctypes.CDLL(None, use_errno=True)


def drop_caches() -> None:
    subprocess.run(["sync"], check=True)
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def umount(path: str) -> None:
    LIBC.umount2(path.encode(), 2)


# --- test data ---------------------------------------------------------------------------------
def make_layers(work: Path):
    """Tars: big (one 512 MiB file), ten 2,000-file layers, a source tree; cached in work/."""
    data = work / "data"
    data.mkdir(parents=True, exist_ok=True)
    big = data / "big.tar"
    if not big.exists():
        chunk = os.urandom(1 << 20)
        with tarfile.open(f"{big}.tmp", "w") as tf:
            ti = tarfile.TarInfo("big/file")
            ti.size = BIG

            class Src(io.RawIOBase):
                left = BIG

                def readable(self):
                    return True

                def readinto(self, b):
                    n = min(len(b), self.left, len(chunk))
                    b[:n] = chunk[:n]
                    self.left -= n
                    return n
            tf.addfile(ti, io.BufferedReader(Src(), 1 << 20))
        os.replace(f"{big}.tmp", big)
    small = []
    for L in range(10):
        p = data / f"small{L}.tar"
        small.append(p)
        if p.exists():
            continue
        with tarfile.open(p, "w") as tf:
            for d in range(20):
                ti = tarfile.TarInfo(f"usr/l{L}/d{d}")
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(ti)
                for f in range(100):
                    body = (b"%d-%d-%d\n" % (L, d, f)) * (f * 4 + 1)
                    ti = tarfile.TarInfo(f"usr/l{L}/d{d}/f{f}.txt")
                    ti.size, ti.mode = len(body), 0o644
                    tf.addfile(ti, io.BytesIO(body))
    src = data / "src.tar"
    if not src.exists():   # a source tree: ~4,000 files of 100 B - 16 KiB in nested dirs
        with tarfile.open(src, "w") as tf:
            for a in range(20):
                for b in range(10):
                    for c in range(20):
                        body = os.urandom(64).hex().encode() * ((a * c) % 128 + 1)
                        ti = tarfile.TarInfo(f"proj/mod{a}/pkg{b}/file{c}.c")
                        ti.size = len(body)
                        tf.addfile(ti, io.BytesIO(body))
    return big, small, src


def ingest_all(layout: StoreLayout, tars):
    ls = LayerStore(layout)
    return [ls.ingest_file(None, TAR, t).diff_id for t in tars]


def extract(tars, dest: Path):
    dirs = []
    for i, t in enumerate(tars):
        d = dest / f"x{i}"
        if not d.exists():
            d.mkdir(parents=True)
            subprocess.run(["tar", "-xf", str(t), "-C", str(d)], check=True)
        dirs.append(str(d))
    return dirs


# --- backends ----------------------------------------------------------------------------------
class Backend:
    def __init__(self, name, work: Path, layout, chain, xdirs):
        self.name, self.work, self.layout, self.chain, self.xdirs = name, work, layout, chain, xdirs
        self.n = 0
        self.active = None
        self.mnt = None

    def mount(self) -> str:
        self.n += 1
        base = self.work / "mnt" / f"{self.name}-{self.n}-{os.getpid()}"
        mnt = base / "m"
        mnt.mkdir(parents=True)
        if self.name in ("pdl-fuse", "pdl-overlay"):
            snap = Snapshotter(self.layout, "fuse" if self.name == "pdl-fuse" else "overlay")
            key = f"bench-{self.n}-{time.time()}"
            self.active = (snap, key, mount_all(snap.prepare(key, self.chain), str(mnt),
                                                allow_other=False))
        else:
            up, wk = base / "upper", base / "work"
            up.mkdir()
            wk.mkdir()
            lower = ":".join(reversed(self.xdirs))
            opts = f"lowerdir={lower},upperdir={up},workdir={wk}"
            if self.name == "kovl":
                if LIBC.mount(b"overlay", str(mnt).encode(), b"overlay", 0, opts.encode()):
                    raise OSError(ctypes.get_errno(), "overlay mount")
            else:
                subprocess.run(["fuse-overlayfs", "-o", opts, str(mnt)], check=True)
            self.active = None
        self.mnt = str(mnt)
        os.stat(self.mnt)
        return self.mnt

    def unmount(self) -> None:
        if self.active:
            snap, key, act = self.active
            act.unmount()
            snap.remove(key)
        else:
            umount(self.mnt)
        shutil.rmtree(Path(self.mnt).parent, ignore_errors=True)
        self.active = None


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def read_file(path: str) -> None:
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(1 << 20)
        while f.readinto(buf):
            pass


def walk(mnt: str) -> None:
    subprocess.run(["find", mnt + "/usr", "-printf", "%s %m %u\n"], check=True,
                   stdout=subprocess.DEVNULL)


def bench_backend(b_big: Backend, b_small: Backend, src: Path, reps: int) -> dict:
    res = {}
    cold, warm = [], []
    for _ in range(reps):
        mnt = b_big.mount()
        drop_caches()
        cold.append(BIG / timed(lambda: read_file(mnt + "/big/file")) / 1e6)
        warm.append(BIG / timed(lambda: read_file(mnt + "/big/file")) / 1e6)
        b_big.unmount()
    res["read_cold"], res["read_warm"] = statistics.median(cold), statistics.median(warm)
    cold, warm = [], []
    for _ in range(reps):
        mnt = b_small.mount()
        drop_caches()
        cold.append(timed(lambda: walk(mnt)))
        warm.append(timed(lambda: walk(mnt)))
        b_small.unmount()
    res["walk_cold"], res["walk_warm"] = statistics.median(cold), statistics.median(warm)
    times = []
    for _ in range(reps):
        mnt = b_small.mount()
        os.mkdir(mnt + "/src")
        times.append(timed(lambda: subprocess.run(["tar", "-xf", str(src), "-C", mnt + "/src"],
                                                  check=True)))
        b_small.unmount()
    res["untar"] = statistics.median(times)
    times = []
    for _ in range(max(reps * 3, 7)):
        times.append(timed(b_small.mount))
        b_small.unmount()
    res["mount"] = statistics.median(times)
    return res


ANALYSIS = """\
What the numbers say (kept by hand; the table above is rewritten by every run; the machine
is shared, so single numbers swing up to 2-3x between runs — compare within a run).
`pdl-overlay` is what `auto` picks here: kernel overlayfs over the read-only layer view,
which is served through libfuse3's low-level API (READDIRPLUS, one kernel inode per
merged inode, day-long caching including negative lookups); `pdl-fuse` is the writable
fusepy/libfuse2 fallback for kernels without overlayfs in user namespaces.

- **Warm reads** never reach the server (strace: ~6 requests for a warm 512 MiB read): they
  are the kernel's FUSE page-cache path, ~5.1-5.6 GB/s for pydocklite *and* fuse-overlayfs,
  against 14-19 GB/s for overlayfs over ext4 (large folios). The **0.9x-of-kernel-overlay
  target is not met** (~0.27-0.36x) and can't be from a FUSE page cache on this kernel; FUSE
  passthrough would, but it needs CAP_SYS_ADMIN in the initial user namespace (not
  rootless). Cold reads (128 KiB slices of the mmap'd blob) match fuse-overlayfs.
- **Cold find+stat over 20k files**: `pdl-overlay` 0.40 s vs fuse-overlayfs 0.59 s (kernel
  overlay over extracted layers 0.34 s): **target met**. The writable `pdl-fuse` needs ~2x
  fuse-overlayfs: fusepy sits on libfuse2's high-level API, one LOOKUP round trip into
  Python per name (a trivial fusepy filesystem is as slow).
- **Warm find+stat**: `pdl-overlay` 0.27 s vs 0.17 s (overlayfs revalidates its lower
  dentries through FUSE). `pdl-fuse` keeps attributes only 1 s on its writable mount
  (libfuse's high-level API gives each hardlink name its own kernel inode; longer would leave
  stale link counts).
- **Untar into the upper**: `pdl-overlay` writes at kernel speed (native upper dir); the
  writable `pdl-fuse` pays a Python round trip per operation (1.4-1.6x fuse-overlayfs).
- **prepare+mount** (10 layers, 20k files): `pdl-overlay` 14.9 ms: **target met**
  (`prepare` ~2 ms sqlite/WAL + fork + load the cached merged tree + FUSE mount + overlay
  mount 0.4 ms). `pdl-fuse` measured 14 ms in a calmer run and 37 ms in this one. A
  process's first mount adds ~20 ms of imports (pre-import in the shim while it sets up).
"""


def write_readme(table: str, notes: str) -> None:
    readme = REPO / "bench" / "README.md"
    text = readme.read_text() if readme.exists() else "# Benchmarks\n"
    section = f"## fs\n\n{notes}\n\n{table}\n\n{ANALYSIS}"
    start = text.find("## fs\n")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + 5)
        text = text[:start] + section + (text[end + 1:] if end >= 0 else "")
    readme.write_text(text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default="/var/tmp/pdl-bench-fs")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--backends", default="pdl-fuse,pdl-overlay,kovl,fuse-ovl")
    ap.add_argument("--no-readme", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        ap.error("run as root (drop_caches, kernel overlay mounts)")
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    big, small, src = make_layers(work)
    layout = StoreLayout(work / "store").ensure()
    big_chain = ingest_all(layout, [big])
    small_chain = ingest_all(layout, small)
    Snapshotter(layout, "fuse").warm(small_chain)
    Snapshotter(layout, "fuse").warm(big_chain)
    xbig = extract([big], work / "xbig")
    xsmall = extract(small, work / "xsmall")
    rows = {}
    for name in args.backends.split(","):
        rows[name] = bench_backend(Backend(name, work, layout, big_chain, xbig),
                                   Backend(name, work, layout, small_chain, xsmall), src,
                                   args.reps)
        print(name, {k: round(v, 4) for k, v in rows[name].items()}, flush=True)
    hdr = ("| backend | read 512 MiB cold MB/s | warm MB/s | find+stat 20k cold s | warm s "
           "| untar into upper s | prepare+mount ms |")
    lines = [hdr, "|" + "---|" * 7]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['read_cold']:.0f} | {r['read_warm']:.0f} | "
                     f"{r['walk_cold']:.3f} | {r['walk_warm']:.3f} | {r['untar']:.2f} | "
                     f"{r['mount'] * 1000:.1f} |")
    table = "\n".join(lines)
    print(table)
    if not args.no_readme:
        load = os.getloadavg()[0]
        notes = (f"`bench/fs.py` (as root, medians of {args.reps}+ runs; load average "
                 f"{load:.1f} on {os.cpu_count()} CPUs while it ran — other jobs shared the "
                 f"machine). Cold = fresh mount after drop_caches. pdl-* prepare+mount is the "
                 f"in-process `Snapshotter.prepare` + `mount_all` until the mount answers "
                 f"(merged-tree cache warm); kovl is one mount(2); fuse-ovl is one exec of "
                 f"fuse-overlayfs. Kernel `{os.uname().release}`.")
        write_readme(table, notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
