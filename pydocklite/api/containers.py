"""/containers/...: thin translations to the container service (create is in create.py,
attach in attach.py, archive in archive.py)."""
from __future__ import annotations

import os
import time

from pydocklite.api.http import HttpError
from pydocklite.api.util import client_closed, filters_arg, unix_time


def _state(ctx, ref: str):
    return ctx.containers.store.get(ref).one_moment()


def summary(state) -> dict:
    """One entry of GET /containers/json."""
    from pydocklite.shim.port_spec import PortMapping
    st = state.status()
    cfg = state.config
    c = cfg.get("Config", {})
    ports = []
    published = set()
    for m in cfg.get("PortBindings", []):
        pm = PortMapping(**m)
        published.add(pm.key)
        ports.append({"IP": pm.host_ip or "127.0.0.1", "PrivatePort": pm.container_port,
                      "PublicPort": pm.host_port, "Type": pm.protocol})
    for key in c.get("ExposedPorts") or {}:
        port, _, proto = key.partition("/")
        if key not in published and port.isdigit():
            ports.append({"PrivatePort": int(port), "Type": proto or "tcp"})
    mode = network_mode(state)
    from pydocklite.containers.netconfig import settings_json
    networks = settings_json(state, {})["Networks"]
    return {
        "Id": state.id, "Names": ["/" + state.name], "Image": state.image,
        "ImageID": state.image_id, "Command": " ".join(cfg.get("Args", [])),
        "Created": unix_time(state.created), "Ports": ports,
        "Labels": c.get("Labels") or {}, "State": st.state, "Status": state.human_status(),
        "HostConfig": {"NetworkMode": mode},
        "NetworkSettings": {"Networks": networks},
        "Mounts": [{"Type": "bind", "Source": m.get("source"), "Destination": m.get("target"),
                    "RW": not m.get("readonly"), "Propagation": "rprivate"}
                   for m in cfg.get("Mounts", [])],
    }


def network_mode(state) -> str:
    mode = state.config.get("HostConfig", {}).get("NetworkMode", "")
    return "bridge" if mode in ("private", "") else mode


def list_(ctx, req, resp):
    from pydocklite.containers.query import matches
    show_all = req.flag("all")
    limit = req.int_arg("limit", -1)
    filters = filters_arg(req)
    states = ctx.containers.store.list()
    out = []
    for s in states:
        s = s.one_moment()
        st = s.status()
        if not (show_all or st.running or st.state == "restarting"
                or any(f.startswith(("status=", "exited=")) for f in filters)):
            continue
        if filters and not matches(s, st, filters):
            continue
        out.append(summary(s))
        if 0 < limit <= len(out):
            break
    return out


def inspect(ctx, req, resp, id):
    from pydocklite.containers.inspect_json import container_json
    state = _state(ctx, id)
    data = container_json(ctx.settings, state)
    data["HostConfig"]["NetworkMode"] = network_mode(state)
    data["Config"].setdefault("Image", state.image)
    return data


def start(ctx, req, resp, id):
    from pydocklite.api import attach
    state = _state(ctx, id)
    if state.status().running:
        resp.send(304)
        return None
    attach.start_container(ctx, state)
    return None


def stop(ctx, req, resp, id):
    state = _state(ctx, id)
    if not state.status().running:
        resp.send(304)
        return None
    timeout = req.int_arg("t", req.int_arg("timeout"))
    ctx.containers.stop(state.id, timeout, req.arg("signal") or None)
    ctx.notify()
    return None


def restart(ctx, req, resp, id):
    from pydocklite.api import attach
    state = _state(ctx, id)
    timeout = req.int_arg("t", req.int_arg("timeout"))
    ctx.containers.stop(state.id, timeout, req.arg("signal") or None)
    attach.start_container(ctx, ctx.containers.store.load(state.id))
    return None


def kill(ctx, req, resp, id):
    ctx.containers.kill(id, req.arg("signal") or "KILL")
    return None


def remove(ctx, req, resp, id):
    from pydocklite.api.attach import cancel_pending
    from pydocklite.errors import ContainerNotFoundError
    state = _state(ctx, id)
    cancel_pending(ctx, state.id)
    try:
        ctx.containers.remove(state.id, force=req.flag("force"), volumes=req.flag("v"))
    except ContainerNotFoundError:
        pass                # its shim removed it meanwhile (--rm): gone as asked
    ctx.notify()
    return None


def rename(ctx, req, resp, id):
    name = req.arg("name")
    if not name:
        raise HttpError(400, "rename needs the new name: ?name=NEW_NAME")
    ctx.containers.rename(id, name)
    return None


def prune(ctx, req, resp):
    from pydocklite.containers.query import matches
    filters = filters_arg(req)
    labels = [f for f in filters if f.startswith("label")]
    removed = ctx.containers.prune(
        select=(lambda st, s: matches(st, s, labels)) if labels else None)
    ctx.notify()
    return {"ContainersDeleted": removed, "SpaceReclaimed": 0}


def wait(ctx, req, resp, id):
    """Headers at once (the CLI waits for them before it starts the container), the body
    {"StatusCode": N} when the condition holds: not-running (now or when it stops),
    next-exit (an exit after this call), removed (the record is gone)."""
    condition = req.arg("condition") or "not-running"
    if condition not in ("not-running", "next-exit", "removed"):
        raise HttpError(400, f"invalid condition {condition!r}: use not-running, next-exit or "
                             "removed")
    store = ctx.containers.store
    cid = store.resolve(id)
    first = store.load(cid)
    stream = resp.start_stream(200, "application/json")
    ctx.server.busy(+1)
    try:
        code = _wait_until(ctx, req, cid, first, condition)
    finally:
        ctx.server.busy(-1)
    if code is not None:          # None: the client left
        stream.json({"StatusCode": code})
        stream.close()
    return None


def _wait_until(ctx, req, cid, first, condition):
    from pydocklite.errors import ContainerNotFoundError
    store = ctx.containers.store
    last_code = first.exit_code or 0
    delay = 0.005
    gone_since = None
    while True:
        try:
            s = store.load(cid)
        except ContainerNotFoundError:
            s = None
        if s is None:
            with ctx.lock:
                seen, ours = ctx.exits.get(cid), cid in ctx.generation
            if seen is not None:
                return seen[0]
            # a container this service started: its shim says the exit code after removing
            # it (--rm); give that line a moment
            gone_since = gone_since or time.monotonic()
            if not ours or time.monotonic() - gone_since > 2.0:
                return last_code
        else:
            if s.exit_code is not None:
                last_code = s.exit_code
            st = s.status()
            if condition == "not-running" and not st.running and st.state != "restarting":
                return st.exit_code
            if condition == "next-exit" and st.state == "exited" and \
                    s.finished_at != first.finished_at:
                return st.exit_code
        if client_closed(req.conn.sock):
            return None
        ctx.wait_change(delay)
        delay = min(delay * 2, 0.05)


LOGS_BATCH = 256 << 10


