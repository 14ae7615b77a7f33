"""``run_python`` under attack: one test per attack, each checking the attack really ran and was contained.

The sandbox needs bubblewrap. Without it (or without user namespaces) these tests fail when ``$CI`` is "true"
and are skipped, loudly, otherwise; the refuse-when-unavailable test runs everywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import platform
import re
import resource
import secrets
import signal
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ironloop.graph import build_agent
from ironloop.tools import RUN_PYTHON_POLICY, Sandbox, SandboxLimits, SandboxResult, SandboxUnavailableError
from ironloop.tools.sandbox import MiB, make_run_python_tool
from ironloop.tools.sandbox_cgroup import CallCgroup, CgroupPlan, Hierarchy
from ironloop.tools.sandbox_seccomp import DENIED, SYSCALLS

from tests.helpers import call, observations, replay_model, turn

PROJECT_DIR = Path(__file__).resolve().parents[1]
LIMITS = SandboxLimits(wall_s=4.0, cpu_s=2, processes=24)


def _require(condition: bool, reason: str) -> None:
    """A precondition of a test: fail in CI, skip (loudly) elsewhere."""
    if not condition:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true: required)")
        pytest.skip(f"NOT TESTED: {reason}")


@pytest.fixture(scope="module")
def box() -> Sandbox:
    sandbox = Sandbox(limits=LIMITS)
    try:
        sandbox.ensure_available()
    except SandboxUnavailableError as exc:
        _require(False, f"the run_python sandbox is unavailable on this machine: {exc}")
    return sandbox


@pytest.fixture
def marker() -> str:
    return f"ironloop-sandbox-test-{secrets.token_hex(8)}"


def host_processes_with(marker: str) -> list[int]:
    """Pids of live host processes whose command line mentions ``marker`` (a /proc scan, no psutil)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if marker.encode() in cmdline and int(entry.name) != os.getpid():
                found.append(int(entry.name))
    return found


def run(box: Sandbox, code: str) -> SandboxResult:
    result = box.run(code)
    print(result.to_json()[:3000])  # shown by pytest when a test fails
    return result


# -- ordinary programs ---------------------------------------------------------------------------------------------


def test_normal_program_returns_its_stdout_and_status_0(box: Sandbox) -> None:
    result = run(box, "import sys\nprint(sum(range(10)), sys.version_info[0])")
    assert (result.stdout, result.stderr, result.exit_status, result.limits_hit) == ("45 3\n", "", 0, [])
    observation = json.loads(result.to_json())
    assert observation["stdout"] == "45 3\n" and observation["exit_status"] == 0 and observation["limit"] is None


def test_failing_program_returns_its_stderr_and_status(box: Sandbox) -> None:
    result = run(box, "print('before')\nraise ValueError('bad input')")
    assert result.stdout == "before\n"
    assert result.exit_status == 1 and result.limits_hit == []
    assert result.stderr.splitlines()[-1] == "ValueError: bad input"
    assert 'File "<run_python>", line 2' in result.stderr and "_main" not in result.stderr  # launcher hidden
    assert run(box, "import sys; sys.exit(7)").exit_status == 7


def test_scratch_directory_is_writable_and_private(box: Sandbox) -> None:
    code = "import os, tempfile\nopen('notes.txt', 'w').write('x')\n"
    code += "print(os.getcwd(), os.listdir('.'), tempfile.gettempdir())"
    assert run(box, code).stdout == "/scratch ['notes.txt'] /scratch\n"
    assert run(box, "import os; print(os.listdir('/scratch'))").stdout == "[]\n"  # nothing left from the last run


# -- network -------------------------------------------------------------------------------------------------------


def test_attack_socket_to_local_postgres(box: Sandbox) -> None:
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=2).close()
        listening = True
    except OSError:
        listening = False
    _require(listening, "PostgreSQL is not listening on 127.0.0.1:5432, so the attack would prove nothing")
    code = """
import socket
try:
    socket.create_connection(("127.0.0.1", 5432), timeout=2)
    print("CONNECTED")
except OSError as exc:
    print("blocked:", repr(exc))
"""
    result = run(box, code)
    assert "CONNECTED" not in result.stdout
    assert result.stdout.startswith("blocked: ConnectionRefusedError")


def test_attack_name_resolution(box: Sandbox) -> None:
    code = """
import socket
for name in ("example.com", "localhost.localdomain", "pypi.org"):
    try:
        print("RESOLVED", name, socket.getaddrinfo(name, 443))
    except OSError as exc:
        print("blocked:", name, type(exc).__name__)
"""
    result = run(box, code)
    assert "RESOLVED" not in result.stdout
    assert result.stdout.count("blocked:") == 3 and "gaierror" in result.stdout


# -- reading secrets -----------------------------------------------------------------------------------------------

