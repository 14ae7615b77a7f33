"""The bundled tool services in a process of their own, for ``ironloop bench chaos``.

`start_tool_services` serves from a thread of the calling process. Under load that thread competes with the agent
for the GIL: every hand-over between the event loop and the server thread can wait a switch interval (5 ms), and
the server's CPU time is charged to the contender's latency. Real tool services are remote, so the bench runs
them in a child process: ``python -m benchmarks.chaos_service --profile P --seed S`` calls
``start_tool_services(profile=P, seed=S)`` (``--mcp``: search over MCP too), prints ``{"url": ...}``, waits for
a line on stdin, then prints what the bench judges by (the payments ledger, the faults served, its CPU time) and
exits.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from types import TracebackType
from typing import Any

START_TIMEOUT_S = 60.0


class RemoteServices:
    """A fresh ``start_tool_services(profile, seed)`` in a child process; `stop` returns its ledger and faults."""

    def __init__(self, profile: str, seed: int, *, mcp: bool = False):
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ironloop.benchmarks.chaos_service",
                "--profile",
                profile,
                "--seed",
                str(seed),
                *(["--mcp"] if mcp else []),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            self._process.kill()
            raise RuntimeError(f"the tool services (profile {profile!r}) did not start")
        ready = json.loads(line)
        self.url: str = ready["url"]
        self.mcp_url: str | None = ready.get("mcp_url")
        """Search over MCP (streamable HTTP), when started with ``mcp``."""
        self.cpu_at_start_s: float = ready["cpu_s"]
        """CPU the services' process spent starting (imports), to leave out of its figures."""
        self.result: dict[str, Any] | None = None

    def stop(self) -> dict[str, Any]:
        """End the services; their ledger (``charges``: [customer, amount_cents] each) and ``faults`` served."""
        if self.result is not None:
            return self.result
        process = self._process
        assert process.stdin is not None and process.stdout is not None
        try:
            process.stdin.write("stop\n")
            process.stdin.flush()
            line = process.stdout.readline()
            self.result = json.loads(line) if line else {"charges": [], "faults": {}}
        finally:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return self.result

    def kill(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def __enter__(self) -> RemoteServices:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.stop()
        else:
            self.kill()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.chaos_service")
    parser.add_argument("--profile", default="reference")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mcp", action="store_true", help="also serve search over MCP at /mcp/")
    args = parser.parse_args(argv)

    from ironloop.demo.services.server import start_tool_services

    services = start_tool_services(profile=args.profile, seed=args.seed, mcp=args.mcp)
    ready = {"url": services.url, "cpu_s": time.process_time(), **({"mcp_url": services.mcp_url} if args.mcp else {})}
    print(json.dumps(ready), flush=True)
    sys.stdin.readline()  # the bench is done (or gone: EOF)
    charges = [[c.customer_id, c.amount_cents] for c in services.ledger.snapshot()]
    faults = {"search": dict(services.search.counts), "payments": dict(services.payments.counts)}
    print(json.dumps({"charges": charges, "faults": faults, "cpu_s": time.process_time()}), flush=True)
    sys.stdout.flush()
    os._exit(0)  # requests still hanging on injected faults must not hold the exit (they would for HANG_S)


if __name__ == "__main__":
    sys.exit(main())
