"""Container lifecycle: create, start (through a shim), stop, kill, remove, wait, exec.

State lives in containers/<id>/ (ContainerStore: state.json, the OCI bundle's config.json,
json.log, shim.log, hosts files); the rootfs is a snapshot keyed by the container id.
"""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import List, Optional

from pydocklite.containers.options import RunOptions
from pydocklite.containers.state import ContainerState, ContainerStore, pid_alive
from pydocklite.errors import ContainerStateError, UsageError
from pydocklite.runtime.record import asdict, record
from pydocklite.settings import Settings

STOP_MARKER = "stop-requested"
CGROUP_BASE_ANNOTATION = "io.pydocklite.cgroup-base"
DEFAULT_STOP_TIMEOUT = 10


@record
class StartResult:
    ok: bool
    pid: int = 0
    error: str = ""
    exit_code: int = 0


def signal_number(name) -> int:
    if name is None or name == "":
        return signal.SIGTERM
    if isinstance(name, int) or str(name).isdigit():
        return int(name)
    n = str(name).upper()
    if not n.startswith("SIG"):
        n = "SIG" + n
    try:
        return int(getattr(signal.Signals, n))
    except AttributeError:
        raise UsageError(f"invalid signal: {name}") from None


class ContainerService:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.layout = settings.layout
        self.store = ContainerStore(self.layout.containers_dir)

    # --- create -----------------------------------------------------------------------
    def create(self, opts: RunOptions, image_record, image_config: dict,
               ports: list) -> ContainerState:
        """A new container from `image_record`. Until its record names the image's layers,
        a lease keeps a concurrent rmi/prune from deleting them (snapshotter/leases.py); if
        one ran just before, the image is reported gone instead of half there."""
        from snapshotter.leases import Lease
        self.layout.ensure()
        lease = Lease(self.layout, f"create from {opts.image}")
        try:
            lease.add(layers=image_record.diff_ids, blobs=[image_record.id])
            for d in image_record.diff_ids:
                if not (self.layout.layer_dir(d) / "index").is_file():
                    from pydocklite.errors import ImageNotFoundError
                    raise ImageNotFoundError(f"image {opts.image} was removed while the "
                                             "container was being created: pull it again")
            return self._create(opts, image_record, image_config, ports)
        finally:
            lease.close()

    def _create(self, opts: RunOptions, image_record, image_config: dict,
                ports: list) -> ContainerState:
        from pydocklite.containers.image_files import image_user_files
        from pydocklite.containers.spec_builder import build_spec
        from snapshotter.snapshots import Snapshotter
        cfg = image_config.get("config") or {}
        restart = _restart_policy(opts.restart)
        if opts.remove and restart["Name"] != "no":
            raise UsageError("conflicting options: --restart and --rm")
        labels = dict(cfg.get("Labels") or {})
        labels.update(dict(opts.labels))
        stop_signal = opts.stop_signal or cfg.get("StopSignal") or "SIGTERM"
        signal_number(stop_signal)
        state = self.store.create(ContainerState(
            id="", name=opts.name or "", image=opts.image, image_id=image_record.id))
        cid = state.id
        cdir = self.store.container_dir(cid)
        volumes: List[tuple] = []          # (name, target) of the volumes it was recorded using
        try:
            snap = Snapshotter(self.layout, self.settings.storage_driver)
            snap.prepare(cid, list(image_record.diff_ids))
            files = image_user_files(self.layout, image_record.id, image_record.diff_ids)
            passwd, group = files["/etc/passwd"], files["/etc/group"]
            hostname = opts.hostname or cid[:12]
            extra = self._etc_files(cdir, hostname, opts)
            if opts.init:
                from pydocklite.embedded_init import INIT_PATH_IN_CONTAINER, init_binary
                try:
                    init = init_binary(self.settings.runtime_dir)
                except FileNotFoundError as e:
                    raise UsageError(str(e)) from None
                extra.append({"destination": INIT_PATH_IN_CONTAINER, "type": "bind",
                              "source": str(init), "options": ["rbind", "ro", "nosuid",
                                                               "nodev"]})
            mounts = self._volume_mounts(opts, cid, volumes)
            rootfs = str(self.settings.runtime_dir / cid[:12] / "rootfs")
            spec = build_spec(cfg, opts._replace(mounts=tuple(mounts)),
                              container_id=cid, rootfs=rootfs, passwd=passwd, group=group,
                              hostname=hostname, extra_mounts=extra)
            spec["linux"]["namespaces"].append({"type": "user"})
            if self.settings.cgroup_base and spec["linux"].get("resources"):
                # where the shim's runtime puts the container's cgroup (a delegated subtree)
                spec["annotations"][CGROUP_BASE_ANNOTATION] = ":".join(self.settings.cgroup_base)
            spec["process"]["oomScoreAdj"] = 0
            (cdir / "config.json").write_text(json.dumps(spec, indent=1))
            config = {
                "Config": {
                    "Hostname": hostname, "User": opts.user if opts.user is not None
                    else cfg.get("User", ""),
                    "Env": spec["process"]["env"], "Cmd": list(opts.command) or cfg.get("Cmd"),
                    "Entrypoint": ([opts.entrypoint] if opts.entrypoint else None)
                    if opts.entrypoint is not None else cfg.get("Entrypoint"),
                    "Image": opts.image, "WorkingDir": spec["process"]["cwd"],
                    "Labels": labels, "StopSignal": stop_signal, "OpenStdin": opts.interactive,
                    "Tty": opts.tty, "ExposedPorts": cfg.get("ExposedPorts") or {},
                    "StopTimeout": opts.stop_timeout,
                },
                "HostConfig": {
                    "AutoRemove": opts.remove, "RestartPolicy": restart,
                    "NetworkMode": "host" if opts.network == "host" else
                    ("none" if opts.network == "none" else "private"),
                    "Binds": [f"{m.source}:{m.target}{':ro' if m.readonly else ''}"
                              for m in opts.mounts if m.kind in ("bind", "volume")],
                    "Memory": opts.memory or 0, "MemorySwap": opts.memory_swap or 0,
                    "NanoCpus": int((opts.cpus or 0) * 1e9), "PidsLimit": opts.pids_limit,
                    "CapAdd": list(opts.cap_add), "CapDrop": list(opts.cap_drop),
                    "ReadonlyRootfs": opts.read_only, "Init": opts.init,
                    "LogConfig": {"Type": "json-file", "Config": {}},
                },
                "PortBindings": [asdict(p) for p in ports],
                "Args": spec["process"]["args"],
                # a volume's mount names it ("name"): inspect shows it as Type "volume"
                "Mounts": [dict(asdict(m), **{"name": n for n, t in volumes if t == m.target})
                           for m in mounts],
                "Volumes": [n for n, _ in volumes],
                "StorageDriver": snap.driver,
                "diff_ids": list(image_record.diff_ids),
                "Platform": image_record.os or "linux",
            }
            state = self.store.update(cid, lambda s: s._replace(
                config=config, log_path=str(cdir / "json.log"),
                shim_log_path=str(cdir / "shim.log")))
        except BaseException:
            self._discard(cid)
            if volumes:
                from pydocklite.volumes import VolumeService
                VolumeService(self.settings).detach([n for n, _ in volumes], cid,
                                                    remove_anonymous=True)
            raise
        return state

    def _etc_files(self, cdir: Path, hostname: str, opts: RunOptions) -> list:
        (cdir / "hostname").write_text(hostname + "\n")
        hosts = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                 f"127.0.1.1\t{hostname}\n")
        (cdir / "hosts").write_text(hosts)
        try:
            resolv = Path("/etc/resolv.conf").read_text()
        except OSError:
            resolv = ""
        (cdir / "resolv.conf").write_text(resolv)
        return [{"destination": f"/etc/{n}", "type": "bind", "source": str(cdir / n),
                 "options": ["rbind", "rw"] if not opts.read_only else ["rbind", "ro"]}
                for n in ("hostname", "hosts", "resolv.conf")]

    def _volume_mounts(self, opts: RunOptions, cid: str, volumes: List[tuple]) -> list:
        """The container's mounts with host paths: a volume (named, or anonymous for
        `-v /dst`) becomes a bind of its _data, and (name, target) is added to `volumes` once
        the volume service has recorded this container as its user."""
        from pydocklite.containers.options import Mapping
        from pydocklite.naming import check_volume_name
        out = []
        for m in opts.mounts:
            if m.kind == "volume" and m.source:
                check_volume_name(m.source)     # before anything is made of it
        for m in opts.mounts:
            if m.kind == "bind":
                src = os.path.abspath(m.source)
                if not os.path.exists(src):
                    raise UsageError(f"invalid mount config: bind source path does not exist: "
                                     f"{src}: create it first")
                out.append(m._replace(source=src))
            elif m.kind == "volume":
                from pydocklite.volumes import VolumeService
                vol = VolumeService(self.settings).attach(m.source, cid)
                volumes.append((vol.name, m.target))
                out.append(Mapping("bind", vol.mountpoint, m.target, m.readonly, m.options))
            else:
                out.append(m)
        return out

    # --- start ------------------------------------------------------------------------
    def start(self, ref: str, attach: Optional[List[int]] = None, exit_fd: Optional[int] = None,
              pending=None) -> StartResult:
        """Start the container through a shim: `pending`, one forked ahead (launch.fork_ahead,
        with its own attach and exit fds), else a new one."""
        state = self.store.get(ref)
        st = state.status()
        if st.running:
            raise ContainerStateError(f"container {state.name} is already running")
        if st.shim_alive:
            raise ContainerStateError(f"container {state.name} is being handled by its shim "
                                      f"(pid {state.shim_pid}): wait or stop it first")
        (self.store.container_dir(state.id) / STOP_MARKER).unlink(missing_ok=True)
        self.settings.runtime_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if pending is None:
            from pydocklite.shim.launch import spawn
            pending = spawn(self.settings, state.id, state.name, exit_fd, attach)
        else:
            pending.go(state.id, state.name)
        line = pending.read_ready()
        if not line:
            log = self.store.container_dir(state.id) / "shim.log"
            tail = log.read_text().strip().splitlines()[-1:] if log.exists() else []
            return StartResult(False, error="the shim died before starting the container"
                               + (f": {tail[0]}" if tail else f" (see {log})"), exit_code=125)
        msg = json.loads(line)
        if not msg.get("ok"):
            return StartResult(False, error=msg.get("error", "start failed"),
                               exit_code=int(msg.get("exit_code", 125)))
        return StartResult(True, pid=int(msg.get("pid", 0)))

    # --- stop / kill ------------------------------------------------------------------
    def kill(self, ref: str, sig=None) -> ContainerState:
        state = self.store.get(ref)
        st = state.status()
        if not st.running:
            raise ContainerStateError(f"cannot kill container: {ref}: container "
                                      f"{state.id[:12]} is not running")
        os.kill(state.init_pid, signal_number(sig))
        return state

    def stop(self, ref: str, timeout: Optional[int] = None, sig=None) -> ContainerState:
        state = self.store.get(ref)
        cdir = self.store.container_dir(state.id)
        (cdir / STOP_MARKER).touch()
        if not state.status().running:
            return state
        cfg = state.config.get("Config", {})
        if timeout is None:
            timeout = cfg.get("StopTimeout")
        if timeout is None:
            timeout = DEFAULT_STOP_TIMEOUT
        sig = signal_number(sig or cfg.get("StopSignal") or "SIGTERM")
        try:
            os.kill(state.init_pid, sig)
        except ProcessLookupError:
            pass
        if not self._wait_exit(state, timeout):
            try:
                os.kill(state.init_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._wait_exit(state, 10)
        self._wait_shim_recorded(state.id, 10)
        return self.store.load(state.id)

    def _wait_exit(self, state: ContainerState, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        delay = 0.002
        while time.monotonic() < deadline:
            if not pid_alive(state.init_pid, state.init_start_time):
                return True
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        return not pid_alive(state.init_pid, state.init_start_time)

    def _wait_shim_recorded(self, cid: str, timeout: float) -> None:
        """Until the shim has written the exit status (or is gone)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s = self.store.load(cid)
            if s.status().state not in ("running", "restarting") or \
                    (s.exit_code is not None and not pid_alive(s.init_pid, s.init_start_time)):
                return
            time.sleep(0.005)

    def wait(self, ref: str, timeout: Optional[float] = None) -> int:
        cid = self.store.resolve(ref)
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.005
        while True:
            s = self.store.load(cid)
            st = s.status()
            if st.state in ("exited", "dead", "created") and not st.shim_alive:
                return st.exit_code
            if st.state == "exited" and s.config.get("HostConfig", {}).get("RestartPolicy", {}
                                                                             ).get("Name") == "no":
                return st.exit_code
            if deadline is not None and time.monotonic() > deadline:
                raise ContainerStateError(f"timed out waiting for {ref}")
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    # --- remove -----------------------------------------------------------------------
    def remove(self, ref: str, force: bool = False, volumes: bool = False) -> str:
        state = self.store.get(ref)
        st = state.status()
        if st.running or st.state == "restarting":
            if not force:
                raise ContainerStateError(
                    f"cannot remove container \"/{state.name}\": container is running: "
                    "stop the container before removing or force remove")
            (self.store.container_dir(state.id) / STOP_MARKER).touch()
            try:
                os.kill(state.init_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._wait_exit(state, 10)
        if st.shim_alive:
            deadline = time.monotonic() + 10
            while pid_alive(state.shim_pid, state.shim_start_time) and \
                    time.monotonic() < deadline:
                time.sleep(0.01)
            if pid_alive(state.shim_pid, state.shim_start_time):
                os.kill(state.shim_pid, signal.SIGKILL)
        self.remove_record(state.id, volumes=volumes)
        return state.name

    def remove_record(self, cid: str, volumes: bool = False) -> None:
        """Delete everything of a stopped container: runtime state, snapshot, record; then
        forget it as a user of its volumes, and with `volumes` (`rm -v`) delete the anonymous
        ones nothing else uses (Docker's rule: never a named volume, never a bind source)."""
        state = self.store.load(cid)
        self._runtime_cleanup(cid)
        self._discard(cid)
        names = [str(n) for n in state.config.get("Volumes") or ()]
        if names:
            from pydocklite.volumes import VolumeService
            VolumeService(self.settings).detach(names, cid, remove_anonymous=volumes)

    def _runtime_cleanup(self, cid: str) -> None:
        from pydocklite.runtime import api
        try:
            api.delete(cid, root=str(self.settings.runtime_dir / "runtime"), force=True)
        except Exception:  # noqa: BLE001 - nothing left in the runtime is the usual case
            pass
        rundir = self.settings.runtime_dir / cid[:12]
        from pydocklite.shim.outbound import stop_by_pid_file
        stop_by_pid_file(str(rundir / "outbound.pid"))      # the shim may have died
        if rundir.exists():
            import shutil
            shutil.rmtree(rundir, ignore_errors=True)

    def _discard(self, cid: str) -> None:
        from snapshotter.errors import SnapshotNotFoundError
        from snapshotter.snapshots import Snapshotter
        snap = Snapshotter(self.layout, self.settings.storage_driver)
        try:
            info = snap.stat(cid)
            if info.path:
                # files the container made belong to its subordinate ids: delete them as
                # root of a user namespace with the same map, then let the snapshotter finish
                from pydocklite.userns_exec import rmtree_as_root
                rmtree_as_root(*(os.path.join(info.path, sub) for sub in ("upper", "work", "fs")))
            snap.remove(cid)
        except SnapshotNotFoundError:
            pass
        try:
            self.store.remove(cid)
        except Exception:  # noqa: BLE001 - already gone
            if self.store.container_dir(cid).exists():
                raise

    # --- exec -------------------------------------------------------------------------
    def exec(self, ref: str, args: List[str], env: List[str], user: Optional[str],
             workdir: Optional[str], tty: bool, interactive: bool) -> int:
        from pydocklite.runtime import api
        state = self.store.get(ref)
        if not state.status().running:
            raise ContainerStateError(f"container {state.id[:12]} is not running")
        spec = json.loads((self.store.container_dir(state.id) / "config.json").read_text())
        full_env = list(spec["process"]["env"])
        for e in env:
            k = e.split("=", 1)[0]
            full_env = [x for x in full_env if not x.startswith(k + "=")] + [e]
        stdin = 0 if interactive else os.open(os.devnull, os.O_RDONLY)
        kw = dict(root=str(self.settings.runtime_dir / "runtime"), env=full_env,
                  cwd=workdir or spec["process"].get("cwd", "/"), stdio=(stdin, 1, 2))
        if user is not None:
            from pydocklite.containers.spec_builder import resolve_user
            from pydocklite.containers.image_files import read_image_files
            diff = state.config.get("diff_ids", [])
            files = read_image_files(self.layout, diff, ("/etc/passwd", "/etc/group"))
            uid, gid, _ = resolve_user(user, files["/etc/passwd"], files["/etc/group"])
            kw.update(uid=uid, gid=gid)
        return api.exec_process(state.id, list(args), tty=tty, **kw)


def _restart_policy(text: str) -> dict:
    name, _, count = (text or "no").partition(":")
    if name not in ("no", "always", "on-failure", "unless-stopped"):
        raise UsageError(f"invalid restart policy '{text}': use no, always, unless-stopped or "
                         "on-failure[:max-retries]")
    if count and name != "on-failure":
        raise UsageError(f"maximum retry count cannot be used with restart policy '{name}'")
    try:
        n = int(count) if count else 0
    except ValueError:
        raise UsageError(f"invalid restart policy '{text}': max-retries must be a number") from None
    return {"Name": name, "MaximumRetryCount": n}
