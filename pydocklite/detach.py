"""A detached process forked from the caller: a grandchild in a session of its own, owned by
no CLI (its parent exits at once and is reaped here), so that the caller may die at any
moment. The shim (shim/launch.py) and the namespace host (nshost/client.py) start this way:
forked, not exec'd, they keep what the caller has imported."""
from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import Callable


def fork_detached(child: Callable[[], int]) -> None:
    """Run child() in a detached grandchild; its return value is the exit code. Returns in
    the caller once the intermediate process is reaped."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setsid()
            code = child() if os.fork() == 0 else 0
        finally:
            os._exit(code)
    os.waitpid(pid, 0)
