"""`ironloop serve-tools`: the local services as a real HTTP server, with named fault profiles."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("profile", ["none", "harsh"])
def test_serve_tools_serves_search_and_payments(profile: str) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "ironloop", "serve-tools", "--port", str(port), "--profile", profile, "--seed", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        assert f"http://127.0.0.1:{port}" in banner and f"profile {profile}" in banner
        url = f"http://127.0.0.1:{port}"
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
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=20)
    assert process.returncode in (0, 130)


def test_serve_tools_refuses_a_taken_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "ironloop", "serve-tools", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in result.stderr
