"""Change notifications: "environment 12 changed", pushed to open dashboards.

Best effort by design: the database holds the truth, a lost notification only
delays a page update until its next periodic refresh.
"""

from __future__ import annotations

import logging

from redis.exceptions import RedisError

from envhub.queue.redis_queue import redis_connection

log = logging.getLogger(__name__)

CHANNEL_PREFIX = "envhub:changed:"


def environment_channel(environment_id: int) -> str:
    return f"{CHANNEL_PREFIX}environment:{environment_id}"


def project_channel(project_id: int) -> str:
    return f"{CHANNEL_PREFIX}project:{project_id}"


def notify(redis_url: str, *channels: str) -> None:
    try:
        connection = redis_connection(redis_url)
        for channel in channels:
            connection.publish(channel, b"1")
    except RedisError as exc:
        log.debug("change notification dropped: %s", exc)
