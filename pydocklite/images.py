"""The image service: pull (registry -> store), local lookup, tag, remove, prune, inspect.

Pull streams each layer from the registry client straight into the snapshotter's layer
store, which decompresses, hashes and indexes it in the same pass; layers download in
parallel and a layer already stored (by DiffID) is never fetched again.
"""
from __future__ import annotations

import json
import time

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import List, Optional, Set

from pydocklite.errors import (ConflictError, ImageError, ImageInUseError, ImageNotFoundError,
                               UsageError)
from pydocklite.image_db import ImageDB, ImageRecord, ImageStore
from pydocklite.runtime.record import record as value_type
from pydocklite.settings import Settings

MAX_PARALLEL_LAYERS = 4
UNPARSED = object()     # lookup(ref=...) not given: the name is parsed there


@value_type
class PullEvent:
    layer: str          # short id (12 hex of the compressed digest), "" for image-wide events
    status: str         # "Pulling fs layer", "Downloading", "Already exists", "Pull complete", ...
    current: int = 0
    total: int = 0


ProgressFn = "Callable[[PullEvent], None]"   # for annotations


def short_id(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


class ImageService:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.layout = settings.layout
        self.db = ImageStore(self.layout.images_db)

    # --- stores (imported lazily: `images` must not pay for zstandard) ----------------

    def _content(self):
        from snapshotter.content_store import ContentStore   # not store: `run` reads a config
        self.layout.ensure()
        return ContentStore(self.layout)

    def _layers(self):
        from snapshotter.store import LayerStore
        self.layout.ensure()
        return LayerStore(self.layout)

    # --- lookup -----------------------------------------------------------------------

    def normalize(self, name: str) -> str:
        from registry.reference import Reference
        return str(Reference.parse(name))

    def lookup(self, name: str, db: Optional[ImageDB] = None, ref=UNPARSED) -> ImageRecord:
        """An image by name[:tag], name@digest, full or short id. `ref`: what
        parse_reference(name) gave the caller, who parsed it already (run does, once)."""
        db = db or self.db.load()
        found = self._find(name, db, ref)
        if found is None:
            raise ImageNotFoundError(f"No such image: {name}")
        return found

    def _find(self, name: str, db: ImageDB, ref=UNPARSED) -> Optional[ImageRecord]:
        bare = name[len("sha256:"):] if name.startswith("sha256:") else name
        if bare and all(c in "0123456789abcdef" for c in bare) and len(bare) >= 3:
            matches = [r for iid, r in db.images.items() if iid[7:].startswith(bare)]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1 and len(bare) < 64:
                raise UsageError(f"image id prefix {name!r} is ambiguous: give more digits")
        if ref is UNPARSED:
            ref = parse_reference(name)
        if ref is None:
            return None           # not a valid name: simply not found
        if ref.digest is None:
            record_id = db.tags.get(str(ref))
            return db.images.get(record_id) if record_id else None
        # name@digest: the digest pulled for that repository (an index's or a manifest's)
        for record in db.images.values():
            if f"{ref.repository}@{ref.digest}" in record.repo_digests or (
                    ref.digest in (record.manifest_digest, record.index_digest)
                    and any(d.startswith(ref.repository + "@") for d in record.repo_digests)):
                return record
        return None

    def exists(self, name: str) -> bool:
        try:
            return self._find(name, self.db.load()) is not None
        except (ImageError, UsageError):
            return False

    def config(self, record: ImageRecord):
        from registry.model import parse_image_config
        return parse_image_config(self._content().read(record.id), record.id)

    def config_json(self, record: ImageRecord) -> dict:
        return json.loads(self._content().read(record.id))

    # --- pull -------------------------------------------------------------------------

    def client(self, *, tls_verify: Optional[bool] = None, host: str = "", auth=None):
        from pydocklite.registry_access import make_client
        return make_client(self.settings, tls_verify=tls_verify, insecure_host=host, auth=auth)

    def pull(self, name, *, platform: Optional[str] = None,
             progress: Optional[ProgressFn] = None, tls_verify: Optional[bool] = None,
             auth=None, signature_policy: Optional[str] = None) -> ImageRecord:
        """Pull `name` (a string, or a Reference parsed by the caller) into the store. When
        a signature policy applies (`signature_policy`, else ~/.config/containers/policy.json,
        else /etc/containers/policy.json) the image is checked against it after its manifests
        and config are read and before anything is stored: a refused image raises
        trust.errors.SignatureRefused and leaves no trace. auth: credentials a client sent
        (the API's X-Registry-Auth) instead of config.json."""
        from registry.model import Platform
        from registry.reference import Reference
        from pydocklite.trust.policy import load_policy
        emit = progress or (lambda ev: None)
        ref = name if isinstance(name, Reference) else Reference.parse(name)
        want = Platform.parse(platform) if platform else None
        policy = load_policy(signature_policy)
        preload = None
        if policy is not None and policy.for_docker(ref).needs_signatures:
            from pydocklite.trust.verify import start_preload
            preload = start_preload()      # cryptography's import overlaps the registry's replies
        try:
            with self.client(tls_verify=tls_verify, host=ref.domain, auth=auth) as client:
                record = self._pull(client, ref, want, emit, policy)
        finally:
            if preload is not None:
                preload.join()
        self.event("pull", familiar(str(ref)), name=familiar(ref.repository))
        return record

    def event(self, action: str, actor: str, **attributes: str) -> None:
        """An image event in the user's journal (pydocklite/events.py)."""
        from pydocklite import events
        events.emit(self.settings.runtime_layout.events_dir, "image", action, actor,
                    attributes)

    def _pull(self, client, ref, want, emit: ProgressFn, policy=None) -> ImageRecord:
        resolved = client.resolve(ref, platform=want)   # checks config diff_ids vs layers
        verdict = None
        if policy is not None:
            from pydocklite.trust.verify import check_registry_image
            verdict = check_registry_image(policy, client, ref, resolved)
        # until the image is recorded, a lease keeps a concurrent rmi/prune from deleting
        # the layers and blobs found or stored here (snapshotter/leases.py)
        with self.lease(f"pull {ref}") as lease:
            manifest = resolved.manifest
            lease.add(layers=[str(d) for d in resolved.config.diff_ids],
                      blobs=[str(manifest.digest), str(manifest.config.digest),
                             str(resolved.index.digest) if resolved.index else ""]
                      + [str(d.digest) for d in manifest.layers])
            return self._pull_leased(client, ref, resolved, emit, verdict)

    def _pull_leased(self, client, ref, resolved, emit: ProgressFn, verdict) -> ImageRecord:
        manifest = resolved.manifest
        config = resolved.config
        diff_ids = [str(d) for d in config.diff_ids]
        content = self._content()
        layers = self._layers()
        # Layers first, metadata last: an image appears in `images` only once complete.
        todo = []
        for desc, diff_id in zip(manifest.layers, diff_ids):
            if layers.has(diff_id):
                emit(PullEvent(short_id(str(desc.digest)), "Already exists"))
            else:
                emit(PullEvent(short_id(str(desc.digest)), "Pulling fs layer", 0, desc.size))
                todo.append((desc, diff_id))
        if todo:
            self._check_space(ref, sum(desc.size for desc, _ in todo))
            self._fetch_layers(client, ref, todo, layers, emit)
        if resolved.index is not None:
            content.write(str(resolved.index.digest), resolved.index.raw)
        content.write(str(manifest.digest), manifest.raw)
        content.write(str(manifest.config.digest), resolved.config_bytes)
        size = sum(layers.size(d) for d in diff_ids)
        repo_digest_src = resolved.index.digest if resolved.index is not None else manifest.digest
        record = ImageRecord(
            id=str(manifest.config.digest),
            manifest_digest=str(manifest.digest),
            manifest_media_type=manifest.media_type,
            diff_ids=tuple(diff_ids),
            size=size,
            created=config.created or "",
            architecture=config.architecture or "",
            os=config.os or "",
            repo_digests=(f"{ref.repository}@{repo_digest_src}",),
            added_at=time.time(),
            index_digest=str(resolved.index.digest) if resolved.index is not None else "",
            trust=verdict,
        )
        names = [str(ref)] if ref.tag and not ref.digest else []
        self.db.add(record, names)
        self._warm(diff_ids)
        emit(PullEvent("", "Digest", 0, 0))
        return record

    def _check_space(self, ref, compressed: int) -> None:
        """Before a pull: room for at least the compressed layers (they only grow once
        unpacked; each layer's writer checks again as it goes) plus min-free-space."""
        import os
        from snapshotter.errors import StoreFullError
        st = os.statvfs(self.layout.root)
        free = st.f_bavail * st.f_frsize
        need = compressed + self.settings.min_free_space
        if free < need:
            from pydocklite.humanize import human_size
            raise StoreFullError(
                f"pulling {ref}: {human_size(free)} free in {self.layout.root}, the image's "
                f"{human_size(compressed)} of compressed layers (more once unpacked) and the "
                f"{human_size(self.settings.min_free_space)} kept free need "
                f"{human_size(need)}: free disk space or lower PYDOCKLITE_MIN_FREE_SPACE")

    def _warm(self, diff_ids) -> None:
        """Build the merged-tree cache now, so the image's first container starts fast."""
        from snapshotter.snapshots import Snapshotter
        Snapshotter(self.layout, self.settings.storage_driver).warm(list(diff_ids))

    def _fetch_layers(self, client, ref, todo, layers, emit: ProgressFn) -> None:
        import threading
        lock = threading.Lock()

        def fetch(item):
            desc, diff_id = item
            sid = short_id(str(desc.digest))
            done = 0
            last = 0.0
            with layers.ingest(diff_id, desc.media_type, name=f"{desc.digest} of {ref}",
                               **self.settings.layer_bounds(desc.size)) as writer:
                for chunk in client.stream_blob(ref, desc):
                    writer.write(chunk)
                    done += len(chunk)
                    now = time.monotonic()
                    if now - last > 0.1:
                        last = now
                        with lock:
                            emit(PullEvent(sid, "Downloading", done, desc.size))
                with lock:
                    emit(PullEvent(sid, "Download complete", desc.size, desc.size))
                writer.commit()
            with lock:
                emit(PullEvent(sid, "Pull complete", desc.size, desc.size))

        workers = min(MAX_PARALLEL_LAYERS, len(todo))
        if workers == 1:
            fetch(todo[0])
            return
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(fetch, item) for item in todo]
            errors = []
            for fut in futures:
                try:
                    fut.result()
                except Exception as e:  # report the first, after every worker stopped
                    errors.append(e)
            if errors:
                raise errors[0]

    # --- tag / remove / prune ---------------------------------------------------------

    def tag(self, source: str, target: str) -> None:
        record = self.lookup(source)
        from registry.reference import Reference
        ref = Reference.parse(target)
        if ref.digest:
            raise UsageError(f"refusing to create a tag with a digest reference: {target}")
        self.db.tag(record.id, str(ref))
        self.event("tag", record.id, name=familiar(str(ref)))

    def images_in_use(self) -> Set[str]:
        """Image ids that some container (any state) was created from."""
        return {st.image_id for st in self._containers()} - {""}

    def _containers(self):
        from pydocklite.state.store import ContainerStore
        return ContainerStore(self.layout.containers_dir).list()

    def remove(self, name: str, *, force: bool = False) -> List[str]:
        """`rmi`: returns Docker's output lines (Untagged: ..., Deleted: ...)."""
        db = self.db.load()
        record = self.lookup(name, db)
        lines = []
        canon = None
        try:
            canon = self.normalize(name)
        except Exception:
            pass
        tags = db.tags_of(record.id)
        by_tag = canon in tags
        in_use = record.id in self.images_in_use()
        if by_tag and len(tags) > 1:
            self.db.untag(canon)
            self.event("untag", record.id, name=familiar(canon))
            return [f"Untagged: {familiar(canon)}"]
        if in_use and not force:
            raise ImageInUseError(
                f"conflict: unable to remove image {name} ({short_id(record.id)}): it is used by "
                "a container: remove the container first or use -f")
        if not by_tag and len(tags) > 1 and not force:
            raise ConflictError(
                f"conflict: unable to delete {short_id(record.id)} (must be forced) - image is "
                "referenced in multiple repositories")
        for t in tags:
            lines.append(f"Untagged: {familiar(t)}")
        for d in record.repo_digests:
            lines.append(f"Untagged: {familiar(d)}")
        if in_use:
            # like docker: -f on an image a container uses untags it but keeps its data
            for t in tags:
                self.db.untag(t)
                self.event("untag", record.id, name=familiar(t))
            return lines
        self.db.remove(record.id)
        for t in tags:
            self.event("untag", record.id, name=familiar(t))
        self.event("delete", record.id, name=familiar(tags[0]) if tags else record.id)
        lines.append(f"Deleted: {record.id}")
        self.gc()
        return lines

    def prune(self, *, all_images: bool = False, select=None) -> tuple:
        """Remove dangling (or, with all_images, all unused) images; (ids, bytes freed).
        select(record, labels) -> bool: only those it selects (--filter until=/label=)."""
        db = self.db.load()
        used = self.images_in_use()
        victims = []
        for iid, record in db.images.items():
            if iid in used:
                continue
            if all_images or not db.tags_of(iid):
                if select is not None:
                    try:
                        labels = (self.config_json(record).get("config") or {}).get("Labels")
                    except Exception:  # noqa: BLE001 - no config: no labels to match
                        labels = None
                    if not select(record, labels or {}):
                        continue
                victims.append(record)
        for record in victims:
            self.db.remove(record.id)
            self.event("delete", record.id, name=record.id)
        freed = self.gc()
        return [r.id for r in victims], freed

    def gc(self) -> int:
        """Delete layers and blobs no image, container or lease references (a pull, build,
        load or create in progress holds a lease: snapshotter/leases.py); returns bytes
        freed. Runs under the store's gc lock, so no lease is being written meanwhile."""
        from snapshotter.leases import gc_lock
        with gc_lock(self.layout):
            return self._gc()

    def lease(self, what: str):
        """A lease on layers/blobs this process is about to use (snapshotter.leases)."""
        from snapshotter.leases import Lease
        self.layout.ensure()
        return Lease(self.layout, what)

    def _gc(self) -> int:
        from snapshotter.leases import leased
        db = self.db.load()
        keep_layers, keep_blobs = leased(self.layout)
        keep_layers |= {d for r in db.images.values() for d in r.diff_ids}
        keep_layers |= self._layers_in_use()
        content = self._content()
        for r in db.images.values():
            keep_blobs |= {r.id, r.manifest_digest}
            if r.index_digest:
                keep_blobs.add(r.index_digest)
            keep_blobs |= self._manifest_layer_blobs(content, r.manifest_digest)
        layers = self._layers()
        freed = 0
        for diff_id in layers.list():
            if diff_id not in keep_layers:
                try:
                    freed += layers.size(diff_id)
                except Exception:
                    pass
                layers.remove(diff_id)
        cached = self.layout.root / "image-files"      # containers.image_files' cache
        if cached.is_dir():
            keep_ids = {r.id.partition(":")[2] for r in db.images.values()}
            for p in cached.iterdir():
                if p.suffix == ".json" and p.stem not in keep_ids:
                    try:
                        p.unlink()
                    except OSError:
                        pass
        blobs_dir = self.layout.blobs_dir
        if blobs_dir.is_dir():
            for p in blobs_dir.iterdir():
                digest = f"sha256:{p.name}"
                if digest not in keep_blobs and not p.name.startswith("."):
                    try:
                        freed += p.stat().st_size
                        p.unlink()
                    except OSError:
                        pass
        return freed

    @staticmethod
    def _manifest_layer_blobs(content, manifest_digest: str) -> Set[str]:
        """Compressed layer blobs a stored manifest names (kept by built images for push)."""
        try:
            manifest = json.loads(content.read(manifest_digest))
        except Exception:  # noqa: BLE001 - no stored manifest: nothing more to keep
            return set()
        return {d.get("digest", "") for d in manifest.get("layers", ()) if isinstance(d, dict)}

    def _layers_in_use(self) -> Set[str]:
        """Diff ids that containers' snapshots still stand on."""
        return {d for st in self._containers() for d in st.config.get("diff_ids", ())}

    def list(self) -> List[tuple]:
        """[(record, [canonical tags])] for every image."""
        db = self.db.load()
        return [(r, db.tags_of(iid)) for iid, r in db.images.items()]


def parse_reference(name: str):
    """`name` as a registry Reference, or None when it is not a valid reference (an image
    id, a typo: lookups then simply find nothing)."""
    from registry.errors import InvalidReferenceError
    from registry.reference import Reference
    try:
        return Reference.parse(name)
    except InvalidReferenceError:
        return None


def familiar(canonical: str) -> str:
    """docker.io/library/nginx:latest -> nginx:latest (what docker prints)."""
    name = canonical
    if name.startswith("docker.io/"):
        name = name[len("docker.io/"):]
        if name.startswith("library/"):
            name = name[len("library/"):]
    return name


def split_repo_tag(canonical: str) -> tuple:
    """'host:5000/a/b:tag' -> ('host:5000/a/b', 'tag') in familiar form."""
    fam = familiar(canonical)
    if "@" in fam:
        repo, _, digest = fam.partition("@")
        return repo, "<none>"
    slash = fam.rfind("/")
    colon = fam.rfind(":")
    if colon > slash:
        return fam[:colon], fam[colon + 1:]
    return fam, "<none>"

