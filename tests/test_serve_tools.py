"""`ironloop serve-tools`: the local services as a real HTTP server, with named fault profiles.

Every server a test starts is stopped by the test, whatever happens: SIGTERM, then SIGKILL by its own handle
if it has not stopped within its wait (and the test fails then).
"""

from __future__ import annotations

import contextlib
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

STOP_WAIT_S = 20.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve_tools_argv(port: int, *options: str) -> list[str]:
    return [sys.executable, "-m", "ironloop", "serve-tools", "--port", str(port), *options]


@contextlib.contextmanager
def started(argv: list[str]) -> Iterator[subprocess.Popen[str]]:
    """The server, its banner read; killed on the way out if it is still running, whatever happened."""
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        assert "tool services on http://127.0.0.1:" in banner, (banner, process.poll())
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def stop(process: subprocess.Popen[str], how: signal.Signals) -> int | None:
    """Send ``how`` and wait; the exit code, or ``None`` if it had not stopped within `STOP_WAIT_S` (then it is
    killed)."""
    process.send_signal(how)
    try:
        return process.wait(timeout=STOP_WAIT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return None


@pytest.mark.parametrize(("profile", "how"), [("none", signal.SIGTERM), ("harsh", signal.SIGINT)])
def test_serve_tools_serves_search_and_payments(profile: str, how: signal.Signals) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with started(serve_tools_argv(port, "--profile", profile, "--seed", "3")) as process:
        statuses = []
        for i in range(40):
            try:
                statuses.append(
                    httpx.get(f"{url}/search", params={"q": f"Paris population {i}"}, timeout=0.5).status_code
                )
            except httpx.HTTPError:
                statuses.append(0)  # hang, reset or trickle: the harsh profile at work
        charge = httpx.post(
            f"{url}/charges", json={"customer_id": "c", "amount_cents": 5}, headers={"Idempotency-Key": "k"}, timeout=2
        )
        if profile == "none":
            assert set(statuses) == {200} and charge.status_code == 200
            assert httpx.get(f"{url}/charges").json()["charges"][0]["customer_id"] == "c"
        else:
            assert 200 in statuses and len(set(statuses)) > 1  # a mix of answers and faults
        assert stop(process, how) == 0
        _, stderr = process.communicate()
    assert "Traceback" not in stderr


def test_serve_tools_started_in_the_background_stops_on_sigterm() -> None:
    """A shell's background job ignores SIGINT (Ctrl-C is for the foreground): SIGTERM must stop it, cleanly."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # `trap '' INT` is what a shell does for `cmd &`; an ignored signal stays ignored across exec.
    command = "trap '' INT; exec " + shlex.join(serve_tools_argv(port, "--profile", "none"))
    with started(["sh", "-c", command]) as process:
        process.send_signal(signal.SIGINT)
        time.sleep(0.5)
        assert process.poll() is None and httpx.get(f"{url}/search", params={"q": "x"}, timeout=5).status_code == 200
        assert stop(process, signal.SIGTERM) == 0
        _, stderr = process.communicate()
    assert "Traceback" not in stderr
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/search", params={"q": "x"}, timeout=2)


def test_serve_tools_refuses_a_taken_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(serve_tools_argv(port), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in result.stderr
