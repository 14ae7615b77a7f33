"""``run_python``: model-written Python run in a bubblewrap sandbox, never on the host as it is.

The program runs in a child process that bubblewrap (``bwrap``) gives its own namespaces:

- network: its own, with only a loopback that nothing listens on (no host services, no DNS);
- mounts: an empty root with ``/usr`` (and the ``/bin``, ``/lib*`` links), a few ``/etc`` files the dynamic
  loader needs, a private ``/proc`` and a minimal ``/dev``, all read-only; the only writable place is a
  size-capped tmpfs at ``/scratch`` (``/tmp`` points there) that vanishes with the sandbox. Homes, ``/root``,
  ``/etc/shadow``, ``/var``, ``/run``, the project's directory and its database are simply not there;
- pids: the sandbox's pid 1 is the launcher's supervisor (`tools.sandbox_child`), the program is pid 2 and sees
  only its own processes; when pid 1 dies the kernel kills every process left in the namespace;
- users: run as ``nobody`` (65534) with no capabilities. When ironloop runs as root the bwrap process itself
  is started as 65534 too: ``RLIMIT_NPROC`` never applies to root;
- system calls: a seccomp filter (`tools.sandbox_seccomp`) refuses ``ptrace``, namespaces, mounts, io_uring,
  BPF, keyrings and the rest a program never needs;
- environment: cleared; only ``PATH``, ``LANG``, ``HOME``, ``TMPDIR`` and ``PYTHONUNBUFFERED`` are set.

Inside, `tools.sandbox_child` sets the per-process limits (CPU, address space, processes, file size, open
files) before the program starts. The call as a whole is bounded by a cgroup where the machine allows one
(`tools.sandbox_cgroup`: memory, processes, CPU rate); where it does not, the process count is cut so that
processes x address space stays within the call's memory total. The parent enforces the wall-clock timeout
and the output caps (stdout and stderr are read as they come, and the sandbox is killed as soon as one passes
its cap, so a flood is never buffered).

Killing a call reaches every process of it, whatever the program did: ``cgroup.kill`` where there is a
cgroup, SIGKILL to the sandbox's pid 1 (its pid read from bwrap's ``--info-fd``, held as a pidfd), which takes
its pid namespace down, and SIGKILL to bwrap's process group. The sandbox is held (``--block-fd``) until it is
in its cgroups, so no process of the program is ever outside them.

When bwrap is missing or cannot build the sandbox here, `Sandbox` raises `SandboxUnavailableError` (a
`PermanentToolError`) and runs nothing: there is no unsandboxed fallback.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ironloop.tools.errors import PermanentToolError, SandboxUnavailableError
from ironloop.tools.policy import ToolPolicy
from ironloop.tools.sandbox_cgroup import CallCgroup, CgroupPlan, remove_stale
from ironloop.tools.sandbox_seccomp import seccomp_filter
from langchain_core.tools import BaseTool, StructuredTool

MiB = 1024 * 1024
NOBODY = 65534
SCRATCH = "/scratch"
CHILD_SOURCE = (Path(__file__).with_name("sandbox_child.py")).read_text(encoding="utf-8")
INSTALL_HINT = "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap; Fedora/RHEL: dnf install bubblewrap)"
BWRAP_SETUP_S = 30.0
"""How long bubblewrap may take to build the sandbox (it takes milliseconds), before the wall clock starts."""
OUTSIDE_TASKS = 2
"""Tasks of a call that are not the program's: bwrap outside the sandbox, and the supervisor (pid 1) inside."""


