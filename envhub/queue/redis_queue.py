"""RQ adapter of the queue port.

Nothing read from Redis is unpickled, and a worker runs only envhub's jobs.
RQ pickles job data by default, and whoever can write to Redis could then run
any code in every process that reads a job (a worker, or the web process
asking whether a job is pending: RQ unpickles a job's ``meta`` and ``result``
just to load it). So every Queue, Worker and Job made here uses
:data:`SERIALIZER` (JSON: jobs take ids, STYLE.md 6), and jobs are loaded as
:class:`GuardedJob`, which refuses to call anything but the functions the
worker names, and ignores the callbacks and webhooks a job may carry.
All of RQ's objects are built in this module, so none can miss either.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from redis import Redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, RedisError
from redis.retry import Retry
from rq import Queue, SimpleWorker
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from envhub.queue.base import QueueUnavailable

_PENDING = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED}

SERIALIZER = JSONSerializer


class RefusedJob(Exception):
    """A job in Redis names something that is not one of envhub's jobs."""


class GuardedJob(Job):
    """A job that runs only if it names one of :attr:`runnable` (dotted paths)."""

    runnable: ClassVar[frozenset[str]] = frozenset()

    @property
    def func(self) -> Callable[..., Any]:
        name = self.func_name
        if self.instance is not None or name not in self.runnable:
            raise RefusedJob(f"job {self.id} names {name!r}, which is not one of envhub's jobs; not run")
        return super().func  # type: ignore[no-any-return]

    # envhub sets no callbacks; any a job carries were written by someone else.
    @property
    def success_callback(self) -> None:
        return None

    @property
    def failure_callback(self) -> None:
        return None

    @property
    def stopped_callback(self) -> None:
        return None

    def restore(self, raw_data: Any) -> Any:
        restored = super().restore(raw_data)
        self.webhooks = []  # nor webhooks: a worker would POST the job to any URL named there
        if "unserialized" in self.meta:  # RQ keeps meta it could not decode as raw bytes
            self.meta = {}
        return restored


def guarded_job_class(runnable: Iterable[str]) -> type[GuardedJob]:
    return type("EnvhubJob", (GuardedJob,), {"runnable": frozenset(runnable)})


# A Redis that is down or hangs (stopped, paused, a dead network path) must not
# hold up a request: every command gives up after a few seconds (one retry only
# when a pooled connection turns out closed, never after a timeout, which would
# double the wait), and the caller sees QueueUnavailable
# (the work stays recorded in the database; the reconciler re-drives it).
# RQ raises the socket timeout of a worker's own connection above its blocking
# dequeue, so workers still wait for jobs as long as they like.
CONNECT_TIMEOUT = 3.0
COMMAND_TIMEOUT = 3.0


@functools.cache
def redis_connection(url: str) -> Redis:
    return Redis.from_url(
        url,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=COMMAND_TIMEOUT,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.1), 1, supported_errors=(ConnectionError,)),
        health_check_interval=30,
    )


class RedisJobQueue:
    def __init__(self, redis_url: str, *, name: str = "envhub", job_timeout: int = 1800) -> None:
        self.connection = redis_connection(redis_url)
        self.job_timeout = job_timeout
        self._password = str(self.connection.connection_pool.connection_kwargs.get("password") or "")
        self.queue = Queue(
            name,
            connection=self.connection,
            default_timeout=job_timeout,
            serializer=SERIALIZER,
            job_class=GuardedJob,
        )

    def enqueue(self, function: str, *args: object, job_id: str) -> None:
        try:
            self.queue.enqueue(
                function,
                *args,
                job_id=job_id,
                result_ttl=3600,
                failure_ttl=24 * 3600,
            )
        except RedisError as exc:
            raise QueueUnavailable(self._redacted(exc)) from exc

    def is_pending(self, job_id: str) -> bool:
        try:
            job = GuardedJob.fetch(job_id, connection=self.connection, serializer=SERIALIZER)
            return job.get_status(refresh=False) in _PENDING
        except NoSuchJobError:
            return False
        except RedisError as exc:
            raise QueueUnavailable(self._redacted(exc)) from exc

    def worker(self, *, runnable: Iterable[str]) -> SimpleWorker:
        """An RQ worker on this queue that runs only the named job functions, each in the worker's
        own process (no fork per job: what jobs need stays warm between them, see jobs/worker.py)."""
        job_class = guarded_job_class(runnable)
        queue = Queue(
            self.queue.name,
            connection=self.connection,
            default_timeout=self.job_timeout,
            serializer=SERIALIZER,
            job_class=job_class,
        )
        return SimpleWorker([queue], connection=self.connection, serializer=SERIALIZER, job_class=job_class)

    def _redacted(self, exc: Exception) -> str:
        # redis-py's messages name host and port only; this makes sure for good.
        message = str(exc)
        return message.replace(self._password, "***") if self._password else message