def logs(ctx, req, resp, id):
    from pydocklite.api.streams import STDERR, STDOUT, frame
    from pydocklite.shim.logs import read_logs
    state = _state(ctx, id)
    want_out, want_err = req.flag("stdout"), req.flag("stderr")
    if not want_out and not want_err:
        raise HttpError(400, "Bad parameters: you must choose at least one stream")
    follow = req.flag("follow")
    tail = req.arg("tail", "all")
    if tail in ("all", ""):
        tail_n = None
    else:
        try:
            tail_n = int(tail)
        except ValueError:
            raise HttpError(400, f"invalid tail {tail[:20]!r}: a number or all") from None
    since = _time_arg(req.arg("since"))
    until = _time_arg(req.arg("until"))
    tty = bool(state.config.get("Config", {}).get("Tty"))
    # without follow the frames are gathered and sent LOGS_BATCH bytes at a time (a send
    # per entry was a third of the request's time), the head with the first send
    stream = resp.start_stream(200, "application/vnd.docker.raw-stream" if tty
                               else "application/vnd.docker.multiplexed-stream",
                               defer_head=not follow)
    store = ctx.containers.store
    sock = req.conn.sock

    def stopped() -> bool:
        if client_closed(sock):
            return True
        try:
            st = store.load(state.id).status()
        except Exception:  # noqa: BLE001 - removed meanwhile
            return True
        return not st.running and not (st.shim_alive and st.state == "restarting")
    if follow:
        ctx.server.busy(+1)
    pending, size = [], 0
    try:
        if os.path.exists(state.log_path):
            for name, data in read_logs(state.log_path, follow=follow, tail=tail_n,
                                        since=since, until=until,
                                        timestamps=req.flag("timestamps"),
                                        stop_when=stopped):
                if name == "stderr" and not want_err or name == "stdout" and not want_out:
                    continue
                piece = data if tty else frame(STDERR if name == "stderr" else STDOUT, data)
                if follow:
                    stream.write(piece)
                    continue
                pending.append(piece)
                size += len(piece)
                if size >= LOGS_BATCH:
                    stream.write(b"".join(pending))
                    pending, size = [], 0
        stream.close(b"".join(pending))
    finally:
        if follow:
            ctx.server.busy(-1)
    return None


def _time_arg(text):
    if text in (None, "", "0"):
        return None
    try:
        return float(text)
    except ValueError:
        return text


def top(ctx, req, resp, id):
    import subprocess
    from pydocklite.containers.procs import container_pids
    state = _state(ctx, id)
    if not state.status().running:
        raise HttpError(409, f"container {state.id[:12]} is not running")
    pids = container_pids(ctx.settings, state.id)
    args = (req.arg("ps_args") or "-ef").split()
    if any(not a.startswith("-") and not a.replace(",", "").isalnum() for a in args):
        raise HttpError(400, "invalid ps_args")
    r = subprocess.run(["ps", *args], capture_output=True, text=True)
    lines = r.stdout.splitlines()
    if not lines:
        raise HttpError(500, f"ps failed: {r.stderr.strip()}")
    titles = lines[0].split()
    try:
        pid_col = titles.index("PID")
    except ValueError:
        raise HttpError(400, "ps_args must show the PID column") from None
    want = {str(p) for p in pids}
    procs = []
    for line in lines[1:]:
        fields = line.split(None, len(titles) - 1)
        if len(fields) > pid_col and fields[pid_col] in want:
            procs.append(fields)
    return {"Titles": titles, "Processes": procs}


def stats(ctx, req, resp, id):
    from pydocklite.containers.procs import sample_stats
    cid = _state(ctx, id).id
    one_shot = not req.flag("stream", True) or req.flag("one-shot")

    def sample():
        # a fresh record each time (one_moment's liveness is one moment's, not a stream's)
        state = ctx.containers.store.load(cid)
        now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + ".000000000Z"
        if not state.status().running:
            return _stats_json(state, now, None)
        got = sample_stats(ctx.settings, [state], interval=0.1 if one_shot else 1.0)
        return _stats_json(state, now, got[0] if got else None)
    if one_shot:
        return sample()
    stream = resp.start_stream(200, "application/json")
    ctx.server.busy(+1)
    try:
        while not client_closed(req.conn.sock):
            stream.json(sample())
            if not ctx.containers.store.load(cid).status().running:
                break
        stream.close()
    finally:
        ctx.server.busy(-1)
    return None


def _stats_json(state, now: str, s) -> dict:
    mem = s["mem"] if s else 0
    limit = s["limit"] if s else 0
    cpu = s["cpu"] if s else 0.0
    ncpu = os.cpu_count() or 1
    total = int(time.monotonic() * 1e9)
    return {
        "read": now, "preread": "0001-01-01T00:00:00Z", "id": state.id,
        "name": "/" + state.name,
        "pids_stats": {"current": s["pids"] if s else 0},
        "memory_stats": {"usage": mem, "limit": limit, "stats": {}},
        "cpu_stats": {"cpu_usage": {"total_usage": int(cpu * 1e7)},
                      "system_cpu_usage": total, "online_cpus": ncpu},
        "precpu_stats": {"cpu_usage": {"total_usage": 0}, "system_cpu_usage": 0,
                         "online_cpus": ncpu},
        "blkio_stats": {}, "networks": {},
    }


