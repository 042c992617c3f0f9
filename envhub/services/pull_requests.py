"""Pull requests and pushes become environments: what a recorded webhook delivery changes.

A delivery updates what envhub knows of the pull request (``PullRequest``:
head commit, draft, labels, open or closed), then the pull request is
converged: it should have an environment exactly when it is open and the
project's policy lets it (``domain/github.skip_reason``). Creating, moving to
a new head commit and deleting go through the environment use cases, acting
as ``github`` (a system principal), so each is audited like any other.

Pushes on top of each other make one deployment: moving an environment to a
new head commit holds its deployment back for ``github_debounce_seconds``,
and each move supersedes the one before (``update_environment(not_before=)``);
a deployment already running for an older commit is abandoned, never finishing
after the newer one (the job-run generations of ``services/convergence.py``).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, select

from envhub.config import get_settings
from envhub.domain.github import (
    Policy,
    PullRequestState,
    branch_environment_name,
    branch_wanted,
    pull_request_environment_name,
    skip_reason,
)
from envhub.domain.phases import Phase
from envhub.domain.principals import Principal, PrincipalType
from envhub.domain.specs import Trigger
from envhub.errors import EnvhubError
from envhub.models import Environment, GithubConnection, PullRequest, WebhookDelivery
from envhub.models.base import utcnow
from envhub.queue.base import JobQueue
from envhub.services import environments

log = logging.getLogger(__name__)

# Who acts on GitHub's behalf in the audit trail.
GITHUB = Principal(name="github", type=PrincipalType.system)


def apply_delivery(*, session: Session, queue: JobQueue, delivery_row: int) -> str:
    """Do what a recorded delivery asks; safe to run again (a done delivery is left alone)."""
    delivery = session.get(WebhookDelivery, delivery_row)
    if delivery is None or delivery.state != "queued":
        return "nothing to do"
    outcomes: list[str] = []
    failed = False
    for connection_id in delivery.connection_ids:
        connection = session.get(GithubConnection, connection_id)
        if connection is None:  # disconnected since
            continue
        try:
            if delivery.event == "pull_request":
                outcomes.append(_pull_request_event(session, queue, connection, delivery.summary))
            elif delivery.event == "push":
                outcomes.append(_push_event(session, queue, connection, delivery.summary))
            else:
                outcomes.append(f"{delivery.event}: nothing to do")
        except EnvhubError as exc:
            session.rollback()
            failed = True
            outcomes.append(f"project {connection.project_id}: {exc.code}: {exc.message}")
    delivery = session.get(WebhookDelivery, delivery_row)
    assert delivery is not None
    delivery.state = "failed" if failed else "done"
    delivery.message = "; ".join(outcomes)[:2000]
    delivery.processed_at = utcnow()
    session.add(delivery)
    session.commit()
    return delivery.message


def policy_of(connection: GithubConnection) -> Policy:
    return Policy(
        pull_requests=connection.pull_requests,
        drafts=connection.drafts,
        opt_in_label=connection.opt_in_label or None,
        opt_out_label=connection.opt_out_label,
        push_branches=tuple(connection.push_branches),
    )


def _event_time(summary: dict[str, Any]) -> datetime | None:
    try:
        return datetime.fromisoformat(str(summary.get("updated_at", "")).replace("Z", "+00:00"))
    except ValueError:
        return None


def _pull_request_event(
    session: Session, queue: JobQueue, connection: GithubConnection, summary: dict[str, Any]
) -> str:
    project_id = connection.project_id
    number = int(summary["number"])
    pr = session.exec(
        select(PullRequest).where(PullRequest.project_id == project_id, PullRequest.number == number)
    ).first()
    at = _event_time(summary)
    if pr is None:
        pr = PullRequest(project_id=project_id, number=number)
    elif pr.event_at is not None and at is not None and at < pr.event_at:
        return f"#{number}: an older event than one already applied"
    action = summary["action"]
    pr.title, pr.author, pr.html_url = summary["title"], summary["author"], summary["html_url"]
    moved = bool(pr.head_sha) and pr.head_sha != summary["head_sha"]
    pr.head_ref, pr.head_sha = summary["head_ref"], summary["head_sha"]
    pr.state = "closed" if action == "closed" else summary["state"]
    pr.merged, pr.draft, pr.labels = summary["merged"], summary["draft"], list(summary["labels"])
    pr.event_at = at or pr.event_at
    pr.updated_at = utcnow()
    session.add(pr)
    session.commit()
    return f"#{number} {action}: " + converge_pull_request(
        session=session, queue=queue, connection=connection, pr=pr, debounce=moved or action == "synchronize"
    )


def converge_pull_request(
    *, session: Session, queue: JobQueue, connection: GithubConnection, pr: PullRequest, debounce: bool
) -> str:
    """Give the pull request the environment its state and the policy call for (or take it away)."""
    reason = skip_reason(policy_of(connection), PullRequestState(pr.state, pr.draft, tuple(pr.labels)))
    environment = session.get(Environment, pr.environment_id) if pr.environment_id else None
    live = (
        environment is not None
        and environment.desired_state == "present"
        and environment.phase != Phase.deleted
    )
    if reason:
        pr.skipped = reason if pr.state == "open" else ""
        session.add(pr)
        session.commit()
        if live:
            assert environment is not None
            assert environment.id is not None
            environments.delete_environment(
                session=session, actor=GITHUB, queue=queue, environment_id=environment.id
            )
            return f"deleting its environment ({reason})"
        return f"no environment ({reason})"
    if not live:
        made = environments.create_environment(
            session=session,
            actor=GITHUB,
            queue=queue,
            project_id=pr.project_id,
            name=_free_name(session, pr),
            overrides={"ref": pr.head_sha},
            trigger=Trigger.pull_request,
        )
        pr = _reload(session, pr)
        pr.environment_id, pr.skipped = made.id, ""
        session.add(pr)
        session.commit()
        return f"creating {made.name} at {pr.head_sha[:12]}"
    assert environment is not None
    assert environment.id is not None
    if environment.spec.get("ref") == pr.head_sha:
        return f"{environment.name} already runs {pr.head_sha[:12]}"
    wait = get_settings().github_debounce_seconds if debounce else 0.0
    environments.update_environment(
        session=session,
        actor=GITHUB,
        queue=queue,
        environment_id=environment.id,
        changes={"ref": pr.head_sha},
        not_before=utcnow() + timedelta(seconds=wait) if wait > 0 else None,
    )
    return f"moving {environment.name} to {pr.head_sha[:12]}"


def _reload(session: Session, pr: PullRequest) -> PullRequest:
    fresh = session.get(PullRequest, pr.id)
    assert fresh is not None
    return fresh


def _free_name(session: Session, pr: PullRequest) -> str:
    """``pr-<number>``, or with the head commit when someone already took that name by hand."""
    name = pull_request_environment_name(pr.number)
    taken = session.exec(
        select(Environment.id).where(
            Environment.project_id == pr.project_id,
            Environment.name == name,
            Environment.phase != Phase.deleted,
        )
    ).first()
    return name if taken is None else f"{name}-{pr.head_sha[:7]}"


def _push_event(
    session: Session, queue: JobQueue, connection: GithubConnection, summary: dict[str, Any]
) -> str:
    branch = summary["branch"]
    if not branch_wanted(policy_of(connection), branch):
        return f"push to {branch}: no branch environment configured"
    name = branch_environment_name(branch)
    environment = session.exec(
        select(Environment).where(
            Environment.project_id == connection.project_id,
            Environment.name == name,
            Environment.phase != Phase.deleted,
        )
    ).first()
    if summary["deleted"]:
        if environment is None or environment.desired_state != "present":
            return f"{branch} deleted: no environment"
        assert environment.id is not None
        environments.delete_environment(
            session=session, actor=GITHUB, queue=queue, environment_id=environment.id
        )
        return f"{branch} deleted: deleting {name}"
    if environment is None or environment.desired_state != "present":
        made = environments.create_environment(
            session=session,
            actor=GITHUB,
            queue=queue,
            project_id=connection.project_id,
            name=name,
            overrides={"ref": summary["after"]},
            trigger=Trigger.push,
        )
        return f"push to {branch}: creating {made.name}"
    assert environment.id is not None
    if environment.spec.get("ref") == summary["after"]:
        return f"push to {branch}: {name} already runs it"
    wait = get_settings().github_debounce_seconds
    environments.update_environment(
        session=session,
        actor=GITHUB,
        queue=queue,
        environment_id=environment.id,
        changes={"ref": summary["after"]},
        not_before=utcnow() + timedelta(seconds=wait) if wait > 0 else None,
    )
    return f"push to {branch}: moving {name}"
