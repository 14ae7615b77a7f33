"""Local tool services: real HTTP servers on 127.0.0.1 with seeded fault injection, for the offline demo,
the tests and the benchmarks.

The names below are imported when first used, so a process that needs one service (the MCP search server over
stdio, started anew for each session by some clients) does not pay for the others' imports.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    "PROFILES": "ironloop.demo.services.faults",
    "Fault": "ironloop.demo.services.faults",
    "FaultInjector": "ironloop.demo.services.faults",
    "FaultProfile": "ironloop.demo.services.faults",
    "ServiceProfile": "ironloop.demo.services.faults",
    "Charge": "ironloop.demo.services.payments",
    "PaymentsLedger": "ironloop.demo.services.payments",
    "create_payments_app": "ironloop.demo.services.payments",
    "create_search_app": "ironloop.demo.services.search",
    "ServiceThread": "ironloop.demo.services.server",
    "ToolServices": "ironloop.demo.services.server",
    "start_search_service": "ironloop.demo.services.server",
    "start_tool_services": "ironloop.demo.services.server",
}

__all__ = [
    "PROFILES",
    "Charge",
    "Fault",
    "FaultInjector",
    "FaultProfile",
    "PaymentsLedger",
    "ServiceProfile",
    "ServiceThread",
    "ToolServices",
    "create_payments_app",
    "create_search_app",
    "start_search_service",
    "start_tool_services",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


if TYPE_CHECKING:
    from ironloop.demo.services.faults import PROFILES, Fault, FaultInjector, FaultProfile, ServiceProfile
    from ironloop.demo.services.payments import Charge, PaymentsLedger, create_payments_app
    from ironloop.demo.services.search import create_search_app
    from ironloop.demo.services.server import ServiceThread, ToolServices, start_search_service, start_tool_services
