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

import hashlib
import logging
import secrets
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, update
from sqlmodel import Session, col, select

from envhub.config import get_settings
from envhub.domain.github import (
    CommentFacts,
    Policy,
    PullRequestState,
    branch_environment_name,
    branch_wanted,
    comment_marker,
    deployment_state,
    pull_request_environment_name,
    render_comment,
    skip_reason,
)
from envhub.domain.phases import Phase
from envhub.domain.principals import Principal, PrincipalType
from envhub.domain.specs import Trigger
from envhub.errors import EnvhubError, GithubError, GithubNotFound, advice_for
from envhub.integrations.github import GithubClient
from envhub.models import Environment, GithubConnection, Project, PullRequest, WebhookDelivery
from envhub.models.base import utcnow
from envhub.queue.base import JobQueue, QueueUnavailable
from envhub.services import check_runs, environments, github, releases

log = logging.getLogger(__name__)

# Who acts on GitHub's behalf in the audit trail.
GITHUB = Principal(name="github", type=PrincipalType.system)
SYNC_JOB = "envhub.jobs.github.sync_pull_request"
# A sync still due after this long was lost (queue down, worker killed, GitHub down): ask again.
_SYNC_REDRIVE_AFTER = timedelta(seconds=30)


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
    assert pr.id is not None
    pr_row = pr.id
    try:
        outcome = converge_pull_request(
            session=session,
            queue=queue,
            connection=connection,
            pr=pr,
            debounce=moved or action == "synchronize",
        )
    finally:
        # The comment says what happened (failures too) before the deployment job runs.
        request_sync(session, queue, pr_row, now=True)
    return f"#{number} {action}: {outcome}"


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
        orphan = _unlinked(session, pr)
        if orphan is not None:  # made by an earlier try of this delivery that died before linking it
            pr = _reload(session, pr)
            pr.environment_id, pr.skipped = orphan.id, ""
            session.add(pr)
            session.commit()
            return converge_pull_request(
                session=session, queue=queue, connection=connection, pr=pr, debounce=debounce
            )
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
    _move(session, queue, environment.id, pr.head_sha, debounce=debounce)
    return f"moving {environment.name} to {pr.head_sha[:12]}"


def _move(session: Session, queue: JobQueue, environment_id: int, commit: str, *, debounce: bool) -> None:
    """Redeploy the environment at ``commit``; with ``debounce``, once no newer push came for a moment."""
    wait = get_settings().github_debounce_seconds if debounce else 0.0
    environments.update_environment(
        session=session,
        actor=GITHUB,
        queue=queue,
        environment_id=environment_id,
        changes={"ref": commit},
        not_before=utcnow() + timedelta(seconds=wait) if wait > 0 else None,
        while_pending=True,
    )


def _reload(session: Session, pr: PullRequest) -> PullRequest:
    fresh = session.get(PullRequest, pr.id)
    assert fresh is not None
    return fresh


def _unlinked(session: Session, pr: PullRequest) -> Environment | None:
    """A live ``pr-<number>`` environment made by a pull request that no pull request links."""
    candidates = session.exec(
        select(Environment).where(
            Environment.project_id == pr.project_id,
            col(Environment.name).in_([pull_request_environment_name(pr.number), _sha_name(pr)]),
            Environment.trigger == Trigger.pull_request,
            Environment.desired_state == "present",
            Environment.phase != Phase.deleted,
        )
    )
    for candidate in candidates:
        linked = session.exec(
            select(PullRequest.id).where(PullRequest.environment_id == candidate.id)
        ).first()
        if linked is None:
            return candidate
    return None


def _sha_name(pr: PullRequest) -> str:
    return f"{pull_request_environment_name(pr.number)}-{pr.head_sha[:7]}"


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
    return name if taken is None else _sha_name(pr)


