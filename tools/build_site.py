"""Assemble one site-packages directory that serves every supported CPython (build.sh step).

Usage: python3 tools/build_site.py --pip PIP --constraints FILE --out DIR \
           --python-versions 3.9,3.10,... [--platform manylinux2014_x86_64] REQUIREMENT...

For each CPython version, `pip download --only-binary=:all:` fetches the wheels for that
version and platform (pinned by the constraints file so pure-Python packages resolve to the
same release everywhere). Requirements published only as sdists (fusepy) are first turned
into wheels with `pip wheel` and offered through --find-links. All wheels are unpacked into
DIR: pure files are identical across versions, compiled modules carry their version tag in
their file name (zstandard's backend_c.cpython-3XX-...so, cffi's _cffi_backend.cpython-3XX...)
so they sit side by side; cryptography's _rust.abi3.so serves them all. Then DIR is pruned
(zstandard's CFFI backend, type stubs, caches) and every shared object is stripped.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

# Files a zipapp never needs. zstandard only falls back to its CFFI backend on non-CPython
# interpreters (see zstandard/__init__.py, PYTHON_ZSTANDARD_IMPORT_POLICY=default), and the
# zipapp targets CPython, so its 12 MB-per-version _cffi module goes.
PRUNE_GLOBS = ("zstandard/_cffi.*.so", "zstandard/backend_cffi.py", "**/*.pyi", "**/__pycache__",
               "**/py.typed")


def _run(argv: list) -> None:
    print("+ " + " ".join(argv), file=sys.stderr)
    subprocess.run(argv, check=True)


def download(pip: str, reqs: list, constraints: Path, versions: list, platform: str,
             work: Path) -> list:
    """Return the wheel paths for every version (missing versions are an error)."""
    local = work / "local-wheels"
    # Build wheels for sdist-only requirements (pure Python) with the build interpreter.
    _run([pip, "wheel", "--no-deps", "-q", "-c", str(constraints), "-w", str(local), *reqs])
    wheels = []
    # Highest version first: unpack() lets later wheels overwrite earlier ones, so where two
    # wheels hold the same path (cryptography's _rust.abi3.so is cp39-abi3 for 3.9/3.10 but
    # cp311-abi3 for 3.11+) the copy built for the oldest supported CPython wins.
    for ver in sorted(versions, key=lambda v: tuple(int(x) for x in v.split(".")), reverse=True):
        dest = work / f"cp{ver}"
        _run([pip, "download", "-q", "--only-binary=:all:", "--implementation", "cp",
              "--python-version", ver, "--platform", platform, "--find-links", str(local),
              "-c", str(constraints), "-d", str(dest), *reqs])
        wheels.extend(sorted(dest.glob("*.whl")))
    return wheels


def unpack(wheels: list, out: Path) -> None:
    for whl in wheels:
        with zipfile.ZipFile(whl) as zf:
            for info in zf.infolist():
                name = info.filename
                parts = name.split("/")
                if parts[0].endswith(".data"):
                    # purelib/platlib go to the root; scripts/headers/data are not needed.
                    if len(parts) < 3 or parts[1] not in ("purelib", "platlib"):
                        continue
                    name = "/".join(parts[2:])
                if name.endswith("/"):
                    continue
                target = out / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(zf.read(info))
                mode = (info.external_attr >> 16) & 0o777
                target.chmod(mode or 0o644)


def prune_and_strip(out: Path) -> None:
    for pattern in PRUNE_GLOBS:
        for path in sorted(out.glob(pattern), reverse=True):
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    for dist_info in out.glob("*.dist-info"):
        for name in ("RECORD", "INSTALLER", "REQUESTED"):
            (dist_info / name).unlink(missing_ok=True)
    shared = sorted(p for p in out.rglob("*.so*") if p.is_file())
    if shared:
        _run(["strip", "--strip-unneeded", *map(str, shared)])


def main(argv: list) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pip", required=True)
    ap.add_argument("--constraints", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--python-versions", required=True)
    ap.add_argument("--platform", default="manylinux2014_x86_64")
    ap.add_argument("requirements", nargs="+")
    args = ap.parse_args(argv)
    versions = [v for v in args.python_versions.split(",") if v]
    tmp_out = args.out.with_name(args.out.name + ".tmp")
    shutil.rmtree(tmp_out, ignore_errors=True)
    tmp_out.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="pdl-wheels-") as work:
        wheels = download(args.pip, args.requirements, args.constraints.resolve(), versions,
                          args.platform, Path(work))
        unpack(wheels, tmp_out)
    prune_and_strip(tmp_out)
    shutil.rmtree(args.out, ignore_errors=True)
    tmp_out.rename(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
