"""pydocklite's default seccomp profile, with the semantics of Docker's default.

An allowlist: every syscall not named below fails with EPERM. The groups are ours (grouped by
what the calls do); the effect matches Docker's default: ordinary programs run, while the calls
that reach kernel state shared with the host (namespaces, mounts, keyrings, modules, kexec, BPF,
clocks, swap, reboot...) are refused unless the container holds the capability that would make
them legitimate. `clone` is allowed only without namespace flags, `clone3` answers ENOSYS so
libc falls back to `clone`, `personality` accepts only the harmless personas, and `socket`
refuses AF_VSOCK.
"""
from __future__ import annotations

import errno
import os

TYPE_CHECKING = False
if TYPE_CHECKING:     # annotations only: importing typing costs ~2 ms per start
    from typing import Iterable, Optional

FILES = """
open openat openat2 creat close close_range read write readv writev pread64 pwrite64 preadv
preadv2 pwritev pwritev2 lseek _llseek dup dup2 dup3 fcntl fcntl64 ioctl flock fsync fdatasync
sync syncfs sync_file_range fallocate fadvise64 fadvise64_64 readahead truncate truncate64
ftruncate ftruncate64 sendfile sendfile64 splice tee vmsplice copy_file_range
"""
METADATA = """
stat stat64 lstat lstat64 fstat fstat64 fstatat64 newfstatat statx statfs statfs64 fstatfs
fstatfs64 access faccessat faccessat2 chmod fchmod fchmodat fchmodat2 chown chown32 fchown
fchown32 lchown lchown32 fchownat utime utimes utimensat utimensat_time64 futimesat umask
getxattr lgetxattr fgetxattr setxattr lsetxattr fsetxattr listxattr llistxattr flistxattr
removexattr lremovexattr fremovexattr
"""
DIRECTORIES = """
getcwd chdir fchdir mkdir mkdirat rmdir rename renameat renameat2 link linkat symlink symlinkat
unlink unlinkat readlink readlinkat getdents getdents64 readdir mknod mknodat
"""
EVENTS = """
select _newselect pselect6 pselect6_time64 poll ppoll ppoll_time64 epoll_create epoll_create1
epoll_ctl epoll_wait epoll_pwait epoll_pwait2 eventfd eventfd2 signalfd signalfd4
timerfd_create timerfd_settime timerfd_settime64 timerfd_gettime timerfd_gettime64
inotify_init inotify_init1 inotify_add_watch inotify_rm_watch fanotify_mark
io_setup io_destroy io_submit io_cancel io_getevents io_pgetevents io_pgetevents_time64
"""
MEMORY = """
brk mmap mmap2 munmap mremap mprotect madvise mincore msync mlock mlock2 munlock mlockall
munlockall remap_file_pages memfd_create membarrier pkey_alloc pkey_free pkey_mprotect
process_mrelease mseal map_shadow_stack cachestat
"""
PROCESSES = """
fork vfork execve execveat exit exit_group wait4 waitid waitpid getpid getppid gettid getpgid
setpgid getpgrp getsid setsid kill tkill tgkill pidfd_open pidfd_send_signal set_tid_address
set_robust_list get_robust_list rseq restart_syscall prctl arch_prctl modify_ldt set_thread_area
get_thread_area capget capset seccomp landlock_create_ruleset landlock_add_rule
landlock_restrict_self getrusage times getrlimit ugetrlimit setrlimit prlimit64 getpriority
setpriority nice ioprio_get ioprio_set uname olduname oldolduname sysinfo getrandom
lsm_get_self_attr lsm_list_modules
"""
IDENTITY = """
getuid getuid32 geteuid geteuid32 getgid getgid32 getegid getegid32 getresuid getresuid32
getresgid getresgid32 getgroups getgroups32 setuid setuid32 setgid setgid32 setreuid setreuid32
setregid setregid32 setresuid setresuid32 setresgid setresgid32 setfsuid setfsuid32 setfsgid
setfsgid32 setgroups setgroups32
"""
SCHEDULING = """
sched_yield sched_getaffinity sched_setaffinity sched_getparam sched_setparam
sched_getscheduler sched_setscheduler sched_get_priority_max sched_get_priority_min
sched_rr_get_interval sched_rr_get_interval_time64 sched_getattr sched_setattr getcpu
"""
SIGNALS = """
rt_sigaction rt_sigprocmask rt_sigreturn rt_sigsuspend rt_sigpending rt_sigtimedwait
rt_sigtimedwait_time64 rt_sigqueueinfo rt_tgsigqueueinfo sigaction signal sigprocmask sigreturn
sigsuspend sigpending sigaltstack sgetmask ssetmask pause alarm
"""
TIME = """
time gettimeofday clock_gettime clock_gettime64 clock_getres clock_getres_time64 clock_nanosleep
clock_nanosleep_time64 nanosleep getitimer setitimer timer_create timer_delete timer_getoverrun
timer_gettime timer_gettime64 timer_settime timer_settime64 adjtimex
futex futex_time64 futex_waitv futex_wake futex_wait futex_requeue
"""
IPC = """
ipc msgget msgsnd msgrcv msgctl semget semop semtimedop semtimedop_time64 semctl shmget shmat
shmdt shmctl mq_open mq_unlink mq_timedsend mq_timedsend_time64 mq_timedreceive
mq_timedreceive_time64 mq_notify mq_getsetattr pipe pipe2
"""
NETWORK = """
socketpair socketcall bind listen accept accept4 connect getsockname getpeername getsockopt
setsockopt shutdown sendto recvfrom sendmsg recvmsg sendmmsg recvmmsg recvmmsg_time64
"""

