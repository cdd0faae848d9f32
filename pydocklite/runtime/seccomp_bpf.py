"""Classic BPF for seccomp: instruction encoding, a label assembler, and a reference interpreter.

The assembler takes a list of `Insn` and `Label` items in which every jump names its target
labels (no implicit fall-through), lays them out, and inserts `ja` trampolines wherever a
conditional jump would need an offset above 255 (cBPF's jt/jf are 8-bit; `ja` has 32 bits).
All jumps must go forward, as the kernel's checker demands.

`run(program, data)` interprets a program against a `seccomp_data` the way the kernel does;
the tests use it to check compiled filters syscall by syscall without installing anything.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Optional

# instruction classes / fields (linux/bpf_common.h)
BPF_LD, BPF_LDX, BPF_ALU, BPF_JMP, BPF_RET, BPF_MISC = 0x00, 0x01, 0x04, 0x05, 0x06, 0x07
BPF_W, BPF_ABS, BPF_K, BPF_X, BPF_A = 0x00, 0x20, 0x00, 0x08, 0x10
BPF_AND = 0x50
BPF_JA, BPF_JEQ, BPF_JGT, BPF_JGE, BPF_JSET = 0x00, 0x10, 0x20, 0x30, 0x40

# seccomp return values (linux/seccomp.h)
RET_KILL_PROCESS = 0x80000000
RET_KILL_THREAD = 0x00000000
RET_TRAP = 0x00030000
RET_ERRNO = 0x00050000
RET_USER_NOTIF = 0x7FC00000
RET_TRACE = 0x7FF00000
RET_LOG = 0x7FFC0000
RET_ALLOW = 0x7FFF0000
RET_DATA_MASK = 0x0000FFFF

# offsets in struct seccomp_data (little-endian 64-bit args: low word first)
OFF_NR, OFF_ARCH, OFF_IP = 0, 4, 8


def arg_lo(index: int) -> int:
    return 16 + 8 * index


def arg_hi(index: int) -> int:
    return 16 + 8 * index + 4


INSN = struct.Struct("=HBBI")
MAX_INSNS = 4096


@dataclass(frozen=True)
class Label:
    name: str


@dataclass(frozen=True)
class Insn:
    code: int
    k: int = 0
    jt: Optional[str] = None    # label names for conditional jumps / `ja`
    jf: Optional[str] = None


def ld_abs(offset: int) -> Insn:
    return Insn(BPF_LD | BPF_W | BPF_ABS, offset)


def alu_and(k: int) -> Insn:
    return Insn(BPF_ALU | BPF_AND | BPF_K, k & 0xFFFFFFFF)


def jump(op: int, k: int, jt: str, jf: str) -> Insn:
    return Insn(BPF_JMP | op | BPF_K, k & 0xFFFFFFFF, jt, jf)


def ja(target: str) -> Insn:
    return Insn(BPF_JMP | BPF_JA, 0, target, None)


def ret(k: int) -> Insn:
    return Insn(BPF_RET | BPF_K, k & 0xFFFFFFFF)


class AssembleError(ValueError):
    pass


def assemble(items: list) -> bytes:
    """Resolve labels (inserting long-jump trampolines as needed) and encode the program."""
    items = list(items)
    serial = 0
    while True:
        pos, labels = 0, {}
        for it in items:
            if isinstance(it, Label):
                if it.name in labels:
                    raise AssembleError(f"label {it.name!r} defined twice")
                labels[it.name] = pos
            else:
                pos += 1
        fixed = False
        pc = 0
        for i, it in enumerate(items):
            if isinstance(it, Label):
                continue
            if it.code & 0x07 == BPF_JMP and it.code & 0xF0 != BPF_JA:
                far = []
                for name in (it.jt, it.jf):
                    if name not in labels:
                        raise AssembleError(f"jump to undefined label {name!r}")
                    off = labels[name] - pc - 1
                    if off < 0:
                        raise AssembleError(f"backward jump to {name!r}")
                    far.append(off > 255)
                if any(far):
                    tramp, jt, jf = [], it.jt, it.jf
                    for which, name in (("t", it.jt), ("f", it.jf)):
                        if far[0 if which == "t" else 1]:
                            serial += 1
                            tl = f"__tramp{serial}"
                            tramp += [Label(tl), ja(name)]
                            if which == "t":
                                jt = tl
                            else:
                                jf = tl
                    items[i:i + 1] = [Insn(it.code, it.k, jt, jf)] + tramp
                    fixed = True
                    break
            pc += 1
        if not fixed:
            break
    out, pc = bytearray(), 0
    for it in items:
        if isinstance(it, Label):
            continue
        jt = jf = 0
        k = it.k
        if it.code & 0x07 == BPF_JMP:
            if it.code & 0xF0 == BPF_JA:
                k = labels[it.jt] - pc - 1
                if k < 0:
                    raise AssembleError(f"backward jump to {it.jt!r}")
            else:
                jt, jf = labels[it.jt] - pc - 1, labels[it.jf] - pc - 1
        out += INSN.pack(it.code, jt, jf, k)
        pc += 1
    if pc > MAX_INSNS:
        raise AssembleError(f"BPF program has {pc} instructions; the kernel allows {MAX_INSNS}")
    return bytes(out)


def seccomp_data(nr: int, arch: int, args=(), ip: int = 0) -> bytes:
    a = list(args) + [0] * (6 - len(args))
    return struct.pack("<IIQ6Q", nr & 0xFFFFFFFF, arch, ip, *[x & 0xFFFFFFFFFFFFFFFF for x in a[:6]])


def run(program: bytes, data: bytes) -> int:
    """Interpret `program` on `data` (a packed seccomp_data); return the seccomp return value."""
    n = len(program) // INSN.size
    insns = [INSN.unpack_from(program, i * INSN.size) for i in range(n)]
    a = x = 0
    pc = 0
    while pc < n:
        code, jt, jf, k = insns[pc]
        cls = code & 0x07
        if cls == BPF_LD:
            if code != BPF_LD | BPF_W | BPF_ABS or k % 4 or k + 4 > len(data):
                raise AssembleError(f"bad load at {pc}")
            a = struct.unpack_from("<I", data, k)[0]
        elif cls == BPF_ALU:
            if code & 0xF0 != BPF_AND:
                raise AssembleError(f"unsupported alu op at {pc}")
            a &= k if code & BPF_X == 0 else x
        elif cls == BPF_JMP:
            op = code & 0xF0
            if op == BPF_JA:
                pc += 1 + k
                continue
            b = k if code & BPF_X == 0 else x
            cond = {BPF_JEQ: a == b, BPF_JGT: a > b, BPF_JGE: a >= b, BPF_JSET: bool(a & b)}[op]
            pc += 1 + (jt if cond else jf)
            continue
        elif cls == BPF_RET:
            return k if code & BPF_A == 0 else a
        else:
            raise AssembleError(f"unsupported instruction class {cls} at {pc}")
        pc += 1
    raise AssembleError("program ran off its end")
