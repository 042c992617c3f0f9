"""The adapters behind each port, built once per process from settings.

Interfaces (dashboard, API, jobs) get their ports here and pass them into the
use cases, so tests can hand the use cases other implementations.
"""

from __future__ import annotations

import functools

from envhub.config import get_settings
from envhub.errors import ConfigurationError
from envhub.queue.redis_queue import RedisJobQueue
from envhub.runtime import get_runtime
from envhub.runtime.base import Runtime
from envhub.urls.local import LocalUrls


@functools.cache
def runtime() -> Runtime:
    return get_runtime()


@functools.cache
def url_provider() -> LocalUrls:
    settings = get_settings()
    return LocalUrls(base_url=settings.base_url, domain=settings.local_url_domain)


def queue() -> RedisJobQueue:
    settings = get_settings()
    if not settings.redis_url:
        raise ConfigurationError(
            "ENVHUB_REDIS_URL is not set", hint="Start envhub with `make run`, or point it at a Redis."
        )
    return RedisJobQueue(settings.redis_url, name=settings.queue_name)


def reset() -> None:
    """Forget built adapters (tests that change settings)."""
    runtime.cache_clear()
    url_provider.cache_clear()
