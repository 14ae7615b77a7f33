"""``run_python`` under attack: one test per attack, each checking the attack really ran and was contained.

The sandbox needs bubblewrap. Without it (or without user namespaces) these tests fail when ``$CI`` is "true"
and are skipped, loudly, otherwise; the refuse-when-unavailable test runs everywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import secrets
import socket
import sqlite3
import time
from pathlib import Path

import pytest
from ironloop.graph import build_agent
from ironloop.tools import RUN_PYTHON_POLICY, Sandbox, SandboxLimits, SandboxResult, SandboxUnavailableError
from ironloop.tools.sandbox import make_run_python_tool

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
    code = "print('allocating', flush=True)\nhoard = []\nwhile True:\n    hoard.append(bytearray(50 * 2**20))"
    result = run(box, code)
    assert result.stdout == "allocating\n"
    assert result.limit == "memory" and result.stderr.splitlines()[-1] == "MemoryError"


def test_attack_infinite_loop(box: Sandbox) -> None:
    result = run(box, "print('spinning', flush=True)\nwhile True:\n    pass")
    assert result.stdout == "spinning\n"
    assert result.limit == "cpu" and result.signal == "SIGXCPU"
    assert result.duration_s < LIMITS.wall_s


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
    assert processes.keys() == {"1", "2"}  # bwrap's init and the program: nothing of the host
    assert processes["1"].endswith("bwrap") and "python" in processes["2"]
    host_init = Path("/proc/1/cmdline").read_bytes().split(b"\0")[0].decode()
    assert host_init not in processes.values() or host_init.endswith("bwrap")


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