READ_ATTEMPT = """
import sys
for path in sys.argv_paths:
    try:
        print("READ", path, open(path, "rb").read()[:200])
    except OSError as exc:
        print("blocked:", path, type(exc).__name__)
"""


def read_attempt(paths: list[str]) -> str:
    return READ_ATTEMPT.replace("sys.argv_paths", repr(paths))


def test_attack_read_etc_shadow(box: Sandbox) -> None:
    assert Path("/etc/shadow").exists()
    result = run(box, read_attempt(["/etc/shadow", "/etc/gshadow", "/etc/passwd"]))
    assert "READ" not in result.stdout
    assert "blocked: /etc/shadow FileNotFoundError" in result.stdout
    assert result.stdout.count("blocked:") == 3


def test_attack_read_the_users_home(box: Sandbox, marker: str, tmp_path: Path, monkeypatch) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    secret = f"secret-{secrets.token_hex(8)}"
    (home / ".ssh" / "id_ed25519").write_text(secret)
    monkeypatch.setenv("HOME", str(home))
    planted = [home / ".ssh" / "id_ed25519"]
    root_file = Path("/root") / f".{marker}"
    if os.access("/root", os.W_OK):
        root_file.write_text(secret)
        planted.append(root_file)
    try:
        code = read_attempt([str(p) for p in planted]) + "import os\nprint('home is', os.path.expanduser('~'))\n"
        result = run(box, code)
    finally:
        root_file.unlink(missing_ok=True)
    assert secret not in result.stdout + result.stderr
    assert result.stdout.count("blocked:") == len(planted) and "home is /scratch" in result.stdout


def test_attack_read_the_project_database(box: Sandbox, marker: str) -> None:
    database = PROJECT_DIR / f".{marker}.db"  # where ./ironloop.db lives by default
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE secrets (value TEXT)")
        connection.execute("INSERT INTO secrets VALUES (?)", (secret := f"secret-{secrets.token_hex(8)}",))
    connection.close()
    try:
        code = f"""
import os, sqlite3
try:
    print("LISTED", os.listdir({str(PROJECT_DIR)!r}))
except OSError as exc:
    print("blocked listing:", type(exc).__name__)
try:
    connection = sqlite3.connect("file:{database}?mode=ro", uri=True)
    print("READ", connection.execute("SELECT value FROM secrets").fetchall())
except sqlite3.Error as exc:
    print("blocked sqlite:", exc)
""" + read_attempt([str(database)])
        result = run(box, code)
    finally:
        database.unlink()
    assert secret not in result.stdout + result.stderr
    assert "READ" not in result.stdout and "LISTED" not in result.stdout
    assert "blocked listing: FileNotFoundError" in result.stdout
    assert "blocked sqlite: unable to open database file" in result.stdout


def test_attack_read_an_api_key_from_the_environment(box: Sandbox, monkeypatch) -> None:
    key = f"sk-planted-{secrets.token_hex(16)}"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    monkeypatch.setenv("IRONLOOP_DB_URL", f"postgresql://user:{key}@db/x")
    code = """
import os, json
print(json.dumps(dict(os.environ), sort_keys=True))
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            print(pid, open(f"/proc/{pid}/environ", "rb").read())
        except OSError as exc:
            print(pid, "blocked:", type(exc).__name__)
"""
    result = run(box, code)
    assert key not in result.stdout + result.stderr
    environment = json.loads(result.stdout.splitlines()[0])
    assert set(environment) == {"PATH", "LANG", "HOME", "TMPDIR", "PYTHONUNBUFFERED", "PWD"}


# -- writing -------------------------------------------------------------------------------------------------------


def test_attack_write_outside_the_scratch_directory(box: Sandbox, marker: str, tmp_path: Path) -> None:
    targets = [
        PROJECT_DIR / f"{marker}.py",
        tmp_path / marker,  # the host's /tmp: inside, /tmp is the scratch directory
        Path("/etc") / marker,
        Path("/usr/lib") / marker,
        Path("/root") / marker,
        Path("/") / marker,
        Path("/dev/shm") / marker,
    ]
    code = f"""
import os
for path in {[str(t) for t in targets]!r}:
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write("pwned")
        print("WROTE", path)
    except OSError as exc:
        print("blocked:", path, type(exc).__name__)
"""
    result = run(box, code)
    assert [t for t in targets if t.exists()] == []
    # Every write failed, or, for a path under /tmp (the host's tmp_path; the project too when it is checked
    # out under /tmp), landed in the sandbox's own scratch directory, which is /tmp inside.
    under_tmp = [t for t in targets if Path("/tmp") in t.parents]
    landed_in_scratch = sum(result.stdout.count(f"WROTE {t}\n") for t in under_tmp)
    assert result.stdout.count("blocked:") + landed_in_scratch == len(targets)
    assert "OSError" in result.stdout or "PermissionError" in result.stdout or "FileNotFoundError" in result.stdout


