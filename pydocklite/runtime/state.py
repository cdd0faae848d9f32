"""Container state on disk: facts only; the status is derived.

ROOT/<id>/state.json holds what was true when it was written: pid, the pid's start time
(/proc/PID/stat field 22), bundle, rootfs, created, annotations, cgroup, the spec's hooks.
init_sock.waiting(ROOT/<id>) tells whether the init waits for `start`.
Status: no pid yet -> creating; pid alive with the same start time -> created (waiting),
paused (its cgroup frozen) or running; otherwise stopped. A recycled pid has another start
time, so pid reuse can't make a dead container look alive.
"""
from __future__ import annotations

import os

from . import minijson
from .errors import ContainerNotFound, RuntimeErr
from .record import Record

OCI_VERSION = "1.0.2"
_ID_FIRST = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_ID_CHARS = _ID_FIRST | frozenset("_.+-")


class ContainerState(Record):
    __slots__ = ("id", "pid", "pid_start", "bundle", "rootfs", "created", "annotations", "cgroup",
                 "owner", "status", "hook_phases")


def default_root() -> str:
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if os.geteuid() == 0 and not xdg:
        return "/run/pydocklite/runtime"
    if not xdg:
        xdg = f"/tmp/pydocklite-{os.geteuid()}"
    return os.path.join(xdg, "pydocklite", "runtime")


def check_id(cid: str) -> None:
    if not cid or len(cid) > 128 or cid[0] not in _ID_FIRST or not set(cid) <= _ID_CHARS:
        raise RuntimeErr(f"invalid container id {cid!r}: use letters, digits and _ . + - "
                         f"(at most 128, not starting with a symbol)")


def container_dir(root: str, cid: str) -> str:
    check_id(cid)
    return os.path.join(root, cid)


def proc_start_time(pid: int):
    """Start time of pid (clock ticks since boot) or None if gone / a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2:].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def write_facts(cdir: str, facts: dict) -> None:
    tmp = os.path.join(cdir, "state.json.tmp")
    with open(tmp, "w") as f:
        f.write(minijson.dumps(facts))
    os.replace(tmp, os.path.join(cdir, "state.json"))


def read_facts(root: str, cid: str) -> dict:
    cdir = container_dir(root, cid)
    try:
        with open(os.path.join(cdir, "state.json")) as f:
            return minijson.loads(f.read())
    except FileNotFoundError:
        raise ContainerNotFound(f"container {cid!r} does not exist (no state in {root})") \
            from None
    except ValueError:
        # state.json is replaced atomically: unreadable means a crash before the first write
        return {"id": cid, "pid": 0}


def derive_status(cdir: str, facts: dict) -> str:
    pid = facts.get("pid") or 0
    if not pid:
        return "creating"
    if proc_start_time(pid) != facts.get("pid_start"):
        return "stopped"
    from .init_sock import waiting
    if waiting(cdir):
        return "created"
    if facts.get("cgroup"):
        from .control import is_frozen
        if is_frozen(facts["cgroup"]):
            return "paused"
    return "running"


def load(root: str, cid: str) -> ContainerState:
    facts = read_facts(root, cid)
    cdir = container_dir(root, cid)
    return ContainerState(id=cid, pid=facts.get("pid") or 0, pid_start=facts.get("pid_start"),
                          bundle=facts.get("bundle", ""), rootfs=facts.get("rootfs", ""),
                          created=facts.get("created", ""),
                          annotations=facts.get("annotations") or {},
                          cgroup=facts.get("cgroup"), owner=facts.get("owner", ""),
                          status=derive_status(cdir, facts), hook_phases=facts.get("hooks"))


def oci_state(st: ContainerState) -> dict:
    """The runtime-spec state object (what `state` prints and hooks read on stdin)."""
    out = {"ociVersion": OCI_VERSION, "id": st.id, "status": st.status,
           "pid": st.pid if st.status in ("created", "running", "paused") else 0,
           "bundle": st.bundle, "rootfs": st.rootfs, "created": st.created,
           "owner": st.owner}
    if st.annotations:
        out["annotations"] = st.annotations
    return out


def list_ids(root: str) -> list:
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        return []
    return [n for n in names if os.path.exists(os.path.join(root, n, "state.json"))]
