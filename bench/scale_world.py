"""The world bench/scale.py measures: many environments and a year of audit trail, seeded fast.

Going through the services row by row would take an hour at 10,000
environments (each create is a transaction with its audit link), so rows are
built as the services build them and inserted in bulk:

* teams, people and memberships, and projects, as the ORM models default them;
* environments with the spec ``create_environment`` writes
  (``merge_spec(project_defaults(project), {})``), in a mix of phases with
  consistent generations, each with its provision run (succeeded, failed or
  still queued for the phases on their way) and, for some, redeploys;
* the audit trail those make (``environment.create``, the phase changes the
  jobs record, redeploys, ``project.create``) plus what people do every day
  (sign-ins, shell sessions), at a steady rate over ``audit_days``, linked
  into the chain with envhub's own MAC (``bench/scale_trail.py``) and sealed by
  the chain head, so envhub's verification accepts it; the bench checks that.

``create_environment`` itself runs once per world (``probe``), so a test can
compare a seeded row with one the service wrote.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, cast, insert, literal, text, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from bench.scale_trail import Person, Trail, chunks
from envhub.domain.phases import Phase
from envhub.domain.principals import Principal
from envhub.domain.progress import PROVISION_STEPS, StepStatus, initial_steps
from envhub.domain.specs import merge_spec
from envhub.models import (
    Environment,
    JobRun,
    JobStatus,
    Membership,
    Project,
    Role,
    Team,
    User,
)
from envhub.models.audit_chain import chain_key
from envhub.models.base import utcnow
from envhub.services import tokens
from envhub.services.environments import create_environment
from envhub.services.jobruns import rq_job_id
from envhub.services.projects import project_defaults
from tests.support.fakes import FakeQueue

# Phases as a busy installation has them: most running, some asleep, a few broken or on their way.
PHASE_MIX = [Phase.ready] * 14 + [Phase.sleeping] * 3 + [Phase.failed, Phase.pending, Phase.updating]
PEOPLE_PER_TEAM = 8
# What people do on an ordinary day besides creating environments (events per day, whole installation).
DAILY = {"auth.sign_in": 60, "environment.shell": 70}


@dataclass
class World:
    token: str  # the benchmarking person's, read and write
    user_id: int
    teams: list[int]
    projects: list[int]
    environments: int
    audit_events: int
    job_runs: int
    seconds: float
    actions: dict[str, int] = field(default_factory=dict)


def _row(model: Any) -> dict[str, Any]:
    """A model instance's column values with its defaults filled in, without the id."""
    values = {column.name: getattr(model, column.name) for column in type(model).__table__.columns}
    values.pop("id")
    return values


def _finished_steps(at: datetime) -> list[dict[str, Any]]:
    steps = [dict(step) for step in initial_steps(PROVISION_STEPS)]
    for step in steps:
        step.update(status=StepStatus.done.value, started_at=at.isoformat(), finished_at=at.isoformat())
    return steps