# -- exhausting resources ------------------------------------------------------------------------------------------


def test_attack_fork_bomb(box: Sandbox, marker: str) -> None:
    bomb = f"""
import os
said = False
while True:
    try:
        os.fork()
    except OSError as exc:
        if not said:
            print("fork failed:", exc, flush=True)
            said = True
# {marker}
"""
    code = f"import os, sys\nprint('bombing', flush=True)\nos.execv(sys.executable, [sys.executable, '-c', {bomb!r}])"
    started = time.monotonic()
    result = run(box, code)
    elapsed = time.monotonic() - started
    assert "bombing" in result.stdout and "Resource temporarily unavailable" in result.stdout
    assert elapsed < LIMITS.wall_s + 3
    assert {"cpu", "timeout"} & set(result.limits_hit)
    assert host_processes_with(marker) == []


def test_attack_memory_bomb(box: Sandbox) -> None:
    """One process past its address space gets ``MemoryError``, its own error: not a limit ironloop saw."""
    code = "print('allocating', flush=True)\nhoard = []\nwhile True:\n    hoard.append(bytearray(50 * 2**20))"
    result = run(box, code)
    assert result.stdout == "allocating\n"
    assert result.stderr.splitlines()[-1] == "MemoryError" and result.exit_status == 1
    assert result.limits_hit == []


def test_attack_infinite_loop(box: Sandbox) -> None:
    spin = dataclasses.replace(box, limits=dataclasses.replace(LIMITS, cpu_s=1, wall_s=30.0))  # a loaded machine
    result = run(spin, "print('spinning', flush=True)\nwhile True:\n    pass")
    assert result.stdout == "spinning\n"
    assert result.limits_hit == ["cpu"] and result.signal == "SIGXCPU" and result.exit_status == 128 + 24
    assert result.duration_s < 30.0


def test_attack_100_mb_of_output(box: Sandbox) -> None:
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
    code = "import sys\nchunk = 'x' * 2**20\nfor _ in range(100):\n    sys.stdout.write(chunk)\n"
    code += "print('FINISHED', file=sys.stderr)"
    result = run(box, code)
    peak_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert result.limit == "output" and result.stdout_truncated
    assert result.stdout == "x" * LIMITS.output_bytes
    assert "FINISHED" not in result.stderr and result.exit_status is None
    assert result.duration_s < 2.0
    assert peak_after - peak_before < 30 * 1024  # far less than the 100 MB written


def test_attack_sleep_past_the_deadline(box: Sandbox, marker: str) -> None:
    sleeper = f"import time\nprint('sleeping', flush=True)\ntime.sleep(60)\nprint('WOKE')\n# {marker}"
    result = run(box, f"import os, sys\nos.execv(sys.executable, [sys.executable, '-c', {sleeper!r}])")
    assert result.stdout == "sleeping\n"  # output before the kill is kept
    assert result.limits_hit == ["timeout"] and result.exit_status is None
    assert LIMITS.wall_s <= result.duration_s < LIMITS.wall_s + 2
    assert host_processes_with(marker) == []


def test_cancelled_call_kills_the_sandbox(box: Sandbox, marker: str) -> None:
    """The runtime cancels a call past its policy's timeout: the sandbox must not outlive the cancellation."""
    sleeper = f"import time\ntime.sleep(60)\n# {marker}"
    code = f"import os, sys\nos.execv(sys.executable, [sys.executable, '-c', {sleeper!r}])"

    async def cancel_midway() -> list[int]:
        call = asyncio.create_task(box.arun(code))
        await asyncio.sleep(0.5)
        running = host_processes_with(marker)
        call.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await call
        return running

    assert len(asyncio.run(cancel_midway())) == 1
    time.sleep(0.3)
    assert host_processes_with(marker) == []


def test_attack_double_forked_daemon(box: Sandbox, marker: str, tmp_path: Path) -> None:
    late_file = tmp_path / "written-later"
    daemon = f"""
import time
time.sleep(1.5)
for path in ({str(late_file)!r}, "/scratch/written-later"):
    try:
        open(path, "w").write("still alive")
    except OSError:
        pass
time.sleep(30)
# {marker}
"""
    code = f"""
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, "-c", {daemon!r}])
    os._exit(0)
os.wait()
time.sleep(0.3)
pids = [p for p in os.listdir("/proc") if p.isdigit()]
daemons = [p for p in pids if {marker!r}.encode() in open(f"/proc/{{p}}/cmdline", "rb").read()]
print("daemon running:", len(daemons))
"""
    result = run(box, code)
    assert result.stdout == "daemon running: 1\n" and result.exit_status == 0
    assert result.duration_s < 1.5  # the call did not wait for the daemon
    assert host_processes_with(marker) == []
    time.sleep(2.0)
    assert host_processes_with(marker) == []
    assert not late_file.exists()


