"""Hostile archives for the one extractor (pydocklite/tar_extract.py), and a runner that
extracts them and reports what happened -- run by the test's interpreter and, as a
subprocess, by every other Python on the host (3.9 has no tarfile filters: the extractor
must not depend on them).

    python3 tests/security/extract_cases.py DIR     # DIR/<case>.tar -> JSON results on stdout
"""
from __future__ import annotations

import io
import json
import os
import sys
import tarfile

CASES = {}       # name -> (entries, setup): entries for tarfile, setup of dest before


def _ti(name, kind=tarfile.REGTYPE, mode=0o644, linkname="", data=b"", **kw):
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.linkname, info.size = kind, mode, linkname, len(data)
    info.mtime = 1700000000
    for k, v in kw.items():
        setattr(info, k, v)
    return info, data


def case(name, setup=None):
    def deco(fn):
        CASES[name] = (fn, setup or {})
        return fn
    return deco


@case("absolute")
def _absolute():
    return [_ti("ok.txt", data=b"ok"), _ti("/outside/evil", data=b"x")]


@case("dotdot")
def _dotdot():
    return [_ti("a/../../outside/evil", data=b"x")]


@case("symlink-out-then-through")
def _sym_through():
    return [_ti("l", tarfile.SYMTYPE, 0o777, "../outside"), _ti("l/evil", data=b"x")]


@case("symlink-in-then-through")
def _sym_in_through():
    return [_ti("sub", tarfile.DIRTYPE, 0o755), _ti("l", tarfile.SYMTYPE, 0o777, "sub"),
            _ti("l/evil", data=b"x")]


@case("symlink-chain-to-parent")
def _chain():
    # each alone looks harmless; followed together s/.. is the destination's parent
    return [_ti("s", tarfile.SYMTYPE, 0o777, "."), _ti("p", tarfile.SYMTYPE, 0o777, "s/.."),
            _ti("d/ok", tarfile.SYMTYPE, 0o777, "../s")]


@case("absolute-symlink")
def _abs_link():
    return [_ti("etc-passwd", tarfile.SYMTYPE, 0o777, "/etc/passwd"),
            _ti("rel", tarfile.SYMTYPE, 0o777, "target.txt"), _ti("target.txt", data=b"t")]


@case("hardlinks-out")
def _hard_out():
    return [_ti("h1", tarfile.LNKTYPE, 0o644, "/etc/passwd"),
            _ti("h2", tarfile.LNKTYPE, 0o644, "../outside/secret"),
            _ti("h3", tarfile.LNKTYPE, 0o644, "never-seen"),
            _ti("f", data=b"shared"), _ti("h4", tarfile.LNKTYPE, 0o644, "f"),
            _ti("s", tarfile.SYMTYPE, 0o777, "f"), _ti("h5", tarfile.LNKTYPE, 0o644, "s")]


@case("file-replaced-by-link-then-hardlinked")
def _replaced():
    return [_ti("f", data=b"x"), _ti("f", tarfile.SYMTYPE, 0o777, "/etc/shadow"),
            _ti("h", tarfile.LNKTYPE, 0o644, "f")]


@case("specials-and-setid")
def _specials():
    return [_ti("null", tarfile.CHRTYPE, 0o666, devmajor=1, devminor=3),
            _ti("disk", tarfile.BLKTYPE, 0o660, devmajor=8, devminor=0),
            _ti("fifo", tarfile.FIFOTYPE, 0o644),
            _ti("suid", mode=0o4755, data=b"#!/bin/sh\n"), _ti("sgid-dir", tarfile.DIRTYPE, 0o2775),
            _ti("sticky", tarfile.DIRTYPE, 0o1777)]


@case("existing-link-in-destination", {"links": {"victim": "../outside"}})
def _existing():
    return [_ti("victim/evil", data=b"x")]


@case("file-over-directory", {"dirs": ["keep"]})
def _file_over_dir():
    return [_ti("keep", data=b"x")]


@case("long-names")
def _long():
    deep = "/".join(["d" * 50] * 6)
    return [_ti(deep + "/" + "f" * 120, data=b"long"),
            _ti("ln", tarfile.SYMTYPE, 0o777, deep + "/" + "f" * 120)]


@case("read-only-dir-with-children")
def _ro_dir():
    return [_ti("ro", tarfile.DIRTYPE, 0o555), _ti("ro/f", data=b"in a read-only dir")]


CUT = {"truncated": 700, "huge-pax": None}


def build(name: str) -> bytes:
    """The archive bytes of a case (GNU format for one, PAX for the rest)."""
    if name == "huge-pax":       # an extended header announcing 1 GiB: refused, never read
        info = tarfile.TarInfo("PaxHeaders/x")
        info.type, info.size = tarfile.XHDTYPE, 1 << 30
        return info.tobuf(format=tarfile.USTAR_FORMAT) + b"0" * 4096
    if name == "truncated":
        return build("long-names")[:CUT["truncated"]]
    fn, _ = CASES[name]
    buf = io.BytesIO()
    fmt = tarfile.GNU_FORMAT if name == "long-names" else tarfile.PAX_FORMAT
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for info, data in fn():
            tf.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def names() -> list:
    return list(CASES) + list(CUT)


def _tree(root: str) -> dict:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            if os.path.islink(p):
                out[rel] = ["l", os.readlink(p)]
            elif os.path.isdir(p):
                out[rel] = ["d", oct(st.st_mode & 0o7777)]
            else:
                with open(p, "rb") as f:
                    out[rel] = ["f", oct(st.st_mode & 0o7777), f.read().decode(), st.st_nlink]
    return out


def run(directory: str) -> dict:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
        __file__)))))
    from pydocklite.tar_extract import extract_stream
    results = {}
    for name in names():
        work = os.path.join(directory, "work", name)
        dest, outside = os.path.join(work, "dest"), os.path.join(work, "outside")
        os.makedirs(dest)
        os.makedirs(outside)
        with open(os.path.join(outside, "secret"), "w") as f:
            f.write("secret")
        setup = CASES.get(name, (None, {}))[1]
        for d in setup.get("dirs", ()):
            os.mkdir(os.path.join(dest, d))
        for link, target in setup.get("links", {}).items():
            os.symlink(target, os.path.join(dest, link))
        with open(os.path.join(directory, name + ".tar"), "rb") as f:
            data = f.read()
        fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY)
        r = {"error": None, "skipped": None}
        try:
            r["skipped"] = [list(x) for x in extract_stream(io.BytesIO(data).read, fd)]
        except Exception as e:  # noqa: BLE001 - reported
            r["error"] = f"{type(e).__name__}: {e}"
        finally:
            os.close(fd)
        r["dest"] = _tree(dest)
        r["outside"] = _tree(outside)
        results[name] = r
        for root, _dirs, _files in os.walk(work):
            os.chmod(root, 0o755)            # so that it can be removed
    return results


if __name__ == "__main__":
    json.dump(run(sys.argv[1]), sys.stdout, sort_keys=True)
