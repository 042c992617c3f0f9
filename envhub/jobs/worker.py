"""``python -m envhub.jobs.worker``: an RQ worker with the reconciler inside."""

from __future__ import annotations

import logging
import sys

from rq import Worker

from envhub.config import get_settings
from envhub.errors import ConfigurationError
from envhub.jobs.reconciler import ReconcilerThread, RuntimeWatchThread
from envhub.services import ports


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(levelname)s %(name)s: %(message)s")
    try:
        settings = get_settings()
        queue = ports.queue()
    except ConfigurationError as exc:
        print(f"envhub worker: {exc.message}", file=sys.stderr)
        return 2
    worker = Worker([queue.queue], connection=queue.connection)
    reconciler = ReconcilerThread(queue.connection, worker.name)
    reconciler.start()
    watcher = RuntimeWatchThread()
    watcher.start()
    try:
        worker.work(with_scheduler=False, logging_level="INFO")
    finally:
        reconciler.stop()
        watcher.stop()
    logging.getLogger(__name__).info("worker for %s stopped", settings.queue_name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