def test_attack_look_at_other_processes_in_proc(box: Sandbox) -> None:
    code = """
import os
print("me", os.getpid())
for pid in sorted(os.listdir("/proc"), key=lambda p: (len(p), p)):
    if pid.isdigit():
        print(pid, open(f"/proc/{pid}/cmdline", "rb").read().split(b"\\0")[0].decode())
"""
    result = run(box, code)
    lines = result.stdout.splitlines()
    assert lines[0] == "me 2"
    processes = dict(line.split(" ", 1) for line in lines[1:])
    assert processes.keys() == {"1", "2"}  # the launcher's supervisor and the program: nothing of the host
    assert processes["1"] == processes["2"] == "/usr/bin/python3"
    host_init = Path("/proc/1/cmdline").read_bytes().split(b"\0")[0].decode()
    assert host_init not in processes.values() or host_init.endswith("bwrap")


# -- outliving the call: the kill, the seccomp filter ---------------------------------------------------------------

PTRACE_INJECTION = """
import ctypes, os

class _Regs(ctypes.Structure):  # struct user_regs_struct, x86_64
    _fields_ = [(name, ctypes.c_ulong) for name in (
        "r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx rdx rsi rdi orig_rax rip cs eflags rsp ss "
        "fs_base gs_base ds es fs gs").split()]

_libc = ctypes.CDLL(None, use_errno=True)
_libc.ptrace.restype = ctypes.c_long
_libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]

def _ptrace(request, pid, data=None):
    ctypes.set_errno(0)
    if _libc.ptrace(request, pid, None, data) == -1 and ctypes.get_errno():
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))

def clear_parent_death_signal(pid):
    # Make process pid (stopped in a system call) run prctl(PR_SET_PDEATHSIG, 0): it no longer dies with its
    # parent. What the escape from the sandbox needs.
    _ptrace(16, pid)  # PTRACE_ATTACH
    os.waitpid(pid, 0x40000000)  # __WALL
    saved, after = _Regs(), _Regs()
    _ptrace(12, pid, ctypes.byref(saved))  # PTRACE_GETREGS
    regs = _Regs.from_buffer_copy(saved)
    regs.rip, regs.rax, regs.rdi, regs.rsi, regs.orig_rax = saved.rip - 2, 157, 1, 0, 2**64 - 1
    _ptrace(13, pid, ctypes.byref(regs))  # PTRACE_SETREGS: the syscall instruction it sits on, now prctl
    _ptrace(9, pid)  # PTRACE_SINGLESTEP
    os.waitpid(pid, 0x40000000)
    _ptrace(12, pid, ctypes.byref(after))
    _ptrace(13, pid, ctypes.byref(saved))
    _ptrace(17, pid)  # PTRACE_DETACH
    return ctypes.c_long(after.rax).value
"""


def processes_in_namespace(namespace: str) -> list[int]:
    """Host pids of the live processes in pid namespace ``namespace`` (``pid:[inode]``): a /proc scan."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, StopIteration):
                if os.readlink(entry / "ns" / "pid") == namespace and _status(entry.name, "State:") != "Z":
                    found.append(int(entry.name))
    return found


def _status(pid: str | int, field: str) -> str:
    """A field of /proc/PID/status: its last word (``State:`` -> ``S``, ``NSpid:`` -> the innermost pid)."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    words = next(line for line in lines if line.startswith(field)).split()
    return words[1] if field == "State:" else words[-1]


def namespace_init(namespace: str) -> int:
    """The host pid of pid 1 of ``namespace``."""
    return next(pid for pid in processes_in_namespace(namespace) if _status(pid, "NSpid:") == "1")


@contextlib.contextmanager
def reaping(marker: str, namespaces: list[str]) -> Iterator[None]:
    """Kill what an escape left behind (the test has failed then), so one failure does not litter the host."""
    try:
        yield
    finally:
        for pid in host_processes_with(marker) + [p for n in namespaces for p in processes_in_namespace(n)]:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def _require_x86_64() -> None:
    _require(platform.machine() == "x86_64", f"the attack is written for x86_64, not {platform.machine()}")


def test_attack_ptrace_the_sandbox_init_to_outlive_the_call(box: Sandbox, marker: str) -> None:
    """The escape of the review: ptrace pid 1, clear its parent-death signal, live on after the timeout."""
    _require_x86_64()
    code = (
        PTRACE_INJECTION
        + f"""
import os, sys
print("namespace", os.readlink("/proc/self/ns/pid"), flush=True)
try:
    print("prctl in pid 1 returned", clear_parent_death_signal(1), flush=True)
except OSError as exc:
    print("blocked:", exc, flush=True)
os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(60)", {marker!r}])
"""
    )
    namespaces: list[str] = []
    with reaping(marker, namespaces):
        result = run(box, code)
        namespaces.append(result.stdout.split()[1])
        time.sleep(0.3)
        assert processes_in_namespace(namespaces[0]) == [] and host_processes_with(marker) == []
        assert "blocked: [Errno 1] Operation not permitted" in result.stdout
        assert result.limits_hit == ["timeout"]


