"""/images/...: thin translations to the image service (and distribution's push, save,
load, history, commit). Pull and push stream Docker's JSON progress lines; an error after
the stream began is an {"error", "errorDetail"} line, as dockerd sends it."""
from __future__ import annotations

import base64
import json

from pydocklite.api.http import HttpError
from pydocklite.api.util import filter_values, filters_arg, unix_time


def registry_auth(req):
    """X-Registry-Auth (base64url JSON) as Credentials, or None (then the user's own
    config.json is used, as the CLI does)."""
    raw = req.headers.get("x-registry-auth", "").strip()
    if not raw:
        return None
    try:
        doc = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (ValueError, TypeError):
        raise HttpError(400, "invalid X-Registry-Auth header: base64url-encoded JSON "
                             "expected") from None
    if not isinstance(doc, dict):
        raise HttpError(400, "invalid X-Registry-Auth header: a JSON object expected")
    user, password = doc.get("username") or "", doc.get("password") or ""
    if doc.get("identitytoken") and not password:
        user, password = user or "<token>", doc["identitytoken"]
    if not user or not isinstance(user, str) or not isinstance(password, str):
        return None
    from registry.credentials import Credentials, StaticCredentials
    return StaticCredentials(Credentials(username=user, password=password))


def image_summaries(ctx) -> list:
    from pydocklite.images import familiar
    out = []
    db = ctx.images.db.load()
    for iid, record in db.images.items():
        out.append({
            "Id": iid, "ParentId": "", "RepoTags": [familiar(t) for t in db.tags_of(iid)],
            "RepoDigests": [familiar(d) for d in record.repo_digests],
            "Created": unix_time(record.created), "Size": record.size,
            "SharedSize": -1, "VirtualSize": record.size, "Labels": {}, "Containers": -1,
        })
    out.sort(key=lambda i: -i["Created"])
    return out


def list_(ctx, req, resp):
    import fnmatch
    filters = filters_arg(req)
    out = image_summaries(ctx)
    for value in filter_values(filters, "dangling"):
        want = value.lower() in ("true", "1")
        out = [i for i in out if (not i["RepoTags"]) == want]
    refs = filter_values(filters, "reference")
    if refs:
        def matches(i):
            for tag in i["RepoTags"]:
                repo = tag.rsplit(":", 1)[0]
                if any(fnmatch.fnmatch(tag, r) or fnmatch.fnmatch(repo, r) for r in refs):
                    return True
            return False
        out = [i for i in out if matches(i)]
    labels = filter_values(filters, "label")
    if labels:
        kept = []
        for i in out:
            cfg = (ctx.images.config_json(ctx.images.lookup(i["Id"])).get("config") or {})
            have = cfg.get("Labels") or {}
            if all(k in have and (not eq or have[k] == v)
                   for k, eq, v in (x.partition("=") for x in labels)):
                i["Labels"] = have
                kept.append(i)
        out = kept
    return out


def inspect(ctx, req, resp, name):
    from pydocklite.image_json import inspect_image
    data = inspect_image(ctx.images, ctx.images.lookup(name))
    data["Created"] = data["Created"] or "1970-01-01T00:00:00Z"
    data["Metadata"] = {"LastTagTime": "0001-01-01T00:00:00Z"}   # Go clients parse it
    return data


def history(ctx, req, resp, name):
    from pydocklite.distribution.history import image_history
    rows = image_history(ctx.images, name)
    return [{"Id": r.id, "Created": unix_time(r.created), "CreatedBy": r.created_by,
             "Tags": None, "Size": r.size, "Comment": r.comment} for r in rows]


def tag(ctx, req, resp, name):
    repo = req.arg("repo")
    if not repo:
        raise HttpError(400, "tag needs ?repo=NAME[&tag=TAG]")
    target = repo + (":" + req.arg("tag") if req.arg("tag") else "")
    ctx.images.tag(name, target)
    resp.send(201)
    return None


def remove(ctx, req, resp, name):
    lines = ctx.images.remove(name, force=req.flag("force"))
    out = []
    for line in lines:
        key, _, value = line.partition(": ")
        out.append({key: value})
    return out