def _push_event(
    session: Session, queue: JobQueue, connection: GithubConnection, summary: dict[str, Any]
) -> str:
    branch = summary["branch"]
    released = releases.release_from_push(
        session=session,
        queue=queue,
        actor=GITHUB,
        project_id=connection.project_id,
        branch=branch,
        commit=summary["after"],
        deleted=bool(summary["deleted"]),
    )
    if not branch_wanted(policy_of(connection), branch):
        return released or f"push to {branch}: no branch environment configured"
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
    _move(session, queue, environment.id, summary["after"], debounce=True)
    return f"push to {branch}: moving {name}"


# -- telling GitHub: the comment, the Deployment, the check run ---------------------------


def request_sync(session: Session, queue: JobQueue, pr_row: int, *, now: bool = False) -> None:
    """Mark the pull request's GitHub view stale and bring it up to date: ``now`` in this job,
    else through a sync job.

    The mark is the promise: when GitHub or the queue fails, the reconciler
    tries again later (:func:`redrive_syncs`).
    """
    session.execute(
        update(PullRequest).where(col(PullRequest.id) == pr_row).values(sync_due=True, updated_at=utcnow())
    )
    session.commit()
    if now:
        try:
            sync_to_github(session=session, pr_row=pr_row)
            return
        except Exception:  # the deployment must not wait for GitHub: a job tries again
            session.rollback()
            log.exception("telling GitHub about pull request %s failed", pr_row)
    _dispatch_sync(queue, pr_row)


def _dispatch_sync(queue: JobQueue, pr_row: int) -> bool:
    try:
        queue.enqueue(SYNC_JOB, pr_row, job_id=f"github-pr-{pr_row}-{secrets.token_hex(4)}")
    except QueueUnavailable as exc:
        log.warning("queue unavailable, pull request %s will be synced later: %s", pr_row, exc)
        return False
    return True


def environment_changed(*, session: Session, queue: JobQueue, environment_id: int) -> None:
    """After a deployment job: the pull request this environment serves shows the news."""
    pr_row = session.exec(select(PullRequest.id).where(PullRequest.environment_id == environment_id)).first()
    if pr_row is not None:
        request_sync(session, queue, pr_row)


def redrive_syncs(*, session: Session, queue: JobQueue) -> list[int]:
    """Pull requests whose GitHub view is still stale a while after it was asked for."""
    before = utcnow() - _SYNC_REDRIVE_AFTER
    stale = list(
        session.exec(
            select(PullRequest.id)
            .where(col(PullRequest.sync_due).is_(True), col(PullRequest.updated_at) < before)
            .order_by(col(PullRequest.updated_at))
            .limit(50)
        )
    )
    redriven = []
    for pr_row in stale:
        assert pr_row is not None
        session.execute(update(PullRequest).where(col(PullRequest.id) == pr_row).values(updated_at=utcnow()))
        session.commit()
        if not _dispatch_sync(queue, pr_row):
            break
        redriven.append(pr_row)
    return redriven


