"""``python -m envhub.launcher worker``: an RQ worker with the reconciler beside it.

Jobs run one after another in the worker's own process (RQ's SimpleWorker),
not each in a fork of it: what a job needs stays warm for the next one (the
database connections, the cluster's API client with its open connections
and discovery answers, the cluster's version, the helm binary's version
check, the compiled Kubernetes schemas). A fork per job paid for all of that
again in every job, about a tenth of a second each, several times on the way
from a merge to a running release. The job code was already written for a
long-lived process: the embedded default runs the same jobs in the web
process. A job still ends at its timeout (RQ's alarm in the worker).

The reconciler and the runtime's status watch are threads in a process of
their own, forked at start while the worker is still single-threaded, which
ends when the worker does: a job that wedges the worker does not stop the
reconciler from noticing and re-driving its work elsewhere.

Metrics (``ENVHUB_WORKER_METRICS_PORT``): the two processes count in their own
memory, so each serves its own figures, the worker on the port and its
reconciler process on the next one, as any two processes would be scraped.
prometheus_client's multiprocess mode would merge them behind one port, but
it needs a shared folder named before the library is first imported, files
per pid cleaned up after a SIGKILL, and gauges declared with a merge rule;
two ports need none of that. The fork comes before either server starts, so
the child inherits no server thread and only the zeroed figures.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import socket
import sys
import time

from prometheus_client import start_http_server

from envhub import logs
from envhub.config import Settings, get_settings
from envhub.errors import ConfigurationError
from envhub.jobs import releases as release_jobs
from envhub.jobs.reconciler import ReconcilerThread, RuntimeWatchThread
from envhub.models.db import get_engine, warm
from envhub.private_files import secure_data_dir
from envhub.queue.redis_queue import RedisJobQueue
from envhub.services import ports
from envhub.services.backups import BACKUP_JOB, RESTORE_JOB
from envhub.services.jobruns import CONVERGE_JOB
from envhub.services.pull_requests import SYNC_JOB
from envhub.services.releases import RENDER_JOB
from envhub.services.webhooks import DELIVERY_JOB

log = logging.getLogger(__name__)

# The only functions a job read from the queue may call (dotted paths).
RUNNABLE = frozenset({BACKUP_JOB, CONVERGE_JOB, DELIVERY_JOB, RENDER_JOB, RESTORE_JOB, SYNC_JOB})


def main() -> int:
    try:
        settings = get_settings()
        logs.configure(
            settings.log_format,
            process="worker",
            text="%(asctime)s worker %(levelname)s %(name)s: %(message)s",
        )
        secure_data_dir(settings.data_dir)
        queue = ports.queue()
        if not isinstance(queue, RedisJobQueue):
            raise ConfigurationError("the worker serves RQ jobs and needs the Redis queue")
        ports.runtime()  # configuration errors show here, once
    except ConfigurationError as exc:
        print(f"envhub worker: {exc.message}", file=sys.stderr)
        return 2
    background = _fork_background(queue)
    serve_metrics(settings, "worker")
    _preload()
    worker = queue.worker(runnable=RUNNABLE)
    try:
        worker.work(with_scheduler=False, logging_level="INFO")
    finally:
        _stop(background)
    log.info("worker for %s stopped", settings.queue_name)
    return 0


def _preload() -> None:
    """What jobs need, made before the first one: the job modules imported, the database's
    connection pool started, and what rendering a release asks of the cluster and of helm."""
    for name in sorted(RUNNABLE):
        importlib.import_module(name.rpartition(".")[0])
    warm()
    release_jobs.warm()


def _fork_background(queue: RedisJobQueue) -> int:
    """Start the reconciler and the status watch in a child process; returns its pid."""
    parent = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    code = 0
    try:
        _background(parent, queue)
    except KeyboardInterrupt:  # Ctrl-C in a terminal reaches both processes
        pass
    except BaseException:
        log.exception("reconciler process failed")
        code = 1
    finally:
        os._exit(code)


def serve_metrics(settings: Settings, process: str) -> int | None:
    """Serve this process's metrics (the worker on the port, its reconciler process on the next);
    returns the port, None when off. A port that cannot be had is logged: jobs matter more."""
    if not settings.worker_metrics_port:
        return None
    port = settings.worker_metrics_port + (1 if process == "reconciler" else 0)
    try:
        start_http_server(port, addr=settings.worker_metrics_host)
    except OSError as exc:
        log.error("%s metrics: cannot listen on %s:%s: %s", process, settings.worker_metrics_host, port, exc)
        return None
    log.info("%s metrics on http://%s:%s/metrics", process, settings.worker_metrics_host, port)
    return port


def _background(parent: int, queue: RedisJobQueue) -> None:
    get_engine().dispose(close=False)  # nothing shared with the worker's own connections
    ports.reset()
    settings = get_settings()
    if settings.log_format == logs.JSON:
        logs.configure(settings.log_format, process="reconciler", text="")
    serve_metrics(settings, "reconciler")
    reconciler = ReconcilerThread(queue.connection, f"{socket.gethostname()}:{os.getpid()}")
    watcher = RuntimeWatchThread()
    reconciler.start()
    watcher.start()
    while os.getppid() == parent:  # the worker is gone (even SIGKILLed): so are we
        time.sleep(0.5)


def _stop(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass
