"""The one import direction of ARCHITECTURE.md, checked on the source (AST, all imports,
lazy ones inside functions included):

    pydocklite/ ──► registry/, snapshotter/   (those two never import pydocklite/ or each other)
    inside pydocklite: cli → builder/containers/images/distribution → shim → runtime
    runtime/ never imports anything above it.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def imports_of(path: Path) -> set:
    tree = ast.parse(path.read_text(), str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            parts = path.relative_to(REPO).with_suffix("").parts[:-node.level]
            found.add(".".join(parts + ((node.module,) if node.module else ())))
    return found


def modules(package: str):
    for path in sorted((REPO / package).rglob("*.py")):
        yield path, imports_of(path)


FORBIDDEN = {
    "registry": ("pydocklite", "snapshotter"),
    "snapshotter": ("pydocklite", "registry"),
    "pydocklite/runtime": ("pydocklite.cli", "pydocklite.containers", "pydocklite.shim",
                           "pydocklite.images", "pydocklite.builder", "pydocklite.distribution",
                           "registry", "snapshotter"),
    "pydocklite/shim": ("pydocklite.cli", "pydocklite.builder", "pydocklite.distribution"),
    "pydocklite/containers": ("pydocklite.cli", "pydocklite.builder"),
    # the namespace host sits beside the shim: requests carry what it needs, it reads no
    # container, image or network record
    "pydocklite/nshost": ("pydocklite.cli", "pydocklite.builder", "pydocklite.distribution",
                          "pydocklite.containers", "pydocklite.images", "pydocklite.networks",
                          "pydocklite.volumes", "pydocklite.api"),
}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_import_direction(package):
    bad = []
    for path, imported in modules(package):
        for name in imported:
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN[package]):
                bad.append(f"{path.relative_to(REPO)} imports {name}")
    assert not bad, "\n".join(bad)


def test_heavy_libraries_are_imported_lazily():
    """requests, zstandard, cryptography and fuse only inside functions, never at module
    level, so `--help`, `ps` and `images` start fast."""
    heavy = ("requests", "zstandard", "cryptography", "fuse", "mfusepy", "urllib3")
    bad = []
    for package in ("pydocklite", "registry", "snapshotter"):
        for path in sorted((REPO / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            for node in tree.body:
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module]
                for n in names:
                    if n.split(".")[0] in heavy:
                        bad.append(f"{path.relative_to(REPO)}:{node.lineno} imports {n}")
    assert not bad, "\n".join(bad)
