"""Library API of the runtime (what the shim and runc_cli call).

    create(bundle, cid, root=None, stdio=None, console_socket=None, prepare_rootfs=None,
           pid_file=None, cgroup_base=None) -> Created(pid, warnings, ...)
                                                    # init waits for start()
    start(cid, root=None) -> [warning] ; state(cid, root=None) -> dict (OCI state)
    kill(cid, sig=15, root=None, all_processes=False)
    delete(cid, root=None, force=False) -> [warning]   # failed poststart/poststop hooks
                                                       # are warnings (runtime-spec)
    run(bundle, cid, root=None, stdio=None, ...) -> exit code (128+N when killed by signal N)
    exec_process(cid, args, root=None, env=None, cwd=None, uid=None, gid=None, tty=False,
                 stdio=None) -> exit code     # setns into the container's namespaces
    list_containers(root=None) -> [dict] ; processes(cid, root=None) -> [pid]

    become_subreaper()  # call before create() to reap the init and get its exit status
                        # (os.waitpid(pid) / wait_exit(pid)): its first parent exits at once

`prepare_rootfs(rootfs_path)` runs in a child that is already inside the container's new user
and mount namespaces (ids mapped), before any mount, pivot_root or the pid namespace: the place
to mount a FUSE rootfs. Anything it forks outlives the child (it is not the container's pid 1).
Joining pre-existing namespaces by path (linux.namespaces[].path) works too.
Warnings (single-id fallback, clamped rlimits, unapplied cgroup limits...) are returned, never
printed: the caller shows them.
"""
from __future__ import annotations

import os
import time

from . import state as st
from .errors import ContainerExists, ContainerNotFound, RuntimeErr, StateError
from .record import Record


class Created(Record):
    __slots__ = ("pid", "warnings", "start_fd", "console_master", "hooks")  # last 3: run()


def _root(root):
    return root or st.default_root()


def _cgroups_setup(spec, cid: str, warnings: list, base=None):
    """Create the container's cgroup when the spec asks for limits; None when not (or when
    no cgroup is usable: the limits are then reported as not applied)."""
    resources = spec.linux.resources
    if resources.get("devices") and any(n.type == "user" for n in spec.linux.namespaces):
        # a user namespace can't make device nodes at all: the rules would add nothing
        resources = {k: v for k, v in resources.items() if k != "devices"}
    if not resources and not spec.linux.cgroups_path:
        return None     # an engine names a cgroupsPath: it reads metrics there, even unlimited
    try:
        from . import cgroups
    except ImportError:
        warnings.append("linux.resources set but pydocklite.runtime.cgroups is not available: "
                        "no limits applied")
        return None
    from . import cgroup_path
    try:
        return cgroup_path.create(cgroups, spec.linux.cgroups_path, cid, resources, base,
                                  warnings)
    except Exception as e:  # noqa: BLE001 - CgroupError: limits unenforced, told to the user
        warnings.append(f"resource limits not applied: {e}" if resources else
                        f"linux.cgroupsPath {spec.linux.cgroups_path} not made: {e}")
        return None


def _cgroup_of(facts_cgroup):
    """The Cgroup recorded in the state (paths), or None."""
    if not facts_cgroup:
        return None
    try:
        from . import cgroups
        return cgroups.attach(facts_cgroup)
    except Exception:  # noqa: BLE001 - module absent or paths invalid
        return None


