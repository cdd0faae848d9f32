"""The shim's side of the namespace host (pydocklite/nshost): a container created inside it.

- The container joins the host's user namespace (made once per user, its id maps written
  once: no newuidmap per container) and copies its mount namespace, where the image's
  shared lower is mounted: the rootfs is then one overlayfs mount over it, made by the
  runtime's prepare_rootfs hook after entering that mount namespace.
- The container's own network namespace is attached to its networks by the host (a veth
  per network into the network's bridge, its address and routes) while the rootfs mounts:
  attach_begin() at the runtime's on_namespaces, attach_end() before the start.
- The shim gives back what it took when the container is gone for good: detach() its
  endpoints (also done by the host itself when the container's namespace dies) and
  release() its hold on the lower (also dropped when the shim and the init are dead).
"""
from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import List, Optional, Sequence

from pydocklite.nshost.client import HostClient, connect


class Hosted:
    def __init__(self, host: HostClient) -> None:
        self.host = host
        self.lower_key = ""
        self.lower_server = (0, 0)     # (pid, start time) of the shared lower's FUSE server
        self._watching = 0
        self.cid = ""
        self._pending_attach = False

    @classmethod
    def open(cls, runtime_dir, start: bool = True) -> Optional["Hosted"]:
        """Connect to the namespace host, starting it when it doesn't run (start=False:
        None then)."""
        host = connect(runtime_dir, start=start)
        return cls(host) if host is not None else None

    @property
    def userns(self) -> str:
        return self.host.info["userns"]

    @property
    def host_gateway(self) -> str:
        """The address that reaches the host's loopback (--add-host NAME:host-gateway)."""
        return self.host.info.get("host_gateway") or ""

    # --- the rootfs -------------------------------------------------------------------------
    def shared_mounts(self, mounts: Sequence, cid: str) -> Optional[list]:
        """The snapshot's mounts with its FUSE lower replaced by the image's shared one
        (None when they are not [read-only FUSE lower, overlay over it]: the fuse and vfs
        drivers keep their own)."""
        if len(mounts) != 2 or mounts[1].type != "overlay" or "ro" not in mounts[0].options:
            return None
        lower = mounts[0]
        cache = lower.option("treecache") or ""
        layers = [x for x in (lower.option("layers") or "").split(":") if x]
        if not cache or not layers or not lower.target:
            return None
        key = os.path.basename(cache).rpartition(".")[0]
        got = self.host.call("lower", key=key, layers=layers, cache=cache, cid=cid,
                             pids=[os.getpid()])
        path = got["path"]
        self.lower_key, self.cid = key, cid
        self.lower_server = (got["pid"], got["start_time"])
        opts = tuple(f"lowerdir={path}" if o == f"lowerdir={lower.target}" else o
                     for o in mounts[1].options)
        return [mounts[1]._replace(options=opts)]

    def open_mntns(self) -> int:
        return os.open(self.host.info["mntns"], os.O_RDONLY | os.O_CLOEXEC)

    @staticmethod
    def enter_mntns(fd: int) -> None:
        """In the runtime's prepare_rootfs (inside the container's user namespace): make
        the container's mount namespace a copy of the host's, where the lower is."""
        from pydocklite.runtime import syscalls as sc
        sc.setns(fd, sc.CLONE_NEWNS)
        sc.unshare(sc.CLONE_NEWNS)

    # --- the network ------------------------------------------------------------------------
    def attach_begin(self, cid: str, name: str, ns_pid: int, endpoints: List[dict],
                     host_gateway: bool = False, upstream: Sequence[str] = ()) -> None:
        """Ask for the network namespace of `ns_pid` to be attached (its fd passed now:
        the process may be gone when the host gets to it); attach_end() has the answer."""
        fd = os.open(f"/proc/{ns_pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            self.host.send_request("attach", fds=[fd], cid=cid, name=name,
                                   endpoints=endpoints, host_gateway=host_gateway,
                                   upstream=list(upstream))
        finally:
            os.close(fd)
        self._pending_attach = True

    def attach_end(self) -> list:
        """The endpoints made (each: network, ip, prefix, gateway, mac, if_name, id...);
        NsHostError when the host refused (nothing is left attached then)."""
        if not self._pending_attach:
            return []
        self._pending_attach = False
        return self.host.reply("attach")

    def watch(self, cid: str, pids: Sequence[int]) -> None:
        """The container's init holds the lower too (if the shim dies, the container's
        files keep working as long as it runs)."""
        self.host.send("watch", cid=cid, pids=list(pids))

    def detach(self, cid: str) -> None:
        """The container's processes are gone: its endpoints go (no reply waited for; the
        veths go with the dying network namespace)."""
        if self._pending_attach:
            try:
                self.attach_end()
            except Exception:  # noqa: BLE001 - undone by the host already
                pass
        self.host.send("detach", cid=cid, dying=True)

    def release(self) -> None:
        if self.lower_key:
            key, self.lower_key = self.lower_key, ""     # (the watcher: no more a death)
            self.host.call("unlower", key=key, cid=self.cid)

    def watch_lower(self, on_death) -> None:
        """on_death(pid) from a thread when the shared lower's FUSE server dies while the
        container holds it (the container's files then fail with ENOTCONN)."""
        pid, start = self.lower_server
        if not pid or self._watching == pid:
            return
        self._watching = pid
        try:
            fd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            return              # Python < 3.9 or gone already: the host notices it
        from pydocklite.runtime.state import proc_start_time
        if proc_start_time(pid) != start:
            os.close(fd)
            return

        def wait() -> None:
            import select
            try:
                select.select([fd], [], [])
            finally:
                os.close(fd)
            if self.lower_key:
                on_death(pid)
        import threading
        threading.Thread(target=wait, daemon=True, name="pdl-lower-watch").start()

    def close(self) -> None:
        self.host.close()
