"""The local image database: image records and the names that point at them.

One JSON file (`StoreLayout.images_db`), replaced atomically under a file lock, so two CLIs
pulling or tagging at once never lose each other's update. An image's id is the digest of
its config blob, as in Docker.
"""
from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import Dict, Iterator, List, Optional, Tuple

from pydocklite.atomic import atomic_write_json
from pydocklite.errors import ImageError, ImageNotFoundError
from pydocklite.runtime.record import Factory, asdict, record as value_type

DB_VERSION = 1


@value_type
class ImageRecord:
    id: str                      # "sha256:<hex>" of the config blob
    manifest_digest: str         # digest of the (platform) manifest stored in blobs/
    manifest_media_type: str
    diff_ids: Tuple[str, ...]
    size: int                    # uncompressed bytes of all layers
    created: str                 # the config's RFC 3339 "created"
    architecture: str = ""
    os: str = ""
    repo_digests: Tuple[str, ...] = ()   # "docker.io/library/nginx@sha256:..."
    added_at: float = 0.0
    index_digest: str = ""       # the index/manifest list the platform manifest came from
    trust: object = None         # trust.verdict.Verdict: what the signature policy found

    def to_json(self) -> dict:
        d = asdict(self._replace(trust=None))
        d["trust"] = self.trust.to_json() if self.trust is not None else None
        return d

    @classmethod
    def from_json(cls, d: dict) -> "ImageRecord":
        d = dict(d)
        d["diff_ids"] = tuple(d.get("diff_ids", ()))
        d["repo_digests"] = tuple(d.get("repo_digests", ()))
        if isinstance(d.get("trust"), dict):
            from pydocklite.trust.verdict import Verdict
            d["trust"] = Verdict.from_json(d["trust"])
        else:
            d["trust"] = None
        known = set(cls._fields)
        return cls(**{k: v for k, v in d.items() if k in known})


@value_type
class ImageDB:
    images: Dict[str, ImageRecord] = Factory(dict)
    tags: Dict[str, str] = Factory(dict)      # canonical ref -> image id

    def tags_of(self, image_id: str) -> List[str]:
        return sorted(ref for ref, iid in self.tags.items() if iid == image_id)


def _kept_trust(old, new):
    """A verified verdict stays true for the same content: a later pull that verified
    nothing (no policy, or insecureAcceptAnything) does not erase it."""
    if new is None or (old is not None and old.verified and not new.verified):
        return old
    return new


class ImageStore:
    def __init__(self, db_path: Path):
        self.path = Path(db_path)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(str(self.path) + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def load(self) -> ImageDB:
        try:
            with open(self.path) as f:
                raw = json.load(f)
        except FileNotFoundError:
            return ImageDB()
        except ValueError as e:
            raise ImageError(f"image database {self.path} is corrupt ({e}): "
                             "remove it and pull the images again") from e
        return ImageDB(
            images={k: ImageRecord.from_json(v) for k, v in raw.get("images", {}).items()},
            tags=dict(raw.get("tags", {})),
        )

    def _save(self, db: ImageDB) -> None:
        atomic_write_json(self.path, {
            "version": DB_VERSION,
            "images": {k: v.to_json() for k, v in sorted(db.images.items())},
            "tags": dict(sorted(db.tags.items()))})

    @contextmanager
    def transaction(self) -> Iterator[dict]:
        """Read-modify-write under the lock: yields {'db': ImageDB}; set 'db' to save."""
        with self._locked():
            box = {"db": self.load()}
            before = box["db"]
            yield box
            if box["db"] is not before:
                self._save(box["db"])

    # --- operations -------------------------------------------------------------------

    def add(self, record: ImageRecord, names: List[str]) -> Optional[str]:
        """Store `record` and point `names` at it; returns the id an old name pointed to."""
        replaced = None
        with self.transaction() as box:
            db = box["db"]
            images = dict(db.images)
            old = images.get(record.id)
            if old is not None:
                digests = tuple(sorted(set(old.repo_digests) | set(record.repo_digests)))
                record = record._replace(repo_digests=digests, added_at=old.added_at or
                                 record.added_at, trust=_kept_trust(old.trust, record.trust))
            images[record.id] = record
            tags = dict(db.tags)
            for name in names:
                if tags.get(name) not in (None, record.id):
                    replaced = tags[name]
                tags[name] = record.id
            box["db"] = ImageDB(images=images, tags=tags)
        return replaced

    def tag(self, image_id: str, name: str) -> None:
        with self.transaction() as box:
            db = box["db"]
            if image_id not in db.images:
                raise ImageNotFoundError(f"No such image: {image_id}")
            box["db"] = ImageDB(images=db.images, tags={**db.tags, name: image_id})

    def untag(self, name: str) -> str:
        with self.transaction() as box:
            db = box["db"]
            if name not in db.tags:
                raise ImageNotFoundError(f"No such image: {name}")
            tags = dict(db.tags)
            image_id = tags.pop(name)
            box["db"] = ImageDB(images=db.images, tags=tags)
        return image_id

    def remove(self, image_id: str) -> ImageRecord:
        with self.transaction() as box:
            db = box["db"]
            if image_id not in db.images:
                raise ImageNotFoundError(f"No such image: {image_id}")
            images = dict(db.images)
            record = images.pop(image_id)
            tags = {k: v for k, v in db.tags.items() if v != image_id}
            box["db"] = ImageDB(images=images, tags=tags)
        return record
