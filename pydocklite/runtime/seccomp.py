"""Seccomp: OCI `linux.seccomp` -> classic BPF program (pure Python) -> installed filter.

    bpf = compile_filter(spec["linux"].get("seccomp") or default_profile(caps))
    install(bpf)          # in the container's init, last step before execve

The program: check `seccomp_data.arch` (one block per supported architecture the profile names,
the native one always; any other arch is killed), refuse x32 syscalls inside the x86_64 block,
then a binary search over syscall-number ranges (consecutive numbers sharing an outcome form one
range) leading to `ret ACTION` or to the syscall's argument rules. Arguments are 64-bit and
compared as two 32-bit words. Semantics follow runc + libseccomp: rules with arguments are
tried in profile order, then the syscall's unconditional action, then the default action; the
conditions of one rule are ANDed, except that a rule naming the same argument twice is split
into one rule per condition (ORed), as runc does.
"""
from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import Optional

from . import seccomp_bpf as B
from .seccomp_default import default_profile  # noqa: F401  (re-exported: the public API)
# installing lives apart (a container's init loads only that): re-exported, the public API
from .seccomp_load import SeccompError, install, native_arch  # noqa: F401
from .syscall_table import TABLES


AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7, "i386": 0x40000003}
ARCH_BITS = {"x86_64": 64, "aarch64": 64, "i386": 32}
SCMP_ARCH = {"SCMP_ARCH_X86_64": "x86_64", "SCMP_ARCH_AMD64": "x86_64", "SCMP_ARCH_X86": "i386",
             "SCMP_ARCH_AARCH64": "aarch64", "SCMP_ARCH_ARM64": "aarch64", "SCMP_ARCH_X32": "x32"}
X32_SYSCALL_BIT = 0x40000000
OPS = ("SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT",
       "SCMP_CMP_MASKED_EQ")
