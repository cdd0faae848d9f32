"""RUN: the command in a container of the stage so far, its changes committed as a layer.

Why the container service rather than a bare runtime bundle: a RUN needs exactly what `run`
gives a container — the snapshot of the layers, the user namespace with the subordinate id
range (so `apt-get` can chown), /etc/hosts and resolv.conf, the private network through
pasta/slirp4netns, USER names resolved from the image's /etc/passwd — and the shim already does
all of it. The build only adds: output relayed through a pipe, the exit code from the shim, and
`Snapshotter.commit` of the container's upper dir.

The commit runs as root of a user namespace with the container's id map: there the files the
command made under subordinate ids are readable and show their in-container owners, so the
layer records the owners the container saw (identity IdMap).
"""
from __future__ import annotations

import json
import os
import threading
from typing import Callable, List, Optional, Sequence

from pydocklite.builder.errors import BuildError, StepFailedError

# Files the runtime bind-mounts over (created empty in the upper dir as mount points).
MOUNT_POINTS = ("etc/hostname", "etc/hosts", "etc/resolv.conf")

# With only one id mapped (no /etc/subuid range) these fail with EINVAL/EPERM; a seccomp rule
# makes them succeed without doing anything (Charliecloud's approach), so package managers
# that chown files or drop privileges carry on. Files keep the one mapped id.
FAKE_ROOT_SYSCALLS = (
    "chown", "fchown", "lchown", "fchownat", "setuid", "setgid", "setreuid", "setregid",
    "setresuid", "setresgid", "setgroups", "setfsuid", "setfsgid", "chown32", "fchown32",
    "lchown32", "setuid32", "setgid32", "setreuid32", "setregid32", "setresuid32",
    "setresgid32", "setgroups32", "setfsuid32", "setfsgid32")
APT_CONF_TARGET = "/dev/.pydocklite-apt.conf"
APT_CONF = 'APT::Sandbox::User "root";\n'
SINGLE_ID_NOTE = ("NOTE: single-id user namespace (no /etc/subuid range for you): in RUN, "
                  "chown and setuid-family calls are no-ops and apt runs without its sandbox "
                  "user; every file belongs to root. For real ids: sudo usermod "
                  "--add-subuids 100000-165535 --add-subgids 100000-165535 $USER")


def single_id_map() -> bool:
    """Will containers get only the caller's own id (no subordinate range)?"""
    if os.geteuid() == 0:
        return False
    from pydocklite.runtime import idmap
    return idmap.default_mappings()[2] is not None


def run_instruction(builder, state, ins):
    """A RUN step of `builder` on stage `state`: the command's changes as a stored LayerRef."""
    from pydocklite.builder import steps
    from pydocklite.builder.errors import DockerfileError
    from pydocklite.builder.runmounts import parse_mount, to_mappings
    df = builder.df

    def bad(msg: str) -> DockerfileError:
        return DockerfileError(msg, df.filename, ins.line, ins.original)
    argv = steps.heredoc_command(ins, state.shell) if ins.heredocs else \
        steps.command_form(ins, state.shell)
    if ins.flag("security"):
        raise bad("RUN --security is not supported by pydocklite")
    workdir = (state.config.get("config") or {}).get("WorkingDir") or "/"
    network = run_network(ins.flag("network"), builder.opts.network, builder.opts.allow, bad)
    scratch: List[str] = []           # throw-away copies for rw binds, deleted after the step
    try:
        mounts = to_mappings([parse_mount(v, workdir) for k, v in ins.flags if k == "mount"],
                             builder.writer.layout.root / "build-cache-mounts", builder.ctx,
                             builder.writer.layout.root / "build-scratch", scratch)
    except BuildError as e:
        _drop(scratch)
        raise bad(str(e)) from None
    record = builder.writer.record_for(builder.current_id(state),
                                       [r.diff_id for r in state.layers])
    image_env = steps.env_map(state.config)     # ENV wins over an ARG of the same name
    run_env = [f"{k}={v}" for k, v in state.args.items() if k not in image_env]
    run_env += [f"{k}={v}" for k, v in builder.build_args.items()
                if k in steps.PROXY_ARGS and k not in state.args]
    if not builder.told_single_id:
        builder.told_single_id = True
        if single_id_map():
            builder.say(SINGLE_ID_NOTE)
    cids: List[str] = []

    def emit(b: bytes) -> None:
        builder.out.write(b.decode("utf-8", "replace"))
        builder.out.flush()

    def started(cid: str) -> None:
        cids.append(cid)
        builder.say(f" ---> Running in {cid[:12]}")
    try:
        diff_id = run_container(builder.settings, record, state.config, argv, run_env, network,
                                emit, started, mounts=mounts, keep=builder.writer.keep)
    except StepFailedError as e:
        shown = " ".join(argv) if ins.json_args is None else json.dumps(argv)
        raise StepFailedError(f"The command '{shown}' returned a non-zero code: {e.code} "
                              f"({df.filename}:{ins.line})", e.code) from None
    finally:
        _drop(scratch)
    builder.say(f"Removing intermediate container {cids[0][:12] if cids else ''}")
    if builder.epoch is not None:      # reproducible: no file time after SOURCE_DATE_EPOCH
        diff_id = builder.writer.clamp_mtimes(diff_id, builder.epoch)
    return builder.writer.compress(diff_id)


