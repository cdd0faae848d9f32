"""The build executor: Dockerfile stages -> steps -> layers and configs, with a layer cache.

Each step starts from the image state after the previous one (a config blob + layers) and
yields the next: RUN (a container, then its snapshot committed as a layer), COPY/ADD (a tar
layer written straight from the context or another stage), WORKDIR (a layer only when the
directory is missing), the others a config change with an `empty_layer` history entry.

Cache key of a step = sha256(parent image id, the instruction, ARG values in scope, and for
COPY/ADD the content hash of what is copied): an unchanged rebuild finds every step (`CACHED`),
a changed file re-runs from its COPY on. A failing step stores nothing but the layers of the
steps before it: no image, no tag.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from pydocklite.builder import steps
from pydocklite.builder.dockerfile import Dockerfile, Instruction, Stage, parse, parse_instruction
from pydocklite.builder.errors import BuildError
from pydocklite.errors import PydockliteError
from pydocklite.builder.image_writer import BuildCache, ImageWriter, LayerRef, canonical_json


@dataclass(frozen=True)
class BuildOptions:
    context: Path
    dockerfile: Optional[Path] = None          # default CONTEXT/Dockerfile
    tags: Tuple[str, ...] = ()
    build_args: Tuple[Tuple[str, str], ...] = ()
    target: str = ""
    no_cache: bool = False
    pull: bool = False
    labels: Tuple[Tuple[str, str], ...] = ()
    network: str = "private"
    platform: str = ""
    source_date_epoch: Optional[int] = None
    dockerfile_text: Optional[str] = None      # `-f -`: the Dockerfile read from stdin
    allow: Tuple[str, ...] = ()                # entitlements granted: "network.host"


@dataclass(frozen=True)
class BuildResult:
    image_id: str
    tags: Tuple[str, ...]
    steps: int
    cached: int


@dataclass
class _State:
    """One stage's image so far (mutable while the stage runs; internal)."""
    config: dict
    layers: List[LayerRef]
    image_id: str = ""
    args: Dict[str, str] = field(default_factory=dict)
    cmd_set: bool = False
    built: set = field(default_factory=set)     # diff_ids of layers a build made

    @property
    def shell(self) -> List[str]:
        return list((self.config.get("config") or {}).get("Shell") or steps.DEFAULT_SHELL)

    def env(self) -> Dict[str, str]:
        return {**self.args, **steps.env_map(self.config)}