FLAGS = {"SECCOMP_FILTER_FLAG_TSYNC": 1, "SECCOMP_FILTER_FLAG_LOG": 2,
         "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4}
U64 = 0xFFFFFFFFFFFFFFFF


@dataclass(frozen=True)
class ArgCond:
    index: int
    op: str
    value: int
    value_two: int = 0


@dataclass(frozen=True)
class Rule:
    ret: int                 # seccomp return value
    conds: tuple             # of ArgCond, ANDed; empty = unconditional


def action_value(action: str, errno_ret: Optional[int], what: str) -> int:
    if action in ("SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD"):
        return B.RET_KILL_THREAD
    if action == "SCMP_ACT_KILL_PROCESS":
        return B.RET_KILL_PROCESS
    if action == "SCMP_ACT_TRAP":
        return B.RET_TRAP
    if action == "SCMP_ACT_ERRNO":
        return B.RET_ERRNO | ((errno.EPERM if errno_ret is None else int(errno_ret)) & 0xFFFF)
    if action == "SCMP_ACT_TRACE":
        return B.RET_TRACE | ((errno_ret or 0) & 0xFFFF)
    if action == "SCMP_ACT_ALLOW":
        return B.RET_ALLOW
    if action == "SCMP_ACT_LOG":
        return B.RET_LOG
    if action == "SCMP_ACT_NOTIFY":
        raise SeccompError(f"seccomp {what}: SCMP_ACT_NOTIFY needs a listener (listenerPath), "
                           "which pydocklite does not support: use another action")
    raise SeccompError(f"seccomp {what}: unknown action {action!r}")


def _u64(v, what: str) -> int:
    if not isinstance(v, int) or isinstance(v, bool):
        raise SeccompError(f"seccomp {what}: value {v!r} is not an integer")
    return v & U64


def parse_rules(profile: dict) -> tuple:
    """-> (default_ret, [(syscall name, Rule), ...] in profile order). Validates the profile."""
    if not isinstance(profile, dict) or "defaultAction" not in profile:
        raise SeccompError("seccomp profile: 'defaultAction' is required")
    default_ret = action_value(profile["defaultAction"], profile.get("defaultErrnoRet"),
                               "defaultAction")
    out = []
    for i, sc in enumerate(profile.get("syscalls") or []):
        what = f"syscalls[{i}]"
        names = sc.get("names") or ([sc["name"]] if sc.get("name") else [])
        if not names or not all(isinstance(n, str) for n in names):
            raise SeccompError(f"seccomp {what}: 'names' must be a non-empty list of strings")
        ret = action_value(sc.get("action", ""), sc.get("errnoRet"), what)
        conds = []
        for a in sc.get("args") or []:
            idx = a.get("index")
            if not isinstance(idx, int) or not 0 <= idx <= 5:
                raise SeccompError(f"seccomp {what}: argument index {idx!r} is not 0..5")
            if a.get("op") not in OPS:
                raise SeccompError(f"seccomp {what}: unknown operator {a.get('op')!r} "
                                   f"(one of {', '.join(OPS)})")
            conds.append(ArgCond(idx, a["op"], _u64(a.get("value", 0), what),
                                 _u64(a.get("valueTwo", 0), what)))
        indexes = [c.index for c in conds]
        if len(set(indexes)) != len(indexes):
            groups = [(c,) for c in conds]      # same argument twice: one rule per condition
        else:
            groups = [tuple(conds)]
        for n in names:
            for g in groups:
                out.append((n, Rule(ret, g)))
    return default_ret, out


def filter_flags(profile: dict) -> int:
    flags = 0
    for f in profile.get("flags") or []:
        if f not in FLAGS:
            raise SeccompError(f"seccomp flags: unknown flag {f!r} (known: {', '.join(FLAGS)})")
        flags |= FLAGS[f]
    return flags


def _cond_insns(c: ArgCond, bits: int, ok: str, fail: str, lbl) -> list:
    """Instructions testing one 64-bit (or 32-bit) argument condition."""
    lo_off, hi_off = B.arg_lo(c.index), B.arg_hi(c.index)
    v = c.value
    vhi, vlo = v >> 32, v & 0xFFFFFFFF
    J = B.jump
    if c.op == "SCMP_CMP_MASKED_EQ":
        m, d = c.value, c.value_two
        lo = [B.ld_abs(lo_off), B.alu_and(m & 0xFFFFFFFF), J(B.BPF_JEQ, d & 0xFFFFFFFF, ok, fail)]
        if bits == 32:
            return lo
        l1 = lbl()
        return [B.ld_abs(hi_off), B.alu_and(m >> 32), J(B.BPF_JEQ, d >> 32, l1, fail),
                B.Label(l1)] + lo
    # (op on low word, low-word pass/fail swapped?)  a OP v  with unsigned compare
    table = {"SCMP_CMP_EQ": (B.BPF_JEQ, False), "SCMP_CMP_NE": (B.BPF_JEQ, True),
             "SCMP_CMP_GT": (B.BPF_JGT, False), "SCMP_CMP_LE": (B.BPF_JGT, True),
             "SCMP_CMP_GE": (B.BPF_JGE, False), "SCMP_CMP_LT": (B.BPF_JGE, True)}
    op, negate = table[c.op]
    t, f = (fail, ok) if negate else (ok, fail)     # outcome when the base test is true / false
    lo = [B.ld_abs(lo_off), J(op, vlo, t, f)]
    if bits == 32:
        return lo
    l1 = lbl()
    if op == B.BPF_JEQ:
        return [B.ld_abs(hi_off), J(B.BPF_JEQ, vhi, l1, f), B.Label(l1)] + lo
    l2 = lbl()      # ordered compare: high word decides unless equal
    return [B.ld_abs(hi_off), J(B.BPF_JGT, vhi, t, l1), B.Label(l1),
            J(B.BPF_JEQ, vhi, l2, f), B.Label(l2)] + lo


def _arch_block(arch: str, rules: list, default_ret: int, x32_ret: Optional[int], lbl,
                ret_label) -> list:
    """The instructions for one architecture, starting at label f'arch_{arch}'."""
    table = TABLES[arch]
    per_nr: dict = {}
    for name, rule in rules:
        nr = table.get(name)
        if nr is not None:
            per_nr.setdefault(nr, []).append(rule)
    targets, blocks = {}, []
    for nr in sorted(per_nr):
        conditional = [r for r in per_nr[nr] if r.conds]
        uncond = [r for r in per_nr[nr] if not r.conds]
        fallback = uncond[0].ret if uncond else default_ret
        conditional = [r for r in conditional if r.ret != fallback]
        if not conditional:
            if fallback != default_ret:
                targets[nr] = ret_label(fallback)
            continue
        start = f"{arch}_nr{nr}"
        targets[nr] = start
        body = [B.Label(start)]
        for r in conditional:
            nxt = lbl()
            ok = ret_label(r.ret)
            chain = [lbl() for _ in r.conds[1:]] + [ok]
            for c, passed in zip(r.conds, chain):
                body += _cond_insns(c, ARCH_BITS[arch], passed, nxt, lbl)
                if passed != ok:
                    body.append(B.Label(passed))
            body.append(B.Label(nxt))
        body.append(B.ja(ret_label(fallback)))
        blocks += body
    # ranges of consecutive syscall numbers with the same target
    dflt = ret_label(default_ret)
    ranges = []   # (start, target)
    top = max(list(table.values()) + [0]) + 1
    for nr in range(top + 1):
        t = targets.get(nr, dflt)
        if not ranges or ranges[-1][1] != t:
            ranges.append((nr, t))
    items = [B.Label(f"arch_{arch}"), B.ld_abs(B.OFF_NR)]
    tree = f"{arch}_n0_{len(ranges)}"
    if arch == "x86_64":
        items.append(B.jump(B.BPF_JGE, X32_SYSCALL_BIT, ret_label(x32_ret), tree))
    else:
        items.append(B.ja(tree))

    def node(i: int, j: int) -> str:
        return ranges[i][1] if j - i == 1 else f"{arch}_n{i}_{j}"

    def emit(i: int, j: int) -> None:
        if j - i == 1:
            return
        mid = (i + j) // 2
        items.extend([B.Label(node(i, j)),
                      B.jump(B.BPF_JGE, ranges[mid][0], node(mid, j), node(i, mid))])
        emit(i, mid)
        emit(mid, j)

    if len(ranges) == 1:
        items += [B.Label(tree), B.ja(ranges[0][1])]
    else:
        emit(0, len(ranges))
    return items + blocks


def compile_filter(profile: dict, arch: Optional[str] = None) -> bytes:
    """Compile an OCI linux.seccomp object into a seccomp BPF program (bytes of sock_filter)."""
    arch = arch or native_arch()
    if arch not in TABLES:
        raise SeccompError(f"seccomp: no syscall table for architecture {arch!r} "
                           f"(known: {', '.join(sorted(TABLES))})")
    default_ret, rules = parse_rules(profile)
    arches = [arch]
    wanted = {SCMP_ARCH.get(a) for a in profile.get("architectures") or []}
    for a in ("x86_64", "aarch64", "i386"):
        if a in wanted and a not in arches:
            arches.append(a)
    permissive = (default_ret & 0xFFFF0000) in (B.RET_ALLOW, B.RET_LOG, B.RET_TRACE)
    # x32 has no table here: never let it reach a permissive default (a classic bypass).
    x32_ret = B.RET_KILL_PROCESS if permissive or "x32" not in wanted else default_ret
    counter = [0]

    def lbl() -> str:
        counter[0] += 1
        return f"L{counter[0]}"

    rets: dict = {}

    def ret_label(value: int) -> str:
        return rets.setdefault(value, f"ret_{value:08x}")

    items = [B.ld_abs(B.OFF_ARCH)]
    for i, a in enumerate(arches):
        nxt = f"archcheck_{i + 1}"
        items += [B.jump(B.BPF_JEQ, AUDIT_ARCH[a], f"arch_{a}", nxt), B.Label(nxt)]
    items.append(B.ret(B.RET_KILL_PROCESS))
    for a in arches:
        items += _arch_block(a, rules, default_ret, x32_ret, lbl, ret_label)
    for value, name in rets.items():
        items += [B.Label(name), B.ret(value)]
    return B.assemble(items)


