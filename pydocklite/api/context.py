"""What the handlers share: settings, the engine services, and the service's own
bookkeeping (attach sessions waiting for a start, execs, exits of the containers this
service started).

Containers are owned by their shims, not by the service: everything here is an
optimisation or a connection's state, and a restarted service finds every container again
from the store (exits it did not see are read from the containers' records).
"""
from __future__ import annotations

import json
import os
import threading
import time


class ApiContext:
    def __init__(self, settings):
        self.settings = settings
        self.server = None
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)   # an exit or a removal was seen
        self.exits = {}            # cid -> (exit code, monotonic time) of exits seen here
        self.generation = {}       # cid -> starts seen here (next-exit waits on a new one)
        self.pending_attach = {}   # cid -> [streams.AttachSession] waiting for the start
        self.execs = {}            # exec id -> execs.ExecSession
        self.ttys = {}             # cid -> the AttachSession holding its terminal (resize)
        self.pending_starts = {}   # cid -> attach.PendingStart (a shim forked at create)
        self.zygote_started = -1e9  # monotonic time a shim zygote was last started
        self._containers = None
        self._images = None

    # --- services (one of each, made on first use) ---------------------------------------
    @property
    def containers(self):
        if self._containers is None:
            from pydocklite.containers.container import ContainerService
            self._containers = ContainerService(self.settings)
        return self._containers

    @property
    def images(self):
        if self._images is None:
            from pydocklite.images import ImageService
            self._images = ImageService(self.settings)
        return self._images

    # --- exits --------------------------------------------------------------------------
    def watch_exit(self, state, exit_r: int, close_at_exit=None) -> None:
        """Read the shim's exit pipe (one JSON line when the container is finished, after
        its removal when it was run with --rm) and wake the waiters; close_at_exit: an fd
        held for the container's life (its stdin, kept open)."""
        cid = state.id
        with self.lock:
            self.generation[cid] = self.generation.get(cid, 0) + 1

        def reader():
            # the line wakes the waiters at once: the shim still reaps its FUSE servers
            # and closes its ends before the pipe's EOF
            with os.fdopen(exit_r, "rb") as f:
                for line in f:
                    try:
                        msg = json.loads(line)
                    except ValueError:
                        continue
                    if "exit_code" in msg:
                        with self.changed:
                            self.exits[cid] = (int(msg["exit_code"]), time.monotonic())
                            self.changed.notify_all()
            if close_at_exit is not None:
                os.close(close_at_exit)
            self.notify()

        threading.Thread(target=reader, daemon=True, name=f"exit-{cid[:12]}").start()

    def notify(self) -> None:
        with self.changed:
            self.changed.notify_all()

    def wait_change(self, timeout: float) -> None:
        with self.changed:
            self.changed.wait(timeout)

    def forget_old_exits(self, age: float = 600.0) -> None:
        now = time.monotonic()
        with self.lock:
            for cid in [c for c, (_, t) in self.exits.items() if now - t > age]:
                del self.exits[cid]