def test_the_kill_reaches_everything_even_if_the_init_outlives_its_parent(box: Sandbox, marker: str) -> None:
    """The other end: suppose the program got pid 1 to ignore its parent's death anyway (here root does it from
    outside, which nothing inside can stop): ending the call still kills every process of the sandbox."""
    _require_x86_64()
    _require(os.geteuid() == 0, "ptrace-ing the sandbox's pid 1 from outside needs root")
    code = (
        f"import os, sys\nos.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(60)', {marker!r}])"
    )
    injection: dict[str, Any] = {}
    exec(PTRACE_INJECTION, injection)
    namespaces: list[str] = []

    async def attack() -> tuple[SandboxResult, int]:
        call = asyncio.create_task(box.arun(code))
        while not (sleepers := host_processes_with(marker)):
            await asyncio.sleep(0.02)
        namespaces.append(os.readlink(f"/proc/{sleepers[0]}/ns/pid"))
        cleared = await asyncio.to_thread(injection["clear_parent_death_signal"], namespace_init(namespaces[0]))
        return await call, cleared

    with reaping(marker, namespaces):
        result, cleared = asyncio.run(attack())
        assert cleared == 0 and result.limits_hit == ["timeout"]
        time.sleep(0.3)
        assert processes_in_namespace(namespaces[0]) == [] and host_processes_with(marker) == []


SYSCALL_ATTEMPTS = """
import ctypes, errno, os, socket, subprocess, sys, threading
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
buffer = ctypes.create_string_buffer(4096)

def attempt(name, *args):
    ctypes.set_errno(0)
    result = libc.syscall(*[ctypes.c_long(a) if isinstance(a, int) else a for a in (NUMBERS[name], *args)])
    print(name, errno.errorcode.get(ctypes.get_errno(), "?") if result == -1 else "allowed", flush=True)

attempt("ptrace", 0, 0, 0, 0)                       # PTRACE_TRACEME
attempt("process_vm_readv", os.getpid(), 0, 0, 0, 0, 0)
attempt("keyctl", 0, -3, 0)                         # KEYCTL_GET_KEYRING_ID of the session keyring
attempt("io_uring_setup", 1, buffer)
attempt("unshare", 0x10000000)                      # CLONE_NEWUSER
attempt("setns", -1, 0)
attempt("bpf", 999, 0, 0)
attempt("perf_event_open", 0, 0, -1, -1, 0)
attempt("userfaultfd", 1)                           # UFFD_USER_MODE_ONLY
attempt("personality", 0xFFFFFFFF)                  # a query
attempt("clone", 0x10000000 | 0x00010000, 0, 0, 0, 0)  # CLONE_NEWUSER | CLONE_THREAD: EINVAL past the filter
attempt("clone3", 0, 0)
attempt("ioctl", 1, 0x5412, buffer)                 # TIOCSTI
for family in (socket.AF_VSOCK, socket.AF_ALG):
    try:
        socket.socket(family, socket.SOCK_SEQPACKET).close()
        print("socket", family.name, "allowed")
    except OSError as exc:
        print("socket", family.name, errno.errorcode[exc.errno])
# what programs do stays allowed
socket.socket(socket.AF_INET).close()
socket.socket(socket.AF_UNIX).close()
worker = threading.Thread(target=print, args=("thread ran",))
worker.start()
worker.join()
if (child := os.fork()) == 0:
    os._exit(7)
print("fork exit", os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]))
print(subprocess.run([sys.executable, "-c", "print('subprocess ran')"], capture_output=True, text=True).stdout.strip())
"""


def test_attack_system_calls_a_program_never_needs(box: Sandbox) -> None:
    """Each refused (``EPERM``; ``clone3`` ``ENOSYS``, so the C library uses ``clone``), while threads, fork,
    subprocess and inet/unix sockets work. Without the filter, most of these answer otherwise."""
    numbers = SYSCALLS.get(platform.machine())
    _require(numbers is not None, f"no system call numbers for {platform.machine()}")
    result = run(box, f"NUMBERS = {numbers!r}\n" + SYSCALL_ATTEMPTS)
    lines = result.stdout.splitlines()
    answers = dict(line.rsplit(" ", 1) for line in lines if not line.startswith(("thread", "fork", "subprocess")))
    refused = ["ptrace", "process_vm_readv", "keyctl", "io_uring_setup", "unshare", "setns", "bpf"]
    refused += ["perf_event_open", "userfaultfd", "personality", "clone", "ioctl", "socket AF_VSOCK", "socket AF_ALG"]
    assert answers == {**dict.fromkeys(refused, "EPERM"), "clone3": "ENOSYS"}
    assert "thread ran\nfork exit 7\nsubprocess ran\n" in result.stdout and result.exit_status == 0


