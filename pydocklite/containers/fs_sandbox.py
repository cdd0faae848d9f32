"""The files of a container that has no processes (created, exited), for the confined
helper: its snapshot mounted in a private sandbox, as `start` would mount it.

The helper (runtime/confined.py) makes a user namespace with the container's id maps (written
by newuidmap/newgidmap from a small child still in our namespace), private mount, pid, net,
ipc and uts namespaces, mounts the container's snapshot there (the same Mount list the shim
mounts: FUSE lower + overlay, or FUSE, or vfs), and runs the function in a child whose root it
becomes (pivot_root, the old root detached), confined by the container's own spec. Nothing of it is visible on the host; the
mounts and their FUSE servers go with the helper. The container's volumes are not mounted:
only its own filesystem is reached this way.
"""
from __future__ import annotations

import json
import os

from pydocklite.errors import ContainerStateError
from pydocklite.runtime import syscalls as sc

MS_REC, MS_PRIVATE = 16384, 1 << 18


class Sandbox:
    """The `enter` steps (confined.run_child) for a container without processes."""

    def __init__(self, settings, state) -> None:
        from pydocklite.runtime import idmap, minijson
        from pydocklite.runtime.spec import parse_spec
        from snapshotter.snapshots import Snapshotter
        from pydocklite.layout import ContainerFiles
        raw = ContainerFiles(settings.layout.containers_dir / state.id).spec.read_bytes()
        self.spec = parse_spec(minijson.loads(raw))
        driver = (state.config or {}).get("StorageDriver") or settings.storage_driver
        self.mounts = Snapshotter(settings.layout, driver or "auto").mounts(state.id)
        lx = self.spec.linux
        if lx is not None and lx.uid_mappings:
            self.uid_maps, self.gid_maps = tuple(lx.uid_mappings), tuple(lx.gid_mappings)
        else:
            self.uid_maps, self.gid_maps, _ = idmap.default_mappings()
        self.full_map = len(self.gid_maps) > 1 or self.gid_maps[0].size > 1
        settings.runtime_layout.ensure()
        self.target = str(settings.runtime_layout.sandbox_dir(state.id, os.getpid()))
        os.mkdir(self.target, 0o700)
        self.active = None
        self.name = state.name
        json.dumps(None)                # (json is used by the function, imported here)

    # -- in the helper, with the host's files ------------------------------------------
    def fds(self) -> set:
        return set()

    def prepare(self) -> None:
        from pydocklite.runtime import idmap
        from snapshotter.mounter import mount_all
        go_r, go_w = os.pipe()
        me = os.getpid()
        mapper = os.fork()
        if mapper == 0:                 # stays in our user namespace: writes the maps
            code = 1
            try:
                os.close(go_w)
                if os.read(go_r, 1) == b"u":
                    idmap.apply(me, self.uid_maps, self.gid_maps)
                    code = 0
            finally:
                os._exit(code)
        os.close(go_r)
        try:
            sc.unshare(sc.CLONE_NEWUSER)
            os.write(go_w, b"u")
        finally:
            os.close(go_w)
            _, status = os.waitpid(mapper, 0)
        if status != 0:
            raise ContainerStateError(f"container {self.name}: could not map the user "
                                      f"namespace's ids for its files")
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
        sc.unshare(sc.CLONE_NEWNS | sc.CLONE_NEWNET | sc.CLONE_NEWIPC | sc.CLONE_NEWUTS)
        sc.mount(None, "/", None, MS_REC | MS_PRIVATE)
        self.active = mount_all(self.mounts, self.target, allow_other=True,
                                die_with_caller=True)
        sc.unshare(sc.CLONE_NEWPID)     # the next child is its pid 1; FUSE servers stay out

    def join(self) -> None:
        pass

    def inside(self) -> None:
        """Our own mount namespace, then pivot_root into the container's files and drop the
        old root: nothing of the host stays reachable (chroot would leave it to anything
        holding CAP_SYS_CHROOT, one of the container's capabilities)."""
        from pydocklite.runtime.confined import lock_imports
        lock_imports()                  # the container's files are about to be ours
        sc.unshare(sc.CLONE_NEWNS)
        os.chdir(self.target)
        sc.pivot_root(".", ".")
        sc.umount2(".", sc.MNT_DETACH)
        os.chdir("/")

    def after(self) -> None:
        if self.active is not None:
            self.active.unmount()
            self.active = None

    # -- back in the caller ------------------------------------------------------------
    def close(self) -> None:
        try:
            os.rmdir(self.target)
        except OSError:
            pass
