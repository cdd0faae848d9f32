"""`save` and `load`: images as a Docker archive or an OCI image layout (tar or directory).

Docker archive (what `docker save` writes and `docker load` reads):
    manifest.json   [{"Config": "<hex>.json", "RepoTags": [...], "Layers": ["<id>/layer.tar"]}]
    repositories    {"repo": {"tag": "<top layer id>"}}
    <hex>.json      the image config, byte for byte (so the image id survives)
    <id>/layer.tar  each layer uncompressed, <id>/VERSION, <id>/json (legacy v1 metadata);
                    <id> is the layer's chain id
OCI image layout:
    oci-layout, index.json (annotations io.containerd.image.name = full name,
    org.opencontainers.image.ref.name = tag), blobs/sha256/<hex>: config, an OCI manifest,
    and the layers as uncompressed tars (media type ...layer.v1.tar, digest = diff_id).
`load` reads both (a tar, a gzip-compressed tar, or a directory), and layers compressed with
gzip or zstd inside them.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import List, Tuple

from pydocklite.distribution.errors import ArchiveError
from pydocklite.distribution.local_image import register, uncompressed_manifest

DOCKER, OCI = "docker", "oci"
NAME_ANNOTATION = "io.containerd.image.name"
REF_ANNOTATION = "org.opencontainers.image.ref.name"


def chain_ids(diff_ids) -> List[str]:
    """ChainIDs (hex) of a layer stack, as the OCI image spec defines them."""
    out, prev = [], ""
    for d in diff_ids:
        cur = d if not prev else "sha256:" + hashlib.sha256(f"{prev} {d}".encode()).hexdigest()
        out.append(cur.split(":", 1)[1])
        prev = cur
    return out


def _select(service, names) -> List[Tuple[object, List[str]]]:
    """(record, canonical tags to save with it) for each name, in order, merged per image."""
    from registry.reference import Reference
    picked: dict = {}
    db = service.db.load()
    for name in names:
        record = service.lookup(name, db)
        tags = picked.setdefault(record.id, (record, []))[1]
        try:
            canon = str(Reference.parse(name))
        except Exception:  # noqa: BLE001 - an image id: saved without a name
            canon = ""
        if canon and db.tags.get(canon) == record.id and canon not in tags:
            tags.append(canon)
    return list(picked.values())


def save(service, names: List[str], sink, fmt: str = DOCKER) -> None:
    if fmt not in (DOCKER, OCI):
        raise ArchiveError(f"unknown archive format {fmt!r}")
    images = _select(service, names)
    if fmt == DOCKER:
        _save_docker(service, images, sink)
    else:
        _save_oci(service, images, sink)
    sink.close()


def _save_docker(service, images, sink) -> None:
    from pydocklite.images import familiar, split_repo_tag
    content, layers = service._content(), service._layers()
    manifest, repositories, written = [], {}, set()
    for record, tags in images:
        config_name = record.id.split(":", 1)[1] + ".json"
        sink.add_bytes(config_name, content.read(record.id))
        paths, parent = [], ""
        for diff_id, cid in zip(record.diff_ids, chain_ids(record.diff_ids)):
            if cid not in written:
                written.add(cid)
                meta = {"id": cid, "created": "1970-01-01T00:00:00Z", "config": {}}
                if parent:
                    meta["parent"] = parent
                sink.add_bytes(f"{cid}/VERSION", b"1.0")
                sink.add_bytes(f"{cid}/json", json.dumps(meta).encode())
                sink.add_file(f"{cid}/layer.tar", layers.blob_path(diff_id))
            paths.append(f"{cid}/layer.tar")
            parent = cid
        repo_tags = [familiar(t) for t in tags]
        manifest.append({"Config": config_name, "RepoTags": repo_tags or None,
                         "Layers": paths})
        for t in repo_tags:
            repo, tag = split_repo_tag(t)
            repositories.setdefault(repo, {})[tag] = parent
    sink.add_bytes("manifest.json", json.dumps(manifest, separators=(",", ":")).encode())
    if repositories:
        sink.add_bytes("repositories", json.dumps(repositories).encode())


def _save_oci(service, images, sink) -> None:
    from registry.model import OCI_MANIFEST, Descriptor, sha256_digest
    from registry.reference import Reference
    content, layers = service._content(), service._layers()
    sink.add_bytes("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
    index, written = [], set()
    for record, tags in images:
        config_raw = content.read(record.id)
        blobs = [(record.id, None)] + [(d, layers.blob_path(d)) for d in record.diff_ids]
        for digest, path in blobs:
            if digest in written:
                continue
            written.add(digest)
            name = "blobs/sha256/" + digest.split(":", 1)[1]
            if path is None:
                sink.add_bytes(name, config_raw)
            else:
                sink.add_file(name, path)
        raw = uncompressed_manifest(service, config_raw, record.diff_ids)
        mdigest = sha256_digest(raw)
        if mdigest not in written:
            written.add(mdigest)
            sink.add_bytes("blobs/sha256/" + mdigest.split(":", 1)[1], raw)
        for t in tags or [""]:
            ann = ()
            if t:
                ref = Reference.parse(t)
                ann = ((NAME_ANNOTATION, str(ref)), (REF_ANNOTATION, ref.tag or "latest"))
            index.append(Descriptor(OCI_MANIFEST, mdigest, len(raw), annotations=ann).to_json())
    doc = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
           "manifests": index}
    sink.add_bytes("index.json", json.dumps(doc, separators=(",", ":")).encode())


@dataclass(frozen=True)
class Loaded:
    image_id: str
    names: Tuple[str, ...]      # familiar names it was tagged with


def load(service, source, *, signature_policy=None, origin=None) -> List[Loaded]:
    """Load every image of `source` (sources.open_source); returns what was loaded.

    When a signature policy applies (`signature_policy`, else the user's or the system's
    policy.json) the archive is checked first, as transport docker-archive (a Docker
    archive, tar or directory), oci-archive (an OCI layout in a tar) or oci (an OCI layout
    directory), scoped by `origin` (the path the user gave; None for stdin: only the
    transport's "" scope and the default then apply). Archives carry no signatures: a policy
    asking for them refuses the archive before anything is stored. No collection (rmi,
    prune) runs while it loads: what is stored stays until recorded."""
    if source.has("manifest.json"):
        transport, loader = "docker-archive", _load_docker
    elif source.has("index.json") and source.has("oci-layout"):
        transport = "oci" if getattr(source, "root", None) is not None else "oci-archive"
        loader = _load_oci
    else:
        raise ArchiveError("not an image archive: it has neither manifest.json (Docker) nor "
                           "oci-layout + index.json (OCI)")
    from pydocklite.trust.policy import load_policy
    policy = load_policy(signature_policy)
    if policy is not None:
        from pydocklite.trust.verify import check_archive
        check_archive(policy, transport, origin or "")
    from snapshotter.leases import gc_lock
    with gc_lock(service.layout.ensure(), shared=True):
        return loader(service, source)


def _ingest(service, source, path: str, diff_id: str, media_type) -> None:
    layers = service._layers()
    if layers.has(diff_id):
        return
    with layers.ingest(diff_id, media_type, name=f"{path} ({diff_id})",
                       **service.settings.layer_bounds()) as w:
        with source.open(path) as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                w.write(chunk)
        w.commit()


def _json(source, name: str):
    try:
        return json.loads(source.read(name))
    except ValueError as e:
        raise ArchiveError(f"{name} in the archive is not valid JSON: {e}") from None


def _load_docker(service, source) -> List[Loaded]:
    from registry.model import parse_image_config, sha256_digest
    from pydocklite.images import familiar
    entries = _json(source, "manifest.json")
    if not isinstance(entries, list):
        raise ArchiveError("manifest.json of the archive is not a list")
    out = []
    for e in entries:
        try:
            config_raw = source.read(e["Config"])
            paths = list(e["Layers"])
        except (KeyError, TypeError):
            raise ArchiveError("manifest.json entry without Config/Layers") from None
        config = parse_image_config(config_raw, sha256_digest(config_raw))
        if len(paths) != len(config.diff_ids):
            raise ArchiveError(f"image {e['Config']}: {len(paths)} layer files for "
                               f"{len(config.diff_ids)} diff_ids in its config")
        for path, diff_id in zip(paths, config.diff_ids):
            _ingest(service, source, path, diff_id, None)
        names = [t for t in (e.get("RepoTags") or []) if isinstance(t, str)]
        record = register(service, config_raw, names)
        out.append(Loaded(record.id, tuple(familiar(service.normalize(n)) for n in names)))
    return out


def _load_oci(service, source) -> List[Loaded]:
    from registry.model import INDEX_TYPES, parse_image_config, parse_manifest, sha256_digest
    from pydocklite.images import familiar
    index = _json(source, "index.json")
    out = []
    todo = list(index.get("manifests") or [])
    if not todo:
        raise ArchiveError("the OCI layout's index.json lists no images")
    depth = 0
    while todo:
        desc = todo.pop(0)
        digest = desc.get("digest", "")
        raw = _blob(source, digest)
        if desc.get("mediaType") in INDEX_TYPES:
            depth += 1
            if depth > 8:
                raise ArchiveError("index.json nests indexes too deeply")
            todo.extend(json.loads(raw).get("manifests") or [])
            continue
        manifest = parse_manifest(raw, desc.get("mediaType", ""), digest)
        config_raw = _blob(source, manifest.config.digest)
        config = parse_image_config(config_raw, manifest.config.digest)
        if len(manifest.layers) != len(config.diff_ids):
            raise ArchiveError(f"manifest {digest}: {len(manifest.layers)} layers but "
                               f"{len(config.diff_ids)} diff_ids in its config")
        for ldesc, diff_id in zip(manifest.layers, config.diff_ids):
            _ingest(service, source, _blob_name(ldesc.digest), diff_id, ldesc.media_type)
        ann = desc.get("annotations") or {}
        name = ann.get(NAME_ANNOTATION) or ""
        ref_name = ann.get(REF_ANNOTATION) or ""
        if not name and ref_name and ("/" in ref_name or ":" in ref_name):
            name = ref_name
        names = [name] if name else []
        if sha256_digest(raw) != digest:
            raise ArchiveError(f"manifest {digest} in the archive is corrupt")
        record = register(service, config_raw, names, manifest_raw=raw)
        out.append(Loaded(record.id, tuple(familiar(service.normalize(n)) for n in names)))
    return out


def _blob_name(digest: str) -> str:
    from snapshotter.layout import digest_hex
    try:
        return "blobs/sha256/" + digest_hex(digest)
    except Exception:  # noqa: BLE001
        raise ArchiveError(f"unsupported blob digest {digest!r} in the archive") from None


def _blob(source, digest: str) -> bytes:
    from registry.model import sha256_digest
    data = source.read(_blob_name(digest))
    if sha256_digest(data) != digest:
        raise ArchiveError(f"blob {digest} in the archive is corrupt (its bytes hash to "
                           f"{sha256_digest(data)})")
    return data
