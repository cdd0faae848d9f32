"""Every path pydocklite uses outside the store's own (snapshotter.layout.StoreLayout):
the runtime directory and each container's files. Nothing here touches the disk except
the ensure() methods; every module asks these objects instead of joining names by hand.

$XDG_RUNTIME_DIR/pydocklite/  (RuntimeLayout; tmpfs, per boot; /tmp/pydocklite-UID without one)
  runtime/                    the OCI runtime's state root (runtime/state.py's ROOT)
  <id[:12]>/                  a container's run dir: rootfs/ (mount point), console.sock,
                              attach.sock
  fs-<id[:12]>-<pid>/         a stopped container's files, mounted for cp/export/diff
  mounts/<image id[:12]>/     `pydocklite mount IMAGE`
  init                        an executable copy of the embedded init (when needed)
  events/                     the per-user events journal (pydocklite/events.py)
  docker.sock                 the Engine API's default socket (`system service`)

$XDG_DATA_HOME/pydocklite/containers/<id>/  (ContainerFiles)
  state.json  lock  op.lock  config.json (OCI spec)  shim.json (the shim's frozen configuration)
  json.log  shim.log  hostname  hosts  resolv.conf  stop-requested
"""
from __future__ import annotations

import os
from pathlib import Path


class RuntimeLayout:
    """Paths under the runtime directory (Settings.runtime_dir). A plain slotted class, not
    a namedtuple: every command builds one, and namedtuple() compiles code (~0.2 ms)."""
    __slots__ = ("root",)

    def __init__(self, root) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"RuntimeLayout({str(self.root)!r})"

    @property
    def runtime_root(self) -> Path:
        """The OCI runtime's --root: its per-container state dirs."""
        return self.root / "runtime"

    def run_dir(self, cid: str) -> Path:
        """A container's run dir (short id: unix socket paths must stay below 108 bytes)."""
        return self.root / cid[:12]

    def rootfs(self, cid: str) -> Path:
        return self.run_dir(cid) / "rootfs"

    def console_socket(self, cid: str) -> Path:
        return self.run_dir(cid) / "console.sock"

    def attach_socket(self, cid: str) -> Path:
        return self.run_dir(cid) / "attach.sock"

    def sandbox_dir(self, cid: str, pid: int) -> Path:
        """Where a stopped container's files are mounted for process `pid` to reach them
        (containers/fs_sandbox.py)."""
        return self.root / f"fs-{cid[:12]}-{pid}"

    @property
    def mounts_dir(self) -> Path:
        return self.root / "mounts"

    def image_mount(self, image_id: str) -> Path:
        return self.mounts_dir / image_id.partition(":")[2][:12]

    @property
    def init_copy(self) -> Path:
        return self.root / "init"

    @property
    def events_dir(self) -> Path:
        return self.root / "events"

    @property
    def api_socket(self) -> Path:
        return self.root / "docker.sock"

    def ensure(self) -> "RuntimeLayout":
        """The runtime directory itself, 0700 (idempotent)."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        return self

    def ensure_run_dir(self, cid: str) -> Path:
        self.ensure()
        d = self.run_dir(cid)
        d.mkdir(exist_ok=True, mode=0o700)
        return d


class ContainerFiles:
    """The files of one container in the store (StoreLayout.containers_dir / id)."""
    __slots__ = ("dir",)

    def __init__(self, directory) -> None:
        self.dir = Path(directory)

    def __repr__(self) -> str:
        return f"ContainerFiles({str(self.dir)!r})"

    @property
    def id(self) -> str:
        return self.dir.name

    @property
    def state(self) -> Path:
        return self.dir / "state.json"

    @property
    def lock(self) -> Path:
        """The record's lock (a read-modify-write of state.json)."""
        return self.dir / "lock"

    @property
    def op_lock(self) -> Path:
        """The container's life lock (ContainerStore.operation)."""
        return self.dir / "op.lock"

    @property
    def spec(self) -> Path:
        """The OCI runtime spec (the bundle's config.json; the bundle is this directory)."""
        return self.dir / "config.json"

    @property
    def shim_config(self) -> Path:
        return self.dir / "shim.json"

    @property
    def log(self) -> Path:
        return self.dir / "json.log"

    @property
    def shim_log(self) -> Path:
        return self.dir / "shim.log"

    def etc_file(self, name: str) -> Path:
        """hostname, hosts or resolv.conf, bind-mounted over the container's /etc/NAME."""
        if name not in ("hostname", "hosts", "resolv.conf"):
            raise ValueError(f"not a container /etc file: {name}")
        return self.dir / name

    @property
    def stop_marker(self) -> Path:
        """Present while a stop was asked for: the shim applies no restart policy."""
        return self.dir / "stop-requested"


def default_runtime_dir() -> Path:
    """$XDG_RUNTIME_DIR/pydocklite when usable, else /tmp/pydocklite-UID."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and os.path.isdir(base) and os.access(base, os.W_OK):
        return Path(base) / "pydocklite"
    return Path(f"/tmp/pydocklite-{os.getuid()}")