def prune(ctx, req, resp):
    filters = filters_arg(req)
    dangling = filter_values(filters, "dangling")
    all_images = bool(dangling) and dangling[-1].lower() in ("false", "0")
    ids, freed = ctx.images.prune(all_images=all_images)
    return {"ImagesDeleted": [{"Deleted": i} for i in ids] or None, "SpaceReclaimed": freed}


def search(ctx, req, resp):
    raise HttpError(501, "search is not supported by pydocklite: registries have no common "
                         "search API; look the image up on its registry's website")


def distribution(ctx, req, resp, name):
    """The registry's descriptor of an image (what `docker pull` would get)."""
    from registry.reference import Reference
    ref = Reference.parse(name)
    with ctx.images.client(host=ref.domain, auth=registry_auth(req)) as client:
        resolved = client.resolve(ref)
    top = resolved.index if resolved.index is not None else resolved.manifest
    return {"Descriptor": {"mediaType": top.media_type, "digest": str(top.digest),
                           "size": len(top.raw)},
            "Platforms": [{"architecture": resolved.config.architecture or "",
                           "os": resolved.config.os or ""}]}


def _progress_line(ev) -> dict:
    """Counts only on the moving statuses, as dockerd: a client without a terminal prints
    the lines without counts and skips the others."""
    line = {"status": ev.status, "id": ev.layer}
    if ev.total and ev.status in ("Downloading", "Pushing", "Extracting"):
        line["progressDetail"] = {"current": ev.current, "total": ev.total}
    else:
        line["progressDetail"] = {}
    return line


def _progress_to(emit):
    """A pull's or push's progress callback (called from its layer threads) -> emit()."""
    import threading
    lock = threading.Lock()

    def progress(ev):
        if ev.layer:
            with lock:
                emit(_progress_line(ev))
    return progress


def create(ctx, req, resp):
    """Pull (fromImage) or import (fromSrc)."""
    if req.arg("fromSrc") is not None:
        return _import(ctx, req, resp)
    image = req.arg("fromImage")
    if not image:
        raise HttpError(400, "images/create needs fromImage (pull) or fromSrc (import)")
    tag_arg = req.arg("tag") or ""
    if tag_arg:
        image += ("@" if tag_arg.startswith("sha256:") else ":") + tag_arg
    from pydocklite.images import familiar
    from registry.reference import Reference
    ref = Reference.parse(image)
    auth = registry_auth(req)
    platform = req.arg("platform") or None
    req.discard_body()
    old = ctx.images.db.load().tags.get(str(ref))
    settings = ctx.settings

    def pull(emit):
        from pydocklite.images import ImageService
        record = ImageService(settings).pull(str(ref), platform=platform,
                                             progress=_progress_to(emit), auth=auth)
        return {"id": record.id, "digests": list(record.repo_digests)}
    stream = resp.start_stream(200, "application/json")
    stream.json({"status": f"Pulling from {familiar(ref.repository)}",
                 "id": ref.tag or ref.digest or "latest"})
    result = _relay(stream, pull)
    if result is None:
        return None
    digest = result["digests"][0].rsplit("@", 1)[-1] if result["digests"] else ""
    stream.json({"status": f"Digest: {digest}"})
    shown = familiar(str(ref))
    stream.json({"status": f"Status: Image is up to date for {shown}" if old == result["id"]
                 else f"Status: Downloaded newer image for {shown}"})
    stream.close()
    return None


def _relay(stream, work):
    """Run work(emit) in a worker child (api/worker.py), its lines to the client's stream;
    its result, or None after an {"error"} line ended the stream."""
    from pydocklite.api.worker import run_in_child
    for event in run_in_child(work):
        if "result" in event:
            return event["result"]
        if "failed" in event:
            msg = event["failed"]
            stream.json({"errorDetail": {"message": msg}, "error": msg})
            stream.close()
            return None
        stream.json(event)
    return None


