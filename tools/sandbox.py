"""``run_python``: model-written Python run in a bubblewrap sandbox, never on the host as it is.

The program runs in a child process that bubblewrap (``bwrap``) gives its own namespaces:

- network: its own, with only a loopback that nothing listens on (no host services, no DNS);
- mounts: an empty root with ``/usr`` (and the ``/bin``, ``/lib*`` links), a few ``/etc`` files the dynamic
  loader needs, a private ``/proc`` and a minimal ``/dev``, all read-only; the only writable place is a
  size-capped tmpfs at ``/scratch`` (``/tmp`` points there) that vanishes with the sandbox. Homes, ``/root``,
  ``/etc/shadow``, ``/var``, ``/run``, the project's directory and its database are simply not there;
- pids: the program is pid 2 and sees only its own processes; when the sandbox's init dies every process in
  it dies, so nothing outlives the call (double-forked daemons included);
- users: run as ``nobody`` (65534) with no capabilities. When ironloop runs as root the bwrap process itself
  is started as 65534 too: ``RLIMIT_NPROC`` never applies to root;
- environment: cleared; only ``PATH``, ``LANG``, ``HOME`` and ``TMPDIR`` are set.

Inside, `tools.sandbox_child` sets the CPU, memory, process, file size and open file limits before the
program starts. The parent enforces the wall-clock timeout and the output caps: stdout and stderr are read as
they come and the sandbox is killed as soon as one passes its cap, so a flood is never buffered.

When bwrap is missing or cannot build the sandbox here, `Sandbox` raises `SandboxUnavailableError` (a
`PermanentToolError`) and runs nothing: there is no unsandboxed fallback.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ironloop.tools.errors import PermanentToolError, SandboxUnavailableError
from ironloop.tools.policy import ToolPolicy
from langchain_core.tools import BaseTool, StructuredTool

MiB = 1024 * 1024
NOBODY = 65534
SCRATCH = "/scratch"
CHILD_SOURCE = (Path(__file__).with_name("sandbox_child.py")).read_text(encoding="utf-8")
INSTALL_HINT = "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap; Fedora/RHEL: dnf install bubblewrap)"


@dataclass(frozen=True, kw_only=True)
class SandboxLimits:
    """What one run may use. The defaults fit a short computation of a model's."""

    wall_s: float = 10.0
    """Wall-clock time; then the whole sandbox is killed (``timeout``)."""
    cpu_s: int = 5
    """CPU seconds per process (``RLIMIT_CPU``): SIGXCPU, then SIGKILL a second later (``cpu``)."""
    memory_bytes: int = 512 * MiB
    """Address space per process (``RLIMIT_AS``): allocations fail with ``MemoryError`` (``memory``)."""
    processes: int = 32
    """Processes in the sandbox (``RLIMIT_NPROC``, counted in its own user namespace): fork fails (``processes``)."""
    file_size_bytes: int = 16 * MiB
    """Largest file a process may write (``RLIMIT_FSIZE``): writes fail with EFBIG (``file_size``)."""
    open_files: int = 64
    """Open file descriptors per process (``RLIMIT_NOFILE``; ``open_files``)."""
    scratch_bytes: int = 64 * MiB
    """Size of the tmpfs at ``/scratch``, the only writable place."""
    output_bytes: int = 64 * 1024
    """Cap of stdout and of stderr, each; the first byte past it kills the sandbox (``output``)."""
    code_bytes: int = 1 * MiB
    """Longest program accepted."""

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):
            if getattr(self, item.name) <= 0:
                raise ValueError(f"{item.name} must be positive, got {getattr(self, item.name)}")

    def for_child(self) -> dict[str, int]:
        """The limits `tools.sandbox_child` sets inside the sandbox."""
        names = ("cpu_s", "memory_bytes", "processes", "file_size_bytes", "open_files")
        return {name: int(getattr(self, name)) for name in names}