def test_attack_system_calls_through_the_32_bit_abi(box: Sandbox) -> None:
    """``int 0x80`` takes the i386 numbers (26 is ptrace there), which a filter checking only x86_64 numbers
    would let through: the filter checks the architecture and kills the process."""
    _require_x86_64()
    code = """
import ctypes, mmap
page = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
page.write(bytes([0x53, 0xB8, 26, 0, 0, 0, 0x31, 0xDB, 0xCD, 0x80, 0x5B, 0xC3]))  # push rbx; ptrace(TRACEME); pop rbx
print("calling", flush=True)
print("returned", ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(page)))())
"""
    result = run(box, code)
    assert result.stdout == "calling\n"
    assert result.signal == "SIGSYS" and result.exit_status == 128 + signal.SIGSYS


def test_system_call_numbers_match_the_kernel_headers() -> None:
    """The filter's numbers, checked against the kernel's headers (linux-libc-dev)."""
    headers = {
        "x86_64": Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h"),
        "aarch64": Path("/usr/include/asm-generic/unistd.h"),
    }
    _require(all(path.exists() for path in headers.values()), "the kernel headers are not installed")
    for machine, header in headers.items():
        defined = {m[1]: int(m[2]) for m in re.finditer(r"#define __NR_(\w+)\s+(\d+)\b", header.read_text())}
        ours = SYSCALLS[machine]
        assert {name: number for name, number in ours.items() if name in defined} == {
            name: defined[name] for name in ours if name in defined
        }, machine
        assert set(ours) - set(defined) <= {"open_tree_attr"}, machine  # newer than these headers (467 everywhere)
    assert set(DENIED) <= set(SYSCALLS["x86_64"])


# -- the call as a whole: memory, processes, CPU -------------------------------------------------------------------

BOUNDED = SandboxLimits(wall_s=20.0, memory_bytes=200 * MiB, memory_total_bytes=450 * MiB, processes=16, cpu_s=5)


@pytest.fixture(params=["cgroup", "fallback"])
def bounded_box(request: pytest.FixtureRequest, box: Sandbox) -> Sandbox:
    """The sandbox with its call-wide bounds from cgroups (required where the machine allows them, and in CI),
    or forced onto the rlimit fallback."""
    sandbox = dataclasses.replace(box, limits=BOUNDED, cgroups=request.param == "cgroup")
    bounds = sandbox.bounds()
    print(request.param, bounds.describe())
    if request.param == "cgroup":
        found = bounds.describe()
        _require({"memory", "pids"} <= set(bounds.plan.controllers), f"no memory and pids cgroups here ({found})")
    else:
        assert bounds.plan == CgroupPlan()
    return sandbox


def test_attack_memory_hogs_bounded_as_a_whole(bounded_box: Sandbox, marker: str) -> None:
    """Six children of 150 MiB each (each within its own 200 MiB) would hold 900 MiB; the call's total is
    450 MiB. The resident anonymous memory of the sandbox's processes, sampled from outside, stays under it."""
    hog = "import time\nblock = bytearray(150 * 2**20)\nblock[::4096] = b'x' * len(block[::4096])\ntime.sleep(4)\n"
    code = f"""
import os, sys
children = []
for _ in range(6):
    try:
        child = os.fork()
    except OSError as exc:
        print("fork refused:", exc.strerror, flush=True)
        break
    if child == 0:
        os.execv(sys.executable, [sys.executable, "-c", {hog!r}, {marker!r}])
    children.append(child)
for child in children:
    print("hog ended", os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]), flush=True)
"""
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, sum(_rss_anon(pid) for pid in host_processes_with(marker)))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        result = run(bounded_box, code)
    finally:
        done.set()
        sampler.join()
    print(f"peak resident: {peak / MiB:.0f} MiB")
    # The hogs did allocate, and never past the total (the sum is read process by process: a hog killed and
    # another grown between two reads could add a little).
    assert 100 * MiB < peak <= BOUNDED.total_memory() + 16 * MiB
    if bounded_box.cgroups:
        assert result.limits_hit == ["memory"] and "hog ended -9" in result.stdout  # the kernel killed some
    else:  # 450 MiB // 200 MiB: two processes, the program and one hog
        assert bounded_box.bounds().processes == 2
        assert result.stdout.startswith("fork refused: Resource temporarily unavailable\nhog ended 0\n")
    assert host_processes_with(marker) == []