@dataclass(frozen=True, kw_only=True)
class SandboxLimits:
    """What one run may use. The defaults fit a short computation of a model's."""

    wall_s: float = 10.0
    """Wall-clock time; then the whole sandbox is killed (``timeout``)."""
    cpu_s: int = 5
    """CPU seconds per process (``RLIMIT_CPU``): SIGXCPU, then SIGKILL a second later (``cpu``)."""
    memory_bytes: int = 512 * MiB
    """Address space per process (``RLIMIT_AS``): allocations fail with ``MemoryError``."""
    memory_total_bytes: int | None = None
    """Memory of the call as a whole, all its processes together (default: twice ``memory_bytes``). With a
    memory cgroup it is the cgroup's limit (past it the kernel kills a process: ``memory``); without one, the
    process count is cut to ``memory_total_bytes // memory_bytes`` so the rlimits cannot add up to more."""
    processes: int = 32
    """Processes (threads included) the program may have at once, its first process included: the call's
    ``pids`` cgroup (a refused fork or thread: ``processes``), else ``RLIMIT_NPROC`` in the sandbox's own user
    namespace. Without a memory cgroup, at most ``memory_total_bytes // memory_bytes``."""
    cpus: float = 1.0
    """CPUs the call may keep busy at once (the call's ``cpu`` cgroup; without one, each process is bounded by
    ``cpu_s`` only)."""
    file_size_bytes: int = 16 * MiB
    """Largest file a process may write (``RLIMIT_FSIZE``): writes fail with EFBIG."""
    open_files: int = 64
    """Open file descriptors per process (``RLIMIT_NOFILE``): opening fails with EMFILE."""
    scratch_bytes: int = 64 * MiB
    """Size of the tmpfs at ``/scratch``, the only writable place."""
    output_bytes: int = 64 * 1024
    """Cap of stdout and of stderr, each; the first byte past it kills the sandbox (``output``)."""
    code_bytes: int = 1 * MiB
    """Longest program accepted."""

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if value is not None and value <= 0:
                raise ValueError(f"{item.name} must be positive, got {value}")
        if self.total_memory() < self.memory_bytes:
            raise ValueError(
                f"memory_total_bytes ({self.memory_total_bytes}) must be at least memory_bytes ({self.memory_bytes})"
            )

    def total_memory(self) -> int:
        """The call's memory total: ``memory_total_bytes``, or twice ``memory_bytes``."""
        return self.memory_total_bytes or 2 * self.memory_bytes

    def for_child(self, processes_rlimit: int | None = None) -> dict[str, int]:
        """The limits `tools.sandbox_child` sets inside the sandbox (``RLIMIT_NPROC`` counts its pid 1 too)."""
        names = ("cpu_s", "memory_bytes", "file_size_bytes", "open_files")
        limits = {name: int(getattr(self, name)) for name in names}
        limits["processes"] = processes_rlimit or self.processes + 1
        limits["core_bytes"] = 0
        return limits


