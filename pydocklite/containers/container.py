"""Container lifecycle: create, start (through a shim), stop, kill, remove, wait, exec.

State lives in containers/<id>/ (layout.ContainerFiles: state.json, the OCI bundle's
config.json, the shim's frozen configuration shim.json, json.log, shim.log, hosts files);
the rootfs is a snapshot keyed by the container id. Every lifecycle operation holds the
container's life lock (ContainerStore.operation) from its checks to its last action.
"""
from __future__ import annotations

import json
import os
import signal
import time

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import List, Optional

from pydocklite.atomic import atomic_write_text
from pydocklite.containers.options import RunOptions
from pydocklite.errors import ContainerNotModifiedError, ContainerStateError, UsageError
from pydocklite.runtime.record import record
from pydocklite.settings import Settings
from pydocklite.state.container import ContainerState, pid_alive
from pydocklite.state.store import ContainerStore

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
        self.run_layout = settings.runtime_layout

    # --- create -----------------------------------------------------------------------
    def create(self, opts: RunOptions, image_record, image_config: dict,
               ports: list) -> ContainerState:
        """A new container from an image (containers/create.py). Until its record names the
        image's layers, a lease keeps a concurrent rmi/prune from deleting them
        (snapshotter/leases.py); if one ran just before, the image is reported gone instead
        of half there."""
        from pydocklite.containers.create import create
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
            return create(self, opts, image_record, image_config, ports)
        finally:
            lease.close()

    def event(self, state: ContainerState, action: str, **extra) -> None:
        """A container event in the user's journal (pydocklite/events.py)."""
        from pydocklite import events
        events.container(self.run_layout.events_dir, action, state.id, state.image,
                         state.name, state.config.get("Config", {}).get("Labels"), **extra)

    def rename(self, ref: str, new_name: str) -> ContainerState:
        """Docker's rename: the record, the shim's configuration (its events name the
        container), and a `rename` event with the old name."""
        from pydocklite.shim import config as shim_config
        with self.store.operation(ref) as old:
            new = self.store.rename(old.id, new_name)
            path = self.store.files(old.id).shim_config
            try:
                shim_config.write(path, shim_config.read(path)._replace(name=new.name))
            except FileNotFoundError:
                pass                      # a record whose create was cut short
            self.event(new, "rename", oldName="/" + old.name)
            if old.status().running and old.config.get("Networks"):
                from pydocklite.nshost.client import connect
                host = connect(self.settings.runtime_dir, start=False)
                if host is not None:          # its DNS answers the new name at once
                    with host:
                        host.call("rename", cid=old.id, name=new.name)
        return new

    def update(self, ref: str, want) -> List[str]:
        """New limits and restart policy (containers/update.py); warnings."""
        from pydocklite.containers.update import update
        return update(self, ref, want)

    # --- start ------------------------------------------------------------------------
    def start(self, ref: str, attach: Optional[List[int]] = None, exit_fd: Optional[int] = None,
              pending=None) -> StartResult:
        """Start the container through a shim: `pending`, one forked ahead (launch.fork_ahead,
        with its own attach and exit fds), else a new one. Holds the life lock until the shim
        says whether the container started."""
        with self.store.operation(ref) as state:
            return self._start(state, attach, exit_fd, pending)

    def restart(self, ref: str, timeout: Optional[int] = None) -> StartResult:
        """stop (when running) and start, under one hold of the life lock."""
        with self.store.operation(ref) as state:
            if state.status().running or state.status().state == "restarting":
                state = self._stop(state, timeout)
            if state.status().shim_alive:        # it is recording the exit and cleaning up
                self._wait_shim_exit(state, 10)
                state = self.store.load(state.id)
            result = self._start(state)
            if result.ok:
                self.event(state, "restart")
            return result

    def _start(self, state: ContainerState, attach=None, exit_fd=None,
               pending=None) -> StartResult:
        st = state.status()
        if st.running:
            raise ContainerNotModifiedError(f"container {state.name} is already running")
        if st.shim_alive:
            raise ContainerStateError(f"container {state.name} is being handled by its shim "
                                      f"(pid {state.shim_pid}): wait or stop it first")
        files = self.store.files(state.id)
        files.stop_marker.unlink(missing_ok=True)
        self._refresh_network(state, files)
        self.run_layout.ensure()
        if pending is None:
            from pydocklite.shim.launch import spawn
            pending = spawn(self.settings, state.id, state.name, exit_fd, attach)
        else:
            pending.go(state.id, state.name)
        line = pending.read_ready()
        if not line:
            log = files.shim_log
            tail = log.read_text().strip().splitlines()[-1:] if log.exists() else []
            return StartResult(False, error="the shim died before starting the container"
                               + (f": {tail[0]}" if tail else f" (see {log})"), exit_code=125)
        msg = json.loads(line)
        if not msg.get("ok"):
            return StartResult(False, error=msg.get("error", "start failed"),
                               exit_code=int(msg.get("exit_code", 125)))
        return StartResult(True, pid=int(msg.get("pid", 0)))

    def _refresh_network(self, state: ContainerState, files) -> None:
        """The networks as they are now into the shim's configuration (see netconfig)."""
        from pydocklite.containers import netconfig
        from pydocklite.shim import config as shim_config
        try:
            cfg = shim_config.read(files.shim_config)
        except FileNotFoundError:
            return
        fresh = netconfig.refresh(self.settings, self.store, state, cfg)
        if fresh is not cfg:
            shim_config.write(files.shim_config, fresh, durable=False)

    # --- stop / kill ------------------------------------------------------------------
    def kill(self, ref: str, sig=None) -> ContainerState:
        number = signal_number(sig)
        with self.store.operation(ref) as state:
            if not state.status().running:
                raise ContainerStateError(f"cannot kill container: {ref}: container "
                                          f"{state.id[:12]} is not running")
            self.event(state, "kill", signal=str(number))
            os.kill(state.init_pid, number)
            if state.paused:             # it acts on the signal once it runs again
                from pydocklite.containers.pause import resume_if_paused
                resume_if_paused(self.settings, state)
        return state

    def stop(self, ref: str, timeout: Optional[int] = None, sig=None) -> ContainerState:
        """Docker's stop: the stop signal, then SIGKILL after `timeout` seconds; no restart
        policy applies afterwards. ContainerNotModifiedError when it is not running."""
        with self.store.operation(ref) as state:
            return self._stop(state, timeout, sig)

    def _stop(self, state: ContainerState, timeout: Optional[int] = None,
              sig=None) -> ContainerState:
        self._request_stop(state.id, "stop")
        st = state.status()
        if st.state == "restarting":         # the shim sees the request and gives up
            self._wait_shim_recorded(state.id, 10)
            return self.store.load(state.id)
        if not st.running:
            raise ContainerNotModifiedError(f"container {state.name} is not running")
        cfg = state.config.get("Config", {})
        if timeout is None:
            timeout = cfg.get("StopTimeout")
        if timeout is None:
            timeout = DEFAULT_STOP_TIMEOUT
        self._signal_and_wait(state, signal_number(sig or cfg.get("StopSignal") or "SIGTERM"),
                              timeout)
        self._wait_shim_recorded(state.id, 10)
        self.event(state, "stop")
        return self.store.load(state.id)

    def pause(self, ref: str) -> ContainerState:
        """Docker's pause (containers/pause.py: the freezer, else SIGSTOP of every process)."""
        from pydocklite.containers.pause import pause
        return pause(self.settings, ref)

    def unpause(self, ref: str) -> ContainerState:
        from pydocklite.containers.pause import unpause
        return unpause(self.settings, ref)

    def diff(self, ref: str):
        """[(kind, "/path")] of what the container changed (containers/changes.py)."""
        from pydocklite.containers.changes import diff
        return diff(self.settings, ref)

    def export(self, ref: str):
        """The container's filesystem as a tar stream (containers/changes.py)."""
        from pydocklite.containers.changes import export
        return export(self.settings, ref)

    def _request_stop(self, cid: str, why: str) -> None:
        """Tell the shim not to apply the restart policy (and, for "rm", not to remove a
        --rm container itself: the rm holding the life lock does)."""
        atomic_write_text(self.store.files(cid).stop_marker, why + "\n", durable=False)

    def _signal_and_wait(self, state: ContainerState, sig: int, timeout: float) -> None:
        self.event(state, "kill", signal=str(sig))
        try:
            os.kill(state.init_pid, sig)
        except ProcessLookupError:
            pass
        if state.paused:
            # it acts on the signal once it runs again (a frozen v1 cgroup: even on SIGKILL)
            from pydocklite.containers.pause import resume_if_paused
            resume_if_paused(self.settings, state)
        if not self._wait_exit(state, timeout) and sig != signal.SIGKILL:
            self.event(state, "kill", signal=str(int(signal.SIGKILL)))
            try:
                os.kill(state.init_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._wait_exit(state, 10)

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
        """Until the shim has written the exit status, and told the journal (`die`: it
        does so under the record's lock), or is gone."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s = self.store.load(cid)
            if s.status().state not in ("running", "restarting") or \
                    (s.exit_code is not None and not pid_alive(s.init_pid, s.init_start_time)):
                with self.store.lock(cid, shared=True):
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
        """Docker's rm: refuses a running container unless forced (SIGKILL); waits for its
        shim to finish, then the one teardown. All under the life lock."""
        with self.store.operation(ref) as state:
            st = state.status()
            if (st.running or st.state == "restarting") and not force:
                raise ContainerStateError(
                    f"cannot remove container \"/{state.name}\": container is running: "
                    "stop the container before removing or force remove")
            if st.running or st.shim_alive:
                self._request_stop(state.id, "rm")
            if st.running:
                self._signal_and_wait(state, signal.SIGKILL, 10)
            if st.shim_alive:
                self._wait_shim_exit(state, 10)
            self._teardown(state, volumes)
        return state.name

    def _wait_shim_exit(self, state: ContainerState, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while pid_alive(state.shim_pid, state.shim_start_time) and \
                time.monotonic() < deadline:
            time.sleep(0.01)
        if pid_alive(state.shim_pid, state.shim_start_time):
            os.kill(state.shim_pid, signal.SIGKILL)

    def _teardown(self, state: ContainerState, volumes: bool = False) -> None:
        """The one teardown (shim/teardown.py): everything of the stopped container, its
        volumes told it is gone; with `volumes` (`rm -v`) the anonymous ones nothing else
        uses are deleted (Docker's rule: never a named volume, never a bind source)."""
        from pydocklite.shim import teardown
        teardown.remove(self.settings, self.store, state.id, remove_anonymous=volumes)

    def prune(self, select=None) -> List[str]:
        """Remove every stopped container no operation is busy with (and, given a
        select(state, status) predicate, that it selects: `--filter`); their ids."""
        from pydocklite.errors import ConflictError, ContainerNotFoundError
        removed = []
        for listed in self.store.list():
            try:
                with self.store.operation(listed.id, wait=False) as state:
                    st = state.status()
                    if st.running or st.shim_alive or st.state == "restarting":
                        continue
                    if select is not None and not select(state, st):
                        continue
                    self._teardown(state)
                    removed.append(state.id)
            except (ConflictError, ContainerNotFoundError):
                continue               # busy, or removed meanwhile
        return removed

    # --- exec -------------------------------------------------------------------------
    def exec(self, ref: str, args: List[str], env: List[str], user: Optional[str],
             workdir: Optional[str], tty: bool, interactive: bool, stdio=None,
             on_console=None, new_session: bool = False) -> int:
        """Run args in the running container; its exit code. stdio: the process's fds
        (default: ours, stdin only when interactive); with tty, on_console(master) gets the
        pty's master instead of our terminal relaying it; new_session: the process leaves
        our session (a service's Ctrl-C must not reach it)."""
        from pydocklite.runtime import api
        state = self.store.get(ref)
        if not state.status().running:
            raise ContainerStateError(f"container {state.id[:12]} is not running")
        if state.status().state == "paused":
            raise ContainerStateError(f"Container {state.id} is paused, unpause the container "
                                      f"before exec")
        spec = json.loads(self.store.files(state.id).spec.read_text())
        full_env = list(spec["process"]["env"])
        for e in env:
            k = e.split("=", 1)[0]
            full_env = [x for x in full_env if not x.startswith(k + "=")] + [e]
        if stdio is None:
            stdio = (0 if interactive else os.open(os.devnull, os.O_RDONLY), 1, 2)
        kw = dict(root=str(self.run_layout.runtime_root), env=full_env,
                  cwd=workdir or spec["process"].get("cwd", "/"), stdio=tuple(stdio),
                  on_console=on_console, new_session=new_session)
        if user is not None:
            from pydocklite.containers.spec_builder import resolve_user
            from pydocklite.containers.image_files import read_image_files
            diff = state.config.get("diff_ids", [])
            files = read_image_files(self.layout, diff, ("/etc/passwd", "/etc/group"))
            uid, gid, _ = resolve_user(user, files["/etc/passwd"], files["/etc/group"])
            kw.update(uid=uid, gid=gid)
        return api.exec_process(state.id, list(args), tty=tty, **kw)