def _rss_anon(pid: int) -> int:
    with contextlib.suppress(OSError, StopIteration):
        status = Path(f"/proc/{pid}/status").read_text().splitlines()
        return int(next(line for line in status if line.startswith("RssAnon:")).split()[1]) * 1024
    return 0


def test_processes_bounded_as_a_whole(bounded_box: Sandbox) -> None:
    """Forks until refused: the program's processes stop at the call's bound (its first process included); with
    a pids cgroup the refusal is a limit ironloop saw (``processes``)."""
    code = """
import os, time
alive = 1
while True:
    try:
        if os.fork() == 0:
            time.sleep(30)
            os._exit(0)
    except OSError as exc:
        print("refused at", alive, exc.strerror, flush=True)
        break
    alive += 1
"""
    result = run(bounded_box, code)
    bounds = bounded_box.bounds()
    assert result.stdout == f"refused at {bounds.processes} Resource temporarily unavailable\n"
    assert result.limits_hit == (["processes"] if bounded_box.cgroups else [])


def test_cpu_rate_bounded_as_a_whole(box: Sandbox) -> None:
    """Four processes spinning for two seconds with ``cpus=0.02``: together they get about 0.04 CPU seconds.
    Unbounded they take what the cores give them: 2 s or more on an idle 2-core machine, still 0.5 s measured
    with a load average of 11 on it (the bound is 0.1 s here)."""
    sandbox = dataclasses.replace(box, limits=dataclasses.replace(LIMITS, cpus=0.02, wall_s=30.0))
    _require("cpu" in sandbox.bounds().plan.controllers, f"no cpu cgroup here ({sandbox.bounds().describe()})")
    code = """
import os, time
children = []
for _ in range(4):
    if (child := os.fork()) == 0:
        end = time.monotonic() + 2.0
        while time.monotonic() < end:
            pass
        os._exit(0)
    children.append(child)
for child in children:
    os.waitpid(child, 0)
times = os.times()
print(round(times.children_user + times.children_system, 2))
"""
    result = run(sandbox, code)
    assert float(result.stdout) < 0.02 * 2.0 * 2 + 0.02  # twice the bound, plus a few scheduler periods


# -- output and the report ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stop", ["cpu", "timeout"])
def test_output_printed_before_a_limit_is_returned(box: Sandbox, stop: str) -> None:
    """No flush: Python runs unbuffered (``-u``; ``-I`` ignores PYTHONUNBUFFERED), so the line is not lost."""
    spin = dataclasses.replace(box, limits=dataclasses.replace(LIMITS, cpu_s=1, wall_s=30.0))
    code = {
        "cpu": "print('partial')\nwhile True:\n    pass",
        "timeout": "print('partial')\nimport time\ntime.sleep(60)",
    }
    result = run(spin if stop == "cpu" else box, code[stop])
    assert result.stdout == "partial\n" and result.limits_hit == [stop]


def test_attack_forge_the_report(box: Sandbox) -> None:
    """The program writes claims on every descriptor it has or can reopen, raises ``MemoryError`` itself, and
    exits with 152 (what bwrap gives for SIGXCPU): none of it becomes a limit or a signal."""
    code = """
import os
forged = b'memory\\nprocesses\\ncpu\\n{"exit_status": 0, "signal": "SIGXCPU", "cpu": true}\\n'
written = []
for fd in range(3, 1024):
    try:
        os.write(fd, forged)
        written.append(fd)
    except OSError:
        pass
for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError as exc:
        print("fds of", pid, "refused:", type(exc).__name__)
        continue
    for fd in fds:
        try:
            with open(f"/proc/{pid}/fd/{fd}", "wb", buffering=0) as reopened:
                reopened.write(forged)
            written.append(f"{pid}/{fd}")
        except OSError:
            pass
try:
    open("/proc/1/mem", "rb").close()
    print("pid 1 memory opened")
except OSError as exc:
    print("pid 1 memory refused:", type(exc).__name__)
print("written", written, flush=True)
raise MemoryError
"""
    result = run(box, code)
    assert "fds of 1 refused: PermissionError" in result.stdout
    assert "written ['2/0']" in result.stdout  # nothing but its own stdin, /dev/null
    assert "pid 1 memory refused: PermissionError" in result.stdout
    assert result.stderr.splitlines()[-1] == "MemoryError"
    assert result.limits_hit == [] and result.signal is None and result.exit_status == 1
    forged_exit = run(box, "import sys\nsys.exit(128 + 24)")
    assert forged_exit.exit_status == 152 and forged_exit.signal is None and forged_exit.limits_hit == []
    self_signalled = run(box, "import os, signal\nos.kill(os.getpid(), signal.SIGXCPU)")
    assert self_signalled.signal == "SIGXCPU" and self_signalled.limits_hit == []  # true, but no CPU limit hit


