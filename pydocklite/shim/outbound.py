"""Outbound traffic for a private network namespace through a user-mode network stack.

slirp4netns (preferred: ready in ~3 ms, a few MiB) or pasta (package passt: ~20 ms to set
up, ~30 MiB) joins the container's user and network namespaces, creates a tap device with
an address and a default route, and turns its traffic into ordinary host sockets. The shim
starts it while the container's rootfs is still being mounted (the runtime's
on_namespaces), from fds of the namespaces, and waits for it to be ready before the
container's process starts. Without either, a private network has loopback only (published
ports still work through the shim's forwarder).
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


class Outbound:
    """The helper serving a container's outbound traffic, from start to reaped."""

    def __init__(self, tool: str, proc: Child, log, ready_r: int = -1,
                 exit_w: int = -1, pid_file: str = ""):
        self.tool, self.proc, self.log = tool, proc, log
        self.ready_r, self.exit_w, self.pid_file = ready_r, exit_w, pid_file
        self.pid = proc.pid          # pasta: its daemon's, once ready

    def wait_ready(self, timeout: float = 15.0) -> bool:
        """Until the network is configured; False (said in the log) when it failed."""
        if self.tool == "slirp4netns":
            import select
            ok = bool(select.select([self.ready_r], [], [], timeout)[0]) and \
                os.read(self.ready_r, 1) == b"1"
            os.close(self.ready_r)
            self.ready_r = -1
            why = "it exited" if self.proc.poll() is not None else "not ready in time"
        else:
            # without --foreground pasta configures the namespace, then daemonizes: the
            # exit of the process we started means the network is ready
            ok = self.proc.wait(timeout) == 0
            daemon = _read_pid(self.pid_file) if ok else None
            ok = daemon is not None
            self.pid = daemon or 0
            why = f"exit status {self.proc.poll()}"
        if ok:
            self.log(f"network: outbound traffic through {self.tool} (pid {self.pid})")
        else:
            self.log(f"network: {self.tool} failed ({why}); the container has no outbound "
                     "traffic")
            self.stop()
            self.reap()
        return ok

    def stop(self) -> None:
        """Ask it to quit; does not wait (a tap device takes ~30 ms to go: reap() later)."""
        if self.exit_w >= 0:
            os.close(self.exit_w)          # slirp4netns quits when its --exit-fd closes
            self.exit_w = -1
        elif self.pid and self.proc.poll() is not None:
            try:
                os.kill(self.pid, 9)       # pasta's daemon
            except ProcessLookupError:
                pass
        elif self.proc.poll() is None:
            self.proc.kill()

    def reap(self, timeout: float = 5.0) -> None:
        if self.ready_r >= 0:
            os.close(self.ready_r)
            self.ready_r = -1
        if self.proc.wait(timeout) is None:
            self.proc.kill()
            self.proc.wait()
        if self.tool == "pasta" and self.pid and self.pid != self.proc.pid:
            _reap_pid(self.pid, timeout)
            if self.pid_file:
                try:
                    os.unlink(self.pid_file)
                except OSError:
                    pass


def start_outbound(ns_pid: int, log, pid_file: str) -> Optional[Outbound]:
    """Start a network stack for the namespaces of `ns_pid` (opened now: the process may
    go away afterwards); None when there is no tool or it fails to start (logged)."""
    tool, why = outbound_tool()
    if not tool:
        log(f"network: no outbound traffic for the container ({why})")
        return None
    user = os.open(f"/proc/{ns_pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    net = os.open(f"/proc/{ns_pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    fds = [user, net]
    try:
        if tool == "slirp4netns":
            ready_r, ready_w = os.pipe()
            exit_r, exit_w = os.pipe()
            fds += [ready_w, exit_r]
            argv = ["slirp4netns", "--configure", "--mtu=65520", "--disable-host-loopback",
                    f"--ready-fd={ready_w}", f"--exit-fd={exit_r}", "--netns-type=path",
                    f"--userns-path=/proc/self/fd/{user}", f"/proc/self/fd/{net}", "tap0"]
        else:
            argv = ["pasta", "--config-net", "--quiet", "-t", "none", "-u", "none",
                    "-T", "none", "-U", "none", "--pid", pid_file,
                    "--userns", f"/proc/self/fd/{user}", "--netns", f"/proc/self/fd/{net}"]
        try:
            # stderr is the shim's log; slirp4netns chats about its tap fd on stdout
            proc = Child.spawn(argv, pass_fds=fds)
        except OSError as e:
            log(f"network: {tool} failed to start ({e}); the container has no outbound "
                "traffic")
            if tool == "slirp4netns":
                os.close(ready_r)
                os.close(exit_w)
            return None
    finally:
        for fd in fds:
            os.close(fd)
    if tool == "slirp4netns":
        return Outbound(tool, proc, log, ready_r=ready_r, exit_w=exit_w)
    return Outbound(tool, proc, log, pid_file=pid_file)


def _read_pid(pid_file: str, wait: float = 2.0) -> Optional[int]:
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


def _reap_pid(pid: int, timeout: float) -> None:
    """Until `pid` is gone: reaped if it is our child (a subreaper's), else waited out."""
    try:
        os.waitpid(pid, 0)
        return
    except ChildProcessError:
        pass
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return
        except OSError:
            return
        time.sleep(0.002)


def stop_by_pid_file(pid_file: str) -> None:
    """Stop a pasta left behind by a shim that died (its pid file names it); slirp4netns
    needs no help: it quits when the shim's end of its --exit-fd closes."""
    pid = _read_pid(pid_file, wait=0) if os.path.exists(pid_file) else None
    if pid is None:
        return
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            is_pasta = f.read().split(b"\0")[0].endswith(b"pasta")
    except (OSError, ValueError):
        is_pasta = False
    if is_pasta:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
        else:
            _reap_pid(pid, 2.0)
    try:
        os.unlink(pid_file)
    except OSError:
        pass
