"""The `vfs` driver's last resort: a plain copy of the merged layers, one per snapshot.

Used where neither FUSE nor overlayfs is available. The copy is made with the same copy-up
code as the FUSE upper dir (so owners that can't be set are kept as override xattrs), with
hardlinks kept as hardlinks.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Sequence

from .merge import DIR, LowerData, MergedTree
from .upper import UpperDir


def extract_chain(layout, chain: Sequence[str], dest: Path) -> None:
    from .layer_index import LayerIndex
    tree = MergedTree([LayerIndex.load(layout.layer_index(d)) for d in chain])
    data = LowerData([layout.layer_blob(d) for d in chain])
    try:
        extract_tree(tree, data, dest)
    finally:
        data.close()


def extract_tree(tree: MergedTree, data: LowerData, dest: Path) -> None:
    dest.mkdir(mode=0o755)
    upper = UpperDir(dest)
    first: Dict[int, str] = {}
    dirs = []
    for rel in tree.paths():
        node = tree.get(rel)
        if rel == "":
            upper.finish_meta("", node.mode, node.uid, node.gid, 0, node.xattrs, None)
            dirs.append((rel, node))
            continue
        if node.type != DIR and node.nlink > 1:
            if node.ino in first:
                upper.link(first[node.ino], rel)
                continue
            first[node.ino] = rel
        upper.copy_up(rel, node, data)
        if node.type == DIR:
            dirs.append((rel, node))
    for rel, node in reversed(dirs):   # children changed the dirs' mtimes
        ns = int(node.mtime * 1e9)
        upper.utime(rel, (ns, ns))
    upper.close()
