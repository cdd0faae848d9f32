"""`pause` / `unpause`: stop every process of a container where it stands, then let it go on.

With a cgroup that has a freezer (the container was given a delegated cgroup: limits or
PYDOCKLITE_CGROUP_BASE), the kernel freezes the cgroup (v2 cgroup.freeze, v1 freezer.state),
as Docker does. Without one -- the common rootless case -- every process in the container's
pid namespace gets SIGSTOP, the namespace scanned again until no process appears that isn't
stopped (a fork between two scans is caught by the next); unpause sends SIGCONT. The signals
come from a child that joined the container's user namespace (CAP_KILL there: processes of
the container's other users can be stopped too). Limitation (`info` says it): a stopped
process is visible as stopped (state T) and a SIGCONT from outside the container (the user,
on the host) resumes it; a frozen cgroup can't be resumed that way.

    pause(settings, "web") ; unpause(settings, "web")   # ContainerStateError when it can't
"""
from __future__ import annotations

import os
import signal
import time

from pydocklite.errors import ContainerStateError

FREEZE_WAIT = 10.0        # seconds for a cgroup to report FROZEN / every process stopped


def _runtime_root(settings) -> str:
    return str(settings.runtime_layout.runtime_root)


def _cgroup(settings, cid: str):
    """The container's Cgroup if it can be frozen, else None."""
    from pydocklite.runtime import state as rst
    try:
        s = rst.load(_runtime_root(settings), cid)
    except Exception:  # noqa: BLE001 - no runtime state: no cgroup either
        return None
    if not s.cgroup:
        return None
    from pydocklite.runtime import cgroups
    try:
        cg = cgroups.attach(s.cgroup)
    except Exception:  # noqa: BLE001 - paths no longer valid
        return None
    if cg.version == "v2" or cg.dir_for("freezer"):
        return cg
    return None


def method(settings, cid: str) -> str:
    """"freezer" or "signals": how this container is paused."""
    return "freezer" if _cgroup(settings, cid) is not None else "signals"


def _proc_state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        return data[data.rindex(b")") + 2:][:1].decode()
    except (OSError, ValueError):
        return "X"


def _signal_all(settings, state, sig: int) -> None:
    """Send sig to every process of the container (SIGSTOP: until all are stopped), from a
    child in the container's user namespace; raises ContainerStateError if it failed."""
    from pydocklite.runtime import api
    from pydocklite.runtime import syscalls as sc
    root = _runtime_root(settings)
    try:
        user_ns = os.open(f"/proc/{state.init_pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:       # it exited: nothing left to stop or to let go on
        if sig == signal.SIGSTOP:
            raise ContainerStateError(f"Container {state.id} is not running") from None
        return
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(r)
            if os.readlink(f"/proc/{state.init_pid}/ns/user") != os.readlink("/proc/self/ns/user"):
                sc.setns(user_ns, sc.CLONE_NEWUSER)
            done = set()
            deadline = time.monotonic() + FREEZE_WAIT
            while True:
                pids = api.processes(state.id, root)
                new = [p for p in pids if p not in done]
                for p in new:
                    try:
                        os.kill(p, sig)
                    except ProcessLookupError:
                        pass
                    done.add(p)
                if sig != signal.SIGSTOP:
                    break
                waiting = [p for p in pids if _proc_state(p) not in ("T", "t", "Z", "X")]
                if not new and not waiting:
                    break
                if time.monotonic() > deadline:
                    raise OSError(f"processes {waiting[:5]} did not stop")
                time.sleep(0.005)
            code = 0
        except BaseException as e:  # noqa: BLE001 - reported through the pipe
            try:
                os.write(w, str(e).encode()[:500])
            except OSError:
                pass
        finally:
            os._exit(code)
    os.close(w)
    os.close(user_ns)
    with os.fdopen(r, "rb") as f:
        err = f.read(1000)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        what = "pause" if sig == signal.SIGSTOP else "unpause"
        raise ContainerStateError(f"cannot {what} container {state.name}: "
                                  f"{err.decode(errors='replace') or 'signals failed'}")


def _wait_frozen(cg, frozen: bool) -> None:
    """A v1 freezer goes FREEZING -> FROZEN; v2 reports it in cgroup.events."""
    deadline = time.monotonic() + FREEZE_WAIT
    while time.monotonic() < deadline:
        if cg.version == "v2":
            path = os.path.join(cg.path, "cgroup.events")
            want = "frozen 1" if frozen else "frozen 0"
        else:
            path = os.path.join(cg.dir_for("freezer"), "freezer.state")
            want = "FROZEN" if frozen else "THAWED"
        try:
            with open(path) as f:
                if want in f.read():
                    return
        except OSError:
            return
        time.sleep(0.005)
    raise ContainerStateError(f"cgroup {cg.name} did not become {want.split()[-1]} in "
                              f"{FREEZE_WAIT:.0f} s")


def _set_frozen(settings, state, frozen: bool) -> None:
    cg = _cgroup(settings, state.id)
    if cg is not None:
        cg.freeze() if frozen else cg.thaw()
        _wait_frozen(cg, frozen)
    else:
        _signal_all(settings, state, signal.SIGSTOP if frozen else signal.SIGCONT)


def freeze(settings, state) -> None:
    _set_frozen(settings, state, True)


def thaw(settings, state) -> None:
    _set_frozen(settings, state, False)


def _event(settings, state, action: str) -> None:
    """Docker's `pause` / `unpause` container events, in the user's journal."""
    from pydocklite import events
    events.container(settings.runtime_layout.events_dir, action, state.id, state.image,
                     state.name, state.config.get("Config", {}).get("Labels"))


def _store(settings):
    from pydocklite.state.store import ContainerStore
    return ContainerStore(settings.layout.containers_dir)


def pause(settings, ref: str):
    """Pause container `ref` (Docker's errors: not running, already paused), holding its
    life lock (no start, stop or rm meanwhile)."""
    store = _store(settings)
    with store.operation(ref) as state:
        st = state.status()
        if st.state == "paused":
            raise ContainerStateError(f"Container {state.id} is already paused")
        if st.state != "running":
            raise ContainerStateError(f"Container {state.id} is not running")
        freeze(settings, state)
        new = store.update(state.id, lambda s: s._replace(paused=True))
        _event(settings, new, "pause")
        return new


def unpause(settings, ref: str):
    """Let paused container `ref` go on (Docker's error: not paused)."""
    store = _store(settings)
    with store.operation(ref) as state:
        if state.status().state != "paused":
            raise ContainerStateError(f"Container {state.id} is not paused")
        thaw(settings, state)
        new = store.update(state.id, lambda s: s._replace(paused=False))
        _event(settings, new, "unpause")
        return new


def resume_if_paused(settings, state) -> None:
    """For kill/stop/rm -f of a paused container (the caller holds its life lock): after the
    signal, let the processes run so they act on it (Docker does the same); the paused mark
    goes."""
    if not state.paused:
        return
    try:
        thaw(settings, state)
    except ContainerStateError:
        pass
    _store(settings).update(state.id, lambda s: s._replace(paused=False))
