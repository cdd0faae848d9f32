"""The builder's COPY/ADD/WORKDIR steps: resolve the flags against the stage, plan, write layers.

Sources come from the context (`ContextFS`), another stage or an image (`--from`, as an
`ImageFS` over its layers) or a URL (ADD). `--chown` names are looked up in the stage's own
/etc/passwd and /etc/group, as Docker does.
"""
from __future__ import annotations

import posixpath
import time
from typing import Dict, List, Optional, Tuple

from pydocklite.builder.context import DIR, REG, FileEntry
from pydocklite.builder.copier import CopyItem, parent_dirs, plan_copy, write_tar
from pydocklite.builder.errors import ContextError, DockerfileError
from pydocklite.builder.imagefs import ImageFS
from pydocklite.builder.steps import words


def _stage_fs(builder, state) -> ImageFS:
    return builder.image_fs([r.diff_id for r in state.layers], "the image")


def _owner(builder, state, spec: str, ins) -> Optional[Tuple[int, int]]:
    if not spec:
        return None
    from pydocklite.containers.spec_builder import resolve_user
    user, sep, group = spec.partition(":")
    if user.isdigit() and (not sep or group.isdigit()):
        return int(user), int(group) if sep else int(user)
    fs = _stage_fs(builder, state)
    try:
        passwd, groups = fs.read_text("etc/passwd"), fs.read_text("etc/group")
    finally:
        fs.close()
    try:
        uid, gid, _ = resolve_user(spec, passwd, groups)
    except Exception as e:  # noqa: BLE001 - a name the image doesn't know
        raise DockerfileError(f"--chown={spec}: {e}", builder.df.filename, ins.line,
                              ins.original) from None
    if not sep:
        gid = uid     # Docker: a user without a group means the same number as gid
    return uid, gid


def _source_fs(builder, ins, env):
    """(file system, is_image) of a COPY/ADD's sources: the context, or --from's stage/image.
    Image views stay open until the build ends (the layer is written after planning)."""
    src = ins.flag("from")
    if not src:
        return builder.ctx, False
    from pydocklite.builder.shellwords import expand
    name = expand(src, env, builder.df.escape)
    j = builder.df.stage_index(name)
    if j is not None and j in builder.states:
        diff_ids = [r.diff_id for r in builder.states[j].layers]
    else:
        diff_ids = list(builder._image(name).diff_ids)
    return builder.image_fs(diff_ids, f"stage {name}" if j is not None else f"image {name}"), True


def plan_for(builder, state, ins, env: Dict[str, str]) -> List[CopyItem]:
    args = words(ins, env, builder.df.escape, builder.df.filename)
    sources, dest = args[:-1], args[-1]
    workdir = (state.config.get("config") or {}).get("WorkingDir") or "/"
    dest_abs = dest if dest.startswith("/") else posixpath.join(workdir, dest)
    if dest.endswith("/") and not dest_abs.endswith("/"):
        dest_abs += "/"
    chmod = None
    from pydocklite.builder.shellwords import expand
    chmod_text = expand(ins.flag("chmod") or "", env, builder.df.escape)
    if chmod_text:
        try:
            chmod = int(chmod_text, 8)
        except ValueError:
            raise DockerfileError(f"invalid --chmod={chmod_text}: use octal, e.g. 755",
                                  builder.df.filename, ins.line, ins.original) from None
    owner = _owner(builder, state, expand(ins.flag("chown") or "", env, builder.df.escape), ins)
    now = builder.epoch if builder.epoch is not None else int(time.time())
    target = _stage_fs(builder, state)
    try:
        def dest_is_dir(rel: str) -> bool:
            e = target.follow(rel)
            return e is not None and e.type == DIR
        for flag in ("parents", "exclude", "keep-git-dir"):
            if ins.flag(flag):
                raise DockerfileError(f"{ins.keyword} --{flag} is not supported by pydocklite "
                                      "yet", builder.df.filename, ins.line, ins.original)
        urls = [s for s in sources if ins.keyword == "ADD" and
                s.startswith(("http://", "https://"))]
        inline = [s for s in sources if s.startswith("<<") and ins.heredocs]
        local = [s for s in sources if s not in urls and s not in inline]
        items: List[CopyItem] = []
        what = f"{builder.df.filename}:{ins.line}: {ins.keyword}"
        if local:
            fs, from_image = _source_fs(builder, ins, env)
            items = plan_copy(fs, local, dest_abs, dest_is_dir=dest_is_dir, owner=owner,
                              chmod=chmod, extract=ins.keyword == "ADD" and not from_image,
                              what=what, now=now,
                              max_bytes=builder.settings.expansion_limit,
                              spool_dir=str(builder.settings.layout.ensure().ingest_dir))
        for src in inline:
            items.append(_heredoc_item(builder, ins, src, dest_abs, dest_is_dir, owner, chmod,
                                       now, env))
        for url in urls:
            items.append(_download(builder.settings, url, dest_abs, dest_is_dir, owner, chmod,
                                   now, what, ins.flag("checksum") or ""))
        items += parent_dirs(items, target.follow, now)
        return sorted(items, key=lambda i: i.dest)
    finally:
        target.close()


