"""``POST /webhooks/github`` as GitHub (and an attacker) would call it: issue 11 point 2."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlmodel import Session, select

from envhub.config import Settings
from envhub.domain.github import signature
from envhub.models import GithubConnection, WebhookDelivery
from envhub.models.base import utcnow
from envhub.services import ports
from envhub.services.webhooks import redrive_deliveries
from tests.github.conftest import REPOSITORY, Examples, GitHub
from tests.support.fakes import FakeQueue


def deliveries(session: Session) -> list[WebhookDelivery]:
    session.expire_all()
    return list(session.exec(select(WebhookDelivery).order_by(WebhookDelivery.id)))


def test_a_signed_pull_request_event_is_recorded_and_handed_to_a_job(
    github: GitHub, examples: Examples, connection: GithubConnection, session: Session
) -> None:
    answer = github.send("pull_request", examples.pull_request("opened"), delivery="d-opened-1")

    assert answer.status_code == 202, answer.text
    assert answer.json() == {"status": "queued", "delivery": "d-opened-1"}
    [row] = deliveries(session)
    assert (row.event, row.action, row.repository, row.state) == (
        "pull_request",
        "opened",
        REPOSITORY,
        "queued",
    )
    assert row.connection_ids == [connection.id]
    assert row.summary["number"] == 2
    assert row.summary["head_sha"] == examples.get("pull_request", "opened")["pull_request"]["head"]["sha"]
    assert ports.queue().is_pending(f"github-delivery-{row.id}")


def test_the_same_delivery_twice_does_nothing_the_second_time(
    github: GitHub, examples: Examples, connection: GithubConnection, session: Session
) -> None:
    payload = examples.pull_request("opened")
    first = github.send("pull_request", payload, delivery="d-twice")
    again = github.send("pull_request", payload, delivery="d-twice")

    assert first.status_code == 202
    assert again.status_code == 200
    assert again.json()["status"] == "duplicate"
    assert len(deliveries(session)) == 1


def test_a_captured_delivery_replayed_under_a_new_id_does_nothing(
    github: GitHub, examples: Examples, connection: GithubConnection, session: Session
) -> None:
    payload = examples.pull_request("opened")
    github.send("pull_request", payload, delivery="d-original")
    replayed = github.send("pull_request", payload, delivery="d-forged-new-id")

    assert replayed.status_code == 200
    assert replayed.json()["status"] == "duplicate"
    assert [d.delivery_id for d in deliveries(session)] == ["d-original"]


def test_a_wrong_or_missing_signature_is_refused_with_401(
    github: GitHub, examples: Examples, connection: GithubConnection, session: Session
) -> None:
    payload = examples.pull_request("opened")
    wrong = github.send("pull_request", payload, secret="not the secret")
    unsigned = github.send("pull_request", payload, headers={"X-Hub-Signature-256": ""})
    sha1_only = github.send("pull_request", payload, headers={"X-Hub-Signature-256": "sha1=" + "0" * 40})
    body = json.dumps(payload).encode()
    tampered = github.send(
        "pull_request",
        payload,
        body=body.replace(b'"opened"', b'"closed"'),
        headers={"X-Hub-Signature-256": signature(github.secret, body)},
    )

    for answer in (wrong, unsigned, sha1_only, tampered):
        assert answer.status_code == 401, answer.text
        assert answer.json()["code"] == "webhook_signature_invalid"
        assert answer.json()["hint"]
    assert deliveries(session) == []


def test_a_repository_no_project_connects_is_refused(
    github: GitHub, examples: Examples, connection: GithubConnection, session: Session
) -> None:
    payload = examples.pull_request("opened")
    payload["repository"]["full_name"] = "someone/else"

    answer = github.send("pull_request", payload)

    assert answer.status_code == 401
    assert answer.json()["code"] == "webhook_signature_invalid"


def test_events_envhub_does_not_act_on_are_answered_2xx_and_recorded_as_ignored(
    github: GitHub, examples: Examples, connection: GithubConnection, session: Session
) -> None:
    assigned = github.send("pull_request", examples.pull_request("assigned"), delivery="d-assigned")
    star = github.send("star", examples.get("star", "created"), delivery="d-star")
    hello = examples.get("ping")
    hello["repository"]["full_name"] = REPOSITORY  # the hook of the connected repository
    ping = github.send("ping", hello, delivery="d-ping")

    assert assigned.status_code == 200
    assert assigned.json()["status"] == "ignored"
    assert "assigned" in assigned.json()["reason"]
    assert star.status_code == 200
    assert star.json()["status"] == "ignored"
    assert ping.status_code == 200
    assert ping.json() == {"status": "done", "delivery": "d-ping", "reason": "the webhook reaches envhub"}
    states = {d.delivery_id: d.state for d in deliveries(session)}
    assert states == {"d-assigned": "ignored", "d-star": "ignored", "d-ping": "done"}


def test_malformed_deliveries_get_4xx_never_5xx(
    github: GitHub, examples: Examples, connection: GithubConnection, session: Session
) -> None:
    good = examples.pull_request("opened")
    broken_sha = examples.pull_request("opened", sha="not-a-commit")
    no_head = examples.pull_request("opened")
    del no_head["pull_request"]["head"]
    number_as_text = examples.pull_request("opened")
    number_as_text["number"] = "2"
    cases = {
        "not JSON": github.send("pull_request", None, body=b"{not json"),
        "a JSON list": github.send("pull_request", None, body=b"[1, 2]"),
        "no event header": github.send("pull_request", good, headers={"X-GitHub-Event": ""}),
        "event header not a name": github.send("pull request!", good),
        "no delivery id": github.send("pull_request", good, headers={"X-GitHub-Delivery": ""}),
        "delivery id too long": github.send("pull_request", good, delivery="d" * 101),
        "head sha not a commit": github.send("pull_request", broken_sha),
        "no head": github.send("pull_request", no_head),
        "number as text": github.send("pull_request", number_as_text),
        "repository name not text": github.send("pull_request", {"repository": {"full_name": 5}}),
    }

    for case, answer in cases.items():
        assert 400 <= answer.status_code < 500, f"{case}: {answer.status_code} {answer.text}"
        assert answer.json()["code"] in {"webhook_malformed", "webhook_signature_invalid"}, case
    assert cases["not JSON"].status_code == 400
    assert cases["head sha not a commit"].json()["code"] == "webhook_malformed"
    assert deliveries(session) == []


def test_the_body_is_bounded(
    github: GitHub, examples: Examples, connection: GithubConnection, settings: Settings
) -> None:
    payload = examples.pull_request("opened")
    payload["padding"] = "x" * settings.webhook_max_body_bytes

    answer = github.send("pull_request", payload)

    assert answer.status_code == 413
    assert answer.json()["code"] == "payload_too_large"


def test_a_delivery_the_queue_could_not_take_is_handed_over_by_the_reconciler(
    github: GitHub,
    examples: Examples,
    connection: GithubConnection,
    session: Session,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ports, "queue", lambda: FakeQueue(down=True))  # Redis is down
    answer = github.send("pull_request", examples.pull_request("opened"), delivery="d-queue-down")
    assert answer.status_code == 202  # recorded: GitHub need not redeliver
    [row] = deliveries(session)
    assert row.state == "queued"

    back = FakeQueue()
    assert redrive_deliveries(session=session, queue=back) == []  # not yet: it may still be on its way
    row.received_at = utcnow() - timedelta(minutes=1)
    session.add(row)
    session.commit()
    assert redrive_deliveries(session=session, queue=back) == [row.id]
    assert [(job.function, job.args) for job in back.jobs] == [
        ("envhub.jobs.github.handle_delivery", (row.id,))
    ]
    assert redrive_deliveries(session=session, queue=back) == []  # pending: not twice


def test_a_delivery_whose_worker_died_is_handed_over_again_after_a_while(
    github: GitHub, examples: Examples, connection: GithubConnection, session: Session
) -> None:
    github.send("pull_request", examples.pull_request("opened"), delivery="d-worker-killed")
    [row] = deliveries(session)
    queue = FakeQueue()
    queue.pending.add(f"github-delivery-{row.id}")  # the queue still says "started": its worker was killed
    row.received_at = utcnow() - timedelta(minutes=1)
    session.add(row)
    session.commit()
    assert redrive_deliveries(session=session, queue=queue) == []  # maybe still working (GitHub's limits)

    row.received_at = utcnow() - timedelta(minutes=10)
    session.add(row)
    session.commit()
    assert redrive_deliveries(session=session, queue=queue) == [row.id]
