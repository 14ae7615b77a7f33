"""What a worker refuses to start with, in one place for ``ironloop worker`` and ``celery -A ironloop.distributed``."""

from __future__ import annotations

import os

from ironloop.checkpoints.database import parse_url
from ironloop.distributed.agents import AgentSpecError, load_factory
from ironloop.distributed.settings import DEFAULT_AGENT, Settings
from ironloop.tools.builtin import SEARCH_URL_ENV
from ironloop.tools.errors import IronloopError


class FleetConfigError(IronloopError, ValueError):
    """The worker's configuration cannot work; the message says what to change."""


def check_fleet(settings: Settings, *, concurrency: int | str | None, solo: bool = False) -> None:
    """Raise `FleetConfigError` for a SQLite database under more than one worker process, an agent factory that
    cannot be loaded, or the demo agent without the shared services' URL."""
    try:
        url = parse_url(settings.db_url)
    except ValueError as exc:
        raise FleetConfigError(str(exc)) from None
    processes = 1 if solo else concurrency
    if url.get_backend_name() == "sqlite" and processes != 1:
        raise FleetConfigError(
            f"SQLite ({settings.db_url}) cannot be shared by {processes} worker processes: run one "
            "(--concurrency 1), or point every worker at PostgreSQL or MariaDB (--db postgresql://...)"
        )
    try:
        load_factory(settings.agent)
    except AgentSpecError as exc:
        raise FleetConfigError(str(exc)) from None
    if settings.agent == DEFAULT_AGENT and not os.environ.get(SEARCH_URL_ENV):
        raise FleetConfigError(
            f"the demo agent's tools need ${SEARCH_URL_ENV}: the tool services every worker shares (start them "
            f"with `ironloop serve-tools` and set {SEARCH_URL_ENV}=http://HOST:8765); a worker never starts a "
            "private copy"
        )
