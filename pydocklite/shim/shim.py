"""The per-container shim: one small process per container that owns it for its whole life.

Forked detached by the CLI (launch.py: its own session, renamed `pydocklite __shim --name
NAME ID --root DIR`, so `ps aux | grep NAME` finds it), it: starts the container through
the runtime (the rootfs is mounted by the snapshotter inside the container's user+mount
namespace, its FUSE servers become the shim's children), relays stdio to the json-file log
and to an attached CLI, forwards published ports, reaps as a subreaper, records the exit
status, applies the restart policy, cleans up, and removes the container when it was run
with --rm.
Everything it has to say goes to containers/<id>/shim.log (named by `inspect`).
What it needs to know is its frozen configuration (shim/config.py, containers/<id>/shim.json,
written at create); it records facts (pids, exit status) in the container's record through
state.store, and never imports the services above it.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import List, Optional

from pydocklite.settings import Settings
from pydocklite.shim import config as shim_config
from pydocklite.shim.stdio import StdioRelay, receive_console, send_json as _send
from pydocklite.state.container import ZERO_TIME, now_rfc3339, process_start_time
from pydocklite.state.store import ContainerStore


def log(msg: str) -> None:
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}"
    sys.stderr.write(f"{stamp} {msg}\n")
    sys.stderr.flush()


class Shim:
    def __init__(self, settings: Settings, cid: str, ready_fd: Optional[int],
                 exit_fd: Optional[int], attach: Optional[List[int]], hosted=None):
        self.settings = settings
        self.layout = settings.layout
        self.store = ContainerStore(self.layout.containers_dir)
        self.cid = cid
        self.files = self.store.files(cid)
        self.config = shim_config.read(self.files.shim_config)
        self.ready_fd = ready_fd
        self.exit_fd = exit_fd
        self.attach = attach                     # [stdin, stdout, stderr] of a foreground CLI
        self.run_layout = settings.runtime_layout
        self.runtime_root = str(self.run_layout.runtime_root)
        self.fuse_pids: List[int] = []
        self.fuse_leaves: List[str] = []          # cgroups the FUSE servers were moved to
        self.forwarder = None
        self.helper = None
        self.stdio: Optional[StdioRelay] = None       # built once the log is open
        self.dying: List[int] = []   # killed FUSE servers not reaped yet
        # the namespace host (shim/hosted.py), connected to ahead by launch.py (or the
        # exception that kept it from being connected to), else at the first start
        self.hosted = hosted
        self.op = None               # the life lock, held while restarting the container
        self.checker = None          # health.Checker while a container with a check runs
        self.attach_server = None    # attach.AttachServer: later attachments (attach.py)
        self.pending_helper = None   # port_helper.PendingHelper forked for start_ports

    # --- state helpers ----------------------------------------------------------------
    def update(self, **changes):
        """Record facts of the running container (pids, start time, health...): atomically
        but not durably (two fsyncs, 2-15 ms here, on the start's path each time): after a
        power cut they would name processes that are gone anyway. The exit is durable."""
        return self.store.update(self.cid, lambda s: s._replace(**changes), durable=False)

    # --- main -------------------------------------------------------------------------
    def run(self) -> int:
        from pydocklite.shim.logs import JsonLogWriter
        # the record learns this shim's pid with the container's (start_container): one
        # write less on the start's path; the starter holds the life lock until then
        cfg = self.config
        logw = JsonLogWriter(cfg.log_path, max_size=cfg.log_max_size,
                             max_files=cfg.log_max_files)
        self.stdio = StdioRelay(logw, self.attach, self.exit_fd, log)
        code = 0
        first = True
        restarts = 0
        try:
            while True:
                try:
                    pid = self.start_container(first)
                except Exception as e:  # noqa: BLE001 - report the failed start, then clean
                    msg = str(e) or type(e).__name__
                    log(f"start failed: {msg}")
                    self.update(error=msg, exit_code=125 if first else 128,
                                finished_at=now_rfc3339())
                    self.cleanup_container()
                    if first:
                        _send(self.ready_fd, {"ok": False, "error": msg, "exit_code": 125})
                    code = 125
                    break
                if first:
                    _send(self.ready_fd, {"ok": True, "pid": pid})
                    self._close_ready()
                    first = False
                    self.serve_attach()
                self._release_op()
                code = self.wait_container(pid)
                again = self.restart_wanted(code, restarts)
                if not again:
                    self.stdio.end_attach()
                self.cleanup_container(final=not again)
                if not again:
                    break
                restarts += 1
                self.update(restarting=True, restart_count=restarts)
                if not self.wait_to_restart(min(60.0, 0.1 * (2 ** min(restarts, 10)))):
                    self.update(restarting=False)
                    break
        finally:
            self._release_op()
            self._close_ready()
            if self.attach_server is not None:
                self.attach_server.close()
            if self.forwarder is not None:
                self.forwarder.close()
            if self.helper is not None:
                self.helper.close()
            if self.stdio is not None:
                self.stdio.close()
            self._leave_host(final=True)
            if self.config.auto_remove:
                self.remove_container()
            _send(self.exit_fd, {"exit_code": code})
            self.reap_late()
        return 0

    def _release_op(self) -> None:
        """Let go of the life lock a restart took (wait_to_restart)."""
        op, self.op = self.op, None
        if op is not None:
            op.__exit__(None, None, None)

    def _close_ready(self) -> None:
        if self.ready_fd is not None:
            try:
                os.close(self.ready_fd)
            except OSError:
                pass
            self.ready_fd = None

    def stop_requested(self) -> str:
        """"" or what a `stop`/`rm` asked for ("stop", "rm"): no restart policy applies."""
        try:
            return self.files.stop_marker.read_text().strip() or "stop"
        except FileNotFoundError:
            return ""

    def reload_config(self) -> None:
        """shim.json as it is now: `update --restart` and `rename` rewrite it."""
        try:
            self.config = shim_config.read(self.files.shim_config)
        except (OSError, ValueError) as e:
            log(f"cannot re-read {self.files.shim_config}: {e}; keeping the configuration")

    def restart_wanted(self, code: int, restarts: int) -> bool:
        """The restart policy as configured now (wait_container reloaded shim.json)."""
        if self.stop_requested():
            return False
        return self.config.should_restart(code, restarts)

    def wait_to_restart(self, delay: float) -> bool:
        """Sleep out the back-off, then take the container's life lock for the restart;
        False when a stop or rm was asked for meanwhile. The lock is only tried: the one
        holding it may be an rm waiting for this shim to exit."""
        deadline = time.monotonic() + delay
        while True:
            if self.stop_requested():
                return False
            if time.monotonic() >= deadline:
                from pydocklite.errors import ContainerNotFoundError
                try:
                    self.op = self.store.operation(self.cid, wait=False)
                    self.op.__enter__()
                    return True
                except ContainerNotFoundError:
                    self.op = None
                    return False            # removed meanwhile (rm -f): nothing to restart
                except Exception:  # noqa: BLE001 - busy: look again
                    self.op = None
            time.sleep(0.02)

    # --- one run of the container -----------------------------------------------------
    def start_container(self, first: bool) -> int:
        from pydocklite.runtime import api
        from snapshotter.snapshots import Snapshotter
        cfg = self.config
        hosted = self._host()
        os.makedirs(cfg.rootfs, exist_ok=True)
        mounts = Snapshotter(self.layout, cfg.storage_driver or "auto").mounts(self.cid)
        # the image's lower shared with the other containers of the image, mounted once in
        # the namespace host (None for the fuse and vfs drivers: their own mounts)
        shared = hosted.shared_mounts(mounts, self.cid) if cfg.default_idmap else None
        mntns = hosted.open_mntns() if shared is not None else -1
        pid_r, pid_w = os.pipe()

        def prepare_rootfs(path: str) -> None:
            from snapshotter.mounter import mount_all
            if shared is not None:
                hosted.enter_mntns(mntns)
                mount_all(shared, path, allow_other=True)
                os.write(pid_w, b"[]")
                return
            active = mount_all(mounts, path, allow_other=True)
            os.write(pid_w, json.dumps(active.server_pids()).encode())

        tty = cfg.tty
        interactive = cfg.open_stdin
        console_path = None
        console = None
        child_fds: List[int] = []
        if tty:
            self.run_layout.ensure_run_dir(self.cid)
            console_path = str(self.run_layout.console_socket(self.cid))
            if os.path.exists(console_path):
                os.unlink(console_path)
            import socket
            console = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            console.bind(console_path)
            console.listen(1)
            stdio = None
        else:
            if interactive:
                in_r, self.stdio.stdin_w = os.pipe()
            else:
                in_r = os.open(os.devnull, os.O_RDONLY)
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            child_fds = [in_r, out_w, err_w]
            stdio = (in_r, out_w, err_w)

        def attach(ns_pid: int) -> None:
            # the namespace host attaches the container's network namespace to its networks
            # while the rootfs mounts; the answer is read before the start
            hosted.attach_begin(self.cid, cfg.name, ns_pid,
                                [e.to_json() for e in cfg.endpoints],
                                any(ip == "host-gateway" for _, ip in cfg.extra_hosts),
                                cfg.dns)
        bridged = cfg.network == "bridge" and bool(cfg.endpoints)
        if cfg.network == "container":
            self._join_network(cfg.join)
        log("creating the container")
        try:
            created = api.create(cfg.bundle, self.cid, root=self.runtime_root, stdio=stdio,
                                 console_socket=console_path, prepare_rootfs=prepare_rootfs,
                                 cgroup_base=self._cgroup_base(),
                                 on_namespaces=attach if bridged else None,
                                 made_userns=hosted.userns if cfg.default_idmap else None)
        except BaseException:
            if bridged:
                hosted.detach(self.cid)
            raise
        finally:
            if mntns >= 0:
                os.close(mntns)
            os.close(pid_w)
            for fd in child_fds:
                os.close(fd)
            try:
                self.fuse_pids = json.loads(os.read(pid_r, 65536) or b"[]")
            except ValueError:
                self.fuse_pids = []
            os.close(pid_r)
        for w in created.warnings:
            log(f"warning: {w}")
        if self.config.ports and self.config.network != "host":
            # the port helper's fork (a few ms) overlaps the rest of the start
            from pydocklite.shim.port_helper import fork_netns_helper
            self.pending_helper = fork_netns_helper(created.pid)
        self._fuse_out_of_cgroup()
        if tty:
            master = receive_console(console)
            console.close()
            self.stdio.relay(master, "stdout", pty=True)
            self.stdio.resize_pty()    # the attached terminal's size, before the start
        else:
            self.stdio.relay(out_r, "stdout")
            self.stdio.relay(err_r, "stderr")
            if interactive:
                self.stdio.feed_stdin(self.stdio.stdin_w)
        pid = created.pid
        log(f"created, init pid {pid}")
        hosted.watch(self.cid, [pid])
        if shared is not None:
            hosted.watch_lower(self._lower_died)
        endpoints = hosted.attach_end() if bridged else []
        self._write_network_files(hosted, endpoints)
        api.start(self.cid, root=self.runtime_root)
        log("started")
        me = os.getpid()
        self.state = self.update(shim_pid=me, shim_start_time=process_start_time(me) or 0,
                                 error="",
                                 init_pid=pid, init_start_time=process_start_time(pid) or 0,
                                 started_at=now_rfc3339(), exit_code=None, restarting=False,
                                 finished_at=ZERO_TIME, oom_killed=False, paused=False,
                                 endpoints=self._endpoint_settings(endpoints))
        self.config.event(self.run_layout.events_dir, "start")
        self.start_ports(pid)
        self.start_health()
        return pid

    def _lower_died(self, pid: int) -> None:
        msg = (f"the FUSE server of the image's shared lower (pid {pid}) died: the "
               "container's image files now fail with ENOTCONN; its own changes are kept "
               "in its upper directory: restart the container")
        log(msg)
        self.state = self.update(error=msg)

    def _host(self):
        """The namespace host (connected now if launch.py did not, or if it failed then)."""
        from pydocklite.shim.hosted import Hosted
        if isinstance(self.hosted, Exception) or self.hosted is None:
            self.hosted = Hosted.open(self.settings.runtime_dir)
        return self.hosted

    def _join_network(self, join: str) -> None:
        """--network container:ID: the spec names that container's network namespace as it
        is now (its init's), for this start."""
        other = self.store.load(join)
        if not other.status().running:
            from pydocklite.errors import ContainerStateError
            raise ContainerStateError(f"cannot join network of a non running container: "
                                      f"{other.name}: start it first")
        path = self.files.spec
        spec = json.loads(path.read_text())
        for ns in spec["linux"]["namespaces"]:
            if ns.get("type") == "network":
                ns["path"] = f"/proc/{other.init_pid}/ns/net"
        from pydocklite.atomic import atomic_write_json
        atomic_write_json(path, spec, durable=False)

    def _write_network_files(self, hosted, endpoints: list) -> None:
        """/etc/hosts and /etc/resolv.conf with the addresses the container got (written in
        place: the files are bind-mounted already)."""
        cfg = self.config
        if cfg.network not in ("bridge", "none"):
            return
        from pydocklite.nshost import etcfiles
        from pydocklite.nshost.dns import host_resolvers
        gateway = hosted.host_gateway
        extra = [(n, gateway if ip == "host-gateway" else ip) for n, ip in cfg.extra_hosts
                 if ip != "host-gateway" or gateway]
        hosts = etcfiles.hosts_file(cfg.hostname, cfg.domainname,
                                    [e["ip"] for e in endpoints][:1], extra)
        by_id = {e.network.id: e.network for e in cfg.endpoints}
        named = [by_id[e["network"]].gateway for e in endpoints
                 if e["network"] in by_id and by_id[e["network"]].named]
        gateways = [by_id[e["network"]].gateway for e in endpoints if e["network"] in by_id]
        resolv = etcfiles.resolv_conf("user" if named else "bridge", host_resolvers(),
                                      cfg.dns, cfg.dns_search, cfg.dns_options,
                                      gateways=named or gateways)
        for name, text in (("hosts", hosts), ("resolv.conf", resolv)):
            with open(self.files.etc_file(name), "r+") as f:
                f.write(text)
                f.truncate()

    def _endpoint_settings(self, endpoints: list) -> dict:
        """Docker's NetworkSettings.Networks values of the endpoints, by network name."""
        from pydocklite.nshost.state import docker_endpoint
        names = {e.network.id: e.network.name for e in self.config.endpoints}
        return {names.get(e["network"], e["network"]): docker_endpoint(e) for e in endpoints}

    def serve_attach(self) -> None:
        """The attach socket (attach.py), served by a thread of its own from now on."""
        from pydocklite.shim.attach import AttachServer
        cfg, stdio, events_dir = self.config, self.stdio, self.run_layout.events_dir
        self.attach_server = AttachServer(
            str(self.run_layout.attach_socket(self.cid)), stdio, cfg.tty, stdio.stdin_target,
            cfg.stdin_once, lambda: stdio.pty_master,
            lambda: self.config.event(events_dir, "attach"), log)
        self.attach_server.start()

    def start_health(self) -> None:
        """The health check's thread, for a container that has one (else nothing at all)."""
        if self.config.healthcheck is None:
            return
        from pydocklite.shim.health import Checker
        events_dir = self.run_layout.events_dir

        def record(health: dict) -> None:
            try:
                self.update(health=health)
            except Exception as e:  # noqa: BLE001 - removed meanwhile (rm -f): nothing to tell
                log(f"health: cannot record the result: {e}")

        def told(status: str) -> None:
            self.config.event(events_dir, f"health_status: {status}")
        self.checker = Checker(self.config.healthcheck, self.cid, self.runtime_root, record,
                               told, log)
        self.checker.start()

    def _cgroup_base(self):
        """The delegated cgroup dir(s) given at create time (or now, to the shim), else None."""
        base = self.config.cgroup_base or ":".join(self.settings.cgroup_base)
        if base:
            log(f"cgroup base: {base}")
        return base or None

    def start_ports(self, pid: int) -> None:
        if not self.config.ports or self.config.network == "host":
            return
        from pydocklite.shim.ports import PortForwarder
        from pydocklite.shim.port_helper import start_netns_helper
        pending, self.pending_helper = self.pending_helper, None
        helper = pending.result() if pending is not None else start_netns_helper(pid)
        if self.forwarder is None:
            self.forwarder = PortForwarder(self.config.ports, helper.sock)
            self.forwarder.start()
        else:
            self.helper.close()
            self.forwarder.replace_helper(helper.sock)
        self.helper = helper

    # --- waiting and cleaning ---------------------------------------------------------
    def wait_container(self, pid: int) -> int:
        while True:
            try:
                got, status = os.waitpid(-1, 0)
            except ChildProcessError:
                code = 255
                break
            except InterruptedError:
                continue
            if got in self.fuse_pids:
                self.fuse_pids.remove(got)
                msg = (f"the FUSE server of the container's root filesystem (pid {got}) died: "
                       "its files now fail with ENOTCONN; the container's own changes are "
                       "kept in its upper directory: restart the container")
                log(msg)
                self.state = self.update(error=msg)
                continue
            if self.checker is not None and self.checker.reaped(got, status):
                continue
            if got == pid:
                code = os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") \
                    else (os.WEXITSTATUS(status) if os.WIFEXITED(status) else -os.WTERMSIG(status))
                if code < 0:
                    code = 128 - code
                break
        if self.checker is not None:
            self.checker.stop()
            self.checker = None
        self.stdio.join()
        self.stdio.close_stdin()
        oom = self._oom_killed()
        self.reload_config()
        events_dir = self.run_layout.events_dir

        def told(_state) -> None:      # under the record's lock: see ContainerStore.update
            if oom:
                self.config.event(events_dir, "oom")
            self.config.event(events_dir, "die", exitCode=str(code))
        self.state = self.store.update(self.cid, lambda s: s._replace(
            exit_code=code, finished_at=now_rfc3339(), oom_killed=oom, endpoints={}),
            then=told, durable=not self.config.auto_remove)     # (--rm: removed right after)
        log(f"container exited with code {code}")
        return code

    def _container_cgroup(self) -> list:
        """The runtime's [[controller, dir], ...] of the container's cgroup ([] if none)."""
        try:
            from pydocklite.runtime import state as runtime_state
            return runtime_state.load(self.runtime_root, self.cid).cgroup or []
        except Exception:  # noqa: BLE001 - gone already, or no cgroup
            return []

    def _fuse_out_of_cgroup(self) -> None:
        paths = self._container_cgroup() if self.fuse_pids else []
        if paths:
            from pydocklite.shim.fuse_cgroup import move_out
            self.fuse_leaves = move_out(paths, self.fuse_pids, log)

    def _oom_killed(self) -> bool:
        """Did the kernel OOM-kill a process of the container's memory cgroup? (its oom_kill
        counter: memory.events on v2, memory.oom_control on v1; read before the runtime's
        delete removes the cgroup)."""
        for controller, d in self._container_cgroup():
            if controller not in ("", "memory"):
                continue
            for name in ("memory.events", "memory.oom_control"):
                try:
                    with open(os.path.join(d, name)) as f:
                        text = f.read()
                except OSError:
                    continue
                for line in text.splitlines():
                    key, _, value = line.partition(" ")
                    if key == "oom_kill" and value.strip().isdigit() and int(value) > 0:
                        return True
        return False

    def cleanup_container(self, final: bool = False) -> None:
        """Undo one run of the container. What takes a while to go (the FUSE servers' exit)
        is told first and waited for last, or, the final time, after the CLI has its exit
        code (reap_late())."""
        from pydocklite.shim.teardown import release_runtime
        pending, self.pending_helper = self.pending_helper, None
        if pending is not None:          # a start that failed before its ports
            pending.cancel()
        # the servers' mount namespace holds nothing else: killing them drops their mounts
        killed = []
        for pid in self.fuse_pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except ProcessLookupError:
                pass
        self.fuse_pids = []
        release_runtime(self.settings, self.cid, log)
        self._leave_host(final)
        self.dying = killed
        if not final or self.fuse_leaves:   # their leaf cgroup goes only once they have
            self.reap_late()
        if self.fuse_leaves:
            from pydocklite.shim.fuse_cgroup import remove_leaves
            remove_leaves(self.fuse_leaves)
            self.fuse_leaves = []

    def _leave_host(self, final: bool) -> None:
        """The container's processes are gone: its endpoints go, its addresses leave the
        record; the final time the hold on the image's shared lower goes too."""
        hosted = self.hosted
        if hosted is None or isinstance(hosted, Exception):
            return
        try:
            if self.config.network == "bridge" and self.config.endpoints:
                hosted.detach(self.cid)          # (its addresses left the record at the exit)
            if final:
                hosted.release()
                hosted.close()
                self.hosted = None
        except Exception as e:  # noqa: BLE001 - the host notices dead containers itself
            log(f"namespace host: {e}")

    def reap_late(self) -> None:
        """Reap the killed FUSE servers."""
        for pid in self.dying:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        self.dying = []

    def remove_container(self) -> None:
        """--rm: the one teardown, under the life lock; not when an `rm` asked for the stop:
        it holds the lock, waits for this shim to exit, and removes the container itself."""
        from pydocklite.errors import ContainerNotFoundError
        from pydocklite.shim import teardown
        if self.stop_requested() == "rm":
            return
        try:
            with self.store.operation(self.cid):
                teardown.remove(self.settings, self.store, self.cid, log, remove_anonymous=True,
                                host=False)       # (_leave_host told it already)
        except ContainerNotFoundError:
            pass                 # removed already
        except Exception as e:  # noqa: BLE001 - logged; `rm` can finish it
            import traceback
            log(f"--rm: could not remove the container: {e}\n{traceback.format_exc()}")
