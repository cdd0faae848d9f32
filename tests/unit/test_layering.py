"""The one import direction of ARCHITECTURE.md, checked on the source (AST, all imports,
lazy ones inside functions included):

    pydocklite/ ──► registry/, snapshotter/   (those two never import pydocklite/ or each other)
    inside pydocklite: cli, api → builder → containers/images/distribution/... (the engine
    services) → shim → state (container records) → runtime
    runtime/ never imports anything above it; shim/ never imports the services (it reads its
    frozen configuration, shim.json), state/ neither the shim nor the services; the two faces
    never import each other.
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
    paths = [REPO / package] if package.endswith(".py") else sorted((REPO / package).rglob("*.py"))
    for path in paths:
        yield path, imports_of(path)


SERVICES_AND_ABOVE = ("pydocklite.cli", "pydocklite.api", "pydocklite.builder",
                      "pydocklite.containers", "pydocklite.images", "pydocklite.distribution",
                      "pydocklite.networks", "pydocklite.system")

FORBIDDEN = {
    "registry": ("pydocklite", "snapshotter"),
    "snapshotter": ("pydocklite", "registry"),
    "pydocklite/runtime": ("pydocklite.cli", "pydocklite.containers", "pydocklite.shim",
                           "pydocklite.images", "pydocklite.builder", "pydocklite.distribution",
                           "registry", "snapshotter"),
    "pydocklite/shim": SERVICES_AND_ABOVE,
    "pydocklite/state": SERVICES_AND_ABOVE + ("pydocklite.shim", "registry", "snapshotter"),
    "pydocklite/containers": ("pydocklite.cli", "pydocklite.api", "pydocklite.builder"),
    # the volumes service is a leaf the one teardown (shim/teardown.py) calls: a container
    # removed by its shim (--rm) lets go of its volumes as one removed by `rm` does
    "pydocklite/volumes.py": SERVICES_AND_ABOVE + ("pydocklite.shim", "pydocklite.state"),
    "pydocklite/system.py": ("pydocklite.cli", "pydocklite.api", "pydocklite.builder"),
    # the two faces never import each other: both call the services
    "pydocklite/api": ("pydocklite.cli",),
    # the namespace host sits beside the shim: requests carry what it needs, it reads no
    # container, image or network record
    "pydocklite/nshost": SERVICES_AND_ABOVE + ("pydocklite.volumes",),
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
