"""The world the authorization matrix runs in: two teams, a person per role in each,
their tokens, and factories for the fresh objects a destructive operation needs.

Built once per module straight in the database; every case makes its own
throw-away objects, so cases never depend on each other's leftovers.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from envhub.domain import credentials
from envhub.domain.credentials import SecretKind
from envhub.domain.phases import Phase
from envhub.domain.policy import ShareRole
from envhub.domain.principals import SYSTEM, Principal
from envhub.domain.releases import (
    ArtifactStatus,
    ReleaseStatus,
    ReleaseTrigger,
    canonical_yaml,
    command_objects,
    digest_of,
)
from envhub.domain.specs import EnvironmentKind
from envhub.models import (
    ApiToken,
    Artifact,
    BackgroundProcess,
    Environment,
    EnvironmentShare,
    Invite,
    Membership,
    Project,
    Release,
    StoredSecret,
    Team,
    User,
)
from envhub.models.base import utcnow
from envhub.runtime.base import BackgroundState, Inspection, ProcessOutputChunk, WorkloadCredentials
from envhub.services.authentication import principal_for_token
from envhub.services.common import audit

ROLES = ("owner", "admin", "member", "viewer")
KINDS = ("user", "pat", "pat-read", "pat-deploy", "agent")
# A project that deploys: staging takes merges, production takes staging's with one approval
# (from a member or above, so the approver role is the action's own role here).
DEPLOYMENTS = {
    "source": {"kind": "command"},
    "environments": [
        {"name": "staging"},
        {
            "name": "production",
            "promotion": {"promote_from": "staging", "approvals": 1, "approver_role": "member"},
        },
    ],
}
_counter = itertools.count(1)


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_counter)}"


class _Shell:
    """An exec session that has nothing to say (the matrix only asks who may open one)."""

    def read(self, max_bytes: int = 65536, timeout: float | None = None) -> bytes:
        return b""

    def write(self, data: bytes) -> None:
        del data

    def resize(self, columns: int, rows: int) -> None:
        del columns, rows

    def wait(self, timeout: float | None = None) -> int | None:
        return 0

    def close(self) -> None:
        return None


class PortRuntime:
    """The runtime port, answering from memory (logs, inspection, credentials, shells)."""

    name = "fake"

    def exec(self, environment_id: int, command: list[str] | None = None, **_: Any) -> _Shell:
        return _Shell()

    def logs(self, environment_id: int, **_: Any) -> Iterator[str]:
        return iter([f"log of {environment_id}"])

    def inspect(self, environment_id: int) -> Inspection:
        return Inspection(location=f"env-{environment_id}")

    def start_process(self, environment_id: int, key: str, argv: list[str]) -> None:
        del environment_id, key, argv

    def process_state(self, environment_id: int, key: str) -> BackgroundState:
        return BackgroundState(running=True)

    def process_output(self, environment_id: int, key: str, offset: int, limit: int) -> ProcessOutputChunk:
        return ProcessOutputChunk(b"output"[offset : offset + limit], offset, 6)

    def stop_process(self, environment_id: int, key: str, grace: float) -> None:
        del environment_id, key, grace

    def issue_credentials(self, environment_id: int, *, ttl_seconds: int) -> WorkloadCredentials:
        return WorkloadCredentials(
            token="t", expires_at="2030-01-01T00:00:00+00:00", namespace="ns", server="https://k", account="a"
        )


@dataclass
class MatrixWorld:
    engine: Engine
    acme: int
    globex: int
    shop: int  # acme's project
    e1: int  # acme's environment most operations act on
    shared: int  # an acme environment shared with the whole of globex (viewer)
    recording_event: int  # a terminal session's end in acme, with its recording on disk
    data_dir: Path
    users: dict[tuple[str, str], int] = field(default_factory=dict)  # (team, role) -> user id
    runtime: PortRuntime = field(default_factory=PortRuntime)
    # acme's project "deploys" (DEPLOYMENTS): its id, {environment name: id}, its rendered artifact.
    deploys: int = 0
    stages: dict[str, int] = field(default_factory=dict)
    artifact: int = 0

    @contextmanager
    def session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    def principal(self, session: Session, kind: str, role: str, own: bool, environment_id: int) -> Principal:
        team = "acme" if own else "globex"
        user_id = self.users[(team, role)]
        user = session.get(User, user_id)
        assert user is not None
        if kind == "user":
            session.commit()  # end the read: on SQLite an open transaction holds the write lock
            return Principal(name=user.username, user_id=user_id)
        plain = self.token(session, kind, user_id, environment_id)
        principal = principal_for_token(session, plain)
        session.commit()
        assert principal is not None
        return principal

    def token(self, session: Session, kind: str, user_id: int, environment_id: int) -> str:
        """A new token of ``kind`` (pat, pat-read, pat-deploy, agent) for the user; the plain value."""
        issued = credentials.issue(SecretKind.agent_token if kind == "agent" else SecretKind.personal_token)
        scopes = {"pat-read": ["read"], "pat-deploy": ["deploy"]}.get(
            kind, ["admin", "read", "shell", "write"]
        )
        session.add(
            ApiToken(
                token_hash=issued.digest,
                hint=issued.hint,
                kind="agent" if kind == "agent" else "personal",
                name=unique("token"),
                user_id=user_id,
                scopes=scopes,
                expires_at=utcnow() + timedelta(days=1),
                environment_id=environment_id if kind == "agent" else None,
            )
        )
        session.commit()
        return issued.plain

    # -- fresh objects ------------------------------------------------------------

    def project(self) -> int:
        with self.session() as session:
            row = Project(team_id=self.acme, name=unique("p"))
            session.add(row)
            session.commit()
            return row.id or 0

    def environment(self, phase: Phase = Phase.ready) -> int:
        with self.session() as session:
            row = Environment(project_id=self.shop, name=unique("e"), phase=phase, spec={"command": "true"})
            session.add(row)
            session.commit()
            return row.id or 0

    def process(self, environment_id: int) -> int:
        """A running background process in the environment (the runtime's fake says it runs)."""
        with self.session() as session:
            row = BackgroundProcess(environment_id=environment_id, name=unique("p"), command=["true"])
            session.add(row)
            session.commit()
            return row.id or 0

    def reset_e1(self) -> None:
        with self.session() as session:
            session.exec(
                update(Environment)
                .where(Environment.id == self.e1)
                .values(phase=Phase.ready, desired_state="present")
            )  # type: ignore[call-overload]
            session.commit()

    def member(self, role: str = "member") -> int:
        with self.session() as session:
            user = User(username=unique("m"))
            session.add(user)
            session.flush()
            session.add(Membership(team_id=self.acme, user_id=user.id or 0, role=role))
            session.commit()
            return user.id or 0

    def outsider(self) -> str:
        with self.session() as session:
            user = User(username=unique("o"))
            session.add(user)
            session.commit()
            return user.username

    def invite(self) -> int:
        with self.session() as session:
            row = Invite(
                team_id=self.acme,
                email=f"{unique('i')}@acme.example",
                expires_at=utcnow() + timedelta(days=1),
            )
            session.add(row)
            session.commit()
            return row.id or 0

    def share(self) -> int:
        with self.session() as session:
            user = User(username=unique("s"))
            session.add(user)
            session.flush()
            row = EnvironmentShare(environment_id=self.e1, user_id=user.id, role=ShareRole.viewer)
            session.add(row)
            session.commit()
            return row.id or 0

    def secret(self) -> int:
        from envhub.services.crypto import cipher

        name = unique("S").replace("-", "_")
        scope = f"project:{self.shop}"
        with self.session() as session:
            sealed = cipher().seal("value", purpose=f"secret:team:{self.acme}:{scope}:{name}")
            row = StoredSecret(team_id=self.acme, scope=scope, project_id=self.shop, name=name, value=sealed)
            session.add(row)
            session.commit()
            return row.id or 0

    def deploying(self) -> int:
        """acme's project that deploys (made the first time): staging and production, one
        artifact rendered for both. Returns the project's id."""
        if self.deploys:
            return self.deploys
        with self.session() as session:
            project = Project(team_id=self.acme, name="deploys", deployments=DEPLOYMENTS)
            session.add(project)
            session.flush()
            for name in ("staging", "production"):
                row = Environment(
                    project_id=project.id or 0,
                    name=name,
                    kind=EnvironmentKind.deployment,
                    phase=Phase.ready,
                    spec={"command": "true"},
                )
                session.add(row)
                session.flush()
                self.stages[name] = row.id or 0
            rendered = {name: canonical_yaml(command_objects({"command": "true"})) for name in self.stages}
            artifact = Artifact(
                project_id=project.id or 0,
                key="commit:" + "a" * 40,
                commit_sha="a" * 40,
                ref="main",
                source={"kind": "command"},
                status=ArtifactStatus.rendered,
                rendered=rendered,
                digests={name: digest_of(text) for name, text in rendered.items()},
                specs={name: {"command": "true"} for name in self.stages},
                rendered_at=utcnow(),
            )
            session.add(artifact)
            session.commit()
            self.deploys, self.artifact = project.id or 0, artifact.id or 0
        return self.deploys

    def release(self, environment: str, status: ReleaseStatus = ReleaseStatus.waiting) -> int:
        """A fresh release of the artifact in ``environment`` (waiting, or ready: it ran), triggered
        by nobody in the matrix, so anyone may approve it."""
        self.deploying()
        with self.session() as session:
            last = session.exec(
                select(func.max(Release.number)).where(Release.environment_id == self.stages[environment])
            ).one()
            number = int(last or 0) + 1
            ran = status is ReleaseStatus.ready
            row = Release(
                project_id=self.deploys,
                environment_id=self.stages[environment],
                number=number,
                key=f"matrix:{number}",
                artifact_id=self.artifact,
                trigger=ReleaseTrigger.api,
                triggered_by="ci",
                status=status,
                started_at=utcnow() if ran else None,
                finished_at=utcnow() if ran else None,
            )
            session.add(row)
            session.commit()
            return row.id or 0

    def github(self, project_id: int | None = None) -> int:
        """Connect ``project_id`` (default: shop) to the shared GitHub stub's acme/shop, if it is not;
        returns the project's id. The stub (tests/support/github_stub.py) answers connect's check."""
        from envhub.models import GithubConnection
        from envhub.services.crypto import cipher
        from tests.support.github_stub import shared_stub

        stub = shared_stub()
        if "acme/shop" not in stub.repos:
            stub.add_repo("acme/shop")
        project_id = project_id or self.shop
        with self.session() as session:
            exists = session.exec(
                select(GithubConnection).where(GithubConnection.project_id == project_id)
            ).first()
            if exists is None:
                seal = cipher().seal
                session.add(
                    GithubConnection(
                        project_id=project_id,
                        repository="acme/shop",
                        api_url=stub.api_url,
                        auth="token",
                        credential=seal("t", purpose=f"github:project:{project_id}:credential"),
                        webhook_secret=seal("w", purpose=f"github:project:{project_id}:webhook_secret"),
                    )
                )
                session.commit()
        return project_id

    def github_token(self) -> str:
        """A token the shared GitHub stub accepts for acme/shop."""
        from tests.support.github_stub import shared_stub

        stub = shared_stub()
        if "acme/shop" not in stub.repos:
            stub.add_repo("acme/shop")
        return stub.add_token("acme/shop")

    def own_token(self, actor: Principal) -> int:
        """The token to revoke: the acting token itself, or a fresh one of the person."""
        if actor.token_id is not None:
            return actor.token_id
        with self.session() as session:
            issued = credentials.issue(SecretKind.personal_token)
            row = ApiToken(
                token_hash=issued.digest,
                hint=issued.hint,
                kind="personal",
                name=unique("t"),
                user_id=actor.user_id or 0,
                scopes=["read"],
                expires_at=utcnow() + timedelta(days=1),
            )
            session.add(row)
            session.commit()
            return row.id or 0


def build_world(engine: Engine, data_dir: Path) -> MatrixWorld:
    with Session(engine, expire_on_commit=False) as session:
        acme, globex = Team(name="acme"), Team(name="globex")
        session.add_all([acme, globex])
        session.flush()
        world_users: dict[tuple[str, str], int] = {}
        for team in (acme, globex):
            for role in ROLES:
                user = User(username=f"{team.name}-{role}", email=f"{role}@{team.name}.example")
                session.add(user)
                session.flush()
                session.add(Membership(team_id=team.id or 0, user_id=user.id or 0, role=role))
                world_users[(team.name, role)] = user.id or 0
                # Everyone owns a token, so "my tokens" is never trivially empty.
                issued = credentials.issue(SecretKind.personal_token)
                session.add(
                    ApiToken(
                        token_hash=issued.digest,
                        hint=issued.hint,
                        kind="personal",
                        name="mine",
                        user_id=user.id or 0,
                        scopes=["read"],
                        expires_at=utcnow() + timedelta(days=30),
                    )
                )
        shop = Project(team_id=acme.id or 0, name="shop")
        session.add(shop)
        session.flush()
        e1 = Environment(project_id=shop.id or 0, name="e1", phase=Phase.ready, spec={"command": "true"})
        shared = Environment(
            project_id=shop.id or 0, name="shared", phase=Phase.ready, spec={"command": "true"}
        )
        session.add_all([e1, shared])
        session.flush()
        session.add(EnvironmentShare(environment_id=shared.id or 0, team_id=globex.id, role=ShareRole.viewer))
        # An event in acme by nobody in the matrix: who may see it is what the audit rows test.
        audit(
            session,
            SYSTEM,
            "test.setup",
            target_type="project",
            target_id=shop.id,
            target="shop",
            team_id=acme.id,
        )
        ended = audit(
            session,
            SYSTEM,
            "environment.shell.end",
            target_type="environment",
            target_id=e1.id,
            target="shop/e1",
            team_id=acme.id,
            details={"recording": "recordings/e1.cast"},
        )
        session.commit()
        (data_dir / "recordings").mkdir(parents=True, exist_ok=True)
        (data_dir / "recordings" / "e1.cast").write_text('{"version": 2}\n')
        return MatrixWorld(
            engine=engine,
            acme=acme.id or 0,
            globex=globex.id or 0,
            shop=shop.id or 0,
            e1=e1.id or 0,
            shared=shared.id or 0,
            recording_event=ended.id or 0,
            data_dir=data_dir,
            users=world_users,
        )
