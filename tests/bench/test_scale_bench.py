"""The scale benchmark still runs, and its world is one envhub would have written.

``make bench-scale`` is not part of the suite (10,000 environments take
minutes to seed and measure), so this runs it once at its smallest, and checks
in-process that its bulk-seeded rows are what the services write: a seeded
environment's spec equals the one ``create_environment`` writes in the same
project, and envhub's own verification accepts the seeded audit chain.
"""

from __future__ import annotations

import os
import subprocess
import sys

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bench.scale_world import probe, seed
from bench.servers import ROOT
from envhub.config import Settings
from envhub.domain.phases import Phase
from envhub.models import Environment, JobRun, JobStatus
from envhub.services.audit_chain import verify_chain
from tests.support.components import require


def test_the_benchmark_runs_small_and_reports_every_figure() -> None:
    require("postgresql")
    small = ["--environments", "200", "--projects", "4", "--teams", "2", "--audit-days", "3"]
    quick = ["--baseline-environments", "50", "--samples", "10", "--warmup", "2", "--no-pages"]
    done = subprocess.run(
        [sys.executable, "-m", "bench.scale", *small, *quick],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    out = done.stdout
    assert done.returncode in (0, 1), (
        out[-3000:] + done.stderr[-3000:]
    )  # 1: a target missed on a busy machine
    for heading in ("REST, one Granian worker", "SQL statements per API call", "reconciler pass"):
        assert heading in out, out
    assert "audit chain, full check" in out
    assert "intact" in out
    assert "200 environments in 4 projects and 2 teams" in out
    statements = [line for line in out.splitlines() if line.rstrip().endswith((" yes", " NO"))]
    assert len(statements) == 10, out  # 7 API calls, 3 pages
    assert all(line.rstrip().endswith("yes") for line in statements), out  # no query per row


def test_seeded_rows_are_what_the_services_write(settings: Settings, db: Engine) -> None:
    world = seed(db, environments=60, projects=3, teams=2, audit_days=2)
    made = probe(db, world)
    with Session(db) as session:
        seeded = session.exec(
            select(Environment).where(Environment.project_id == made.project_id, Environment.name != "probe")
        ).first()
        written = session.get(Environment, made.id)  # as stored, not as the service held it
        assert seeded is not None
        assert written is not None
        assert seeded.spec == written.spec
        phases = {env.phase for env in session.exec(select(Environment))}
        assert {Phase.ready, Phase.sleeping, Phase.failed, Phase.pending, Phase.updating} <= phases
        queued = session.exec(select(JobRun).where(JobRun.status == JobStatus.queued)).all()
        in_flight = session.exec(
            select(Environment).where(col(Environment.phase).in_([Phase.pending, Phase.updating]))
        ).all()
        assert {run.environment_id for run in queued} >= {env.id for env in in_flight if env.name != "probe"}
        assert all(run.rq_job_id == f"envhub-jobrun-{run.id}" for run in queued)
        report = verify_chain(session)
    assert report.ok, report.problems
    assert report.checked == world.audit_events + 2  # the token's event and the probe's