def sync_to_github(*, session: Session, pr_row: int) -> str:
    """Bring the pull request's comment, Deployment and check run up to date with its environment.

    Runs under the pull request row's write lock (taken by a no-op update
    first, on PostgreSQL and SQLite alike), so two syncs of one pull request
    never both create a comment; the comment is edited only when its text
    changed, and a Deployment status (or a check run update) is posted only
    when the state changed.
    """
    session.execute(
        update(PullRequest).where(col(PullRequest.id) == pr_row).values(sync_due=PullRequest.sync_due)
    )
    pr = session.get(PullRequest, pr_row, populate_existing=True)
    if pr is None or not pr.sync_due:
        session.commit()
        return "up to date"
    connection = session.exec(
        select(GithubConnection).where(GithubConnection.project_id == pr.project_id)
    ).first()
    project = session.get(Project, pr.project_id)
    if connection is None or project is None:
        pr.sync_due = False
        session.commit()
        return "not connected"
    environment = session.get(Environment, pr.environment_id) if pr.environment_id else None
    facts = _facts(project, pr, environment)
    body = render_comment(facts)
    digest = hashlib.sha256(body.encode()).hexdigest()
    client = github.client_for(connection)
    calls: list[str] = []
    problem = ""  # what GitHub refused without failing the sync (check runs), shown on the connection
    try:
        if pr.comment_id is None:
            pr.comment_id = client.find_comment(pr.number, comment_marker(project.id or 0))
            if pr.comment_id is not None:
                pr.comment_body_digest = ""  # found again: its text is unknown
        if pr.comment_id is None:
            pr.comment_id = client.create_comment(pr.number, body)
            calls.append("comment created")
        elif digest != pr.comment_body_digest:
            try:
                client.edit_comment(pr.comment_id, body)
                calls.append("comment edited")
            except GithubNotFound:  # someone deleted it: write it again
                pr.comment_id = client.create_comment(pr.number, body)
                calls.append("comment created again")
        pr.comment_body_digest = digest
        if environment is not None:
            calls += _sync_deployment(client, pr, facts, f"{project.name}/{environment.name}")
        if check_runs.wanted(connection):
            made, problem = check_runs.sync_check_run(client, pr, facts, removed_because=_why_removed(pr))
            calls += made
    except GithubError as exc:
        # What GitHub already holds stays recorded (each step sets its ids only
        # after its call succeeded), so the retry goes on from the failed step
        # and never makes a second comment, Deployment or check run.
        session.add(pr)
        connection.last_error = f"{exc.code}: {exc.message}"[:2000]
        session.add(connection)
        session.commit()
        done = f" after: {', '.join(calls)}" if calls else ""
        return f"GitHub refused or failed ({exc.code}){done}; the reconciler tries again"
    finally:
        client.close()
    pr.sync_due = False
    pr.synced_at = utcnow()
    session.add(pr)
    connection.verified_at, connection.last_error = utcnow(), problem
    session.add(connection)
    session.commit()
    return ", ".join(calls) or "nothing changed"


def _why_removed(pr: PullRequest) -> str:
    return pr.skipped or (
        "the pull request was closed" if pr.state == "closed" else "the environment was deleted"
    )


def _sync_deployment(client: GithubClient, pr: PullRequest, facts: CommentFacts, name: str) -> list[str]:
    calls = []
    if pr.deployment_id is None or pr.deployment_sha != facts.commit:
        if pr.deployment_id is not None and pr.deployment_state not in ("", "inactive"):
            client.create_deployment_status(
                pr.deployment_id, "inactive", description="a newer commit took over"
            )
        pr.deployment_id = client.create_deployment(
            facts.commit, name, transient=True, description=facts.page
        )
        pr.deployment_sha, pr.deployment_state = facts.commit, ""
        calls.append("deployment created")
    state = deployment_state(facts.phase)
    if state != pr.deployment_state:
        client.create_deployment_status(
            pr.deployment_id,
            state,
            environment_url=facts.url if state == "success" else "",
            description=(facts.error or _STATE_WORDS.get(state, state))[:140],
            log_url=facts.page,
        )
        pr.deployment_state = state
        calls.append(f"deployment {state}")
    return calls


_STATE_WORDS = {
    "in_progress": "envhub is deploying it",
    "success": "the environment is ready",
    "failure": "the environment failed",
    "inactive": "the environment was removed",
}


def _facts(project: Project, pr: PullRequest, environment: Environment | None) -> CommentFacts:
    if environment is None:
        return CommentFacts(
            project_id=project.id or 0,
            project=project.name,
            environment="",
            phase="",
            url="",
            commit=pr.head_sha,
            page="",
            skipped=pr.skipped or "none made yet",
        )
    base = get_settings().base_url.rstrip("/")
    failed = environment.phase is Phase.failed
    return CommentFacts(
        project_id=project.id or 0,
        project=project.name,
        environment=environment.name,
        phase=environment.phase.value,
        url=environment.public_url or "",
        commit=str(environment.spec.get("ref") or pr.head_sha),
        page=f"{base}/projects/{project.id}/environments/{environment.id}",
        error=f"{environment.error_code}: {environment.message}" if failed and environment.error_code else "",
        advice=advice_for(environment.error_code) if failed else "",
    )


