"""User-namespace id maps: choose them and write them for a child process.

Rootless, the full subordinate range of /etc/subuid + /etc/subgid is mapped through the setuid
helpers newuidmap/newgidmap, run from the parent namespace against the child's pid (they refuse
to run from inside). Without a range or without the helpers, only the caller's own id can be
mapped (written directly to /proc/PID/{uid,gid}_map): root in the container = you.
"""
from __future__ import annotations

import os
import pwd

from .errors import IdMapError
from .spec import IdMapping

SINGLE_ID_WARNING = ("no subordinate id range (/etc/subuid, /etc/subgid) or no newuidmap/"
                     "newgidmap (package uidmap): mapping only your own uid/gid; files can't be "
                     "chowned to other users in the container. Fix: add 'USER:100000:65536' to "
                     "/etc/subuid and /etc/subgid and install uidmap")


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def read_subids(path: str, uid: int) -> list:
    """[(start, count)] ranges for user `uid` (by name or number) in an /etc/subuid file."""
    names = {str(uid), _user_name(uid)}
    out = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.strip().split(":")
                if len(parts) == 3 and parts[0] in names:
                    try:
                        out.append((int(parts[1]), int(parts[2])))
                    except ValueError:
                        continue
    except OSError:
        pass
    return out


def which(prog: str):
    """Full path of prog on PATH (and the usual sbin dirs), or None. (shutil costs 10 ms.)"""
    dirs = os.environ.get("PATH", "").split(":") + ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
    for d in dirs:
        if d:
            path = os.path.join(d, prog)
            if os.access(path, os.X_OK):
                return path
    return None


def helpers_available() -> bool:
    return bool(which("newuidmap") and which("newgidmap"))


def default_mappings(uid: int = None, gid: int = None) -> tuple:
    """(uid_maps, gid_maps, warning|None) for a rootless container of the caller.

    Full map when possible: container 0 -> you, 1.. -> your first subordinate range.
    """
    uid = os.geteuid() if uid is None else uid
    gid = os.getegid() if gid is None else gid
    subu = read_subids("/etc/subuid", uid)
    subg = read_subids("/etc/subgid", uid)
    if subu and subg and helpers_available():
        return ((IdMapping(0, uid, 1), IdMapping(1, subu[0][0], subu[0][1])),
                (IdMapping(0, gid, 1), IdMapping(1, subg[0][0], subg[0][1])), None)
    return (IdMapping(0, uid, 1),), (IdMapping(0, gid, 1),), SINGLE_ID_WARNING


def _fmt(maps) -> str:
    return ", ".join(f"{m.container_id}:{m.host_id}:{m.size}" for m in maps)


def _only_self(maps, own: int) -> bool:
    return len(maps) == 1 and maps[0].host_id == own and maps[0].size == 1


def check_owned(maps, own: int, subfile: str, what: str) -> None:
    """Raise IdMapError unless every host id in maps is `own` or in the user's range."""
    if os.geteuid() == 0:
        return
    ranges = read_subids(subfile, os.geteuid())
    for m in maps:
        lo, hi = m.host_id, m.host_id + m.size
        ok = False
        if m.host_id == own and m.size == 1:
            ok = True
        for start, count in ranges:
            if lo >= start and hi <= start + count:
                ok = True
        if not ok:
            owned = ", ".join(f"{s}-{s + c - 1}" for s, c in ranges) or "none"
            raise IdMapError(f"{what} mapping {m.container_id}:{m.host_id}:{m.size} uses host "
                             f"ids you don't own (yours: {own} and {subfile} ranges {owned}): "
                             f"fix linux.{what}Mappings in config.json")


def _write(path: str, maps) -> None:
    data = "".join(f"{m.container_id} {m.host_id} {m.size}\n" for m in maps)
    try:
        with open(path, "w") as f:
            f.write(data)
    except OSError as e:
        raise IdMapError(f"writing {path} ({_fmt(maps)}) failed: {e.strerror}") from None


def _spawn_helper(prog: str, pid: int, maps) -> tuple:
    """Start newuidmap/newgidmap; returns (prog pid, read end of its stderr)."""
    path = which(prog)
    if path is None:
        raise IdMapError(f"{prog} not found: install the uidmap package, or map only your own "
                         f"id (size 1) in config.json")
    args = [prog, str(pid)]
    for m in maps:
        args += [str(m.container_id), str(m.host_id), str(m.size)]
    r, w = os.pipe()
    try:
        child = os.posix_spawn(path, args, os.environ, file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, w, 1), (os.POSIX_SPAWN_DUP2, w, 2)])
    finally:
        os.close(w)
    return child, r


def _finish_helper(child: int, r: int) -> tuple:
    chunks = []
    while True:
        b = os.read(r, 4096)
        if not b:
            break
        chunks.append(b)
    os.close(r)
    status = os.waitpid(child, 0)[1]
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode(errors="replace").strip()


def apply(pid: int, uid_maps, gid_maps) -> None:
    """Write the maps of the user namespace of `pid` (called from the parent namespace)."""
    start(pid, uid_maps, gid_maps)()


def start(pid: int, uid_maps, gid_maps):
    """Begin writing the maps of the user namespace of `pid`: the setuid helpers run while
    the caller does something else; the returned finish() waits for them (IdMapError)."""
    uid, gid = os.geteuid(), os.getegid()
    if uid == 0:
        _write(f"/proc/{pid}/uid_map", uid_maps)
        _write(f"/proc/{pid}/gid_map", gid_maps)
        return lambda: None
    check_owned(uid_maps, uid, "/etc/subuid", "uid")
    check_owned(gid_maps, gid, "/etc/subgid", "gid")
    procs = []      # both helpers run at once
    if not _only_self(uid_maps, uid):
        procs.append(("newuidmap", uid_maps, _spawn_helper("newuidmap", pid, uid_maps)))
    if not _only_self(gid_maps, gid):
        procs.append(("newgidmap", gid_maps, _spawn_helper("newgidmap", pid, gid_maps)))
    return lambda: _finish(pid, uid_maps, gid_maps, uid, gid, procs)


def _finish(pid: int, uid_maps, gid_maps, uid: int, gid: int, procs: list) -> None:
    errors = []
    for name, maps, (child, r) in procs:
        code, err = _finish_helper(child, r)
        if code != 0:
            errors.append(f"{name} {_fmt(maps)} failed: {err or 'exit ' + str(code)}")
    if _only_self(uid_maps, uid):
        _write(f"/proc/{pid}/uid_map", uid_maps)
    if _only_self(gid_maps, gid):
        try:
            with open(f"/proc/{pid}/setgroups", "w") as f:
                f.write("deny")
        except OSError:
            pass
        _write(f"/proc/{pid}/gid_map", gid_maps)
    if errors:
        raise IdMapError("; ".join(errors) + " (check /etc/subuid and /etc/subgid)")


def mapped(maps, container_id: int) -> bool:
    return any(m.container_id <= container_id < m.container_id + m.size for m in maps)