@dataclass(frozen=True)
class SandboxResult:
    """What a run produced. ``limits_hit`` names every limit the program ran into, in the order they were
    found: ``timeout``, ``output``, ``cpu``, ``memory``, ``processes``, ``file_size``, ``open_files``."""

    stdout: str
    stderr: str
    exit_status: int | None
    """The program's exit code; ``None`` when ironloop killed the sandbox (timeout, output cap)."""
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

    def argv(self, report_fd: int) -> list[str]:
        """The command line: bwrap, its namespaces and mounts, then the interpreter running the child launcher."""
        argv = [self._bwrap_path() or self.bwrap, "--unshare-all", "--unshare-user", "--die-with-parent"]
        argv += ["--new-session", "--cap-drop", "ALL", "--uid", str(NOBODY), "--gid", str(NOBODY)]
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
        limits = json.dumps(self.limits.for_child())
        return [*argv, "--", self.python, "-I", "-c", CHILD_SOURCE, limits, str(report_fd)]

    def ensure_available(self) -> None:
        """Raise `SandboxUnavailableError` unless this sandbox can be built here (probed once, then cached)."""
        key = (self.bwrap, self.python, self.extra_ro_binds, self._credentials().get("user"))
        with _probe_lock:
            if key not in _probe_results:
                _probe_results[key] = self._probe()
            problem = _probe_results[key]
        if problem is not None:
            raise SandboxUnavailableError(problem)

    def run(self, code: str) -> SandboxResult:
        """`arun` for sync callers."""
        return asyncio.run(self.arun(code))

    async def arun(self, code: str) -> SandboxResult:
        """Run ``code`` in a fresh sandbox and say what it printed, how it ended and which limits it hit."""
        program = code.encode("utf-8", errors="surrogateescape")
        if len(program) > self.limits.code_bytes:
            raise PermanentToolError(f"the program is longer than {self.limits.code_bytes} bytes")
        await asyncio.to_thread(self.ensure_available)
        report_read, report_write = os.pipe()
        started = time.monotonic()
        try:
            process = await asyncio.create_subprocess_exec(
                *self.argv(report_write),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(report_write,),
                start_new_session=True,  # one process group to kill: bwrap; its pid namespace takes the rest
                env={"PATH": "/usr/bin:/bin"},
                cwd="/",
                **self._credentials(),
            )
        except BaseException:
            os.close(report_read)
            raise
        finally:
            os.close(report_write)
        try:
            return await _Run(process, self.limits, report_read, started).supervise(program)
        finally:
            _kill(process)
            os.close(report_read)

    def _bwrap_path(self) -> str | None:
        return shutil.which(self.bwrap)

    def _credentials(self) -> dict[str, Any]:
        """Start bwrap as ``run_as`` when we are root (``RLIMIT_NPROC`` is never enforced on root)."""
        if self.run_as is None or os.geteuid() != 0:
            return {}
        return {"user": self.run_as, "group": self.run_as, "extra_groups": []}

    def _probe(self) -> str | None:
        """Build the real sandbox around an empty program; the reason it cannot be built, or ``None``."""
        if self._bwrap_path() is None:
            return f"run_python is disabled: bubblewrap ({self.bwrap!r}) is not installed; {INSTALL_HINT}."
        report_read, report_write = os.pipe()
        try:
            done = subprocess.run(
                self.argv(report_write),
                input=b"",
                capture_output=True,
                pass_fds=(report_write,),
                env={"PATH": "/usr/bin:/bin"},
                cwd="/",
                timeout=30,
                check=False,
                **self._credentials(),
            )
        except (OSError, subprocess.SubprocessError) as exc:
            return f"run_python is disabled: could not start bubblewrap ({self.bwrap!r}): {exc}; {INSTALL_HINT}."
        finally:
            os.close(report_read)
            os.close(report_write)
        if done.returncode != 0:
            detail = " ".join(done.stderr.decode(errors="replace").split())[:300]
            return (
                f"run_python is disabled: bubblewrap cannot create its sandbox here (exit {done.returncode}: "
                f"{detail}). It needs user namespaces (sysctl kernel.unprivileged_userns_clone=1, or on Ubuntu "
                f"kernel.apparmor_restrict_unprivileged_userns=0) and bubblewrap >= 0.7; "
                f"interpreter {self.python!r} must exist under a read-only mount."
            )
        return None


_probe_lock = threading.Lock()
_probe_results: dict[tuple[Any, ...], str | None] = {}


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

    def __init__(self, process: asyncio.subprocess.Process, limits: SandboxLimits, report_fd: int, started: float):
        self.process = process
        self.limits = limits
        self.report_fd = report_fd
        self.started = started
        self.stdout = _Capped(limits.output_bytes)
        self.stderr = _Capped(limits.output_bytes)
        self.limits_hit: list[str] = []
        self.killed = False

    def stop(self, reason: str) -> None:
        """Kill the sandbox for hitting ``reason``."""
        if reason not in self.limits_hit:
            self.limits_hit.append(reason)
        self.killed = True
        _kill(self.process)

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
            _kill(process)
            # Killing bwrap takes its pid namespace down, which closes the pipes; don't wait long regardless.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await asyncio.gather(*readers, return_exceptions=True)
                    await process.wait()
            for task in (*readers, feeder):
                task.cancel()
        return self._result()

    def _result(self) -> SandboxResult:
        status = self.process.returncode
        exit_status = None if self.killed or status is None or status < 0 else status
        signal_name = None
        if exit_status is not None and exit_status > 128:  # bwrap exits 128 + n when its child died of signal n
            with contextlib.suppress(ValueError):
                signal_name = signal.Signals(exit_status - 128).name
        for word in _reported(self.report_fd):
            if word not in self.limits_hit:
                self.limits_hit.append(word)
        if signal_name == "SIGXCPU" and "cpu" not in self.limits_hit:
            self.limits_hit.append("cpu")
        return SandboxResult(
            stdout=self.stdout.text(),
            stderr=self.stderr.text(),
            exit_status=exit_status,
            signal=signal_name,
            limits_hit=self.limits_hit,
            stdout_truncated=self.stdout.truncated,
            stderr_truncated=self.stderr.truncated,
            duration_s=time.monotonic() - self.started,
        )


KNOWN_LIMITS = ("cpu", "memory", "processes", "file_size", "open_files")


def _reported(fd: int) -> list[str]:
    """The limits the sandbox's processes reported (known words only: the program could write anything)."""
    os.set_blocking(fd, False)
    try:
        data = os.read(fd, 64 * 1024)
    except (BlockingIOError, OSError):
        return []
    words = data.decode("ascii", errors="replace").split()
    return [word for word in KNOWN_LIMITS if word in words]


async def _feed(stdin: asyncio.StreamWriter, program: bytes) -> None:
    """Write the program to the launcher's stdin; a sandbox that died early is not an error."""
    with contextlib.suppress(ConnectionError, BrokenPipeError):
        stdin.write(program)
        await stdin.drain()
        stdin.close()


def _kill(process: asyncio.subprocess.Process) -> None:
    """Kill bwrap's process group. Its sandbox's init has ``--die-with-parent``, and when that init dies the
    kernel kills every process left in the pid namespace."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)


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
