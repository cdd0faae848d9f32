"""The pause process: the small process that holds the host's namespaces, and the outbound
helper attached to them.

The pause process is a shell waiting on a pipe only it can write to (so it never reads
EOF): ~1 MiB, named `pydocklite-nshost-pause` in `ps`. It is made either fresh (it
unshares a user namespace, gets the id maps, then unshares a mount and a network
namespace) or by joining the namespaces of a survivor of a killed host (an earlier pause,
a FUSE server of a shared lower), so that a new host adopts what the old one left.

The outbound helper (slirp4netns or pasta) is started from the host's own namespaces into
the pause's. slirp4netns's --exit-fd is a pipe whose write end the pause and the host
both hold: it quits when both are gone, not when either one dies.
"""
from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import Tuple

from pydocklite.runtime import syscalls as sc

PAUSE_NAME = "pydocklite-nshost-pause"
NAMESPACES = (("user", sc.CLONE_NEWUSER), ("mnt", sc.CLONE_NEWNS), ("net", sc.CLONE_NEWNET))
SLIRP_GATEWAY = "10.0.2.2"      # slirp4netns's host side, which reaches the host's loopback


class PauseError(OSError):
    pass


def make_pause(runtime_dir: str, keep_fds: Tuple[int, ...], anchor: int = 0) -> Tuple[int, str]:
    """Start the pause process; (pid, id map warning or ""). `keep_fds` stay open in it (the
    outbound helper's exit pipe). anchor: the pid of a process whose namespaces to join."""
    sync_r, sync_w = os.pipe()
    go_r, go_w = os.pipe()
    keep_r, keep_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(sync_r)
            os.close(go_w)
            _pause_child(runtime_dir, anchor, sync_w, go_r, keep_r, keep_w, keep_fds)
        finally:
            os._exit(code)
    for fd in (sync_w, go_r, keep_r, keep_w):
        os.close(fd)
    warning = ""
    try:
        if os.read(sync_r, 1) != b"u":
            raise PauseError("the pause process failed to make its user namespace")
        if not anchor:
            from pydocklite.runtime import idmap
            uid_maps, gid_maps, warn = idmap.default_mappings()
            idmap.start(pid, uid_maps, gid_maps)()
            warning = warn or ""
        os.write(go_w, b"g")
        if os.read(sync_r, 1) != b"n":
            raise PauseError("the pause process failed to make its mount and network "
                             "namespaces")
    except BaseException:
        _kill(pid)
        raise
    finally:
        os.close(sync_r)
        os.close(go_w)
    return pid, warning


def _pause_child(runtime_dir: str, anchor: int, sync_w: int, go_r: int, keep_r: int,
                 keep_w: int, keep_fds: Tuple[int, ...]) -> None:
    os.setsid()
    if anchor:
        if os.stat(f"/proc/{anchor}/ns/user").st_ino != os.stat("/proc/self/ns/user").st_ino:
            join(anchor)        # (a host making a new pause of its own is in place already)
        os.write(sync_w, b"u")
        os.read(go_r, 1)
    else:
        sc.unshare(sc.CLONE_NEWUSER)
        os.write(sync_w, b"u")
        if os.read(go_r, 1) != b"g":
            return
        sc.unshare(sc.CLONE_NEWNS | sc.CLONE_NEWNET)
    os.write(sync_w, b"n")
    # stdin: the pipe it waits on; 3: that pipe's write end (never EOF); then keep_fds
    devnull = os.open(os.devnull, os.O_RDWR)
    moved = [os.dup(fd) for fd in (keep_r, keep_w, devnull) + tuple(keep_fds)]
    os.dup2(moved[0], 0)
    os.dup2(moved[2], 1)
    os.dup2(moved[2], 2)
    os.dup2(moved[1], 3)
    for i, fd in enumerate(moved[3:]):
        os.dup2(fd, 4 + i)
    os.closerange(4 + len(keep_fds), 65536)
    os.execv("/bin/sh", [PAUSE_NAME, "-c", "read _", PAUSE_NAME, "--runtime-dir", runtime_dir])


def _kill(pid: int) -> None:
    import signal
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def join(pid: int) -> None:
    """Enter the user, mount and network namespaces of `pid` (this process must have a
    single thread)."""
    fds = [(os.open(f"/proc/{pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC), flag)
           for name, flag in NAMESPACES]
    try:
        for fd, flag in fds:
            sc.setns(fd, flag)
    finally:
        for fd, _ in fds:
            os.close(fd)


class Outbound:
    """The running helper: tool, pid, the interface it made, the address of the host."""
    __slots__ = ("tool", "pid", "ifname", "gateway", "why")

    def __init__(self, tool: str = "", pid: int = 0, ifname: str = "", gateway: str = "",
                 why: str = ""):
        self.tool, self.pid, self.ifname, self.gateway, self.why = tool, pid, ifname, gateway, why


def start_outbound(pause: int, exit_r: int, pid_file: str, log) -> Outbound:
    """Start slirp4netns or pasta for the pause's namespaces and wait until it has
    configured them; Outbound("") with the reason when there is none (logged)."""
    from pydocklite.nshost.outbound import Child, outbound_tool
    tool, why = outbound_tool()
    if not tool:
        log(f"outbound: none ({why}): containers reach each other but not outside")
        return Outbound(why=why)
    user, net = f"/proc/{pause}/ns/user", f"/proc/{pause}/ns/net"
    if tool == "slirp4netns":
        ready_r, ready_w = os.pipe()
        argv = ["slirp4netns", "--configure", "--mtu=65520", f"--ready-fd={ready_w}",
                f"--exit-fd={exit_r}", "--netns-type=path", f"--userns-path={user}",
                net, "tap0"]
        try:
            proc = Child.spawn(argv, pass_fds=(ready_w, exit_r))
        except OSError as e:
            os.close(ready_r)
            os.close(ready_w)
            log(f"outbound: {tool} failed to start: {e}")
            return Outbound(why=f"{tool} failed to start: {e}")
        os.close(ready_w)
        import select
        ok = bool(select.select([ready_r], [], [], 15)[0]) and os.read(ready_r, 1) == b"1"
        os.close(ready_r)
        if not ok:
            proc.kill()
            proc.wait()
            log(f"outbound: {tool} did not configure the network")
            return Outbound(why=f"{tool} did not configure the network (see the host log)")
        log(f"outbound: {tool} (pid {proc.pid})")
        return Outbound(tool, proc.pid, "tap0", SLIRP_GATEWAY)
    argv = ["pasta", "--config-net", "--quiet", "-t", "none", "-u", "none", "-T", "none",
            "-U", "none", "--pid", pid_file, "--userns", user, "--netns", net]
    try:
        proc = Child.spawn(argv)
    except OSError as e:
        log(f"outbound: {tool} failed to start: {e}")
        return Outbound(why=f"{tool} failed to start: {e}")
    if proc.wait(15) != 0:
        proc.kill()
        log(f"outbound: {tool} exited with {proc.poll()}")
        return Outbound(why=f"{tool} failed (exit status {proc.poll()})")
    from pydocklite.nshost.outbound import read_pid_file
    daemon = read_pid_file(pid_file) or 0
    log(f"outbound: {tool} (pid {daemon})")
    return Outbound(tool, daemon)       # interface and gateway: read inside (routes)


def alive(pid: int, start_time: int) -> bool:
    """`pid` runs and is the process that started at `start_time` (not a reused pid)."""
    from pydocklite.runtime.state import proc_start_time
    return pid > 0 and start_time > 0 and proc_start_time(pid) == start_time
