"""GitHub jobs: apply a recorded webhook delivery; tell GitHub what a pull request's environment does."""

from __future__ import annotations

from envhub.jobs.observed import observed
from envhub.models.db import session_scope
from envhub.services import ports, pull_requests


@observed
def handle_delivery(delivery_row: int) -> str:
    with session_scope() as session:
        return pull_requests.apply_delivery(session=session, queue=ports.queue(), delivery_row=delivery_row)


@observed
def sync_pull_request(pr_row: int) -> str:
    with session_scope() as session:
        return pull_requests.sync_to_github(session=session, pr_row=pr_row)
