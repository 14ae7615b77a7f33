"""Serving an ASGI app on 127.0.0.1 from a background thread (uvicorn), for the demo and the tests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

import uvicorn
from ironloop.demo.services.faults import FaultInjector, profile_named
from ironloop.demo.services.payments import Charge, PaymentsLedger, create_payments_app
from ironloop.demo.services.search import create_search_app
from ironloop.tools.credentials import Secret
from starlette.applications import Starlette
from starlette.types import ASGIApp


class ServiceThread:
    """A uvicorn server on a loopback port, in a daemon thread. Use as a context manager, or start()/stop().

    The socket is bound before the thread starts, so `url` is valid (and connectable) right away.
    """

    def __init__(
        self, app: ASGIApp, *, host: str = "127.0.0.1", port: int = 0, name: str = "service", lifespan: bool = False
    ):
        self.app = app
        self.name = name
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # accepted sockets inherit it
        try:
            self._socket.bind((host, port))
        except OSError as exc:
            self._socket.close()
            raise OSError(f"cannot listen on {host}:{port} for the {name}: {exc.strerror or exc}") from exc
        self.host, self.port = self._socket.getsockname()[:2]
        # "critical": injected faults (a dropped response) would otherwise print tracebacks; clients see real errors.
        config = uvicorn.Config(
            app,
            log_level="critical",
            access_log=False,
            lifespan="on" if lifespan else "off",
            loop="asyncio",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name=f"ironloop-{name}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _serve(self) -> None:
        self._server.run(sockets=[self._socket])

    def start(self, timeout_s: float = 10.0) -> ServiceThread:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the {self.name} did not start on {self.url}")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._server.force_exit = True  # requests left hanging by fault injection must not hold the shutdown
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._socket.close()

    def __enter__(self) -> ServiceThread:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@dataclass
class ToolServices:
    """The bundled tool services (search and payments) on one loopback server."""

    service: ServiceThread
    search: FaultInjector
    payments: FaultInjector
    ledger: PaymentsLedger

    mcp: bool = False
    """Search is also served over MCP (streamable HTTP) at `mcp_url`."""

    @property
    def url(self) -> str:
        return self.service.url

    @property
    def mcp_url(self) -> str:
        return f"{self.service.url}/mcp/"

    def stop(self) -> None:
        self.service.stop()

    def __enter__(self) -> ToolServices:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_tool_services(
    *,
    profile: str = "reference",
    seed: int = 0,
    port: int = 0,
    on_commit: Callable[[Charge], None] | None = None,
    payments_api_key: Secret | None = None,
    mcp: bool = False,
) -> ToolServices:
    """Start search (``/search``) and payments (``/charges``) on one 127.0.0.1 server. With
    ``payments_api_key`` the payments endpoints require it as a bearer token. With ``mcp`` (needs the ``mcp``
    extra), search is also an MCP tool at ``/mcp/`` (`demo.services.mcp_search`), drawing the same faults."""
    chosen = profile_named(profile)
    search = FaultInjector(chosen.search, seed)
    payments = FaultInjector(chosen.payments, seed)
    ledger = PaymentsLedger()
    payments_app = create_payments_app(payments, ledger, on_commit=on_commit, api_key=payments_api_key)
    routes = [*create_search_app(search).routes, *payments_app.routes]
    app = Starlette(routes=routes)
    if mcp:
        from ironloop.demo.services.mcp_search import create_mcp_search_app

        mcp_app = create_mcp_search_app(search)
        app = Starlette(routes=[*routes, *mcp_app.routes], lifespan=mcp_app.router.lifespan_context)
    service = ServiceThread(app, port=port, name="tool services", lifespan=mcp).start()
    return ToolServices(service, search, payments, ledger, mcp=mcp)


def start_search_service(
    *, profile: str = "reference", seed: int = 0, port: int = 0, payments_api_key: Secret | None = None
) -> tuple[ServiceThread, FaultInjector]:
    """Start the bundled tool services; returns the running server and the search endpoint's fault injector."""
    services = start_tool_services(profile=profile, seed=seed, port=port, payments_api_key=payments_api_key)
    return services.service, services.search
