"""Apply a recorded GitHub webhook delivery (``services/webhooks.py`` records, this acts)."""

from __future__ import annotations

from envhub.models.db import session_scope
from envhub.services import ports, pull_requests


def handle_delivery(delivery_row: int) -> str:
    with session_scope() as session:
        return pull_requests.apply_delivery(session=session, queue=ports.queue(), delivery_row=delivery_row)
