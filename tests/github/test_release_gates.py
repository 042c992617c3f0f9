"""Production's automated gates pass and fail for the right reasons (issue 12 points 5 and 7).

GitHub checks are read through the real PyGithub client from the loopback
GitHub stub; the health URL is a real HTTP server on loopback; the soak gate
reads the restarts the runtime reports. Each failing gate says which and why.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from threading import Thread

import pytest
from sqlmodel import Session, select

from envhub.domain import releases as rel
from envhub.domain.releases import ReleaseStatus, ReleaseTrigger
from envhub.models import Environment, GithubConnection, Project, Release
from envhub.models.base import utcnow
from envhub.runtime.base import ContainerInfo, Inspection, PodInfo
from envhub.services import releases
from tests.github.conftest import REPOSITORY, commit
from tests.support.fakes import FakeQueue
from tests.support.github_stub import GithubStub
from tests.support.world import World


class Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), Health)
    Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/healthz"
    server.shutdown()
    Health.status = 200


class Restarts:
    """A runtime's inspect() as far as the soak gate reads it."""

    def __init__(self) -> None:
        self.count = 0

    def inspect(self, environment_id: int) -> Inspection:
        container = ContainerInfo(name="web", state="running", ready=True, restarts=self.count)
        return Inspection(pods=(PodInfo(name="web-1", phase="Running", containers=(container,)),))


def _settings(gates: dict[str, object]) -> dict[str, object]:
    return {
        "source": {"kind": "command"},
        "environments": [
            {"name": "staging"},
            {"name": "production", "promotion": {"promote_from": "staging", "gates": gates}},
        ],
    }


def _waiting(session: Session, world: World, project: Project, gates: dict[str, object], sha: str) -> Release:
    """A production release promoted from a staging release that became ready just now."""
    assert project.id is not None
    releases.configure_deployments(
        session=session, actor=world.owner, project_id=project.id, settings=_settings(gates)
    )
    queue = FakeQueue()
    [staged] = releases.create_release(
        session=session,
        actor=world.member,
        queue=queue,
        project_id=project.id,
        commit=sha,
        trigger=ReleaseTrigger.push,
    )
    releases.render_artifact(
        session=session, queue=queue, artifact_id=staged.artifact_id, renderer=rel.render_command_source
    )
    session.refresh(staged)
    assert staged.status is ReleaseStatus.deploying
    staging = session.get(Environment, staged.environment_id)
    assert staging is not None
    # What the convergence job does when staging is ready (no process is needed for the gates).
    releases.settle(session, staging, staged.generation or 0, ready=True, restarts=lambda: 0)
    session.commit()
    releases.after_settle(session, queue, staged)
    return session.exec(select(Release).where(Release.key == f"promotion:{staged.id}")).one()


def _check(
    session: Session, release: Release, checks: releases.GateChecks, at: datetime | None = None
) -> dict[str, tuple[bool, str]]:
    return {r.gate: (r.passed, r.reason) for r in releases.evaluate(session, release, checks, at or utcnow())}


def test_github_checks_gate(
    session: Session, world: World, project: Project, connection: GithubConnection, stub: GithubStub
) -> None:
    sha = commit(21)
    release = _waiting(session, world, project, {"github_checks": True}, sha)
    checks = releases.GateChecks()
    assert _check(session, release, checks)["github_checks"] == (
        False,
        "GitHub has no checks for this commit yet",
    )
    stub.set_status(REPOSITORY, sha, "ci/lint", "success")
    stub.add_check_run(REPOSITORY, sha, "tests", "in_progress", None)
    assert _check(session, release, checks)["github_checks"] == (False, "still running on GitHub: tests")
    stub.add_check_run(REPOSITORY, sha, "e2e", "completed", "failure")
    assert _check(session, release, checks)["github_checks"] == (False, "failing on GitHub: e2e")
    stub.repos[REPOSITORY.lower()].check_runs.clear()
    stub.add_check_run(REPOSITORY, sha, "tests", "completed", "success")
    assert _check(session, release, checks)["github_checks"] == (True, "2 check(s) green on GitHub")


def test_health_url_gate(session: Session, world: World, project: Project, health: str) -> None:
    release = _waiting(session, world, project, {"health_url": health}, commit(22))
    checks = releases.GateChecks()
    assert _check(session, release, checks)["health_url"] == (True, f"{health} answered 200")
    Health.status = 503
    assert _check(session, release, checks)["health_url"] == (False, f"{health} answered 503")
    dead = "http://127.0.0.1:9/healthz"
    releases.configure_deployments(
        session=session,
        actor=world.owner,
        project_id=project.id or 0,
        settings=_settings({"health_url": dead}),
    )
    passed, reason = _check(session, release, checks)["health_url"]
    assert not passed
    assert reason.startswith(f"{dead} did not answer")


def test_soak_gate_counts_minutes_ready_and_restarts(
    session: Session, world: World, project: Project
) -> None:
    release = _waiting(session, world, project, {"soak_minutes": 30}, commit(23))
    runtime = Restarts()
    checks = releases.GateChecks(runtime)  # type: ignore[arg-type]
    source = session.get(Release, release.source_release_id)
    assert source is not None
    assert source.finished_at is not None
    soon = source.finished_at + timedelta(minutes=10)
    assert _check(session, release, checks, soon)["soak"] == (
        False,
        "staging has been ready 10 of 30 minutes",
    )
    later = source.finished_at + timedelta(minutes=31)
    assert _check(session, release, checks, later)["soak"] == (
        True,
        "staging ready for 30+ minutes without restarts",
    )
    runtime.count = 2
    assert _check(session, release, checks, later)["soak"] == (
        False,
        "staging restarted 2 time(s) since it became ready",
    )


def test_window_gate_reads_days_and_hours_in_the_windows_time_zone(
    session: Session, world: World, project: Project
) -> None:
    window = {
        "days": ["mon", "tue", "wed", "thu", "fri"],
        "start": "09:00",
        "end": "17:00",
        "timezone": "Europe/Berlin",
    }
    release = _waiting(session, world, project, {"window": window}, commit(24))
    checks = releases.GateChecks()
    saturday = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    monday_morning = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)  # 10:30 in Berlin
    assert _check(session, release, checks, saturday)["window"] == (
        False, "outside the deploy window (mon,tue,wed,thu,fri 09:00-17:00 Europe/Berlin)"
    )  # fmt: skip
    assert _check(session, release, checks, monday_morning)["window"][0] is True