def _download(settings, url: str, dest: str, dest_is_dir, owner, chmod, now, what: str,
              checksum: str) -> CopyItem:
    """ADD URL: the body spooled to a file under the store (never whole in memory), at most
    the max-layer-size setting (1 GiB by default): the server is not trusted."""
    import hashlib
    import tempfile
    import urllib.request
    from email.utils import parsedate_to_datetime
    limit = settings.expansion_limit(0)
    layout = settings.layout.ensure()
    spool = tempfile.TemporaryFile(dir=str(layout.ingest_dir), prefix="add-url-")
    digest = hashlib.sha256()
    size = 0
    try:
        with urllib.request.urlopen(url, timeout=60) as resp:
            modified = resp.headers.get("Last-Modified")
            announced = resp.headers.get("Content-Length", "")
            if limit is not None and announced.isdigit() and int(announced) > limit:
                size = int(announced)
            while limit is None or size <= limit:
                b = resp.read(1 << 20)
                if not b:
                    break
                size += len(b)
                digest.update(b)
                spool.write(b)
    except OSError as e:
        spool.close()
        raise ContextError(f"{what}: cannot download {url}: {e}") from None
    if limit is not None and size > limit:
        spool.close()
        raise ContextError(f"{what}: {url} is larger than {limit} bytes: refused; if it is "
                           "genuine, raise PYDOCKLITE_MAX_LAYER_SIZE (0: no limit)")
    if checksum:
        got = "sha256:" + digest.hexdigest()
        if got != checksum:
            spool.close()
            raise ContextError(f"{what}: {url}: checksum mismatch: expected {checksum}, got "
                               f"{got}")
    mtime = now
    if modified:
        try:
            mtime = int(parsedate_to_datetime(modified).timestamp())
        except (TypeError, ValueError):
            pass
    rel = posixpath.normpath(dest).lstrip("/")
    name = posixpath.basename(url.split("?", 1)[0].rstrip("/")) or "index.html"
    if dest.endswith("/") or dest_is_dir(rel):
        rel = posixpath.join(rel, name)
    uid, gid = owner or (0, 0)
    entry = FileEntry(REG, chmod if chmod is not None else 0o600, size, mtime, "", uid, gid)

    def chunks():
        spool.seek(0)
        while True:
            b = spool.read(1 << 20)
            if not b:
                return
            yield b
    return CopyItem(rel, entry, chunks)


def _heredoc_item(builder, ins, src: str, dest: str, dest_is_dir, owner, chmod, now, env):
    name = src[2:].lstrip("-").strip("\"'")
    doc = next((d for d in ins.heredocs if d[0] == name), None)
    if doc is None:
        raise DockerfileError(f"no heredoc named {name}", builder.df.filename, ins.line,
                              ins.original)
    body = doc[1]
    if doc[2] and "$" in body:
        body = _expand_text(body, env)
    data = body.encode()
    rel = posixpath.normpath(dest).lstrip("/")
    if dest.endswith("/") or dest_is_dir(rel):
        rel = posixpath.join(rel, name)
    uid, gid = owner or (0, 0)
    entry = FileEntry(REG, chmod if chmod is not None else 0o644, len(data), now, "", uid, gid)
    return CopyItem(rel, entry, lambda: iter([data]))


def _expand_text(text: str, env) -> str:
    """$VAR / ${VAR...} in a heredoc body; quotes and backslashes stay as they are."""
    from pydocklite.builder.shellwords import _dollar
    out, i = [], 0
    while i < len(text):
        if text[i] == "$":
            value, i = _dollar(text, i, env, "\\")
            out.append(value)
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def copy_layer(builder, state, items: List[CopyItem]):
    clamp = builder.epoch
    return builder.writer.new_layer(lambda f: write_tar(f, items, clamp), "COPY layer")


def workdir_layer(builder, state, path: str):
    """A layer creating WORKDIR (and its parents) when the image lacks it; else None."""
    rel = posixpath.normpath(path).lstrip("/")
    if not rel or rel == ".":
        return None
    fs = _stage_fs(builder, state)
    try:
        e = fs.follow(rel)
        if e is not None and e.type == DIR:
            return None
        now = builder.epoch if builder.epoch is not None else int(time.time())
        item = CopyItem(rel, FileEntry(DIR, 0o755, 0, now))
        items = [item] + parent_dirs([item], fs.follow, now)
    finally:
        fs.close()
    return builder.writer.new_layer(lambda f: write_tar(f, items, builder.epoch),
                                    "WORKDIR layer")
