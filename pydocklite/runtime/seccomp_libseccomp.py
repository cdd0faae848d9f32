"""Optional second compiler: the same OCI profile through libseccomp (ctypes), when installed.

pydocklite's own compiler (seccomp.compile_filter) is what the runtime uses; this one exists
to cross-check it (the tests compare both programs syscall by syscall) and for hosts that
prefer libseccomp's output. Rules are fed exactly as seccomp.parse_rules() reads the profile.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
from typing import Optional

from .seccomp import AUDIT_ARCH, SCMP_ARCH, SeccompError, native_arch, parse_rules

OP_CODES = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
            "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}
ARCH_TOKENS = dict(AUDIT_ARCH, x32=0x4000003E)


class _ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


def _lib() -> Optional[ctypes.CDLL]:
    name = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
    try:
        lib = ctypes.CDLL(name, use_errno=True)
    except OSError:
        return None
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    lib.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                           ctypes.c_uint, ctypes.POINTER(_ArgCmp)]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    return lib


def available() -> bool:
    return _lib() is not None


def compile_filter(profile: dict, arch: Optional[str] = None) -> bytes:
    """Compile with libseccomp; raises SeccompError when it is absent or refuses a rule."""
    lib = _lib()
    if lib is None:
        raise SeccompError("libseccomp is not installed (apt-get install libseccomp2)")
    arch = arch or native_arch()
    if arch != native_arch():
        raise SeccompError(f"libseccomp compiles for the native arch only, not {arch!r}")
    default_ret, rules = parse_rules(profile)
    ctx = lib.seccomp_init(default_ret)
    if not ctx:
        raise SeccompError("seccomp_init failed")
    try:
        for a in profile.get("architectures") or []:
            name = SCMP_ARCH.get(a)
            if name and name != arch and name in ARCH_TOKENS:
                rc = lib.seccomp_arch_add(ctx, ARCH_TOKENS[name])
                if rc not in (0, -17):     # -EEXIST: already there
                    raise SeccompError(f"libseccomp: cannot add architecture {a}: {rc}")
        per_name: dict = {}
        for name, rule in rules:
            per_name.setdefault(name, []).append(rule)
        for name, rs in per_name.items():
            nr = lib.seccomp_syscall_resolve_name(name.encode())
            if nr == -1:    # __NR_SCMP_ERROR: unknown here, ignored like runc does
                continue
            uncond = [r for r in rs if not r.conds]
            fallback = uncond[0].ret if uncond else default_ret
            todo = [r for r in rs if r.conds and r.ret != fallback]
            if fallback != default_ret:
                todo.append(uncond[0])
            for r in todo:
                arr = (_ArgCmp * max(1, len(r.conds)))(
                    *[_ArgCmp(c.index, OP_CODES[c.op], c.value, c.value_two) for c in r.conds])
                rc = lib.seccomp_rule_add_array(ctx, r.ret, nr, len(r.conds), arr)
                if rc != 0:
                    raise SeccompError(f"libseccomp refused the rule for {name}: "
                                       f"{os.strerror(-rc) if rc < 0 else rc}")
        fd = os.memfd_create("pdl-seccomp")
        try:
            rc = lib.seccomp_export_bpf(ctx, fd)
            if rc != 0:
                raise SeccompError(f"seccomp_export_bpf failed: {rc}")
            os.lseek(fd, 0, os.SEEK_SET)
            chunks = []
            while True:
                c = os.read(fd, 65536)
                if not c:
                    break
                chunks.append(c)
            return b"".join(chunks)
        finally:
            os.close(fd)
    finally:
        lib.seccomp_release(ctx)
