"""Starting a shim: forked by the shim zygote or from the caller, detached, renamed for `ps`.

A shim runs in a session of its own (the CLI may die at any moment): a child of the
per-user shim zygote when one runs and serves the caller (zygote.py: the shims share its
memory), else a child of `run`'s CLI or of the API service, forked once
(detach.fork_detached with a reaper), else a grandchild of the forking process; renamed
"pydocklite __shim --name NAME ID --root DIR" so that `ps aux | grep NAME` finds it. It is
forked, not exec'd: a new interpreter would take ~50 ms to start and import what the CLI
has already. The first shim forked from a CLI makes the zygote while it waits.

`run` forks it ahead (fork_ahead), before the container exists: while the CLI looks the
image up and writes the container's record, the shim imports the runtime and the mount
code, loads libfuse3 and connects to the namespace host when one runs (it holds the user
namespace every container joins; the start starts one otherwise) on the other CPU; go(ID,
NAME) then sets it off. A CLI that fails (or dies) before go() closes the pipe, and the
waiting shim just exits.
"""
from __future__ import annotations

import os
import signal
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import List, Optional

    from pydocklite.settings import Settings

PR_SET_CHILD_SUBREAPER = 36

# what a container's start needs beyond what the CLI has loaded (imported ahead by run);
# not what comes after the container's process starts (the port forwarder, the removal):
# the preload must be done before the CLI's preparation is, or the start waits for it
_PRELOAD = (("pydocklite.runtime.api", "pydocklite.runtime.process", "pydocklite.runtime.plan",
             "pydocklite.runtime.spec", "pydocklite.runtime.idmap", "pydocklite.runtime.hooks",
             "pydocklite.runtime.mounts", "pydocklite.runtime.security",
             "pydocklite.runtime.seccomp_load"),
            # (the namespace host is connected to in between)
            ("pydocklite.shim.shim", "pydocklite.shim.stdio", "pydocklite.shim.logs",
            "pydocklite.shim.config", "pydocklite.shim.hosted", "pydocklite.proctitle",
            "snapshotter.mounter", "snapshotter.fuse_fs", "snapshotter.union",
            "snapshotter.merge", "snapshotter.upper", "snapshotter.mmap_blob",
            "snapshotter.fuse_ll3", "_socket", "resource", "termios", "array", "struct",
            "fcntl"))

# what a shim may import later, loaded by the zygote (shim/zygote.py) for its children
_ZYGOTE_PRELOAD = ("pydocklite.shim.health", "pydocklite.shim.attach", "pydocklite.shim.ports",
                   "pydocklite.shim.port_helper", "pydocklite.shim.teardown",
                   "pydocklite.shim.fuse_cgroup", "pydocklite.nshost.client",
                   "pydocklite.nshost.dns", "pydocklite.nshost.etcfiles",
                   "pydocklite.nshost.state", "pydocklite.events", "pydocklite.atomic",
                   "pydocklite.errors", "pydocklite.runtime.spec_fields",
                   "pydocklite.runtime.state", "pydocklite.runtime.errors",
                   "pydocklite.userns_exec", "pydocklite.volumes", "snapshotter.snapshots",
                   "snapshotter.overlay", "snapshotter.errors", "_sha256", "threading",
                   "selectors", "json", "shutil", "traceback", "socket")


class PendingShim:
    """A forked shim waiting for its container: go() starts it, cancel() lets it exit.
    ready_r: where the shim says whether the container started (one JSON line)."""

    def __init__(self, go_w: int, ready_r: int):
        self.go_w, self.ready_r = go_w, ready_r

    def go(self, cid: str, name: str) -> None:
        try:
            os.write(self.go_w, f"{cid} {name}\n".encode())
        except OSError:
            pass                      # the shim is gone: read_ready() reports it
        self.cancel()

    def cancel(self) -> None:
        if self.go_w >= 0:
            os.close(self.go_w)
            self.go_w = -1

    def read_ready(self) -> bytes:
        """The shim's one line about the start (b"" if it died first)."""
        with os.fdopen(self.ready_r, "rb") as f:
            return f.readline()


def fork_ahead(settings: Settings, exit_fd: Optional[int] = None,
               attach: Optional[List[int]] = None, preload: bool = True,
               reaper=None, zygote_absent=None) -> PendingShim:
    """Fork a shim now, for a container created later (go()). exit_fd and the attach fds
    (stdin, stdout, stderr of a foreground CLI) are ours: the shim gets copies. preload:
    import what a start needs while waiting. reaper: see detach.fork_detached.
    zygote_absent: called when no zygote runs, instead of having the shim forked here make
    one (the API service starts a fresh one: a fork of the service would carry its heap,
    zygote.start_fresh)."""
    from pydocklite.shim import zygote
    go_r, go_w = os.pipe()
    ready_r, ready_w = os.pipe()
    fds = [go_r, ready_w] + ([exit_fd] if exit_fd is not None else []) + list(attach or [])
    asked = zygote.ask(settings, fds, exit_fd, len(attach or ()), preload)
    if asked == "failed":
        # (a zygote gone mid-request may have kept copies: fresh pipes for our own shim)
        for fd in (go_r, go_w, ready_r, ready_w):
            os.close(fd)
        go_r, go_w = os.pipe()
        ready_r, ready_w = os.pipe()
    if asked != "forked":
        from pydocklite.detach import fork_detached
        make = asked == "absent" and preload and zygote_absent is None
        fork_detached(lambda: _shim_process(settings, go_r, ready_w, exit_fd, attach, preload,
                                            make_zygote=make), reaper=reaper)
        if asked == "absent" and zygote_absent is not None:
            zygote_absent()             # (after the fork: the shim has none of its thread)
    os.close(go_r)
    os.close(ready_w)
    return PendingShim(go_w, ready_r)


