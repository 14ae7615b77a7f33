"""Scale out: Celery workers run agent threads from a shared checkpoint database (docs/scale-out.md).

    celery -A ironloop.distributed worker        # or: ironloop worker --concurrency 4

    from ironloop.distributed import submit
    handle = submit("What is the combined city-proper population of Paris and Lyon?")
    print(handle.thread_id, handle.wait(timeout_s=60).answer)

Needs the ``celery`` extra (``pip install 'ironloop[celery]'``). The names below load on first use, so the
settings (`distributed.settings`, read from the environment) can be set before the Celery app is made.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "app": "ironloop.distributed.celery_app",
    "run_thread": "ironloop.distributed.celery_app",
    "Outcome": "ironloop.distributed.runs",
    "Submitted": "ironloop.distributed.submission",
    "WaitTimeoutError": "ironloop.distributed.submission",
    "enqueue_continuation": "ironloop.distributed.submission",
    "submit": "ironloop.distributed.submission",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