@dataclass(frozen=True)
class CallBounds:
    """What bounds one call as a whole on this machine (found when the sandbox is first built here)."""

    plan: CgroupPlan
    """The cgroups each call gets (none: the rlimit fallback)."""
    processes: int
    """The program's processes (threads included) at most."""
    memory_bytes: int
    """The call's memory at most: the memory cgroup's limit, or processes x per-process address space."""
    cpus: float | None
    """CPUs the call keeps busy at most (``None``: no cpu cgroup; each process has ``cpu_s``)."""
    note: str | None = None
    """Why a cgroup this machine seems to offer is not used."""

    @classmethod
    def of(cls, limits: SandboxLimits, plan: CgroupPlan, note: str | None = None) -> CallBounds:
        controllers = plan.controllers
        if "memory" in controllers:
            processes, memory = limits.processes, limits.total_memory()
        else:
            processes = max(1, min(limits.processes, limits.total_memory() // limits.memory_bytes))
            memory = processes * limits.memory_bytes
        return cls(plan, processes, memory, limits.cpus if "cpu" in controllers else None, note)

    def child_limits(self, limits: SandboxLimits) -> dict[str, int]:
        """The rlimits: with a pids cgroup, ``RLIMIT_NPROC`` is a backstop one above it, so the cgroup (which
        ironloop can read) is what refuses a fork."""
        spare = 1 if "pids" in self.plan.controllers else 0
        return limits.for_child(processes_rlimit=self.processes + 1 + spare)

    def describe(self) -> str:
        cpus = f"{self.cpus:g} CPU" if self.cpus is not None else "cpu_s per process"
        where = self.plan.describe() if self.plan.controllers or self.plan.kill else "no cgroup"
        text = f"{self.processes} processes, {self.memory_bytes // MiB} MiB, {cpus} ({where})"
        return f"{text}; {self.note}" if self.note else text


@dataclass(frozen=True)
class SandboxResult:
    """What a run produced. ``limits_hit`` names every limit the program ran into, in the order they were
    found, as ironloop saw them from outside the program (nothing the program prints or raises can add one):
    ``timeout``, ``output``, ``memory`` (the call's memory cgroup killed a process), ``processes`` (its pids
    cgroup refused a fork), ``cpu`` (the program's process, or an orphan, was killed at its CPU limit). A
    process that reaches one of its own rlimits (address space, processes, file size, open files) gets the error
    Python raises for it (``MemoryError``, ``OSError``), which shows in ``stderr`` like any other."""

    stdout: str
    stderr: str
    exit_status: int | None
    """The program's exit code (128 + n when signal n ended it); ``None`` when ironloop killed the sandbox
    (timeout, output cap)."""
    signal: str | None
    """The signal that ended the program (``SIGXCPU``, ``SIGKILL``...), if one did."""
    limits_hit: list[str]
    stdout_truncated: bool
    stderr_truncated: bool
    duration_s: float

    @property
    def limit(self) -> str | None:
        """The first limit hit, or ``None``."""
        return self.limits_hit[0] if self.limits_hit else None

    def to_json(self) -> str:
        """The observation the model gets."""
        fields = dataclasses.asdict(self)
        fields["limit"] = self.limit
        fields["duration_s"] = round(self.duration_s, 3)
        return json.dumps(fields, ensure_ascii=False)


def _default_python() -> str:
    """The system interpreter: it lives under ``/usr``, which the sandbox mounts (a venv's or pyenv's may not)."""
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.path.exists(candidate):
            return candidate
    return "/usr/bin/python3"


@dataclass(frozen=True)
class _Fds:
    """The descriptors bwrap gets besides stdio: where it says the sandbox's pid, what holds the sandbox until
    it is in its cgroups, the seccomp filter, and the report only the sandbox's supervisor writes."""

    info: int
    block: int
    seccomp: int
    report: int


@dataclass(frozen=True, kw_only=True)
class Sandbox:
    """How to build the sandbox: the ``bwrap`` and interpreter to use, what to mount, the limits."""

    limits: SandboxLimits = field(default_factory=SandboxLimits)
    bwrap: str = "bwrap"
    """The bubblewrap binary (a name looked up on ``PATH``, or a path)."""
    python: str = field(default_factory=_default_python)
    """The interpreter run inside; it must live under a read-only mount (``/usr`` or ``extra_ro_binds``)."""
    extra_ro_binds: tuple[str, ...] = ()
    """More host paths to mount read-only at the same place (say, an interpreter under ``/opt``)."""
    run_as: int | None = NOBODY
    """When ironloop runs as root: the uid and gid the sandbox is started as (``None``: stay root, and then
    ``RLIMIT_NPROC`` does not bind)."""
    cgroups: bool = True
    """Give each call its own cgroups where this machine allows it (`tools.sandbox_cgroup`); ``False``: the
    rlimit fallback only."""

    def argv(self, fds: _Fds, child_limits: dict[str, int]) -> list[str]:
        """The command line: bwrap, its namespaces, mounts and filter, then the interpreter running the launcher."""
        argv = [self._bwrap_path() or self.bwrap, "--unshare-all", "--unshare-user", "--die-with-parent"]
        argv += ["--new-session", "--cap-drop", "ALL", "--uid", str(NOBODY), "--gid", str(NOBODY), "--as-pid-1"]
        argv += ["--info-fd", str(fds.info), "--block-fd", str(fds.block), "--seccomp", str(fds.seccomp)]
        argv += ["--hostname", "sandbox", "--ro-bind", "/usr", "/usr"]
        for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
            if os.path.islink(top):
                argv += ["--symlink", os.readlink(top), top]
            elif os.path.isdir(top):
                argv += ["--ro-bind", top, top]
        for path in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/alternatives", "/etc/localtime"):
            argv += ["--ro-bind-try", path, path]
        for path in self.extra_ro_binds:
            argv += ["--ro-bind", path, path]
        argv += ["--proc", "/proc", "--dev", "/dev"]
        argv += ["--size", str(self.limits.scratch_bytes), "--tmpfs", SCRATCH, "--symlink", SCRATCH, "/tmp"]
        argv += ["--remount-ro", "/", "--remount-ro", "/dev", "--chdir", SCRATCH, "--clearenv"]
        for name, value in (("PATH", "/usr/local/bin:/usr/bin:/bin"), ("LANG", "C.UTF-8"), ("HOME", SCRATCH)):
            argv += ["--setenv", name, value]
        argv += ["--setenv", "TMPDIR", SCRATCH, "--setenv", "PYTHONUNBUFFERED", "1"]
        launcher = [self.python, "-I", "-u", "-c", CHILD_SOURCE, json.dumps(child_limits), str(fds.report)]
        return [*argv, "--", *launcher]

    def ensure_available(self) -> None:
        """Raise `SandboxUnavailableError` unless this sandbox can be built here (probed once, then cached)."""
        problem, _ = self._probed()
        if problem is not None:
            raise SandboxUnavailableError(problem)

    def bounds(self) -> CallBounds:
        """What bounds a call as a whole here: cgroups, or the rlimit fallback (builds the sandbox once)."""
        self.ensure_available()
        _, bounds = self._probed()
        assert bounds is not None
        return bounds

    def run(self, code: str) -> SandboxResult:
        """`arun` for sync callers."""
        return asyncio.run(self.arun(code))

    async def arun(self, code: str) -> SandboxResult:
        """Run ``code`` in a fresh sandbox and say what it printed, how it ended and which limits it hit."""
        program = code.encode("utf-8", errors="surrogateescape")
        if len(program) > self.limits.code_bytes:
            raise PermanentToolError(f"the program is longer than {self.limits.code_bytes} bytes")
        bounds = await asyncio.to_thread(self.bounds)
        return await self._execute(program, bounds)

    async def _execute(self, program: bytes, bounds: CallBounds) -> SandboxResult:
        async with _launch(self, bounds) as sandboxed:
            return await _Run(sandboxed, self.limits).supervise(program)

    def _bwrap_path(self) -> str | None:
        return shutil.which(self.bwrap)

    def _credentials(self) -> dict[str, Any]:
        """Start bwrap as ``run_as`` when we are root (``RLIMIT_NPROC`` is never enforced on root)."""
        if self.run_as is None or os.geteuid() != 0:
            return {}
        return {"user": self.run_as, "group": self.run_as, "extra_groups": []}

    def _probed(self) -> tuple[str | None, CallBounds | None]:
        key = (self.bwrap, self.python, self.extra_ro_binds, self._credentials().get("user"), self.cgroups)
        with _probe_lock:
            if key not in _probe_results:
                _probe_results[key] = self._probe()
            problem, plan, note = _probe_results[key]
        return problem, CallBounds.of(self.limits, plan, note) if problem is None else None

    def _probe(self) -> tuple[str | None, CgroupPlan, str | None]:
        """Build the real sandbox around an empty program, in cgroups if the machine offers them: why it cannot
        be built (or ``None``), the cgroups a call gets, and why offered cgroups are not used."""
        none = CgroupPlan()
        if self._bwrap_path() is None:
            return f"run_python is disabled: bubblewrap ({self.bwrap!r}) is not installed; {INSTALL_HINT}.", none, None
        try:
            seccomp_filter()
        except ValueError as exc:
            return f"run_python is disabled: {exc}.", none, None
        plan = CgroupPlan.detect() if self.cgroups else none
        note = None
        if plan.controllers or plan.kill:
            remove_stale(plan)
            problem = self._try(plan)
            if problem is None:
                return None, plan, None
            note = f"cgroups unused ({plan.describe()}): {problem}"
        problem = self._try(none)
        if problem is None:
            return None, none, note
        return (
            f"run_python is disabled: bubblewrap cannot create its sandbox here ({problem}). It needs user "
            f"namespaces (sysctl kernel.unprivileged_userns_clone=1, or on Ubuntu "
            f"kernel.apparmor_restrict_unprivileged_userns=0) and bubblewrap >= 0.7; "
            f"interpreter {self.python!r} must exist under a read-only mount.",
            none,
            None,
        )

    def _try(self, plan: CgroupPlan) -> str | None:
        """Run an empty program with ``plan`` (in a thread of its own: the caller may be in an event loop);
        what went wrong, or ``None``."""
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            attempt = pool.submit(asyncio.run, self._execute(b"", CallBounds.of(self.limits, plan)))
            try:
                result = attempt.result()
            except (OSError, SandboxUnavailableError) as exc:
                return f"could not start bubblewrap ({self.bwrap!r}): {exc}"
        if result.exit_status != 0 or result.stderr:
            return f"exit {result.exit_status}: {' '.join(result.stderr.split())[:300]}"
        return None


_probe_lock = threading.Lock()
_probe_results: dict[tuple[Any, ...], tuple[str | None, CgroupPlan, str | None]] = {}


class _Sandboxed:
    """A started sandbox: bwrap's process, the sandbox's pid 1 (as a pidfd) and the call's cgroups."""

    def __init__(self, process: asyncio.subprocess.Process, report_fd: int, cgroup: CallCgroup | None):
        self.process = process
        self.report_fd = report_fd
        self.cgroup = cgroup
        self.init_pidfd: int | None = None

    def kill(self) -> None:
        """SIGKILL every process of the call, by every handle there is (each one alone would do)."""
        if self.cgroup is not None:
            self.cgroup.kill()
        if self.init_pidfd is not None:
            with contextlib.suppress(ProcessLookupError, OSError):
                signal.pidfd_send_signal(self.init_pidfd, signal.SIGKILL)
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)

    def report(self) -> dict[str, Any] | None:
        """The supervisor's report (how the program ended), if it wrote one."""
        os.set_blocking(self.report_fd, False)
        try:
            data = os.read(self.report_fd, 4096)
        except (BlockingIOError, OSError):
            return None
        try:
            report = json.loads(data.decode("ascii", errors="replace"))
        except ValueError:  # none written (the supervisor was killed), or cut short
            return None
        return report if isinstance(report, dict) else None


@contextlib.asynccontextmanager
async def _launch(box: Sandbox, bounds: CallBounds) -> AsyncIterator[_Sandboxed]:
    """Start bwrap held before the program, put it in the call's cgroups, release it; kill and clean up after.

    Raises `SandboxUnavailableError` when the sandbox cannot be put in its cgroups (nothing has run then).
    """
    cgroup = CallCgroup(bounds.plan) if bounds.plan.controllers or bounds.plan.kill else None
    pipes: list[int] = []
    try:
        if cgroup is not None:
            limits = box.limits
            try:
                cgroup.open(
                    memory_bytes=limits.total_memory(), tasks=bounds.processes + OUTSIDE_TASKS, cpus=limits.cpus
                )
            except OSError as exc:
                raise SandboxUnavailableError(
                    f"run_python could not create its cgroups ({exc}); nothing was run"
                ) from exc
        info_read, info_write = _pipe(pipes)
        block_read, block_write = _pipe(pipes)
        report_read, report_write = _pipe(pipes)
        seccomp = os.memfd_create("run_python-seccomp", 0)
        pipes.append(seccomp)
        os.write(seccomp, seccomp_filter())
        os.lseek(seccomp, 0, os.SEEK_SET)
        fds = _Fds(info=info_write, block=block_read, seccomp=seccomp, report=report_write)
        process = await asyncio.create_subprocess_exec(
            *box.argv(fds, bounds.child_limits(box.limits)),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(info_write, block_read, seccomp, report_write),
            start_new_session=True,  # one process group: bwrap
            env={"PATH": "/usr/bin:/bin"},
            cwd="/",
            **box._credentials(),
        )
        for fd in (info_write, block_read, seccomp, report_write):  # theirs now: EOF comes when they close them
            pipes.remove(fd)
            os.close(fd)
        sandboxed = _Sandboxed(process, report_read, cgroup)
        try:
            await _hold_until_placed(sandboxed, info_read, block_write)
            yield sandboxed
        finally:
            sandboxed.kill()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await process.wait()
            if sandboxed.init_pidfd is not None:
                os.close(sandboxed.init_pidfd)
    finally:
        if cgroup is not None:
            await asyncio.to_thread(cgroup.remove)  # waits for the killed processes to be gone
        for fd in pipes:
            os.close(fd)


def _pipe(opened: list[int]) -> tuple[int, int]:
    read, write = os.pipe()
    opened += [read, write]
    return read, write


async def _hold_until_placed(sandboxed: _Sandboxed, info_fd: int, block_fd: int) -> None:
    """Read the sandbox's pid 1 from bwrap's info (it is waiting on the block fd then), hold it as a pidfd, move
    bwrap and it into the call's cgroups, then let the program start. A bwrap that failed before writing its
    info has started nothing: its error is left for the run's stderr."""
    try:
        async with asyncio.timeout(BWRAP_SETUP_S):
            info = await _read_to_eof(info_fd)
    except TimeoutError:
        raise SandboxUnavailableError(f"bubblewrap did not set up its sandbox in {BWRAP_SETUP_S:g} s") from None
    if not info:
        return
    try:
        init = int(json.loads(info)["child-pid"])
        sandboxed.init_pidfd = os.pidfd_open(init)
        if _parent_of(init) != sandboxed.process.pid:
            raise ProcessLookupError(f"process {init} is not the sandbox's")
        if sandboxed.cgroup is not None:
            sandboxed.cgroup.add(sandboxed.process.pid)
            sandboxed.cgroup.add(init)
    except (OSError, ValueError, KeyError) as exc:
        raise SandboxUnavailableError(f"run_python could not confine its sandbox ({exc}); nothing was run") from exc
    os.write(block_fd, b"x")


async def _read_to_eof(fd: int) -> bytes:
    """Everything written on pipe ``fd`` until its writers closed it (without blocking the event loop)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(os.dup(fd), "rb", buffering=0)
    )
    try:
        return await reader.read()
    finally:
        transport.close()


def _parent_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    raise ProcessLookupError(pid)


class _Capped:
    """One output stream, read as it comes and kept up to a cap."""

    def __init__(self, cap: int):
        self.cap = cap
        self.data = bytearray()
        self.truncated = False

    async def drain(self, stream: asyncio.StreamReader, on_overflow: Callable[[], None]) -> None:
        """Read to the end; past the cap, call ``on_overflow`` once (it kills the writer) and discard the rest,
        which is at most what was already in the pipe."""
        while chunk := await stream.read(64 * 1024):
            room = self.cap - len(self.data)
            if len(chunk) > room and not self.truncated:
                self.truncated = True
                on_overflow()
            self.data += chunk[: max(0, room)]

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


class _Run:
    """One sandboxed run under supervision: feed the program, cap the output, enforce the wall clock."""

    def __init__(self, sandboxed: _Sandboxed, limits: SandboxLimits):
        self.sandboxed = sandboxed
        self.process = sandboxed.process
        self.limits = limits
        self.started = time.monotonic()
        self.stdout = _Capped(limits.output_bytes)
        self.stderr = _Capped(limits.output_bytes)
        self.limits_hit: list[str] = []
        self.killed = False

    def stop(self, reason: str) -> None:
        """Kill the sandbox for hitting ``reason``."""
        if reason not in self.limits_hit:
            self.limits_hit.append(reason)
        self.killed = True
        self.sandboxed.kill()

    async def supervise(self, program: bytes) -> SandboxResult:
        process = self.process
        assert process.stdin is not None and process.stdout is not None and process.stderr is not None
        readers = [
            asyncio.create_task(self.stdout.drain(process.stdout, lambda: self.stop("output"))),
            asyncio.create_task(self.stderr.drain(process.stderr, lambda: self.stop("output"))),
        ]
        feeder = asyncio.create_task(_feed(process.stdin, program))
        try:
            async with asyncio.timeout(self.limits.wall_s):
                await asyncio.gather(*readers)
                await process.wait()
        except TimeoutError:
            self.stop("timeout")
        finally:
            self.sandboxed.kill()
            # Every process of the call is dead now, which closes the pipes; don't wait long regardless.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await asyncio.gather(*readers, return_exceptions=True)
                    await process.wait()
            for task in (*readers, feeder):
                task.cancel()
        return self._result()

    def _result(self) -> SandboxResult:
        report = self.sandboxed.report() or {}
        exit_status, signal_name = None, None
        if not self.killed:
            exit_status = report.get("exit_status", self.process.returncode)
            signal_name = report.get("signal")
            if not isinstance(exit_status, int) or exit_status < 0:
                exit_status = None
        found = [*self.limits_hit]
        if self.sandboxed.cgroup is not None:
            found += self.sandboxed.cgroup.limits_hit()
        if report.get("cpu") is True:
            found.append("cpu")
        return SandboxResult(
            stdout=self.stdout.text(),
            stderr=self.stderr.text(),
            exit_status=exit_status,
            signal=signal_name if isinstance(signal_name, str) else None,
            limits_hit=list(dict.fromkeys(found)),
            stdout_truncated=self.stdout.truncated,
            stderr_truncated=self.stderr.truncated,
            duration_s=time.monotonic() - self.started,
        )


async def _feed(stdin: asyncio.StreamWriter, program: bytes) -> None:
    """Write the program to the launcher's stdin; a sandbox that died early is not an error."""
    with contextlib.suppress(ConnectionError, BrokenPipeError):
        stdin.write(program)
        await stdin.drain()
        stdin.close()


RUN_PYTHON_POLICY = ToolPolicy(timeout_s=SandboxLimits().wall_s + 10.0, max_attempts=1, deadline_s=30.0)
"""One attempt: a program that failed would fail again, and one that timed out would time out again. The
runtime's timeout sits above the sandbox's own wall clock, which is the one meant to fire (cancelling the
call kills the sandbox too)."""


def make_run_python_tool(sandbox: Sandbox | None = None) -> BaseTool:
    """The ``run_python`` tool on ``sandbox`` (default limits if not given)."""
    box = sandbox or Sandbox()
    limits = box.limits

    async def run_python(code: str) -> str:
        """Run a Python 3 program and get its stdout, stderr and exit status as JSON."""
        return (await box.arun(code)).to_json()

    def run_python_sync(code: str) -> str:
        """The same, for ``invoke`` outside an event loop."""
        return box.run(code).to_json()

    description = (
        "Run a Python 3 program (standard library only) in an isolated sandbox and get back JSON with its "
        "stdout, stderr, exit_status and the limits it hit. print() what you want to see. No network; the "
        f"only writable directory is the current one, {SCRATCH} ({limits.scratch_bytes // MiB} MiB, gone after "
        f"the call). Limits: {limits.wall_s:g} s wall clock, {limits.cpu_s} s CPU, "
        f"{limits.memory_bytes // MiB} MiB memory, {limits.output_bytes // 1024} KiB of output per stream."
    )
    return StructuredTool.from_function(
        func=run_python_sync, coroutine=run_python, name="run_python", description=description
    )


run_python: BaseTool = make_run_python_tool()
"""The ``run_python`` tool with the default sandbox; give it `RUN_PYTHON_POLICY`."""