# -- where the bounds come from ------------------------------------------------------------------------------------


def test_the_cgroups_this_machine_allows_are_used(box: Sandbox) -> None:
    """What this machine allows is what a call gets: no cgroup dropped on the way (CI must have them all)."""
    bounds = box.bounds()
    print(bounds.describe())
    assert bounds.plan == CgroupPlan.detect() and bounds.note is None
    if os.environ.get("CI") == "true":
        assert set(bounds.plan.controllers) == {"memory", "pids", "cpu"} and bounds.plan.kill is not None


def _cgroup_dir(path: Path, subtree_control: str | None = None) -> Path:
    path.mkdir(parents=True)
    (path / "cgroup.procs").write_text("")
    if subtree_control is not None:
        (path / "cgroup.subtree_control").write_text(subtree_control)
    return path


def test_cgroup_plan_reads_v2_and_hybrid_layouts(tmp_path: Path) -> None:
    """The plan, and the files a call writes, on made-up trees: cgroup v2 with its controllers delegated, and
    the hybrid layout of this machine (v1 controllers, the v2 hierarchy for ``cgroup.kill`` only)."""
    service = _cgroup_dir(tmp_path / "v2" / "service", subtree_control="memory pids cpu\n")
    mountinfo = f"30 20 0:26 / {tmp_path / 'v2'} rw - cgroup2 cgroup2 rw\n"
    plan = CgroupPlan.from_text("0::/service\n", mountinfo)
    assert set(plan.controllers) == {"memory", "pids", "cpu"} and plan.kill == plan.controllers["memory"]
    CallCgroup(plan).open(memory_bytes=300 * MiB, tasks=10, cpus=0.5)
    (created,) = [entry for entry in service.iterdir() if entry.is_dir()]
    written = {file.name: file.read_text() for file in created.iterdir()}
    assert written == {"memory.max": str(300 * MiB), "pids.max": "10", "cpu.max": "50000 100000"}  # no swap file
    assert CgroupPlan.from_text("0::/elsewhere\n", mountinfo) == CgroupPlan()  # not visible in this mount

    memory, pids = _cgroup_dir(tmp_path / "memory" / "job"), _cgroup_dir(tmp_path / "pids")
    _cgroup_dir(tmp_path / "unified", subtree_control="")
    mountinfo = "\n".join(
        f"3{i} 20 0:2{i} / {tmp_path / name} rw - {kind} cgroup rw,{options}"
        for i, (name, kind, options) in enumerate(
            [("memory", "cgroup", "memory"), ("pids", "cgroup", "pids"), ("unified", "cgroup2", "nsdelegate")]
        )
    )
    plan = CgroupPlan.from_text("4:memory:/job\n3:pids:/\n1:cpu:/\n0::/\n", mountinfo)
    assert plan.controllers == {"memory": Hierarchy(memory, 1), "pids": Hierarchy(pids, 1)}  # cpu: not mounted
    assert plan.kill == Hierarchy(tmp_path / "unified", 2)


# -- refusing without isolation ------------------------------------------------------------------------------------


def test_refuses_to_run_without_bubblewrap(tmp_path: Path) -> None:
    sentinel = tmp_path / "ran-unsandboxed"
    sandbox = Sandbox(bwrap="/nonexistent/bwrap")
    with pytest.raises(SandboxUnavailableError, match=r"bubblewrap .* not installed.*apt-get install bubblewrap"):
        sandbox.run(f"open({str(sentinel)!r}, 'w').write('ran')")
    assert not sentinel.exists()
    tool = make_run_python_tool(sandbox)
    with pytest.raises(SandboxUnavailableError):
        tool.invoke({"code": f"open({str(sentinel)!r}, 'w').write('ran')"})
    assert not sentinel.exists()


def test_refuses_when_the_sandbox_cannot_be_built(box: Sandbox, tmp_path: Path) -> None:
    sentinel = tmp_path / "ran-unsandboxed"
    sandbox = Sandbox(python="/nonexistent/python3")
    with pytest.raises(SandboxUnavailableError, match="cannot create its sandbox"):
        sandbox.run(f"open({str(sentinel)!r}, 'w').write('ran')")
    assert not sentinel.exists()


# -- in the agent --------------------------------------------------------------------------------------------------


def test_run_python_in_an_agent(box: Sandbox) -> None:
    model = replay_model(turn(call("run_python", code="print(6 * 7)")))
    agent = build_agent(model, [make_run_python_tool(box)], policies={"run_python": RUN_PYTHON_POLICY})
    state = agent.invoke({"messages": [("user", "six times seven?")]}, {"configurable": {"thread_id": "sandbox"}})
    (message,) = observations(state["messages"]).values()
    assert json.loads(message.content)["stdout"] == "42\n"