def run_network(flag: Optional[str], build_network: str, allow: Sequence[str], bad) -> str:
    """RUN --network=FLAG under `build --network BUILD_NETWORK`: none and default (the
    build's own mode: `build --network none` wins) need nothing; host is BuildKit's
    network.host entitlement, the user's to grant with `build --allow network.host`."""
    if not flag or flag == "default":
        return build_network
    if flag == "none":
        return "none"
    if flag == "host":
        if "network.host" not in allow:
            raise bad("RUN --network=host: granting entitlement network.host is not allowed: "
                      "the build must be run with --allow network.host")
        return "host"
    raise bad(f"RUN --network={flag}: use default, none or host")


def _drop(paths: Sequence[str]) -> None:
    if paths:
        from pydocklite.userns_exec import rmtree_as_root
        rmtree_as_root(*paths)


def run_container(settings, record, config: dict, argv: Sequence[str], env: Sequence[str],
                  network: str, emit: Callable[[bytes], None],
                  on_start: Callable[[str], None], mounts: Sequence = (),
                  keep: Optional[Callable] = None) -> Optional[str]:
    """Run argv in a container of `record` (an ImageRecord, maybe unsaved) with image config
    `config`; returns the diff_id of the committed layer. StepFailedError on a non-zero exit
    (the container is removed either way). `keep(layers=...)` names the new layer in the
    build's lease before a collection may run (ImageWriter.keep)."""
    from pydocklite.containers.container import ContainerService
    from pydocklite.containers.options import Mapping, RunOptions
    cfg = dict(config.get("config") or {})
    fake_root = single_id_map()
    if fake_root:
        conf = settings.layout.root / "build-cache-mounts" / "apt-no-sandbox.conf"
        if not conf.exists():
            conf.parent.mkdir(parents=True, exist_ok=True)
            conf.write_text(APT_CONF)
        mounts = tuple(mounts) + (Mapping("bind", str(conf), APT_CONF_TARGET, True),)
        env = tuple(env) + (f"APT_CONFIG={APT_CONF_TARGET}",)
    opts = RunOptions(image=record.id, command=tuple(argv), entrypoint="", env=tuple(env),
                      user=cfg.get("User") or None, workdir=cfg.get("WorkingDir") or "/",
                      network=network, mounts=tuple(mounts),
                      extra={"seccomp_noop": FAKE_ROOT_SYSCALLS} if fake_root else {})
    service = ContainerService(settings)
    image_config = dict(config)
    image_config["config"] = {k: v for k, v in cfg.items()
                              if k not in ("Healthcheck", "OnBuild", "Entrypoint", "Cmd")}
    state = service.create(opts, record, image_config, [])
    cid = state.id
    try:
        on_start(cid)
        code = _attached(service, cid, emit)
        if code != 0:
            raise StepFailedError(f"exit code {code}", code)
        service.wait(cid, timeout=60)
        return _commit(settings, cid, record.diff_ids, keep)
    finally:
        try:
            service.remove(cid, force=True)
        except Exception:  # noqa: BLE001 - the record may be gone already
            pass