# -- catching up on events GitHub never delivered ------------------------------------------


def resync_repositories(*, session: Session, queue: JobQueue, limit: int = 5) -> list[int]:
    """Compare the open pull requests of repositories not checked for a while with envhub's.

    The reconciler calls this each pass; a few connections per pass, the
    longest unchecked first, so a large installation spreads its API calls.
    """
    before = utcnow() - timedelta(seconds=get_settings().github_resync_interval)
    due = list(
        session.exec(
            select(GithubConnection)
            .where(
                or_(
                    col(GithubConnection.pulls_checked_at).is_(None),
                    col(GithubConnection.pulls_checked_at) < before,
                )
            )
            .order_by(col(GithubConnection.pulls_checked_at).asc().nulls_first())
            .limit(limit)
        )
    )
    checked = []
    for connection in due:
        assert connection.id is not None
        connection.pulls_checked_at = utcnow()  # even when GitHub fails: try again next interval
        session.add(connection)
        session.commit()
        try:
            resync_repository(session=session, queue=queue, connection_id=connection.id)
        except EnvhubError as exc:  # GitHub down or refusing, a secret unreadable: next interval
            session.rollback()
            log.warning("comparing the pull requests of %s failed: %s", connection.repository, exc.message)
            continue
        checked.append(connection.id)
    return checked


def resync_repository(*, session: Session, queue: JobQueue, connection_id: int) -> list[str]:
    """Make envhub's pull requests match GitHub's open ones: missed opens, pushes and closes."""
    connection = session.get(GithubConnection, connection_id)
    if connection is None:
        return []
    client = github.client_for(connection, max_wait=0)
    try:
        open_now = {pull.number: pull for pull in client.open_pull_requests()}
    finally:
        client.close()
    known = {
        pr.number: pr
        for pr in session.exec(select(PullRequest).where(PullRequest.project_id == connection.project_id))
    }
    changes = []
    for number, pull in open_now.items():
        pr = known.get(number)
        fresh = (pull.head_sha, pull.draft, sorted(pull.labels), "open")
        if pr is not None and (pr.head_sha, pr.draft, sorted(pr.labels), pr.state) == fresh:
            continue
        pr = pr or PullRequest(project_id=connection.project_id, number=number)
        moved = bool(pr.head_sha) and pr.head_sha != pull.head_sha
        pr.title, pr.author, pr.html_url = pull.title[:500], pull.author[:100], pull.html_url[:2000]
        pr.head_ref, pr.head_sha = pull.head_ref[:255], pull.head_sha
        pr.draft, pr.labels, pr.state, pr.merged = pull.draft, sorted(pull.labels), "open", False
        changes.append(_caught_up(session, queue, connection, pr, moved, f"#{number} open on GitHub"))
    for number, pr in known.items():
        if pr.state == "open" and number not in open_now:
            pr.state = "closed"
            changes.append(_caught_up(session, queue, connection, pr, False, f"#{number} closed on GitHub"))
    return changes


def _caught_up(
    session: Session, queue: JobQueue, connection: GithubConnection, pr: PullRequest, moved: bool, what: str
) -> str:
    pr.updated_at = utcnow()
    session.add(pr)
    session.commit()
    assert pr.id is not None
    pr_row = pr.id
    try:
        outcome = converge_pull_request(
            session=session, queue=queue, connection=connection, pr=pr, debounce=moved
        )
    except EnvhubError as exc:
        session.rollback()
        outcome = f"{exc.code}: {exc.message}"
    request_sync(session, queue, pr_row)
    log.info("reconciler: %s (%s): %s", what, connection.repository, outcome)
    return f"{what}: {outcome}"