def _import(ctx, req, resp):
    import os
    import tempfile
    from pydocklite.distribution.importer import import_tarball
    src = req.arg("fromSrc")
    repo = req.arg("repo") or None
    if repo and req.arg("tag"):
        repo += ":" + req.arg("tag")
    changes = req.query.get("changes", [])
    ctx.images.layout.ensure()
    tmp = None
    if src == "-":
        fd, tmp = tempfile.mkstemp(prefix="import-", dir=str(ctx.images.layout.ingest_dir))
        with os.fdopen(fd, "wb") as f:
            for chunk in req.chunks():
                f.write(chunk)
        src = tmp
    elif not src.startswith(("http://", "https://")):
        raise HttpError(400, "fromSrc must be - (the request body) or an http(s) URL")
    try:
        record = import_tarball(ctx.images, src, repo, changes=changes,
                                message=req.arg("message") or "", stdin=None,
                                platform=req.arg("platform") or None)
    finally:
        if tmp:
            os.unlink(tmp)
    stream = resp.start_stream(200, "application/json")
    stream.json({"status": record.id})
    stream.close()
    return None


def push(ctx, req, resp, name):
    from pydocklite.images import familiar
    from registry.reference import Reference
    if req.arg("tag"):
        name = f"{name}:{req.arg('tag')}"
    ref = Reference.parse(name)
    auth = registry_auth(req)
    ctx.images.lookup(str(ref))                  # a 404 before the stream begins
    settings = ctx.settings

    def push(emit):
        from pydocklite.distribution.push import push_image
        from pydocklite.images import ImageService
        r = push_image(ImageService(settings), str(ref), progress=_progress_to(emit), auth=auth)
        return {"tag": r.tag, "digest": r.digest, "size": r.size}
    stream = resp.start_stream(200, "application/json")
    stream.json({"status": f"The push refers to repository [{familiar(ref.repository)}]"})
    result = _relay(stream, push)
    if result is None:
        return None
    stream.json({"status": f"{result['tag']}: digest: {result['digest']} size: "
                           f"{result['size']}"})
    stream.json({"progressDetail": {}, "aux": {"Tag": result["tag"], "Digest": result["digest"],
                                               "Size": result["size"]}})
    stream.close()
    from pydocklite.api.events import emit_image
    emit_image(ctx, "push", familiar(str(ref)))
    return None


def _save(ctx, req, resp, names) -> None:
    from pydocklite.distribution.archive import save
    from pydocklite.distribution.sources import TarSink
    for n in names:
        ctx.images.lookup(n)                     # a 404 before the stream begins
    stream = resp.start_stream(200, "application/x-tar")

    class Out:
        def write(self, data):
            stream.write(bytes(data))
            return len(data)

        def flush(self):
            pass
    save(ctx.images, names, TarSink(Out()))
    stream.close()


def get(ctx, req, resp, name):
    _save(ctx, req, resp, [name])
    return None


def get_many(ctx, req, resp):
    names = req.query.get("names", [])
    if not names:
        raise HttpError(400, "images/get needs at least one ?names=IMAGE")
    _save(ctx, req, resp, names)
    return None


def load(ctx, req, resp):
    import os
    import tempfile
    from pydocklite.distribution.archive import load as load_archive
    from pydocklite.distribution.sources import open_source
    ctx.images.layout.ensure()
    fd, tmp = tempfile.mkstemp(prefix="load-", dir=str(ctx.images.layout.ingest_dir))
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in req.chunks():
                f.write(chunk)
        source = open_source(tmp)
        try:
            loaded = load_archive(ctx.images, source)
        finally:
            source.close()
    finally:
        os.unlink(tmp)
    stream = resp.start_stream(200, "application/json")
    for item in loaded:
        for n in item.names or ():
            stream.json({"stream": f"Loaded image: {n}\n"})
        if not item.names:
            stream.json({"stream": f"Loaded image ID: {item.image_id}\n"})
    stream.close()
    return None


def commit(ctx, req, resp):
    from pydocklite.distribution.commit import commit_container
    container = req.arg("container")
    if not container:
        raise HttpError(400, "commit needs ?container=ID")
    req.read_json(default={})    # the container config to merge: not supported, read past
    repo = req.arg("repo")
    if repo and req.arg("tag"):
        repo += ":" + req.arg("tag")
    changes = req.query.get("changes", [])
    record = commit_container(ctx.images, ctx.containers, container, repo or None,
                              message=req.arg("comment") or "",
                              author=req.arg("author") or "", changes=changes)
    resp.json({"Id": record.id}, status=201)
    return None