def resize(ctx, req, resp, id):
    from pydocklite.api import attach
    state = _state(ctx, id)
    h, w = req.int_arg("h", 0), req.int_arg("w", 0)
    attach.resize(ctx, state, h, w)
    return None


def pause(ctx, req, resp, id):
    ctx.containers.pause(id)
    return None


def unpause(ctx, req, resp, id):
    ctx.containers.unpause(id)
    return None


# Resources fields of POST /containers/{id}/update that this engine can't apply: a non-zero
# value comes back in Warnings, as dockerd warns of what its host lacks
_UPDATE_UNSUPPORTED = ("CpuShares", "CpusetCpus", "CpusetMems", "CpuRealtimePeriod",
                       "CpuRealtimeRuntime", "BlkioWeight", "KernelMemory",
                       "MemoryReservation", "MemorySwappiness")


def update_options(body: dict):
    """The engine's UpdateOptions from Docker's update body, and the warnings for the
    fields it can't apply. 0 (or absent) leaves a limit as it is, as in dockerd."""
    from pydocklite.containers.update import UpdateOptions
    from pydocklite.errors import UsageError

    def num(key, kind=int):
        value = body.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise HttpError(400, f"invalid {key} {value!r} in the update body: give a number")
        return kind(value)
    memory, swap = num("Memory"), num("MemorySwap")
    nano, quota, period = num("NanoCpus") or num("NanoCPUs"), num("CpuQuota"), num("CpuPeriod")
    if nano and quota:
        raise HttpError(400, "conflicting options: NanoCpus and CpuQuota cannot both be set")
    if (period or 0) < 0:
        raise HttpError(400, "invalid update: CpuPeriod can't be negative")
    cpus = nano / 1e9 if nano else (quota / (period or 100000) if quota and quota > 0 else None)
    pids = num("PidsLimit")
    policy = body.get("RestartPolicy") or {}
    if not isinstance(policy, dict):
        raise HttpError(400, "invalid RestartPolicy in the update body: give an object")
    restart = None
    if policy.get("Name"):
        restart, retries = str(policy["Name"]), policy.get("MaximumRetryCount")
        if retries:
            if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
                raise HttpError(400, f"invalid RestartPolicy.MaximumRetryCount {retries!r}: "
                                     f"give a whole number")
            restart += f":{retries}"
    warnings = [f"{key} is not supported by pydocklite: ignored"
                for key in _UPDATE_UNSUPPORTED if body.get(key)]
    want = UpdateOptions(memory=memory or None, memory_swap=swap or None, cpus=cpus,
                         pids_limit=pids, restart=restart)
    try:
        want.check()                      # the engine's own rules, as a 400 here
    except UsageError as e:
        raise HttpError(400, str(e)) from None
    return want, warnings


def update(ctx, req, resp, id):
    body = req.read_json(default={})
    want, warnings = update_options(body)
    if want.empty():
        _state(ctx, id)                   # 404 for a container that isn't there
        return {"Warnings": warnings}
    return {"Warnings": list(ctx.containers.update(id, want)) + warnings}


def changes(ctx, req, resp, id):
    from pydocklite.containers.changes import KINDS
    out = [{"Path": path, "Kind": KINDS.get(kind, 0)} for kind, path in ctx.containers.diff(id)]
    resp.json(out or None)          # dockerd: null, not [], for a container with no changes
    return None


def export(ctx, req, resp, id):
    tar = ctx.containers.export(id)
    try:
        stream = resp.start_stream(200, "application/x-tar")
        while True:
            chunk = tar.read(1 << 20)
            if not chunk:
                break
            stream.write(chunk)
    except BaseException:
        tar.abort()                       # the client went away: stop the helper
        raise
    tar.close()
    stream.close()
    return None
