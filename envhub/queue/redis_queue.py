"""RQ adapter of the queue port."""

from __future__ import annotations

import functools

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from envhub.queue.base import QueueUnavailable

_PENDING = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED}


@functools.cache
def redis_connection(url: str) -> Redis:
    return Redis.from_url(url, socket_connect_timeout=5, health_check_interval=30)


class RedisJobQueue:
    def __init__(self, redis_url: str, *, name: str = "envhub", job_timeout: int = 1800) -> None:
        self.connection = redis_connection(redis_url)
        self.queue = Queue(name, connection=self.connection, default_timeout=job_timeout)

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
            raise QueueUnavailable(str(exc)) from exc

    def is_pending(self, job_id: str) -> bool:
        try:
            job = Job.fetch(job_id, connection=self.connection)
            return job.get_status(refresh=False) in _PENDING
        except NoSuchJobError:
            return False
        except RedisError as exc:
            raise QueueUnavailable(str(exc)) from exc
