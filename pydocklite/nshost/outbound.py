"""The outbound helper's tool: which user-mode network stack turns the namespace host's
traffic into ordinary host sockets, and a small posix_spawn'd child process type.

slirp4netns (preferred: ready in ~3 ms, a few MiB) or pasta (package passt: ~20 ms to set
up, ~30 MiB) joins the namespace host's user and network namespaces and makes a tap
device with an address and a default route there (pause.start_outbound); every bridge
network's traffic is masqueraded through it. Without either, containers reach each other
but not outside (published ports still work through the shims' forwarders).
"""
from __future__ import annotations

import os
import shutil

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import Optional, Tuple

TOOLS = ("slirp4netns", "pasta")


def outbound_tool() -> Tuple[str, str]:
    """(tool, "") when usable, else ("", why not). PYDOCKLITE_OUTBOUND=slirp4netns|pasta
    picks one, =none turns outbound traffic off."""
    wanted = os.environ.get("PYDOCKLITE_OUTBOUND", "")
    if wanted == "none":
        return "", "PYDOCKLITE_OUTBOUND=none"
    if wanted and wanted not in TOOLS:
        return "", (f"PYDOCKLITE_OUTBOUND={wanted} is not one of {', '.join(TOOLS)}, none: "
                    "fix or unset it")
    if not os.access("/dev/net/tun", os.R_OK | os.W_OK):
        return "", "/dev/net/tun is missing or not usable by you"
    for tool in ([wanted] if wanted else TOOLS):
        if shutil.which(tool):
            return tool, ""
    if wanted:
        return "", f"PYDOCKLITE_OUTBOUND={wanted}, but {wanted} is not installed"
    return "", "neither slirp4netns nor pasta (package passt) is installed"


class Child:
    """A started program: subprocess.Popen's few parts used here, on posix_spawn (importing
    subprocess costs a container start ~2 ms)."""

    def __init__(self, pid: int):
        self.pid, self.returncode = pid, None

    @classmethod
    def spawn(cls, argv: list, pass_fds=()) -> "Child":
        """argv[0] from PATH, stdin and stdout /dev/null, stderr ours, in a new session,
        with pass_fds open in it."""
        path = shutil.which(argv[0])
        if path is None:
            raise FileNotFoundError(f"{argv[0]} not found")
        for fd in pass_fds:
            os.set_inheritable(fd, True)
        try:
            # the shim ignores SIGPIPE, SIGINT, SIGHUP, SIGQUIT: not the program (pasta
            # refuses to run with a signal it can't handle)
            import signal
            defaults = tuple(signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP})
            devnull = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                       (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)]
            return cls(os.posix_spawn(path, argv, os.environ, setsid=True, setsigmask=(),
                                      setsigdef=defaults, file_actions=devnull))
        finally:
            for fd in pass_fds:
                os.set_inheritable(fd, False)

    def poll(self) -> Optional[int]:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.returncode = 255
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: Optional[float] = None) -> Optional[int]:
        """The exit status, or None when `timeout` ran out first."""
        if timeout is None:
            if self.returncode is None:
                try:
                    self.returncode = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])
                except ChildProcessError:
                    self.returncode = 255
            return self.returncode
        import time
        deadline = time.monotonic() + timeout
        while self.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        return self.returncode

    def kill(self) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, 9)
            except ProcessLookupError:
                pass


def read_pid_file(pid_file: str, wait: float = 2.0) -> Optional[int]:
    """The pid pasta writes; its daemon may write it just after the parent has exited."""
    import time
    deadline = time.monotonic() + wait
    while True:
        try:
            with open(pid_file) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            if time.monotonic() > deadline:
                return None
            time.sleep(0.002)
