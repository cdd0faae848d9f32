"""The verbs of runc's command line (runc_cli parses, this module carries them out).

Error words follow runc where engines match on them: "does not exist" (containerd ignores it
on delete), "container not running" (containerd's shim treats a kill of a finished process as
done), exit status 1 for any error.
"""
from __future__ import annotations

import os
import sys

from .runc_cli import UsageError, warn


def _one_id(pos: list, verb: str) -> str:
    if len(pos) != 1:
        raise UsageError(f"{verb} needs exactly one container id")
    return pos[0]


def _signal(s: str) -> int:
    import signal
    if s.isdigit():
        return int(s)
    name = s.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(getattr(signal, name))
    except AttributeError:
        raise UsageError(f"unknown signal {s!r}") from None


def _single_id_warning_once(root: str, warnings: list) -> list:
    """The single-id fallback is told once per runtime root, not per container."""
    from .idmap import SINGLE_ID_WARNING
    if SINGLE_ID_WARNING not in warnings:
        return warnings
    marker = os.path.join(root, ".single-id-told")
    if os.path.exists(marker):
        return [w for w in warnings if w != SINGLE_ID_WARNING]
    try:
        open(marker, "w").close()
    except OSError:
        pass
    return warnings


def _pretty(obj, pad: str = "") -> str:
    """json.dumps(obj, indent=2) without importing json (its re and decoder cost ~10 ms of
    CPU on `state`, which engines call often)."""
    from .minijson import dumps
    inner = pad + "  "
    if isinstance(obj, dict) and obj:
        items = (f"{inner}{dumps(str(k))}: {_pretty(v, inner)}" for k, v in obj.items())
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, (list, tuple)) and obj:
        return "[\n" + ",\n".join(inner + _pretty(v, inner) for v in obj) + "\n" + pad + "]"
    return dumps(obj)


def _print_json(obj, indent: bool = True) -> None:
    from . import minijson
    sys.stdout.write((_pretty(obj) if indent else minijson.dumps(obj)) + "\n")


def _int_flag(opts: dict, key: str) -> int:
    v = opts.get(key) or 0
    try:
        n = int(v)
    except ValueError:
        raise UsageError(f"--{key.replace('_', '-')} takes a number, got {v!r}") from None
    if n < 0:
        raise UsageError(f"--{key.replace('_', '-')} must be >= 0")
    return n


def run_verb(verb: str, opts: dict, pos: list, root: str, glob: dict) -> int:
    handler = _VERBS.get(verb)
    if handler is None:
        if verb in ("checkpoint", "restore"):
            raise UsageError(f"{verb} is not supported by pydocklite (no CRIU integration)")
        raise UsageError(f"unknown verb {verb!r}")
    return handler(opts, pos, root) or 0


def _create(opts, pos, root) -> int:
    from . import api
    cid = _one_id(pos, "create")
    created = api.create(opts.get("bundle") or ".", cid, root,
                         console_socket=opts.get("console_socket"),
                         pid_file=opts.get("pid_file"),
                         preserve_fds=_int_flag(opts, "preserve_fds"))
    for w in _single_id_warning_once(root, created.warnings):
        warn(w)
    return 0


def _run(opts, pos, root) -> int:
    from . import api
    cid = _one_id(pos, "run")
    collected = []
    code = api.run(opts.get("bundle") or ".", cid, root,
                   console_socket=opts.get("console_socket"), detach=bool(opts.get("detach")),
                   pid_file=opts.get("pid_file"), on_warning=collected.append,
                   preserve_fds=_int_flag(opts, "preserve_fds"))
    for w in _single_id_warning_once(root, collected):
        warn(w)
    return code


def _start(opts, pos, root) -> int:
    from . import api
    for w in api.start(_one_id(pos, "start"), root) or ():
        warn(w)
    return 0


def _state(opts, pos, root) -> int:
    from . import state as st       # not api (~0.3 ms): engines may call `state` often
    _print_json(st.oci_state(st.load(root, _one_id(pos, "state"))))
    return 0


def _kill(opts, pos, root) -> int:
    from . import api
    if not 1 <= len(pos) <= 2:
        raise UsageError("kill needs a container id and optionally a signal")
    api.kill(pos[0], _signal(pos[1]) if len(pos) == 2 else 15, root,
             all_processes=bool(opts.get("all")))
    return 0


def _delete(opts, pos, root) -> int:
    from . import api
    for w in api.delete(_one_id(pos, "delete"), root, force=bool(opts.get("force"))) or ():
        warn(w)
    return 0


def _list(opts, pos, root) -> int:
    from . import api
    items = api.list_containers(root)
    if opts.get("format") == "json":
        _print_json(items)
    elif opts.get("quiet"):
        for c in items:
            print(c["id"])
    else:
        print(f"{'ID':<20}{'PID':<10}{'STATUS':<10}{'BUNDLE':<40}{'CREATED':<22}OWNER")
        for c in items:
            print(f"{c['id']:<20}{c['pid']:<10}{c['status']:<10}{c['bundle']:<40}"
                  f"{c['created']:<22}{c.get('owner') or os.environ.get('USER', '')}")
    return 0


