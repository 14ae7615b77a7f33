"""The seccomp filter of the ``run_python`` sandbox: the system calls a Python program never needs, refused.

bubblewrap installs it (``--seccomp FD``) as a compiled classic BPF program, an array of ``struct sock_filter``
(8 bytes each: ``u16 code, u8 jt, u8 jf, u32 k``), right before it runs the sandbox's interpreter; it holds for
every process of the sandbox and cannot be removed. The program:

1. checks the architecture (``seccomp_data.arch``): a system call made through another ABI (the 32-bit
   ``int 0x80`` on x86_64 has its own numbers) kills the process, as does an x32 call (numbers from
   ``0x40000000``) on x86_64;
2. refuses with ``EPERM`` the calls in `DENIED`: inspecting or driving other processes (``ptrace``,
   ``process_vm_*``, ``pidfd_getfd``...), the kernel keyring, io_uring (its operations bypass this filter),
   namespaces and mounts, BPF, perf, ``userfaultfd``, and administration no program here has a use for;
3. refuses ``clone`` with a namespace flag, ``socket`` outside ``AF_UNIX``/``AF_INET``/``AF_INET6``/``AF_NETLINK``
   (no ``AF_VSOCK`` to a hypervisor, no ``AF_ALG``...), and the ``TIOCSTI``/``TIOCLINUX`` ioctls;
4. answers ``clone3`` with ``ENOSYS``: its flags sit in memory a filter cannot read, so the C library falls back
   to ``clone``, whose flags it can;
5. allows everything else.

No libseccomp: the filter is small enough to assemble here, and the system call numbers of both supported
architectures are below (checked against the kernel headers by ``tests/test_sandbox.py``).
"""

from __future__ import annotations

import contextlib
import errno
import platform
import struct
from collections.abc import Iterator

_DENIED_TABLE = """
# name                     x86_64  aarch64   (refused with EPERM; "-": the architecture has no such call)
# other processes: read or drive them, steal their file descriptors
ptrace                        101      117
process_vm_readv              310      270
process_vm_writev             311      271
process_madvise               440      440
pidfd_getfd                   438      438
kcmp                          312      272
# the kernel keyring
keyctl                        250      219
add_key                       248      217
request_key                   249      218
# io_uring: its submissions are not system calls, so this filter would not see them
io_uring_setup                425      425
io_uring_enter                426      426
io_uring_register             427      427
# namespaces and mounts
unshare                       272       97
setns                         308      268
mount                         165       40
umount2                       166       39
pivot_root                    155       41
chroot                        161       51
open_tree                     428      428
open_tree_attr                467      467
move_mount                    429      429
fsopen                        430      430
fsconfig                      431      431
fsmount                       432      432
fspick                        433      433
mount_setattr                 442      442
# kernel attack surface a program has no use for
bpf                           321      280
perf_event_open               298      241
userfaultfd                   323      282
fanotify_init                 300      262
open_by_handle_at             304      265
name_to_handle_at             303      264
lookup_dcookie                212       18
personality                   135       92
uselib                        134        -
modify_ldt                    154        -
iopl                          172        -
ioperm                        173        -
_sysctl                       156        -
nfsservctl                    180       42
mbind                         237      235
set_mempolicy                 238      237
set_mempolicy_home_node       450      450
migrate_pages                 256      238
move_pages                    279      239
# administration
syslog                        103      116
acct                          163       89
quotactl                      179       60
quotactl_fd                   443      443
swapon                        167      224
swapoff                       168      225
reboot                        169      142
kexec_load                    246      104
kexec_file_load               320      294
init_module                   175      105
finit_module                  313      273
delete_module                 176      106
settimeofday                  164      170
clock_settime                 227      112
clock_adjtime                 305      266
adjtimex                      159      171
vhangup                       153       58
sethostname                   170      161
setdomainname                 171      162
"""

_CHECKED_TABLE = """
# name                     x86_64  aarch64   (arguments checked, see below)
clone                          56      220
clone3                        435      435
socket                         41      198
ioctl                          16       29
"""


def _parse(table: str) -> dict[str, dict[str, int]]:
    numbers: dict[str, dict[str, int]] = {"x86_64": {}, "aarch64": {}}
    for line in table.splitlines():
        if line and not line.startswith("#"):
            name, *per_machine = line.split()
            for machine, number in zip(numbers, per_machine, strict=True):
                if number != "-":
                    numbers[machine][name] = int(number)
    return numbers


DENIED: tuple[str, ...] = tuple(
    line.split()[0] for line in _DENIED_TABLE.splitlines() if line and not line.startswith("#")
)
"""Refused with ``EPERM``: other processes (read them, drive them, steal their file descriptors), the kernel
keyring, io_uring (its submissions are not system calls, so a filter would not see them), namespaces and
mounts, kernel attack surface a program has no use for, administration. A call an architecture lacks is skipped."""

SYSCALLS: dict[str, dict[str, int]] = _parse(_DENIED_TABLE + _CHECKED_TABLE)
"""System call numbers (``asm/unistd_64.h`` on x86_64, ``asm-generic/unistd.h`` on aarch64)."""

AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
X32_SYSCALL_BIT = 0x40000000

# Namespace flags of clone(2) (the low 32 bits of its first argument; the kernel ignores the rest).
CLONE_NAMESPACE_FLAGS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000
ALLOWED_SOCKET_FAMILIES = (1, 2, 10, 16)  # AF_UNIX, AF_INET, AF_INET6, AF_NETLINK
DENIED_IOCTLS = (0x5412, 0x541C)  # TIOCSTI (type into a terminal), TIOCLINUX

# Classic BPF opcodes and seccomp return values (linux/filter.h, linux/seccomp.h).
_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JGE_K = 0x35  # BPF_JMP | BPF_JGE | BPF_K
_JSET_K = 0x45  # BPF_JMP | BPF_JSET | BPF_K
_RET_K = 0x06  # BPF_RET | BPF_K
RET_KILL_PROCESS = 0x80000000
RET_ERRNO = 0x00050000
RET_ALLOW = 0x7FFF0000

# Offsets in struct seccomp_data: int nr; u32 arch; u64 instruction_pointer; u64 args[6] (little-endian).
_NR, _ARCH = 0, 4


def _arg_low(index: int) -> int:
    """Offset of the low 32 bits of system call argument ``index`` (both architectures are little-endian)."""
    return 16 + 8 * index


class _Assembler:
    """Straight-line classic BPF: every test is followed by its own return, so no jump is longer than one."""

    def __init__(self) -> None:
        self.code: list[tuple[int, int, int, int]] = []

    def load(self, offset: int) -> None:
        self.code.append((_LD_W_ABS, 0, 0, offset))

    def ret(self, value: int) -> None:
        self.code.append((_RET_K, 0, 0, value))

    def if_equal(self, value: int, action: int) -> None:
        """``if (A == value) return action``."""
        self.code.append((_JEQ_K, 0, 1, value))
        self.ret(action)

    def if_not_equal(self, value: int, action: int) -> None:
        self.code.append((_JEQ_K, 1, 0, value))
        self.ret(action)

    def if_at_least(self, value: int, action: int) -> None:
        self.code.append((_JGE_K, 0, 1, value))
        self.ret(action)

    def if_any_bit(self, mask: int, action: int) -> None:
        self.code.append((_JSET_K, 0, 1, mask))
        self.ret(action)

    def if_none_of(self, values: tuple[int, ...], action: int) -> None:
        """``if (A not in values) return action``: each match jumps over the rest to the fall-through."""
        for position, value in enumerate(values):
            self.code.append((_JEQ_K, len(values) - position, 0, value))
        self.ret(action)

    @contextlib.contextmanager
    def when_syscall(self, number: int, argument_offset: int) -> Iterator[None]:
        """``if (nr == number) { A = argument; <the block>; return ALLOW }``; other calls skip the block."""
        start = len(self.code)
        self.code.append((_JEQ_K, 0, 0, number))  # its jf is set once the block's length is known
        self.load(argument_offset)
        yield
        self.ret(RET_ALLOW)
        self.code[start] = (_JEQ_K, 0, len(self.code) - start - 1, number)

    def assemble(self) -> bytes:
        return b"".join(struct.pack("<HBBI", *instruction) for instruction in self.code)


def seccomp_filter(machine: str | None = None) -> bytes:
    """The filter for ``machine`` (``platform.machine()`` by default) as bubblewrap's ``--seccomp`` reads it.

    Raises ``ValueError`` on an architecture it has no system call numbers for: no filter, no sandbox.
    """
    machine = machine or platform.machine()
    if machine not in SYSCALLS:
        raise ValueError(f"no seccomp filter for the {machine} architecture (supported: {', '.join(SYSCALLS)})")
    numbers = SYSCALLS[machine]
    eperm = RET_ERRNO | errno.EPERM
    bpf = _Assembler()
    bpf.load(_ARCH)
    bpf.if_not_equal(AUDIT_ARCH[machine], RET_KILL_PROCESS)
    bpf.load(_NR)
    if machine == "x86_64":
        bpf.if_at_least(X32_SYSCALL_BIT, RET_KILL_PROCESS)
    for name in DENIED:
        if name in numbers:
            bpf.if_equal(numbers[name], eperm)
    bpf.if_equal(numbers["clone3"], RET_ERRNO | errno.ENOSYS)
    with bpf.when_syscall(numbers["clone"], _arg_low(0)):  # flags
        bpf.if_any_bit(CLONE_NAMESPACE_FLAGS, eperm)
    with bpf.when_syscall(numbers["socket"], _arg_low(0)):  # address family
        bpf.if_none_of(ALLOWED_SOCKET_FAMILIES, eperm)
    with bpf.when_syscall(numbers["ioctl"], _arg_low(1)):  # request
        for request in DENIED_IOCTLS:
            bpf.if_equal(request, eperm)
    bpf.ret(RET_ALLOW)
    if len(bpf.code) > 4096:  # BPF_MAXINSNS
        raise ValueError("the seccomp filter is longer than the kernel accepts")
    return bpf.assemble()
