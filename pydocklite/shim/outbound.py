"""Outbound traffic for a private network namespace through a user-mode network stack.

pasta (package passt) joins the container's user and network namespaces by pid, creates a
tap device with the host's addresses and routes, and translates its traffic to ordinary
host sockets; it exits by itself when the container's init does. slirp4netns does the same
job more slowly. Without either, a private network has loopback only (published ports
still work through the shim's forwarder).
"""
from __future__ import annotations

import os
import shutil
import subprocess
from typing import Optional, Tuple


def outbound_tool() -> Tuple[str, str]:
    """(tool, "") when usable, else ("", why not)."""
    if not os.access("/dev/net/tun", os.R_OK | os.W_OK):
        return "", "/dev/net/tun is missing or not usable by you"
    for tool in ("pasta", "slirp4netns"):
        if shutil.which(tool):
            return tool, ""
    return "", "neither pasta (package passt) nor slirp4netns is installed"


class Outbound:
    """The helper process serving a container's outbound traffic; stop() ends it."""

    def __init__(self, proc: Optional[subprocess.Popen] = None, pid: int = 0):
        self.proc, self.pid = proc, pid

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
        elif self.pid:
            try:
                os.kill(self.pid, 9)
            except ProcessLookupError:
                return
            # the daemon was reparented to the shim (a subreaper): reap it; else wait it out
            try:
                os.waitpid(self.pid, 0)
                return
            except ChildProcessError:
                pass
            import time
            deadline = time.monotonic() + 2
            while os.path.exists(f"/proc/{self.pid}/cmdline") and time.monotonic() < deadline:
                with open(f"/proc/{self.pid}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                        break
                time.sleep(0.002)


def start_outbound(pid: int, log, pid_file: str) -> Optional[Outbound]:
    """Give the network namespace of `pid` outbound traffic; None when not possible."""
    tool, why = outbound_tool()
    if not tool:
        log(f"network: no outbound traffic for the container ({why})")
        return None
    if tool == "pasta":
        # without --foreground pasta configures the namespace, then daemonizes: its exit
        # means the network is ready; the daemon quits when the container's init exits
        # (it does not notice the namespace going away: the shim stops it by its pid file)
        argv = ["pasta", "--config-net", "--quiet", "-t", "none", "-u", "none",
                "-T", "none", "-U", "none", "--pid", pid_file, str(pid)]
        try:
            r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, timeout=15)
        except (OSError, subprocess.TimeoutExpired) as e:
            log(f"network: pasta failed ({e}); the container has no outbound traffic")
            return None
        if r.returncode != 0:
            log(f"network: pasta failed ({r.stderr.decode(errors='replace').strip()}); "
                "the container has no outbound traffic")
            return None
        daemon = _read_pid(pid_file)
        if daemon is None:
            log(f"network: pasta left no pid in {pid_file}; it will outlive the container")
            return None
        log(f"network: outbound traffic through pasta (pid {daemon})")
        return Outbound(pid=daemon)
    argv = ["slirp4netns", "--configure", "--mtu=65520", "--disable-host-loopback",
            str(pid), "tap0"]
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                start_new_session=True)
    except OSError as e:
        log(f"network: {tool} failed to start ({e}); the container has no outbound traffic")
        return None
    log(f"network: outbound traffic through {tool} (pid {proc.pid})")
    return Outbound(proc=proc)


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


def stop_by_pid_file(pid_file: str) -> None:
    """Stop a pasta left behind by a shim that died (its pid file names it)."""
    pid = _read_pid(pid_file, wait=0) if os.path.exists(pid_file) else None
    if pid is None:
        return
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            is_pasta = f.read().split(b"\0")[0].endswith(b"pasta")
    except (OSError, ValueError):
        return
    if is_pasta:
        Outbound(pid=pid).stop()
    try:
        os.unlink(pid_file)
    except OSError:
        pass
