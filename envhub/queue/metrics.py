"""The job queue's depth, read from Redis when Prometheus scrapes.

Nothing is counted in memory: the queue is shared by every web replica and
worker, so its depth is a fact of Redis, read at scrape time (one pipeline:
the queue's length and the sizes of RQ's started, scheduled, deferred and
failed registries, without RQ's clean-up of expired entries, which would
write). Every web replica reports the same figures; take ``max`` across them.
An unreachable Redis makes ``envhub_queue_up`` 0 and the depth absent, never a
failed scrape: the other figures still arrive.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry
from redis.exceptions import RedisError
from rq import Queue
from rq.registry import DeferredJobRegistry, FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry

from envhub.queue.redis_queue import SERIALIZER, redis_connection

# Where the queue is: (Redis URL, queue name), read at every scrape; no URL, no figures.
Location = Callable[[], tuple[str, str]]

STATES = ("started", "scheduled", "deferred", "failed")
_REGISTRIES = (StartedJobRegistry, ScheduledJobRegistry, DeferredJobRegistry, FailedJobRegistry)


class QueueDepth(Collector):
    def __init__(self, location: Location) -> None:
        self.location = location

    def describe(self) -> list[GaugeMetricFamily]:
        return []  # read at collect time only: registering asks Redis nothing

    def collect(self) -> Iterator[GaugeMetricFamily]:
        url, name = self.location()
        if not url:
            return
        up = GaugeMetricFamily("envhub_queue_up", "1 when the job queue's Redis answered this scrape")
        depth = GaugeMetricFamily(
            "envhub_queue_jobs",
            "Jobs in the queue (queued) and in RQ's registries (started, scheduled, deferred, failed)",
            labels=["queue", "state"],
        )
        try:
            counts = self._counts(url, name)
        except RedisError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        for state, count in counts.items():
            depth.add_metric([name, state], count)
        yield up
        yield depth

    @staticmethod
    def _counts(url: str, name: str) -> dict[str, int]:
        connection = redis_connection(url)
        queue = Queue(name, connection=connection, serializer=SERIALIZER)
        pipe = connection.pipeline(transaction=False)
        pipe.llen(queue.key)
        for registry in _REGISTRIES:
            pipe.zcard(registry(queue=queue).key)
        return dict(zip(("queued", *STATES), (int(n) for n in pipe.execute()), strict=True))


_lock = threading.Lock()
_registered: dict[int, QueueDepth] = {}


def register_queue_depth(location: Location, registry: CollectorRegistry = REGISTRY) -> QueueDepth:
    """Add the queue's depth to ``registry`` once per process (every app made after the first
    shares it: it reads ``location`` at each scrape)."""
    with _lock:
        collector = _registered.get(id(registry))
        if collector is None:
            collector = _registered[id(registry)] = QueueDepth(location)
            registry.register(collector)
        collector.location = location
        return collector