def create(bundle: str, cid: str, root: str = None, stdio=None, console_socket: str = None,
           prepare_rootfs=None, pid_file: str = None, _start_by_pipe: bool = False,
           _own_console: bool = False, cgroup_base=None, on_namespaces=None,
           made_userns: str = None, preserve_fds: int = 0) -> Created:
    """Set up container `cid` from `bundle`; its init waits for start(). Returns its pid.

    cgroup_base: delegated cgroup dir(s) (a list or "a:b") for the container's cgroup,
    as cgroups.create(base=...) takes; None = let cgroups.detect() find one.
    on_namespaces(pid): see process.launch (the container's namespaces exist, its rootfs
    is not prepared yet).
    made_userns: the path of a user namespace made ahead for this container, with exactly
    the mappings its spec asks for (or the default ones) written: joined instead of
    creating it (the shim makes one while the CLI prepares the container).
    preserve_fds: fds 3..3+N-1 reach the container process (runc's --preserve-fds); every
    other inherited fd is closed at its exec."""
    from . import init_sock, plan, process, spec_fields
    from .spec import load_spec

    root = _root(root)
    cdir = st.container_dir(root, cid)
    bundle = os.path.abspath(bundle)
    spec, raw = load_spec(bundle)
    warnings = spec_fields.check(raw)      # refused fields raise: nothing is made yet
    default_maps = None
    if any(n.type == "user" and not n.path for n in spec.linux.namespaces) and \
            (not spec.linux.uid_mappings or not spec.linux.gid_mappings):
        from . import idmap
        u, g, warn = idmap.default_mappings()
        default_maps = (u, g)
        if warn:
            warnings.append(warn)
    if os.geteuid() != 0 and not any(n.type == "user" for n in spec.linux.namespaces):
        raise RuntimeErr("config.json: rootless containers need a user namespace: add "
                         "{\"type\": \"user\"} to linux.namespaces (or run "
                         "'pydocklite runtime spec --rootless')")
    host_lsm = None
    if plan.needs_lsm(spec):
        from . import lsm
        host_lsm = lsm.detect()
    the_plan = plan.make_plan(spec, default_maps, host_lsm)
    warnings.extend(the_plan.warnings)
    if made_userns and the_plan.userns is not None and not the_plan.userns.path:
        the_plan = the_plan._replace(userns=the_plan.userns._replace(path=made_userns))
    if the_plan.userns is not None and not the_plan.userns.path and os.geteuid() != 0:
        from . import idmap
        idmap.check_owned(the_plan.userns.uid_maps, os.geteuid(), "/etc/subuid", "uid")
        idmap.check_owned(the_plan.userns.gid_maps, os.getegid(), "/etc/subgid", "gid")
    os.makedirs(root, mode=0o700, exist_ok=True)
    try:
        os.mkdir(cdir, 0o711)
    except FileExistsError:
        raise ContainerExists(f"container {cid!r} already exists: delete it first "
                              f"('pydocklite runtime delete {cid}')") from None
    facts = {"id": cid, "pid": 0, "bundle": bundle, "rootfs": spec.root.path,
             "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
             "annotations": spec.annotations, "owner": _owner(), "cgroup": None,
             # phases with hooks: start and delete parse config.json only when needed
             "hooks": [k for k in spec.hooks.__slots__ if getattr(spec.hooks, k)]}
    cgroup = None
    receiver = None
    master = None
    try:
        st.write_facts(cdir, facts)
        with open(os.path.join(bundle, "config.json"), "rb") as src, \
                open(os.path.join(cdir, "config.json"), "wb") as f:
            f.write(src.read())      # the spec as given: hooks, exec and delete read it

        def on_sync(child_pid: int) -> None:
            nonlocal cgroup
            if the_plan.userns is not None and not the_plan.userns.path:
                from . import idmap
                idmap.apply(child_pid, the_plan.userns.uid_maps, the_plan.userns.gid_maps)
            cgroup = _cgroups_setup(spec, cid, warnings, cgroup_base)
            if cgroup is not None:
                try:
                    cgroup.add_pid(child_pid)
                except Exception as e:  # noqa: BLE001 - CgroupError: report, run unlimited
                    warnings.append(f"resource limits not applied: {e}")
                    _remove_dir_cgroup_only(cgroup)
                    cgroup = None
                    return
                for na in cgroup.apply() or ():
                    limit, reason = na[0], na[1]
                    warnings.append(f"limit {limit} not applied: {reason}")

        if _start_by_pipe:
            open(os.path.join(cdir, init_sock.INIT_WAIT), "w").close()
        if _own_console and spec.process.terminal and not console_socket:
            from .console import ConsoleReceiver
            receiver = ConsoleReceiver(cdir)
            console_socket = receiver.path
        pid, child_warnings, start_fd = process.launch(
            the_plan, bundle=bundle, cdir=cdir, rootfs=spec.root.path, stdio=stdio,
            console_socket=console_socket, prepare_rootfs=prepare_rootfs, on_sync=on_sync,
            start_by_pipe=_start_by_pipe, hooks=spec.hooks, on_namespaces=on_namespaces,
            preserve_fds=preserve_fds,
            start_fifo=not _start_by_pipe and not spec.hooks.poststart,
            state={"ociVersion": st.OCI_VERSION, "id": cid, "bundle": bundle,
                   "annotations": spec.annotations})
        warnings.extend(child_warnings)
        if receiver is not None:
            master = receiver.receive()
            receiver.close()
            receiver = None
        facts["pid"] = pid
        facts["pid_start"] = st.proc_start_time(pid)
        facts["cgroup"] = [list(p) for p in cgroup.paths] if cgroup is not None else None
        if not _start_by_pipe:
            _write_prelude_facts(cdir, facts, cgroup, teardown=not spec.hooks.poststop)
        st.write_facts(cdir, facts)
        if spec.hooks.prestart or spec.hooks.create_runtime:
            from .hooks import run_hooks
            oci = st.oci_state(st.load(root, cid))
            run_hooks(spec.hooks.prestart, oci, "prestart")
            run_hooks(spec.hooks.create_runtime, oci, "createRuntime")
        if pid_file:
            tmp = pid_file + ".tmp"
            with open(tmp, "w") as f:
                f.write(str(pid))
            os.replace(tmp, pid_file)
    except BaseException:
        if receiver is not None:
            receiver.close()
        pid = facts.get("pid")
        if pid:
            _kill_wait(pid)
        _remove_dir(cdir, cgroup)
        raise
    return Created(pid, warnings, start_fd, master, spec.hooks)