def seed(
    engine: Engine,
    *,
    environments: int,
    projects: int,
    teams: int,
    audit_days: float,
    seed_value: int = 15,
) -> World:
    """Seed an empty, migrated database; the benchmarking person is in every team but the last."""
    started = time.monotonic()
    rng = random.Random(seed_value)  # noqa: S311 -- a reproducible world, not a secret
    now = utcnow()
    begin = now - timedelta(days=audit_days)
    span = (now - begin).total_seconds()
    trail = Trail()
    key = chain_key()

    def moment(low: float, high: float) -> datetime:
        return begin + timedelta(seconds=span * rng.uniform(low, high))

    with Session(engine, expire_on_commit=False) as session:
        people: list[Person] = []
        me = User(username="bench", display_name="Bench", created_at=begin)
        session.add(me)
        session.flush()
        assert me.id is not None
        bench = Person(me.id, me.username)
        team_rows: list[Team] = []
        members: dict[int, list[Person]] = {}
        for t in range(teams):
            team = Team(name=f"team-{t}", display_name=f"Team {t}", created_at=begin)
            session.add(team)
            session.flush()
            assert team.id is not None
            team_rows.append(team)
            crew = []
            for p in range(PEOPLE_PER_TEAM):
                user = User(username=f"t{t}-dev{p}", display_name=f"Dev {p} of team {t}", created_at=begin)
                session.add(user)
                session.flush()
                assert user.id is not None
                crew.append(Person(user.id, user.username))
                session.add(
                    Membership(team_id=team.id, user_id=user.id, role=Role.owner if p == 0 else Role.member)
                )
            if teams == 1 or t < teams - 1:  # the last team is one the benchmarking person is not in
                session.add(Membership(team_id=team.id, user_id=bench.id, role=Role.member))
                crew.append(bench)
            members[team.id] = crew
            people += crew
            trail.add(
                begin,
                crew[0],
                "team.create",
                target_type="team",
                target_id=team.id,
                target=team.name,
                team_id=team.id,
                rng=rng,
            )
        project_rows: list[Project] = []
        for i in range(projects):
            team = team_rows[i % teams]
            assert team.id is not None
            owner = members[team.id][0]
            when = moment(0.0, 0.3) if audit_days else now
            project = Project(
                team_id=team.id, name=f"service-{i}", created_by_id=owner.id, created_at=when, updated_at=when
            )
            session.add(project)
            session.flush()
            project_rows.append(project)
            trail.add(
                when,
                owner,
                "project.create",
                target_type="project",
                target_id=project.id,
                target=project.name,
                team_id=team.id,
                rng=rng,
            )
        session.commit()

        # Environments, oldest first (ids grow with time, as they do).
        planned = []
        for n in range(environments):
            project = project_rows[n % projects]
            low = (project.created_at - begin).total_seconds() / span if span else 0.0
            planned.append((moment(low, 0.999) if span else now, n, project))
        planned.sort(key=lambda item: item[0])
        specs = {p.id: merge_spec(project_defaults(p), {}).model_dump() for p in project_rows}
        rows, plans = [], []
        for when, n, project in planned:
            phase = PHASE_MIX[n % len(PHASE_MIX)]
            redeploys = rng.choice((0, 0, 0, 1, 1, 2, 3)) if phase is not Phase.pending else 0
            if phase is Phase.updating:
                redeploys = max(1, redeploys)  # updating: it was ready once
            generation = 1 + redeploys
            observed = generation - 1 if phase in (Phase.pending, Phase.updating) else generation
            creator = rng.choice(members[project.team_id])
            env = Environment(
                project_id=project.id or 0,
                name=f"pr-{n}",
                phase=phase,
                message={
                    Phase.ready: "Ready",
                    Phase.failed: "Health check failed",
                    Phase.sleeping: "Asleep",
                }.get(phase, "Waiting for a worker"),
                error_code="health_check_failed" if phase is Phase.failed else None,
                spec=specs[project.id],
                desired_generation=generation,
                observed_generation=observed,
                public_url=f"https://pr-{n}.{project.name}.example.test" if phase is Phase.ready else None,
                created_by_id=creator.id,
                created_at=when,
                updated_at=when,
                observed_at=when if observed else None,
            )
            rows.append(_row(env))
            plans.append((env, project, creator, redeploys))
        ids: list[int] = []
        with engine.begin() as conn:
            for chunk in chunks(rows):
                made = conn.execute(
                    insert(Environment).returning(col(Environment.id), sort_by_parameter_order=True), chunk
                )
                ids += [int(i or 0) for i in made.scalars()]

        # Their job runs and the trail they left.
        runs: list[dict[str, Any]] = []
        for env_id, (env, project, creator, redeploys) in zip(ids, plans, strict=True):
            label = f"{project.name}/{env.name}"
            team_id = project.team_id
            when = env.created_at
            system: dict[str, Any] = {
                "target_type": "environment",
                "target_id": env_id,
                "target": label,
                "team_id": team_id,
            }
            generation = 1
            last = redeploys + 1
            for attempt in range(last):
                kind = "provision" if attempt == 0 else "redeploy"
                final = attempt == last - 1
                status = JobStatus.succeeded
                if final and env.phase is Phase.failed:
                    status = JobStatus.failed
                elif final and env.phase in (Phase.pending, Phase.updating):
                    status = JobStatus.queued
                finished = when + timedelta(seconds=rng.uniform(20, 90))
                run = JobRun(
                    kind=kind,
                    environment_id=env_id,
                    generation=generation,
                    status=status,
                    created_at=when,
                    enqueued_at=when,
                )
                active = status is JobStatus.queued
                run.steps = (
                    _finished_steps(finished)
                    if not active
                    else run.steps or [dict(step) for step in initial_steps(PROVISION_STEPS)]
                )
                if not active:
                    run.started_at, run.finished_at, run.heartbeat_at = when, finished, finished
                if status is JobStatus.failed:
                    run.error_code, run.error = "health_check_failed", "the health check did not pass"
                runs.append(_row(run))
                if attempt == 0:
                    trail.add(
                        when,
                        creator,
                        "environment.create",
                        **system,
                        rng=rng,
                        details={"kind": env.kind.value, "trigger": env.trigger.value, "spec": env.spec},
                    )
                else:
                    trail.add(
                        when,
                        rng.choice(members[team_id]),
                        "environment.redeploy",
                        **system,
                        rng=rng,
                        details={"generation": generation},
                    )
                if active:
                    break
                moving = Phase.provisioning if attempt == 0 else Phase.updating
                before = Phase.pending if attempt == 0 else Phase.ready
                trail.add(
                    when + timedelta(seconds=2),
                    None,
                    f"environment.{moving.value}",
                    **system,
                    details={"from": before.value, "to": moving.value, "message": "Starting"},
                )
                if status is JobStatus.failed:
                    trail.add(
                        finished,
                        None,
                        "environment.failed",
                        **system,
                        outcome="failure",
                        error_code="health_check_failed",
                        details={"from": moving.value, "to": "failed", "message": env.message},
                    )
                else:
                    trail.add(
                        finished,
                        None,
                        "environment.ready",
                        **system,
                        details={"from": moving.value, "to": "ready", "message": "Ready"},
                    )
                generation += 1
                when = finished + (now - finished) * rng.uniform(0.1, 0.6)
            if env.phase is Phase.sleeping:
                trail.add(
                    when,
                    None,
                    "environment.sleeping",
                    **system,
                    details={"from": "ready", "to": "sleeping", "message": "Asleep"},
                )
        with engine.begin() as conn:
            for chunk in chunks(runs):
                conn.execute(insert(JobRun), chunk)
            # As jobruns.new_run names them once the id is known (jobruns.rq_job_id).
            conn.execute(
                update(JobRun).values(rq_job_id=literal(rq_job_id(0)[:-1]) + cast(JobRun.id, String))
            )

        # What people do every day: sign in, open shells (start and end).
        days = int(audit_days)
        everyone = [p for p in people if p.id != bench.id]
        for day in range(days):
            for action, per_day in DAILY.items():
                for _ in range(per_day):
                    when = begin + timedelta(days=day, seconds=rng.uniform(0, 86400))
                    who = rng.choice(everyone)
                    if action == "auth.sign_in":
                        trail.add(
                            when,
                            who,
                            action,
                            target_type="user",
                            target_id=who.id,
                            target=who.name,
                            team_id=None,
                            rng=rng,
                            details={"method": "oidc"},
                        )
                        continue
                    index = rng.randrange(len(ids))
                    env, project, _creator, _r = plans[index]
                    if env.created_at > when:
                        continue
                    label = f"{project.name}/{env.name}"
                    target: dict[str, Any] = {
                        "target_type": "environment",
                        "target_id": ids[index],
                        "target": label,
                        "team_id": project.team_id,
                    }
                    trail.add(
                        when,
                        who,
                        "environment.shell.start",
                        **target,
                        rng=rng,
                        details={"session": f"s{rng.randrange(10**9)}"},
                    )
                    trail.add(
                        when + timedelta(minutes=rng.uniform(1, 90)),
                        who,
                        "environment.shell.end",
                        **target,
                        rng=rng,
                        details={"bytes": rng.randrange(10**6)},
                    )
        actions: dict[str, int] = {}
        for event in trail.events:
            actions[event["action"]] = actions.get(event["action"], 0) + 1
        sealed = trail.seal(engine, key)

        token = tokens.create_personal_token(
            session=session,
            actor=bench.principal(),
            name="bench",
            scopes=["read", "write"],
            expires_in_days=1,
            via="cli",
        )
        session.commit()
        _vacuum(engine)
        return World(
            token=token.token,
            user_id=bench.id,
            teams=[t.id or 0 for t in team_rows],
            projects=[p.id or 0 for p in project_rows],
            environments=len(ids),
            audit_events=sealed,
            job_runs=len(runs),
            seconds=time.monotonic() - started,
            actions=actions,
        )


def _vacuum(engine: Engine) -> None:
    """What autovacuum has done to a database that lived for a year, and a bulk load has not:
    statistics for the planner, hint bits and the visibility map."""
    if engine.dialect.name != "postgresql":
        return
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))


def probe(engine: Engine, world: World) -> Environment:
    """One environment created by the service itself, in the world's first project (to compare)."""
    with Session(engine, expire_on_commit=False) as session:
        me = session.get(User, world.user_id)
        assert me is not None
        assert me.id is not None
        return create_environment(
            session=session,
            actor=Principal(name=me.username, user_id=me.id),
            queue=FakeQueue(),
            project_id=world.projects[0],
            name="probe",
        )
