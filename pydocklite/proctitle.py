"""Rename this process as `ps` shows it (its /proc/PID/cmdline and comm).

A shim is forked from the CLI instead of started as a new interpreter (that costs ~50 ms),
so it inherits the CLI's command line; renaming it keeps `ps aux | grep NAME` finding it.

The kernel shows cmdline from the process's own argument area (arg_start..arg_end in
/proc/self/stat), and reads on into the environment area when the last byte of the
arguments is no longer a NUL. So: move libc's environment to the heap (Python keeps its own
copy in os.environ), then write the title over the arguments, spilling into the old
environment strings when it is longer. No privileges needed; nothing else reads that memory.
"""
from __future__ import annotations

import os

PR_SET_NAME = 15


def _areas():
    """(arg_start, arg_end, env_start, env_end) of this process, or None."""
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        # fields[0] is field 3 ("state"); arg_start..env_end are fields 48..51
        return tuple(int(x) for x in fields[45:49])
    except (OSError, ValueError, IndexError):
        return None


def set_title(title: str, comm: str = "") -> bool:
    """Make `ps` show `title` (cut to the space there is). False when not possible."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if comm:
        libc.prctl(PR_SET_NAME, ctypes.c_char_p(comm.encode()[:15]), 0, 0, 0)
    areas = _areas()
    if areas is None or len(areas) != 4 or not areas[0]:
        return False
    arg_start, arg_end, env_start, env_end = areas
    end = arg_end
    if env_start == arg_end and env_end > env_start and _env_to_heap(libc):
        end = env_end
    room = end - arg_start
    if room < 2:
        return False
    data = title.encode(errors="replace")[:room - 1]
    buf = data + b"\0" * (room - len(data))
    # a title longer than the old arguments leaves their last byte non-NUL: the kernel then
    # reads it on into the environment area, up to its NUL
    ctypes.memmove(arg_start, buf, room)
    return True


def _env_to_heap(libc) -> bool:
    """Point libc's environ at heap copies, so the original strings may be overwritten."""
    try:
        items = [(os.fsencode(k), os.fsencode(v)) for k, v in os.environ.items()]
    except (TypeError, ValueError):
        return False
    if libc.clearenv() != 0:
        return False
    for k, v in items:
        if b"=" in k or not k:
            continue
        libc.setenv(k, v, 1)
    return True
