"""Names of the change-notification channels (the port is in ``queue/base.py``)."""

from __future__ import annotations

CHANNEL_PREFIX = "envhub:changed:"


def environment_channel(environment_id: int) -> str:
    return f"{CHANNEL_PREFIX}environment:{environment_id}"


def project_channel(project_id: int) -> str:
    return f"{CHANNEL_PREFIX}project:{project_id}"
