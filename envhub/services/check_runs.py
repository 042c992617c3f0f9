"""The check run of a pull request's environment: "envhub preview" on the commit it runs.

Part of the pull request's sync (``services/pull_requests.sync_to_github``),
under the same row lock and with the same client, retries and rate-limit
handling as the comment and the Deployment. Only an App installation can make
check runs, so a token connection (or one that turned them off) makes no call.

One run per commit: made when the environment starts on that commit, updated
only when its state (in progress, or the conclusion) changes. A run still in
progress when its commit stopped mattering is completed first: ``cancelled``
when a newer commit took over, ``neutral`` when the environment was removed.
A redeploy of a commit whose run had completed makes a new run, as a re-run
does on GitHub; GitHub shows the newest run of a name on a commit.
"""

from __future__ import annotations

import logging

from envhub.domain.github import (
    CHECK_RUN_NAME,
    CheckRunReport,
    CommentFacts,
    check_run_ended,
    check_run_report,
)
from envhub.errors import GithubForbidden
from envhub.integrations.github import GithubClient
from envhub.models import GithubConnection, PullRequest

log = logging.getLogger(__name__)

IN_PROGRESS = "in_progress"


def wanted(connection: GithubConnection) -> bool:
    """Whether the connection reports check runs: an App installation that has not turned them off."""
    return connection.auth == "app" and connection.check_runs


def sync_check_run(
    client: GithubClient, pr: PullRequest, facts: CommentFacts, *, removed_because: str
) -> tuple[list[str], str]:
    """Bring the pull request's check run up to date; (the calls made, a problem to show or "").

    GitHub refusing check runs (an App installed without the Checks permission)
    is shown on the connection and leaves the comment and Deployment alone;
    any other GitHub error is raised, and the whole sync is tried again.
    """
    try:
        return _sync(client, pr, facts, removed_because), ""
    except GithubForbidden as exc:
        log.warning("GitHub refused the check run of pull request %s: %s", pr.number, exc.message)
        return [], (
            f"check runs: {exc.code}: {exc.message} (give the App the Checks permission, "
            "read and write, or turn check runs off)"
        )[:2000]


def _sync(client: GithubClient, pr: PullRequest, facts: CommentFacts, removed_because: str) -> list[str]:
    calls: list[str] = []
    report = check_run_report(facts)
    current = pr.check_run_id is not None and pr.check_run_sha == facts.commit
    if pr.check_run_id is not None and pr.check_run_state == IN_PROGRESS and (not current or report is None):
        ended = (
            check_run_ended(superseded_by=facts.commit)
            if not current and report is not None
            else check_run_ended(removed_because=removed_because)
        )
        _update(client, pr.check_run_id, ended, facts.page)
        pr.check_run_state = ended.state
        calls.append(f"check run {ended.conclusion}")
    if report is None:
        return calls
    rerun = current and pr.check_run_state != IN_PROGRESS and report.status == IN_PROGRESS
    if not current or rerun:
        pr.check_run_id = client.create_check_run(
            facts.commit,
            CHECK_RUN_NAME,
            status=report.status,
            conclusion=report.conclusion,
            title=report.title,
            summary=report.summary,
            details_url=facts.page,
        )
        pr.check_run_sha, pr.check_run_state = facts.commit, report.state
        calls.append(f"check run created ({report.state})")
    elif report.state != pr.check_run_state:
        assert pr.check_run_id is not None
        _update(client, pr.check_run_id, report, facts.page)
        pr.check_run_state = report.state
        calls.append(f"check run {report.state}")
    return calls


def _update(client: GithubClient, check_run_id: int, report: CheckRunReport, page: str) -> None:
    client.update_check_run(
        check_run_id,
        status=report.status,
        conclusion=report.conclusion,
        title=report.title,
        summary=report.summary,
        details_url=page,
    )
