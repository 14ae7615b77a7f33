"""Local tool services: real HTTP servers on 127.0.0.1 with seeded fault injection, for the offline demo,
the tests and the benchmarks."""

from ironloop.demo.services.faults import PROFILES, Fault, FaultInjector, FaultProfile, ServiceProfile
from ironloop.demo.services.payments import Charge, PaymentsLedger, create_payments_app
from ironloop.demo.services.search import create_search_app
from ironloop.demo.services.server import ServiceThread, ToolServices, start_search_service, start_tool_services

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
