"""Seccomp filters from a container's init: install one, and a cache of compiled filters.

Compiling a profile (seccomp.py, pure Python) costs ~6 ms with its imports, in every
container start; the init only needs this small module when the compiled program is cached:
ROOT/.seccomp-cache/<key> (no container id starts with a dot), key = BLAKE2b of the profile
as given and the architecture, holding the filter flags (4 bytes) and the BPF program. The
cache is the runtime root's (0700, the caller's); a file that is not a whole program is
ignored and compiled anew.
"""
from __future__ import annotations

import errno
import os
import struct
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import Optional, Tuple

from .errors import RuntimeErr

try:        # CPython's built-in BLAKE2: hashlib would load OpenSSL (~3 ms) in the container's init
    from _blake2 import blake2b
except ImportError:   # pragma: no cover - another Python
    from hashlib import blake2b


class SeccompError(RuntimeErr):
    """A profile pydocklite cannot compile or a filter the kernel refused (message says which)."""


PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SECCOMP_SET_MODE_FILTER = 1
SYS_SECCOMP = {"x86_64": 317, "aarch64": 277, "i386": 354}
INSN_SIZE = 8                  # struct sock_filter: u16 code, u8 jt, u8 jf, u32 k
_FLAGS = struct.Struct("=I")


def native_arch() -> str:
    m = os.uname().machine
    return {"amd64": "x86_64", "arm64": "aarch64", "i686": "i386", "i586": "i386"}.get(m, m)


# --- the cache ----------------------------------------------------------------------------

def cache_key(profile: dict, arch: str) -> str:
    from .minijson import dumps
    return blake2b((arch + "\n" + dumps(profile)).encode(), digest_size=20).hexdigest()


def load_cached(cache_dir: str, key: str) -> Optional[Tuple[bytes, int]]:
    """(bpf, flags) from the cache, or None."""
    try:
        with open(os.path.join(cache_dir, key), "rb") as f:
            data = f.read()
    except OSError:
        return None
    bpf = data[_FLAGS.size:]
    if len(data) < _FLAGS.size + INSN_SIZE or len(bpf) % INSN_SIZE:
        return None
    return bpf, _FLAGS.unpack_from(data)[0]


def store_cached(cache_dir: str, key: str, bpf: bytes, flags: int) -> None:
    """Best effort: a cache that can't be written just stays cold."""
    tmp = os.path.join(cache_dir, f".{key}.{os.getpid()}")
    try:
        os.makedirs(cache_dir, mode=0o700, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(_FLAGS.pack(flags) + bpf)
        os.replace(tmp, os.path.join(cache_dir, key))
    except OSError:
        try:
            os.unlink(tmp)      # a full disk leaves no half-written file behind
        except OSError:
            pass


def compiled(profile: dict, cache_dir: str = "") -> Tuple[bytes, int]:
    """The (bpf, flags) of a profile for this machine, from the cache when it's there."""
    arch = native_arch()
    key = cache_key(profile, arch) if cache_dir else ""
    if key:
        hit = load_cached(cache_dir, key)
        if hit is not None:
            return hit
    from . import seccomp
    bpf, flags = seccomp.compile_filter(profile, arch), seccomp.filter_flags(profile)
    if key:
        store_cached(cache_dir, key, bpf, flags)
    return bpf, flags


# --- installing ---------------------------------------------------------------------------

def install(bpf: bytes, flags: int = 0, no_new_privs: Optional[bool] = None) -> None:
    """Install `bpf` as a seccomp filter on the calling thread (TSYNC in flags: all threads).

    no_new_privs: set PR_SET_NO_NEW_PRIVS first. Default: only when needed, i.e. when the
    caller lacks CAP_SYS_ADMIN (the kernel refuses unprivileged filters without it).
    """
    n = len(bpf) // INSN_SIZE
    if n == 0 or len(bpf) % INSN_SIZE:
        raise SeccompError(f"seccomp: program of {len(bpf)} bytes is not a list of instructions")
    from . import syscalls as sc
    if no_new_privs is None:
        no_new_privs = not _has_cap_sys_admin()
    if no_new_privs:
        try:
            sc.prctl(PR_SET_NO_NEW_PRIVS, 1)
        except OSError as e:
            raise SeccompError(f"seccomp: prctl(PR_SET_NO_NEW_PRIVS) failed: "
                               f"{os.strerror(e.errno)}") from None
    buf = sc.char_array(bpf)
    # struct sock_fprog {unsigned short len; struct sock_filter *filter}: the pointer is
    # aligned to its size
    ptr = struct.calcsize("P")
    prog = sc.char_array(struct.pack(f"=H{ptr - 2}x", n) +
                         sc.address_of(buf).to_bytes(ptr, sys.byteorder))
    nr = SYS_SECCOMP.get(native_arch())
    rc = -1
    e = errno.ENOSYS
    if nr is not None:
        rc = sc.syscall(nr, SECCOMP_SET_MODE_FILTER, flags, prog)
        e = sc.get_errno() if rc != 0 else 0
    if rc != 0 and e == errno.ENOSYS and flags == 0:
        try:
            sc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, sc.address_of(prog))
            rc = e = 0
        except OSError as err:
            rc, e = -1, err.errno
    if rc != 0:
        hint = (" (no_new_privs is off and the process lacks CAP_SYS_ADMIN)"
                if e == errno.EACCES else "")
        raise SeccompError(f"seccomp: installing a {n}-instruction filter failed: "
                           f"{os.strerror(e)}{hint}")


def _has_cap_sys_admin() -> bool:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) & (1 << 21))
    except OSError:
        pass
    return False