def _ps(opts, pos, root) -> int:
    from . import api
    pids = api.processes(_one_id(pos, "ps"), root)
    if opts.get("format") == "json":
        _print_json(pids, indent=False)
        return 0
    print(f"{'PID':<10}CMD")
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        print(f"{pid:<10}{cmd}")
    return 0


def _exec(opts, pos, root) -> int:
    from . import api
    from .exec import plan_from_process_json, run_process, _process_plan
    if not pos:
        raise UsageError("exec needs a container id")
    cid = pos[0]
    spec = api.saved_spec(cid, root)
    if opts.get("process"):
        if len(pos) > 1:
            raise UsageError("exec --process FILE takes the command from the file, not the "
                             "arguments")
        from . import minijson
        path = opts["process"]
        try:
            with open(path, "rb") as f:
                obj = minijson.loads(f.read())
        except OSError as e:
            raise UsageError(f"--process {path}: {e.strerror}") from None
        except ValueError as e:
            raise UsageError(f"--process {path}: not valid JSON: {e}") from None
        proc, warnings = plan_from_process_json(spec, obj)
        for w in warnings:
            warn(w)
    else:
        if len(pos) < 2:
            raise UsageError("exec needs a container id and a command (or --process FILE)")
        uid = gid = None
        user = opts.get("user")
        if user:
            u, _, g = str(user).partition(":")
            if not u.isdigit() or (g and not g.isdigit()):
                raise UsageError("--user takes UID[:GID] (numbers)")
            uid, gid = int(u), int(g) if g else None
        proc = _process_plan(spec, pos[1:], opts.get("env"), opts.get("cwd"), uid, gid)
        if opts.get("tty"):
            proc = proc._replace(terminal=True)
    if opts.get("no_new_privs"):
        proc = proc._replace(no_new_privileges=True)
    terminal = None
    if proc.terminal or opts.get("tty"):
        terminal = "socket" if opts.get("console_socket") or opts.get("detach") else "relay"
    return run_process(root, cid, spec, proc, terminal=terminal,
                       console_socket=opts.get("console_socket"),
                       detach=bool(opts.get("detach")), pid_file=opts.get("pid_file"),
                       preserve_fds=_int_flag(opts, "preserve_fds"))


def _pause(opts, pos, root) -> int:
    from .control import pause
    pause(_one_id(pos, "pause"), root)
    return 0


def _resume(opts, pos, root) -> int:
    from .control import resume
    resume(_one_id(pos, "resume"), root)
    return 0


def _update(opts, pos, root) -> int:
    from . import minijson
    from .control import update
    cid = _one_id(pos, "update")
    src = opts.get("resources")
    if not src:
        raise UsageError("update needs --resources FILE (or - for stdin): the runtime-spec's "
                         "linux.resources as JSON; the single-limit flags are not supported")
    try:
        data = sys.stdin.buffer.read() if src == "-" else open(src, "rb").read()
        resources = minijson.loads(data)
    except OSError as e:
        raise UsageError(f"--resources {src}: {e.strerror}") from None
    except ValueError as e:
        raise UsageError(f"--resources {src}: not valid JSON: {e}") from None
    for w in update(cid, resources, root):
        warn(w)
    return 0


def _events(opts, pos, root) -> int:
    """--stats: one stats event; else a stats event every --interval and an "oom" event when
    the OOM killer strikes, until the container stops (runc's `events`)."""
    from . import control
    from . import state as st
    cid = _one_id(pos, "events")
    if opts.get("stats"):
        _print_json({"type": "stats", "id": cid, "data": control.stats(cid, root)},
                    indent=False)
        return 0
    interval = _duration(opts.get("interval") or "5s")
    import gc
    import time
    gc.enable()         # runc_cli.entry turned it off for short calls; this one runs on
    ooms = control.oom_kills(cid, root)
    next_stats = 0.0
    while st.load(root, cid).status in ("running", "paused", "created"):
        now = time.monotonic()
        n = control.oom_kills(cid, root)
        if n > ooms:
            _print_json({"type": "oom", "id": cid}, indent=False)
            ooms = n
        if now >= next_stats:
            _print_json({"type": "stats", "id": cid, "data": control.stats(cid, root)},
                        indent=False)
            next_stats = now + interval
        sys.stdout.flush()
        time.sleep(min(interval, 0.2))
    return 0


def _duration(text: str) -> float:
    """Go's duration subset: 500ms, 5s, 1m."""
    for unit, mult in (("ms", 0.001), ("s", 1.0), ("m", 60.0)):
        if text.endswith(unit) and text[:-len(unit)].replace(".", "", 1).isdigit():
            return float(text[:-len(unit)]) * mult
    raise UsageError(f"--interval {text!r}: use a duration like 5s or 500ms")


def _features(opts, pos, root) -> int:
    from .spec_fields import features
    _print_json(features())
    return 0


def _spec(opts, pos, root) -> int:
    from .spec_template import write_spec
    write_spec(opts.get("bundle") or ".", rootless=bool(opts.get("rootless"))
               or os.geteuid() != 0)
    return 0


_VERBS = {"create": _create, "run": _run, "start": _start, "state": _state, "kill": _kill,
          "delete": _delete, "list": _list, "ps": _ps, "exec": _exec, "pause": _pause,
          "resume": _resume, "update": _update, "events": _events, "features": _features,
          "spec": _spec}
