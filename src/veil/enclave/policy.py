"""The sandbox's kernel policy: a default-kill seccomp allow-list and a Landlock ruleset.

Seccomp (libseccomp through ``pyseccomp``): every system call not listed kills the whole
process. Not listed, so fatal: exec, fork and every clone that is not a thread, ptrace,
io_uring, openat2, mount, kill, process_vm_*, bpf, perf_event_open, userfaultfd, connect,
sendto. ``socket`` and ``socketpair`` fail with EACCES instead of killing (the C library
probes nscd's socket on user lookups and must fall back), so no socket ever exists to
connect or send with. ``clone3`` returns ENOSYS (its flags sit in memory the filter cannot read), so
the C library falls back to ``clone``, whose flags the filter checks.

Landlock (Linux 5.13+, ABI through raw system calls): reads anywhere the sandbox can see,
writes only under the scratch folder. Without Landlock, bubblewrap's read-only binds and
the read-only /dev keep writes inside the tmpfs scratch anyway; ``landlock`` says which.
"""

from __future__ import annotations

import ctypes
import errno
import os

# What CPython, NumPy and PyTorch's CPU kernels need to train once imported.
ALLOWED = (
    "read", "write", "readv", "writev", "pread64", "pwrite64", "lseek", "close", "openat",
    "newfstatat", "fstat", "statx", "stat", "lstat", "access", "faccessat", "faccessat2",
    "getdents64", "getcwd", "readlink", "readlinkat", "fcntl", "dup", "dup2", "dup3", "ioctl",
    "mmap", "munmap", "mprotect", "mremap", "madvise", "brk", "msync", "mlock", "munlock",
    "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack", "tgkill", "gettid",
    "getpid", "getppid", "getuid", "geteuid", "getgid", "getegid", "getgroups", "uname",
    "sched_getaffinity", "sched_setaffinity", "sched_yield", "sched_getparam",
    "sched_getscheduler", "sched_get_priority_max", "sched_get_priority_min",
    "getpriority", "futex", "futex_waitv", "set_robust_list", "get_robust_list", "rseq",
    "set_tid_address", "arch_prctl", "prctl", "clock_gettime", "clock_getres",
    "clock_nanosleep", "nanosleep", "gettimeofday", "time", "getrandom", "prlimit64",
    "getrlimit", "getrusage", "sysinfo", "times", "exit", "exit_group", "poll", "ppoll",
    "select", "pselect6", "pipe2", "eventfd2", "epoll_create1", "epoll_ctl", "epoll_wait",
    "epoll_pwait", "membarrier", "mkdir", "mkdirat", "unlink", "unlinkat", "rename",
    "renameat", "renameat2", "ftruncate", "fsync", "fdatasync", "statfs", "fstatfs",
    "fadvise64", "getxattr", "lgetxattr", "fgetxattr", "memfd_create", "umask", "mbind",
    "get_mempolicy", "set_mempolicy",
)  # fmt: skip
CLONE_THREAD = 0x00010000


def seccomp() -> None:
    """Install the allow-list for this process and its threads (irreversible)."""
    import pyseccomp as sc

    f = sc.SyscallFilter(sc.KILL_PROCESS)
    for name in ALLOWED:
        try:
            f.add_rule(sc.ALLOW, name)
        except (RuntimeError, ValueError, OSError):
            continue  # not a system call on this architecture
    f.add_rule(sc.ALLOW, "clone", sc.Arg(0, sc.MASKED_EQ, CLONE_THREAD, CLONE_THREAD))
    f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    for name in ("socket", "socketpair"):  # refused, not fatal: the C library's user lookups
        f.add_rule(sc.ERRNO(errno.EACCES), name)  # probe nscd's socket and fall back
    f.load()


# Landlock: raw system calls (x86-64 and arm64 share these numbers).
_CREATE, _ADD_RULE, _RESTRICT = 444, 445, 446
_PATH_BENEATH = 1
_FS_READ = (1 << 0) | (1 << 2) | (1 << 3)  # execute, read file, read dir
_FS_WRITE_ALL = (1 << 14) - 1  # every filesystem right of ABI 1


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def landlock(writable: str) -> bool:
    """Allow writes only beneath ``writable``; False where the kernel has no Landlock."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    attr = _RulesetAttr(_FS_WRITE_ALL)
    ruleset = libc.syscall(_CREATE, ctypes.byref(attr), ctypes.sizeof(attr), 0)
    if ruleset < 0:
        return False
    try:
        for path, access in (("/", _FS_READ), (writable, _FS_WRITE_ALL)):
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            try:
                rule = _PathBeneath(access, fd)
                if libc.syscall(_ADD_RULE, ruleset, _PATH_BENEATH, ctypes.byref(rule), 0):
                    return False
            finally:
                os.close(fd)
        if libc.prctl(38, 1, 0, 0, 0):  # PR_SET_NO_NEW_PRIVS
            return False
        return libc.syscall(_RESTRICT, ruleset, 0) == 0
    finally:
        os.close(ruleset)
