"""The fault-injecting MCP server (`tests.mcp_fault_server`) as the tests drive it: over stdio or HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SERVER_SCRIPT = str(Path(__file__).with_name("mcp_fault_server.py"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(condition: Callable[[], Any], timeout_s: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:  # a zombie is dead for our purposes
        return stat.read().split(")")[-1].split()[0] != "Z"


class FaultServer:
    """One fault server: its state directory (the ledger), its config entry, and ways to hurt it.

    Over stdio the client starts the process (from the config entry); over HTTP this object runs it on a fixed
    port, and can restart it there after a kill, as a supervisor would.
    """

    def __init__(self, directory: Path, transport: str):
        self.state = directory
        self.state.mkdir(parents=True, exist_ok=True)
        self.transport = transport
        self.port = free_port() if transport == "http" else None
        self.process: subprocess.Popen[bytes] | None = None
        if transport == "http":
            self.start_http()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def entry(self, **settings: Any) -> dict[str, Any]:
        """This server's ``mcpServers`` entry, with ironloop settings (trust, policies...)."""
        if self.transport == "stdio":
            return {"command": sys.executable, "args": [SERVER_SCRIPT, "--state", str(self.state)], **settings}
        return {"url": self.url, "transport": "streamable_http", **settings}

    def start_http(self) -> None:
        args = [sys.executable, SERVER_SCRIPT, "--state", str(self.state), "--transport", "http"]
        args += ["--port", str(self.port)]
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL)
        wait_until(self._accepting, what=f"the HTTP MCP server on port {self.port}")

    def _accepting(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"the HTTP MCP server exited with {self.process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", self.port or 0), timeout=0.2).close()
        except OSError:
            return False
        return True

    def events(self, event: str | None = None) -> list[dict[str, Any]]:
        path = self.state / "ledger.jsonl"
        if not path.exists():
            return []
        found = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        return [e for e in found if event is None or e["event"] == event]

    def wait_for(self, event: str, count: int = 1, timeout_s: float = 20.0, **fields: Any) -> list[dict[str, Any]]:
        def matching() -> list[dict[str, Any]]:
            found = [e for e in self.events(event) if all(e.get(k) == v for k, v in fields.items())]
            return found if len(found) >= count else []

        return wait_until(matching, timeout_s, what=f"{count} {event!r} event(s) {fields or ''} in the ledger")

    def kill(self) -> int:
        """SIGKILL the process serving now (the one that logged the last ``start``)."""
        pid = int(self.events("start")[-1]["pid"])
        os.kill(pid, signal.SIGKILL)
        if self.process is not None and self.process.pid == pid:
            self.process.wait(timeout=10)
        return pid

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def config(**servers: dict[str, Any]) -> dict[str, Any]:
    return {"mcpServers": servers}