# Allowed only when the container keeps the capability that legitimises them.
BY_CAPABILITY = {
    "CAP_SYS_ADMIN": """bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick
        lookup_dcookie mount mount_setattr move_mount name_to_handle_at open_tree perf_event_open
        quotactl quotactl_fd setdomainname sethostname setns syslog umount umount2 unshare""",
    "CAP_SYS_BOOT": "reboot",
    "CAP_SYS_CHROOT": "chroot",
    "CAP_SYS_MODULE": "delete_module init_module finit_module",
    "CAP_SYS_PACCT": "acct",
    "CAP_SYS_PTRACE": "kcmp pidfd_getfd process_madvise process_vm_readv process_vm_writev ptrace",
    "CAP_SYS_RAWIO": "iopl ioperm",
    "CAP_SYS_TIME": "settimeofday stime clock_settime clock_settime64 clock_adjtime clock_adjtime64",
    "CAP_SYS_TTY_CONFIG": "vhangup",
    "CAP_SYS_NICE": "get_mempolicy mbind set_mempolicy set_mempolicy_home_node move_pages",
    "CAP_SYSLOG": "syslog",
    "CAP_BPF": "bpf",
    "CAP_PERFMON": "perf_event_open",
    "CAP_DAC_READ_SEARCH": "open_by_handle_at",
}
# Tracing calls are safe with seccomp from Linux 4.8 on (seccomp re-checks after the tracer).
SAFE_FROM_4_8 = "ptrace process_vm_readv process_vm_writev"

# Docker's default capability set (what a container gets without --cap-add).
DEFAULT_CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
)

NAMESPACE_CLONE_FLAGS = 0x7E020000   # NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET
AF_VSOCK = 40
HARMLESS_PERSONAS = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)  # LINUX, LINUX32, UNAME26, both, query

ARCHITECTURES = {
    "x86_64": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "aarch64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
}


def _names(text: str) -> list:
    return text.split()


def allowed_unconditionally() -> list:
    out = []
    for group in (FILES, METADATA, DIRECTORIES, EVENTS, MEMORY, PROCESSES, IDENTITY, SCHEDULING,
                  SIGNALS, TIME, IPC, NETWORK):
        out += _names(group)
    return out


def _kernel_at_least(release: str, major: int, minor: int) -> bool:
    try:
        parts = release.split("-")[0].split(".")
        return (int(parts[0]), int(parts[1])) >= (major, minor)
    except (ValueError, IndexError):
        return True


def _norm_cap(c: str) -> str:
    c = c.upper()
    return c if c.startswith("CAP_") else "CAP_" + c


def default_profile(capabilities: Optional[Iterable[str]] = None, kernel: Optional[str] = None,
                    arch: Optional[str] = None) -> dict:
    """The default profile as an OCI `linux.seccomp` object.

    capabilities: the container's bounding set (default: Docker's default set); syscalls tied to
    a capability in BY_CAPABILITY are allowed only when it is present. kernel: a release string
    (default: this kernel's). arch: "x86_64"/"aarch64" (default: this machine's).
    """
    caps = {_norm_cap(c) for c in (DEFAULT_CAPABILITIES if capabilities is None else capabilities)}
    kernel = kernel if kernel is not None else os.uname().release
    arch = arch or os.uname().machine
    allow = allowed_unconditionally()
    if _kernel_at_least(kernel, 4, 8):
        allow += _names(SAFE_FROM_4_8)
    for cap, names in BY_CAPABILITY.items():
        if cap in caps:
            allow += _names(names)
    seen, ordered = set(), []
    for n in allow:
        if n not in seen:
            seen.add(n)
            ordered.append(n)
    syscalls = [{"names": [n for n in ordered if n not in ("clone", "clone3")],
                 "action": "SCMP_ACT_ALLOW"}]
    syscalls.append({"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                     "args": [{"index": 0, "value": p, "op": "SCMP_CMP_EQ"}
                              for p in HARMLESS_PERSONAS]})   # same index repeated: any of them
    syscalls.append({"names": ["socket"], "action": "SCMP_ACT_ALLOW",
                     "args": [{"index": 0, "value": AF_VSOCK, "op": "SCMP_CMP_NE"}]})
    if "CAP_SYS_ADMIN" in caps:
        syscalls.append({"names": ["clone", "clone3"], "action": "SCMP_ACT_ALLOW"})
    else:
        syscalls.append({"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                         "args": [{"index": 0, "value": NAMESPACE_CLONE_FLAGS, "valueTwo": 0,
                                   "op": "SCMP_CMP_MASKED_EQ"}]})
        syscalls.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO",
                         "errnoRet": errno.ENOSYS})
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": errno.EPERM,
        "architectures": list(ARCHITECTURES.get(arch, [])),
        "syscalls": syscalls,
    }
