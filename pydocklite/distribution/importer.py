"""`import`: a root filesystem tarball (file, URL or stdin; plain, gzip or zstd) becomes a
single-layer image."""
from __future__ import annotations

from typing import BinaryIO, Iterable, Iterator, List, Optional

from pydocklite.distribution.changes import apply_changes
from pydocklite.distribution.errors import DistributionError
from pydocklite.distribution.local_image import config_bytes, now_rfc3339, register


def _file_chunks(f: BinaryIO) -> Iterator[bytes]:
    for chunk in iter(lambda: f.read(1 << 20), b""):
        yield chunk


def _url_chunks(url: str) -> Iterator[bytes]:
    import requests
    try:
        with requests.get(url, stream=True, timeout=(15, 60)) as resp:
            if resp.status_code != 200:
                raise DistributionError(f"import {url}: HTTP {resp.status_code}: check the URL")
            for chunk in resp.iter_content(1 << 20):
                if chunk:
                    yield chunk
    except requests.RequestException as e:
        raise DistributionError(f"import {url}: {e}") from None


def import_tarball(service, source: str, name: Optional[str] = None, *,
                   changes: Iterable[str] = (), message: str = "",
                   stdin: Optional[BinaryIO] = None, platform: Optional[str] = None):
    """Store the tarball as a layer and register an image for it; returns the ImageRecord.
    No collection runs meanwhile (the new layer is unnamed until the image is recorded)."""
    from snapshotter.leases import gc_lock
    with gc_lock(service.layout.ensure(), shared=True):
        return _import(service, source, name, changes=changes, message=message, stdin=stdin,
                       platform=platform)


def _import(service, source: str, name: Optional[str], *, changes: Iterable[str],
            message: str, stdin: Optional[BinaryIO], platform: Optional[str]):
    from registry.model import Platform, host_platform
    config = apply_changes({}, changes)          # refuse bad --change before reading data
    plat = Platform.parse(platform) if platform else host_platform()
    if source == "-":
        if stdin is None:
            raise DistributionError("import -: no standard input to read the tarball from")
        chunks: Iterable[bytes] = _file_chunks(stdin)
        shown = "-"
    elif source.startswith(("http://", "https://")):
        chunks, shown = _url_chunks(source), source
    else:
        try:
            f = open(source, "rb")
        except OSError as e:
            raise DistributionError(f"import {source}: {e.strerror}: check the path") from None
        chunks, shown = _file_chunks(f), source
    layer = service._layers().ingest_stream(None, None, chunks, name=f"import of {shown}",
                                            **service.settings.layer_bounds())
    created = now_rfc3339()
    history = {"created": created, "created_by": "",
               "comment": message or f"Imported from {shown}"}
    doc = {"architecture": plat.architecture, "os": plat.os, "created": created,
           "config": config,
           "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
           "history": [history]}
    if plat.variant:
        doc["variant"] = plat.variant
    names: List[str] = [name] if name else []
    return register(service, config_bytes(doc), names)