def spawn(settings: Settings, cid: str, name: str, exit_fd: Optional[int] = None,
          attach: Optional[List[int]] = None) -> PendingShim:
    """Fork the shim of an existing container and set it off; read_ready() follows."""
    pending = fork_ahead(settings, exit_fd, attach, preload=False)
    pending.go(cid, name)
    return pending


def _shim_process(settings: Settings, go_r: int, ready_fd: int, exit_fd: Optional[int],
                  attach: Optional[List[int]], preload: bool, make_zygote: bool = False
                  ) -> int:
    """The shim's life, in the forked process (from the caller, or from the zygote:
    zygote.py); never returns to the caller's code. make_zygote: none runs, fork one
    when the container is to start (before any thread)."""
    import fcntl
    devnull = os.open(os.devnull, os.O_RDWR)
    # the CLI's fds we keep, moved above 0-2, which become the shim's own
    ours = [go_r, ready_fd] + ([exit_fd] if exit_fd is not None else []) + list(attach or [])
    moved = {fd: fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3) for fd in ours}
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    top = max(os.sysconf("SC_OPEN_MAX"), max(moved.values()) + 1)
    low = 3
    for fd in sorted(moved.values()) + [top]:   # the CLI's other fds (locks!) are closed
        if fd > low:
            os.closerange(low, fd)
        low = fd + 1
    go_r, ready_fd = moved[go_r], moved[ready_fd]
    exit_fd = moved[exit_fd] if exit_fd is not None else None
    attach = [moved[fd] for fd in attach] if attach else None
    for sig in (signal.SIGPIPE, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_IGN)
    for sig in (signal.SIGTERM, signal.SIGCHLD, signal.SIGWINCH):
        signal.signal(sig, signal.SIG_DFL)
    hosted = None
    if preload:
        # the namespace host's connection while the modules load: the container joins its
        # user namespace, made once per user
        _preload(_PRELOAD[0])
        hosted = _open_host(settings)
        _preload(_PRELOAD[1])
        from snapshotter.fuse_ll3 import load_libfuse3
        load_libfuse3()
    line = b""
    while not line.endswith(b"\n"):
        chunk = os.read(go_r, 512)
        if not chunk:
            if hosted is not None and not isinstance(hosted, Exception):
                hosted.close()
            return 0            # the CLI did not create the container: nothing to do
        line += chunk
    os.close(go_r)
    if make_zygote:
        # once the container exists (a run that fails before leaves no zygote behind),
        # before any thread; the zygote imports the rest itself
        from pydocklite.shim import zygote
        zygote.become(settings.runtime_dir)
    cid, _, name = line.decode().strip().partition(" ")
    from pydocklite.layout import ContainerFiles
    logfd = os.open(str(ContainerFiles(settings.layout.containers_dir / cid).shim_log),
                    os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    os.dup2(logfd, 1)
    os.dup2(logfd, 2)
    os.close(logfd)
    sys.stdin = open(0, "r", closefd=False)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    from pydocklite.proctitle import set_title
    # the name and id for `ps aux | grep`; the store last: it is cut first when room is short
    set_title(f"pydocklite __shim --name {name} {cid} --root {settings.data_root}",
              comm="pydocklite-shim")
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    from pydocklite.shim.shim import Shim, log
    try:
        log(f"shim {os.getpid()} for container {cid} ({name})")
        shim = Shim(settings, cid, ready_fd, exit_fd, attach, hosted=hosted)
        signal.signal(signal.SIGWINCH, lambda _n, _f: shim.stdio and shim.stdio.resize_pty())
        return shim.run()
    except BaseException:  # noqa: BLE001 - the shim's log is where a failure is explained
        import traceback
        log(f"shim failed:\n{traceback.format_exc()}")
        return 1


def _preload(modules: tuple) -> None:
    import importlib
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            pass


def _open_host(settings):
    """The namespace host's connection (shim/hosted.py) when one runs, else None (the start
    starts it: not before the CLI has made the container, which may fail first), or the
    exception that kept it from being made (the start reports it)."""
    try:
        from pydocklite.shim.hosted import Hosted
        return Hosted.open(settings.runtime_dir, start=False)
    except Exception as e:  # noqa: BLE001 - told when the container starts
        return e
