"""A detached process forked from the caller: a grandchild in a session of its own, owned by
no CLI (its parent exits at once and is reaped here), so that the caller may die at any
moment. The shim (shim/launch.py) and the namespace host (nshost/client.py) start this way:
forked, not exec'd, they keep what the caller has imported."""
from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import Callable, Optional


def fork_detached(child: Callable[[], int], reaper: Optional[Callable[[int], None]] = None
                  ) -> None:
    """Run child() in a detached grandchild (a child, with a reaper); its return value is
    the exit code. Returns in the caller once the intermediate process is reaped.

    reaper: child() runs in a child of its own session, forked once (each fork copies the
    caller's page tables: the double fork cost the API service ~7 ms per container here,
    the single one ~3), and reaper(pid) is told: the API service reaps it in a thread,
    the CLI exits soon and leaves it to init. It outlives the caller all the same."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setsid()
            if reaper is not None:
                code = child()
            else:
                code = child() if os.fork() == 0 else 0
        finally:
            os._exit(code)
    if reaper is not None:
        reaper(pid)
    else:
        os.waitpid(pid, 0)


def reap_exited() -> None:
    """Reap every child that has exited (none waited for)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if not pid:
            return


def reap_in_thread(pid: int) -> None:
    """A reaper for fork_detached: a thread waits for the child (blocked in waitpid, it
    holds no lock and costs no CPU)."""
    import threading

    def wait() -> None:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
    threading.Thread(target=wait, daemon=True, name=f"reap-{pid}").start()
