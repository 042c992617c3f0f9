"""GitHub webhook deliveries: verify, record once, hand to a job.

The route gives the raw body and three headers. Nothing is trusted before a
connected project's webhook secret is shown to have signed the body (HMAC
SHA-256, compared in constant time); then the delivery is recorded under its
delivery id and the body's digest, so GitHub redelivering it, or anyone
replaying a captured one under a new id, does nothing the second time. The
work happens in ``envhub.jobs.github.handle_delivery``; a delivery the queue
could not take stays ``queued`` in the database and the reconciler hands it
over again (:func:`redrive_deliveries`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, or_
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from envhub.domain.github import (
    DELIVERY_ID,
    EVENT_NAME,
    SIGNATURE_PREFIX,
    PayloadInvalid,
    body_digest,
    ignored_because,
    repository_of,
    signature_matches,
    summarize,
)
from envhub.errors import SecretUnreadable, WebhookMalformed, WebhookSignatureInvalid
from envhub.models import GithubConnection, WebhookDelivery
from envhub.models.base import utcnow
from envhub.queue.base import JobQueue, QueueUnavailable
from envhub.services.github import webhook_secret

log = logging.getLogger(__name__)

DELIVERY_JOB = "envhub.jobs.github.handle_delivery"
# A delivery still queued after this long was lost on its way to a worker.
_REDRIVE_AFTER = timedelta(seconds=30)
# The queue may go on calling a job "started" long after its worker was killed (until RQ's
# own timeout): past this, a delivery is handed over again even then. Applying one twice is
# safe (a pull request adopts the environment an earlier try made); a live job waits on GitHub
# for a minute at most.
_STUCK_AFTER = timedelta(minutes=5)


@dataclass(frozen=True)
class Received:
    """What envhub did with a delivery: ``queued`` (for a job), ``done`` (a ping), ``ignored`` (and why)
    or ``duplicate``."""

    status: str
    delivery: str
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        answer = {"status": self.status, "delivery": self.delivery}
        if self.reason:
            answer["reason"] = self.reason
        return answer


def receive_github_delivery(
    *,
    session: Session,
    queue: JobQueue,
    event: str | None,
    delivery_id: str | None,
    signature: str | None,
    body: bytes,
) -> Received:
    if not event or not EVENT_NAME.fullmatch(event):
        raise WebhookMalformed(
            "X-GitHub-Event is missing or is not an event name", details={"header": "X-GitHub-Event"}
        )
    if not delivery_id or not DELIVERY_ID.fullmatch(delivery_id):
        raise WebhookMalformed(
            "X-GitHub-Delivery is missing or is not a delivery id", details={"header": "X-GitHub-Delivery"}
        )
    if not signature or not signature.startswith(SIGNATURE_PREFIX):
        raise WebhookSignatureInvalid("the delivery is not signed (X-Hub-Signature-256)")
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WebhookMalformed("the body is not JSON") from exc
    try:
        repository = repository_of(payload)
    except PayloadInvalid as exc:
        raise WebhookMalformed(str(exc)) from exc
    signed_by = [
        connection.id
        for connection in _candidates(session, repository, payload)
        if connection.id is not None and _signed(connection, body, signature)
    ]
    if not signed_by:
        raise WebhookSignatureInvalid("no connected project's webhook secret signed this delivery")
    try:
        summary = summarize(event, payload)
    except PayloadInvalid as exc:
        raise WebhookMalformed(str(exc)) from exc
    reason = ignored_because(event, summary)
    pong = event == "ping"  # GitHub's hello when the hook is made: nothing to do but say it works
    delivery = WebhookDelivery(
        delivery_id=delivery_id,
        body_digest=body_digest(body),
        event=event,
        action=str(summary.get("action", ""))[:50],
        repository=repository,
        connection_ids=sorted(signed_by),
        summary=summary,
        state="ignored" if reason else "done" if pong else "queued",
        message=reason or ("the webhook reaches envhub" if pong else ""),
        processed_at=utcnow() if reason or pong else None,
    )
    session.add(delivery)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        return Received("duplicate", delivery_id, "this delivery was received before")
    if reason:
        return Received("ignored", delivery_id, reason)
    if pong:
        return Received("done", delivery_id, "the webhook reaches envhub")
    assert delivery.id is not None
    _dispatch(queue, delivery.id)
    return Received("queued", delivery_id)


def _candidates(session: Session, repository: str, payload: Any) -> list[GithubConnection]:
    """The connections that may have sent it: by repository, else (an App's own events) by installation."""
    conditions = []
    if repository:
        conditions.append(func.lower(GithubConnection.repository) == repository.lower())
    installation = payload.get("installation") if isinstance(payload, dict) else None
    if isinstance(installation, dict) and isinstance(installation.get("id"), int):
        conditions.append(col(GithubConnection.installation_id) == installation["id"])
    hook = payload.get("hook") if isinstance(payload, dict) else None
    if isinstance(hook, dict) and isinstance(hook.get("app_id"), int):
        conditions.append(col(GithubConnection.app_id) == hook["app_id"])
    if not conditions:
        return []
    return list(session.exec(select(GithubConnection).where(or_(*conditions))))


def _signed(connection: GithubConnection, body: bytes, header: str) -> bool:
    try:
        secret = webhook_secret(connection)
    except SecretUnreadable:
        log.warning("the webhook secret of project %s cannot be read", connection.project_id)
        return False
    return signature_matches(secret, body, header)


def _dispatch(queue: JobQueue, delivery_row: int) -> bool:
    try:
        queue.enqueue(DELIVERY_JOB, delivery_row, job_id=f"github-delivery-{delivery_row}")
    except QueueUnavailable as exc:
        log.warning("queue unavailable, webhook delivery %s will be re-driven: %s", delivery_row, exc)
        return False
    return True


def redrive_deliveries(*, session: Session, queue: JobQueue) -> list[int]:
    """Hand deliveries that waited too long back to the queue (the reconciler calls this)."""
    before = utcnow() - _REDRIVE_AFTER
    stuck = session.exec(
        select(WebhookDelivery.id, WebhookDelivery.received_at)
        .where(WebhookDelivery.state == "queued", col(WebhookDelivery.received_at) < before)
        .order_by(col(WebhookDelivery.id))
        .limit(100)
    )
    redriven = []
    long_ago = utcnow() - _STUCK_AFTER
    for delivery_row, received_at in stuck:
        assert delivery_row is not None
        if received_at > long_ago and queue.is_pending(f"github-delivery-{delivery_row}"):
            continue
        if not _dispatch(queue, delivery_row):
            break
        redriven.append(delivery_row)
    return redriven