def _write_prelude_facts(cdir: str, facts: dict, cgroup, teardown: bool = True) -> None:
    """Plain files for ./pydocklite-runtime's sh prelude (tools/runtime_prelude.sh), which
    answers `start` and the `delete` of a stopped container without Python: init.pid = "PID
    STARTTIME" (is the init alive?), and, when delete needs nothing but removals (teardown
    False: a poststop hook to run), teardown = what delete() removes besides the state dir:
    "cg DIR" per cgroup directory."""
    from .init_sock import INIT_PID, TEARDOWN
    with open(os.path.join(cdir, INIT_PID), "w") as f:
        f.write(f"{facts['pid']} {facts['pid_start']}\n")
    lines = []
    if cgroup is not None:
        for _, d in cgroup.paths:
            if f"cg {d}\n" not in lines:
                lines.append(f"cg {d}\n")
    if not teardown or any(line.count("\n") > 1 for line in lines):
        return          # a line per directory, or Python does it
    with open(os.path.join(cdir, TEARDOWN), "w") as f:
        f.write("".join(lines))


def _owner() -> str:
    import pwd
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def become_subreaper() -> None:
    """Make this process the reaper of orphaned descendants (PR_SET_CHILD_SUBREAPER): the
    container init, whose own parent exits during create(), then becomes our child."""
    from . import syscalls as sc
    sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)


def _kill_wait(pid: int, timeout: float = 5.0) -> None:
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            if st.proc_start_time(pid) is None:
                return
        time.sleep(0.002)


def _remove_dir_cgroup_only(cgroup) -> None:
    try:
        cgroup.destroy()
    except Exception:  # noqa: BLE001 - best effort
        pass


def _remove_dir(cdir: str, cgroup=None) -> None:
    if cgroup is not None:
        try:
            cgroup.kill_all()
            cgroup.destroy()
        except Exception:  # noqa: BLE001 - best effort during cleanup of a failed create
            pass
    # the state dir is flat (state.json, config.json, init.*); shutil costs 10 ms to import
    try:
        for name in os.listdir(cdir):
            try:
                os.unlink(os.path.join(cdir, name))
            except IsADirectoryError:
                pass
        os.rmdir(cdir)
    except FileNotFoundError:
        pass


def start(cid: str, root: str = None) -> list:
    """Let the created container's process run; returns warnings (failed poststart hooks)."""
    from . import init_sock
    root = _root(root)
    s = st.load(root, cid)
    if s.status != "created":
        raise StateError(f"container {cid!r} is {s.status}, not created: cannot start it")
    cdir = st.container_dir(root, cid)
    try:
        init_sock.signal_start(cdir)
    except OSError as e:
        raise StateError(f"container {cid!r}: its init is not waiting ({e.strerror})") from None
    if s.hook_phases is not None and "poststart" not in s.hook_phases:
        return []       # known to have none: no need to parse config.json (engines' start)
    spec = _saved_spec(cdir)
    if spec is not None and spec.hooks.poststart:
        from .hooks import run_hooks_warning
        return run_hooks_warning(spec.hooks.poststart, st.oci_state(st.load(root, cid)),
                                 "poststart")
    return []


def _saved_spec(cdir: str):
    from . import minijson
    from .spec import parse_spec
    try:
        with open(os.path.join(cdir, "config.json"), "rb") as f:
            return parse_spec(minijson.loads(f.read()))
    except (OSError, ValueError, RuntimeErr):
        return None


def state(cid: str, root: str = None) -> dict:
    return st.oci_state(st.load(_root(root), cid))


def list_containers(root: str = None) -> list:
    root = _root(root)
    out = []
    for cid in st.list_ids(root):
        try:
            out.append(st.oci_state(st.load(root, cid)))
        except RuntimeErr:
            continue
    return out


