"""Image distribution: push to registries, save/load archives, import rootfs tarballs,
commit containers, and image history.

    push.py        push an image to any registry (skip/mount/upload per layer, progress events)
    compress.py    deterministic gzip / zstd compression of a stored (uncompressed) layer
    blobinfo.py    which compressed blobs of a layer exist in which repositories
    archive.py     save: Docker archive / OCI layout (tar or dir); load: both formats
    sources.py     read an archive whether it is a tar file or a directory
    local_image.py register an image made here (manifest of uncompressed layers + record)
    changes.py     Dockerfile-style --change instructions applied to an image config
    importer.py    a rootfs tarball -> a single-layer image
    commit.py      a container's changes -> a new layer on top of its image
    history.py     the rows of `history`

Only `pydocklite.cli.dist` prints; everything here raises (errors.py) and returns data.
"""
from __future__ import annotations