def _attached(service, cid: str, emit: Callable[[bytes], None]) -> int:
    out_r, out_w = os.pipe()
    exit_r, exit_w = os.pipe()
    devnull = os.open(os.devnull, os.O_RDONLY)

    def pump():
        while True:
            try:
                b = os.read(out_r, 65536)
            except OSError:
                return
            if not b:
                return
            emit(b)
    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        res = service.start(cid, attach=[devnull, out_w, out_w], exit_fd=exit_w)
    finally:
        os.close(out_w)
        os.close(exit_w)
        os.close(devnull)
    try:
        if not res.ok:
            raise BuildError(f"the RUN container did not start: {res.error}")
        code = 125
        with os.fdopen(exit_r, "rb") as f:
            exit_r = -1
            for line in f:
                msg = json.loads(line)
                if "exit_code" in msg:
                    code = int(msg["exit_code"])
                    break
        reader.join(timeout=10)
        return code
    finally:
        if exit_r >= 0:
            os.close(exit_r)
        reader.join(timeout=1)
        if not reader.is_alive():
            os.close(out_r)


def _commit(settings, cid: str, parent_diff_ids: Sequence[str],
            keep: Optional[Callable] = None) -> str:
    from snapshotter.leases import gc_lock
    from snapshotter.snapshots import Snapshotter
    from pydocklite.distribution.commit import commit_upper
    layout = settings.layout
    snap = Snapshotter(layout, settings.storage_driver)
    info = snap.stat(cid)
    name = f"build-{cid[:24]}-{os.urandom(4).hex()}"
    full_copy = info.driver == "vfs"          # a whole tree, compared with the layers
    root = os.path.join(info.path, "fs" if full_copy else "upper")
    lower = _LowerNames(layout, parent_diff_ids)
    with gc_lock(layout, shared=True):      # the new layer is named before a collection
        diff_id = commit_upper(settings, cid, name, snap,
                               before=lambda: _drop_mount_points(root, lower, full_copy))
        if keep is not None:
            keep(layers=[diff_id])
    snap.remove(name)
    return diff_id


class _LowerNames:
    """Which of the mount-point paths the image below already has (read before forking)."""

    def __init__(self, layout, diff_ids: Sequence[str]) -> None:
        from pydocklite.builder.imagefs import ImageFS
        fs = ImageFS(layout, diff_ids)
        try:
            self.present = {p for p in MOUNT_POINTS + ("etc",) if fs.stat(p) is not None}
        finally:
            fs.close()


def _drop_mount_points(root: str, lower: _LowerNames, full_copy: bool) -> None:
    """Empty files the runtime made only to bind-mount over (hosts, resolv.conf, hostname),
    and an /etc it made only for them, are not changes the command made. The RUN step
    controlled this tree (an `etc` that is a link to the user's files...): it is walked by
    directory fds, never through a link."""
    import stat
    from snapshotter.fd_walk import DIR_FLAGS, lstat_at, open_dir
    try:
        rfd = os.open(root, DIR_FLAGS)
    except OSError:
        return
    try:
        try:
            efd = open_dir(rfd, "etc")
        except OSError:
            return                      # no etc/, or not a directory: nothing of ours
        try:
            for rel in MOUNT_POINTS:
                name = rel.split("/", 1)[1]
                try:
                    st = lstat_at(efd, name)
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode) and st.st_size == 0 and rel not in lower.present:
                    os.unlink(name, dir_fd=efd)
            empty = not os.listdir(efd)
        finally:
            os.close(efd)
        # in an upper dir an empty etc/ is only a copy-up; in a full copy it is the image's
        if empty and (not full_copy or "etc" not in lower.present):
            try:
                os.rmdir("etc", dir_fd=rfd)
            except OSError:
                pass
    finally:
        os.close(rfd)