def _ns_inode(pid: int, ns: str):
    try:
        return os.stat(f"/proc/{pid}/ns/{ns}").st_ino
    except OSError:
        return None


_LIVE = ("created", "running", "paused")


def processes(cid: str, root: str = None) -> list:
    """Host pids of every process in the container (init first): its cgroup's when it has
    one (runc's answer: exec'd processes included), else its pid namespace's."""
    s = st.load(_root(root), cid)
    if s.status not in _LIVE:
        return []
    if s.cgroup:
        from .control import cgroup_pids
        pids = cgroup_pids(cid, _root(root)) or []
        return [s.pid] + [p for p in pids if p != s.pid]
    ino = _ns_inode(s.pid, "pid")
    own = _ns_inode(os.getpid(), "pid")
    if ino is None or ino == own:
        return [s.pid]
    pids = [s.pid]
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != s.pid and _ns_inode(int(name), "pid") == ino:
            pids.append(int(name))
    return pids


def kill(cid: str, sig: int = 15, root: str = None,
         all_processes: bool = False) -> None:
    s = st.load(_root(root), cid)
    if s.status not in _LIVE:
        # "container not running": the words containerd's shim looks for
        raise StateError(f"cannot signal container {cid!r}: container not running "
                         f"({s.status})")
    targets = processes(cid, root) if all_processes else [s.pid]
    for pid in targets:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def delete(cid: str, root: str = None, force: bool = False, _hooks=None) -> list:
    """Remove a stopped container (force: kill it first); runs poststop hooks, returns
    warnings (the ones that failed)."""
    from .hooks import run_hooks_warning
    root = _root(root)
    cdir = st.container_dir(root, cid)
    try:
        s = st.load(root, cid)
    except ContainerNotFound:
        if not force:
            raise
        _remove_dir(cdir)       # what a create killed before its first state write left
        return []               # runc: delete --force of a container that is gone succeeds
    if s.status == "paused" and force:
        from .control import resume
        resume(cid, root)       # a frozen v1 task can't act on SIGKILL until thawed
        s = st.load(root, cid)
    if s.status in ("created", "running", "creating", "paused") and s.pid:
        if s.status in ("running", "created", "paused") and not force:
            # runtime-spec: deleting a container that is not stopped is an error (a created
            # one too: its process exists, waiting for start)
            raise StateError(f"container {cid!r} is {s.status}, not stopped: "
                             f"{'stop it' if s.status == 'running' else 'kill it'} first or "
                             f"use 'delete --force'")
        for pid in reversed(processes(cid, root)):
            _kill_wait(pid)
    cgroup = _cgroup_of(s.cgroup)
    if cgroup is not None:
        try:
            cgroup.kill_all()
        except Exception as e:  # noqa: BLE001 - reported, the state dir stays for a retry
            raise StateError(f"container {cid!r}: {e}") from None
    if _hooks is None and (s.hook_phases is None or "poststop" in s.hook_phases):
        spec = _saved_spec(cdir)
        _hooks = spec.hooks if spec is not None else None
    oci = st.oci_state(s._replace(status="stopped"))
    _remove_dir(cdir, cgroup)
    if _hooks is not None and _hooks.poststop:
        return run_hooks_warning(_hooks.poststop, oci, "poststop")
    return []


def wait_exit(pid: int) -> int:
    """Wait for a child (the init, reparented to us as subreaper); exit code like a shell."""
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def run(bundle: str, cid: str, root: str = None, **kw) -> int:
    """create + start + wait + delete: see run_once.run (apart: api.py stays the facade)."""
    from .run_once import run as run_once
    return run_once(bundle, cid, root, **kw)


def saved_spec(cid: str, root: str = None):
    """The Spec a container was created with (its state dir's copy of config.json)."""
    root = _root(root)
    spec = _saved_spec(st.container_dir(root, cid))
    if spec is None:
        st.load(root, cid)          # ContainerNotFound ("does not exist") first
        raise RuntimeErr(f"container {cid!r}: its saved config.json is unreadable")
    return spec


def exec_process(cid: str, args, root: str = None, env=None, cwd: str = None, uid: int = None,
                 gid: int = None, tty: bool = False, stdio=None, on_console=None,
                 new_session: bool = False) -> int:
    """Run args in running container cid (its namespaces, user, capabilities); exit code."""
    from .exec import exec_in
    root = _root(root)
    return exec_in(root, cid, saved_spec(cid, root), args, env, cwd, uid, gid, stdio, tty,
                   on_console, new_session)