class Builder:
    def __init__(self, settings, out=None, pull: Optional[Callable] = None) -> None:
        from pydocklite.images import ImageService
        self.settings = settings
        self.service = ImageService(settings)
        self.writer = ImageWriter(self.service)
        self.cache = BuildCache(self.writer)
        self.out = out or sys.stdout
        self._pull = pull or (lambda name, ref=None: self.service.pull(ref or name))
        self.told_single_id = False   # the single-id note is printed once

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    # --- the whole build -----------------------------------------------------------------
    def build(self, opts: BuildOptions) -> BuildResult:
        from pydocklite.builder.context import ContextFS
        steps.check_platform(opts.platform)
        dockerfile_path = Path(opts.dockerfile) if opts.dockerfile else \
            Path(opts.context) / "Dockerfile"
        try:
            text = opts.dockerfile_text if opts.dockerfile_text is not None else \
                dockerfile_path.read_text()
        except OSError as e:
            raise BuildError(f"cannot read the Dockerfile {dockerfile_path}: {e.strerror}: "
                             "give one with -f") from None
        df = parse(text, dockerfile_path.name)
        self.df, self.opts = df, opts
        self.ctx = ContextFS.open(Path(opts.context), dockerfile_path.name)
        self.epoch = opts.source_date_epoch
        self.build_args = dict(opts.build_args)
        self.used_args: set = set()
        self.meta = self._meta_args(df)
        target = len(df.stages) - 1
        if opts.target:
            found = df.stage_index(opts.target)
            if found is None:
                raise BuildError(f"target stage {opts.target!r} could not be found: the "
                                 f"Dockerfile names {[s.name for s in df.stages if s.name]}")
            target = found
        needed = self._needed(df, target)
        self.total = sum(1 + len(df.stages[i].instructions) for i in needed)
        self.step_no = 0
        self.cached = 0
        self.states: Dict[int, _State] = {}
        self._views: Dict[tuple, object] = {}
        self.base_records: List[object] = []
        # what the build makes or stands on is named by a lease until the image is recorded:
        # a concurrent rmi/image prune can't collect it (snapshotter/leases.py)
        self.writer.lease = self.service.lease("build")
        try:
            return self._build_stages(opts, needed, target)
        finally:
            for view in self._views.values():
                view.close()
            self.ctx.close()
            self.writer.lease.close()
            self.writer.lease = None

    def _build_stages(self, opts: BuildOptions, needed, target: int) -> BuildResult:
        for i in needed:
            self.states[i] = self._run_stage(self.df.stages[i])
        final = self.states[target]
        if opts.labels:     # --label: on the final image only, as Docker does
            cfg = json.loads(json.dumps(final.config))
            c = cfg.setdefault("config", {})
            c["Labels"] = {**(c.get("Labels") or {}), **dict(opts.labels)}
            final.config, final.image_id = cfg, self.writer.write_config(cfg)
        if not final.image_id:
            final.image_id = self.writer.write_config(final.config)
        unused = sorted(set(self.build_args) - self.used_args - set(steps.PROXY_ARGS))
        if unused:
            self.say(f"[Warning] One or more build-args {unused} were not consumed")
        missing = [r for r in final.layers if not r.digest]
        for r in missing:   # base layers stored without their compressed blob
            final.layers[final.layers.index(r)] = self.writer.compress(r.diff_id)
        tags = tuple(self._canonical(t) for t in opts.tags)
        self.writer.commit(final.image_id, final.layers, tags)
        self._remember_base_blobs()
        return BuildResult(final.image_id, tags, self.total, self.cached)

    def _remember_base_blobs(self) -> None:
        """Tell `push` which repositories hold the base images' compressed layers, so it can
        cross-mount them instead of uploading (the built image has no repo digests)."""
        try:
            from pydocklite.distribution.blobinfo import BlobInfoStore, candidates
        except ImportError:
            return
        store = BlobInfoStore(self.writer.layout.root)
        for record in self.base_records:
            try:
                for diff_id, known in zip(record.diff_ids,
                                          candidates(self.service, record, record.diff_ids)):
                    for k in known:
                        if k.repos:
                            store.add(diff_id, k)
            except Exception:  # noqa: BLE001 - only an optimisation for a later push
                continue

    def image_fs(self, diff_ids, name: str):
        """A read-only view of a chain of layers, open until the build ends."""
        from pydocklite.builder.imagefs import ImageFS
        key = tuple(diff_ids)
        if key not in self._views:
            self._views[key] = ImageFS(self.writer.layout, key, name)
        return self._views[key]

    @staticmethod
    def _canonical(tag: str) -> str:
        from registry.reference import Reference
        try:
            return str(Reference.parse(tag))
        except Exception as e:  # noqa: BLE001 - the registry module's own error type
            from pydocklite.errors import UsageError
            raise UsageError(f"invalid tag {tag!r}: {e}") from None

    def _meta_args(self, df: Dockerfile) -> Dict[str, str]:
        out: Dict[str, str] = steps.platform_args()
        for ins in df.meta_args:
            for name, value in self._arg_decls(ins, out, out):
                out[name] = value
        return out

    def _arg_decls(self, ins: Instruction, env: Dict[str, str], scope: Dict[str, str]):
        """(name, value) of each name an ARG declares; build args override defaults; a bare
        name takes its value from `scope` (the global ARGs), else None (declared, unset)."""
        from pydocklite.builder.shellwords import expand, split_raw
        for word in split_raw(ins.args, self.df.escape):
            name, eq, default = word.partition("=")
            if name in self.build_args:
                self.used_args.add(name)
                yield name, self.build_args[name]
            elif eq:
                yield name, expand(default, env, self.df.escape)
            elif name in scope:
                yield name, scope[name]
            else:
                yield name, None

    def _needed(self, df: Dockerfile, target: int) -> List[int]:
        need, todo = set(), [target]
        while todo:
            i = todo.pop()
            if i in need:
                continue
            need.add(i)
            st = df.stages[i]
            refs = [st.base] + [ins.flag("from") for ins in st.instructions if ins.flag("from")]
            for ref in refs:
                j = df.stage_index(self._expand_meta(ref))
                if j is not None and j < i:
                    todo.append(j)
        return sorted(need)

    def _expand_meta(self, text: str) -> str:
        from pydocklite.builder.shellwords import expand
        return expand(text, {k: v for k, v in self.meta.items() if v is not None},
                      self.df.escape)

    # --- a stage ---------------------------------------------------------------------------
    def _run_stage(self, stage: Stage) -> _State:
        started = time.monotonic()
        self.step_no += 1
        self.say(f"Step {self.step_no}/{self.total} : {stage.from_line.original}")
        for k, v in stage.from_line.flags:
            if k == "platform":
                steps.check_platform(self._expand_meta(v))
        base = self._expand_meta(stage.base)
        state = self._base_state(base, stage)
        self.say(f" ---> {_short(state.image_id) if state.image_id else 'scratch'}"
                 f"{_took(started)}")
        triggers = (state.config.get("config") or {}).get("OnBuild") or []
        if triggers:
            self.say(f"# Executing {len(triggers)} build trigger{'s' if len(triggers) > 1 else ''}")
            state.config["config"]["OnBuild"] = None
            for t in triggers:
                ins = parse_instruction(t, stage.from_line.line, self.df.escape,
                                        f"ONBUILD of {base}")
                self._step(state, ins, counted=False)
        for ins in stage.instructions:
            self._step(state, ins)
        return state

    def _base_state(self, base: str, stage: Stage) -> _State:
        if base.lower() == "scratch":
            return _State(steps.scratch_config(steps.host_arch()), [])
        j = self.df.stage_index(base)
        if j is not None and j < stage.index:
            prev = self.states[j]
            return _State(json.loads(json.dumps(prev.config)), list(prev.layers),
                          prev.image_id, built=set(prev.built))
        record = self._image(base)
        self.base_records.append(record)
        config = self.service.config_json(record)
        config.setdefault("config", {})
        return _State(config, self.writer.base_layers(record), record.id)

    def _image(self, name: str):
        """A FROM's (or --from's) image: from the store, the embedded one, or pulled (name
        parsed once); kept by the build's lease until the build ends."""
        from pydocklite.errors import ImageNotFoundError
        from pydocklite.images import parse_reference
        from pydocklite.oci_layout import load_embedded
        ref = parse_reference(name)
        record = None
        if not self.opts.pull:
            try:
                record = self.service.lookup(name, ref=ref)
            except ImageNotFoundError:
                pass
        if record is None:
            record = (None if self.opts.pull else load_embedded(self.settings, ref)) \
                or self._pull(name, ref)
        self.writer.keep_image(record, name)
        return record

    # --- one step --------------------------------------------------------------------------
    def _step(self, state: _State, ins: Instruction, counted: bool = True) -> None:
        if counted:
            self.step_no += 1
            self.say(f"Step {self.step_no}/{self.total} : {ins.original}")
        try:
            self._do_step(state, ins)
        except BuildError:
            raise
        except PydockliteError as e:   # e.g. USER names a user the image doesn't have
            raise BuildError(f"{self.df.filename}:{ins.line}: {ins.keyword}: {e}") from None

    def _do_step(self, state: _State, ins: Instruction) -> None:
        started = time.monotonic()
        env = state.env()
        if ins.keyword == "ARG":
            for name, value in self._arg_decls(ins, env, self.meta):
                state.args[name] = value if value is not None else ""
                if value is None:
                    state.args.pop(name)
        prepared = self._prepare(state, ins, env)
        key = self._key(state, ins, prepared)
        hit = None if self.opts.no_cache else self.cache.get(key)
        if hit is not None:
            image_id, layers, built = hit
            state.config, state.layers, state.image_id = \
                self.writer.read_config(image_id), layers, image_id
            state.built |= built
            self.cached += 1
            self.say(" ---> CACHED")
        else:
            self._execute(state, ins, env, prepared)
            state.image_id = self.writer.write_config(state.config)
            self.cache.put(key, state.image_id, state.layers, state.built)
        if ins.keyword == "CMD":
            state.cmd_set = True
        self.say(f" ---> {_short(state.image_id)}{_took(started)}")

    def _key(self, state: _State, ins: Instruction, prepared) -> str:
        parent = state.image_id or canonical_json(state.config).hex()
        extra = prepared.get("hash", "") if isinstance(prepared, dict) else ""
        args = sorted((k, v) for k, v in state.args.items())
        data = canonical_json([parent, ins.keyword, ins.original, list(ins.heredocs), args,
                               extra,
                               prepared.get("network", "") if isinstance(prepared, dict) else "",
                               state.cmd_set])
        return "sha256:" + hashlib.sha256(data).hexdigest()

    def _prepare(self, state: _State, ins: Instruction, env: Dict[str, str]):
        """What the cache key needs before running: the COPY/ADD plan and its content hash;
        RUN's network, checked against the entitlements granted even when cached."""
        if ins.keyword == "RUN":
            from pydocklite.builder.errors import DockerfileError
            from pydocklite.builder.runstep import run_network

            def bad(msg: str):
                return DockerfileError(msg, self.df.filename, ins.line, ins.original)
            return {"network": run_network(ins.flag("network"), self.opts.network,
                                           self.opts.allow, bad)}
        if ins.keyword not in ("COPY", "ADD"):
            return {}
        from pydocklite.builder.copier import plan_hash
        from pydocklite.builder.copying import plan_for
        items = plan_for(self, state, ins, env)
        return {"items": items, "hash": plan_hash(items)}

    def _execute(self, state: _State, ins: Instruction, env: Dict[str, str], prepared) -> None:
        kw = ins.keyword
        created_by = steps.history_text(ins, env, state.shell, self.df.escape)
        layer = None
        if kw == "RUN":
            layer = self._run(state, ins, env)
        elif kw in ("COPY", "ADD"):
            from pydocklite.builder.copying import copy_layer
            layer = copy_layer(self, state, prepared["items"])
        elif kw == "WORKDIR":
            state.config = steps.apply_config(state.config, ins, env, state.shell,
                                              self.df.escape, self.df.filename, state.cmd_set)
            from pydocklite.builder.copying import workdir_layer
            layer = workdir_layer(self, state, state.config["config"]["WorkingDir"])
        elif kw == "ARG":
            pass
        else:
            state.config = steps.apply_config(state.config, ins, env, state.shell,
                                              self.df.escape, self.df.filename, state.cmd_set)
        if layer is not None:
            state.layers.append(layer)
            state.built.add(layer.diff_id)
        self._history(state, created_by, layer is None)

    def _history(self, state: _State, created_by: str, empty: bool) -> None:
        now = self.epoch if self.epoch is not None else time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        entry = {"created": stamp, "created_by": created_by, "comment": "pydocklite build"}
        if empty:
            entry["empty_layer"] = True
        state.config["history"] = list(state.config.get("history") or []) + [entry]
        state.config["created"] = stamp
        state.config["rootfs"] = {"type": "layers",
                                  "diff_ids": [r.diff_id for r in state.layers]}

    def _run(self, state: _State, ins: Instruction, env: Dict[str, str]) -> LayerRef:
        from pydocklite.builder.runstep import run_instruction
        return run_instruction(self, state, ins)

    def current_id(self, state: _State) -> str:
        if not state.image_id:
            state.image_id = self.writer.write_config(state.config)
        return state.image_id


def _short(image_id: str) -> str:
    return image_id.split(":", 1)[-1][:12]


def _took(started: float) -> str:
    return f" ({time.monotonic() - started:.2f}s)"


def source_date_epoch() -> Optional[int]:
    v = os.environ.get("SOURCE_DATE_EPOCH", "")
    return int(v) if v.isdigit() else None

