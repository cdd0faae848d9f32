"""Class 2 of issue 10: the one host-side extractor (pydocklite/tar_extract.py), attacked with
crafted archives (tests/security/extract_cases.py), the same on every Python of the host."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.security import extract_cases

REPO = Path(__file__).resolve().parent.parent.parent

# expected per case: error (substring, or None), skipped names, and what dest holds
EXPECTED = {
    "absolute": ("absolute names are not allowed", None, {"ok.txt"}),
    "dotdot": ("'..' leads outside the destination", None, set()),
    "symlink-out-then-through": (None, ["l"], {"l", "l/evil"}),
    "symlink-in-then-through": ("not written through", None, {"l", "sub"}),
    "symlink-chain-to-parent": (None, ["p"], {"s", "d", "d/ok"}),
    "absolute-symlink": (None, ["etc-passwd"], {"rel", "target.txt"}),
    "hardlinks-out": (None, ["h1", "h2", "h3", "h5"], {"f", "s", "h4"}),
    "file-replaced-by-link-then-hardlinked": (None, ["f"], {"f", "h"}),
    "specials-and-setid": (None, ["null", "disk", "fifo"], {"suid", "sgid-dir", "sticky"}),
    "existing-link-in-destination": ("not written through", None, {"victim"}),
    "file-over-directory": ("would replace the directory 'keep'", None, {"keep"}),
    "read-only-dir-with-children": (None, [], {"ro", "ro/f"}),
    "long-names": (None, [], None),                 # checked below
    "truncated": ("truncated", None, set()),
    "huge-pax": ("extended header of 1073741824 bytes is too large", None, set()),
}


def _interpreters() -> list:
    """/usr/bin/python3 (what users run) and every other CPython 3.9+ this host has."""
    found = [sys.executable, "/usr/bin/python3"]
    pyenv = Path(os.environ.get("PYENV_ROOT", "/root/.pyenv")) / "versions"
    if pyenv.is_dir():
        for v in sorted(pyenv.iterdir()):
            parts = v.name.split(".")
            if len(parts) >= 2 and parts[0] == "3" and parts[1].isdigit() and int(parts[1]) >= 9:
                found.append(str(v / "bin" / "python3"))
    for name in ("python3.9", "python3.10", "python3.12", "python3.13", "python3.14"):
        p = shutil.which(name)
        if p and "/shims/" not in p:          # pyenv's shims: the versions above
            found.append(p)
    seen, out = set(), []
    for p in found:
        real = os.path.realpath(p)
        if os.access(real, os.X_OK) and real not in seen:
            seen.add(real)
            out.append(p)
    return out


@pytest.fixture(scope="module")
def archives(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("archives")
    for name in extract_cases.names():
        (d / f"{name}.tar").write_bytes(extract_cases.build(name))
    return d


def _run(python: str, archives: Path, where: Path) -> dict:
    for name in extract_cases.names():
        shutil.copy(archives / f"{name}.tar", where / f"{name}.tar")
    r = subprocess.run([python, str(REPO / "tests" / "security" / "extract_cases.py"),
                        str(where)], capture_output=True, text=True, timeout=120,
                       env={"PATH": os.environ.get("PATH", ""), "PYTHONDONTWRITEBYTECODE": "1"})
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_every_case_is_covered():
    assert set(EXPECTED) == set(extract_cases.names())


@pytest.mark.parametrize("python", _interpreters())
def test_hostile_archives(python, archives, tmp_path):
    results = _run(python, archives, tmp_path)
    for name, (error, skipped, dest) in EXPECTED.items():
        r = results[name]
        assert r["outside"] == {"secret": ["f", "0o644", "secret", 1]}, (name, "wrote outside")
        if error is None:
            assert r["error"] is None, (name, r["error"])
            assert [n for n, _why in r["skipped"]] == skipped, (name, r["skipped"])
        else:
            assert r["error"] and error in r["error"], (name, r["error"])
        if dest is not None:
            assert set(r["dest"]) == dest, (name, sorted(r["dest"]))
    modes = {k: v[1] for k, v in results["specials-and-setid"]["dest"].items()}
    assert modes == {"suid": "0o755", "sgid-dir": "0o775", "sticky": "0o1777"}
    assert results["read-only-dir-with-children"]["dest"]["ro"][1] == "0o555"
    long = results["long-names"]
    assert long["error"] is None
    assert any(v[0] == "f" and v[2] == "long" for v in long["dest"].values())
    links = {k: v[1] for k, v in results["hardlinks-out"]["dest"].items() if v[0] == "f"}
    assert results["hardlinks-out"]["dest"]["h4"][3] == 2 and links == {"f": "0o644",
                                                                        "h4": "0o644"}


def test_same_results_on_every_python(archives, tmp_path):
    """3.9 has no tarfile filters; the extractor never uses tarfile: identical everywhere."""
    pythons = _interpreters()
    first = None
    for i, python in enumerate(pythons):
        where = tmp_path / str(i)
        where.mkdir()
        r = _run(python, archives, where)
        if first is None:
            first = r
        assert r == first, f"{python} extracts differently"
