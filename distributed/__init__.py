"""Scale out: Celery workers run agent threads from a shared checkpoint database (docs/scale-out.md).

    celery -A ironloop.distributed worker        # or: ironloop worker --concurrency 4

    from ironloop.distributed import submit
    handle = submit("What is the combined metro population of Paris and Lyon?")
    print(handle.thread_id, handle.wait(timeout_s=60).answer)

Needs the ``celery`` extra (``pip install 'ironloop[celery]'``).
"""

from ironloop.distributed.app import app, run_thread
from ironloop.distributed.runs import Outcome
from ironloop.distributed.submit import Submitted, WaitTimeoutError, enqueue_continuation, submit

__all__ = ["Outcome", "Submitted", "WaitTimeoutError", "app", "enqueue_continuation", "run_thread", "submit"]
