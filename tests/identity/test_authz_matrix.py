"""Authorization in one place: every service operation × role × own/other team × principal kind.

The expected outcome of each cell is computed from the rules of issue 4 restated
here, independently of ``domain/policy.py``: team roles, token scopes, agent
confinement, people-only operations. A cell is *allowed* when the operation
succeeds and (for lists and searches) shows acme's object; otherwise it must be
refused with ``not_found`` when the principal has no access at all (no cross-team
probing) or ``forbidden`` when it has some, or the object must be left out.

``test_every_service_operation_is_in_the_matrix`` fails when a use case taking
an ``actor`` is added without a row here.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlmodel import Session

import envhub.services
from envhub.config import override_settings
from envhub.domain.policy import Action
from envhub.domain.principals import Principal
from envhub.errors import NotFound, PermissionDenied
from envhub.models.db import engine_for
from envhub.services import (
    audit_log,
    credentials,
    device,
    environments,
    inspection,
    logs,
    projects,
    secrets,
    sharing,
    teams,
    tokens,
)
from envhub.services.access import authorize_environment
from envhub.services.audit_log import AuditFilter
from tests.conftest import build_settings, clean_tables
from tests.identity.matrix_world import KINDS, ROLES, MatrixWorld, build_world, unique
from tests.support.fakes import FakeQueue

# -- the rules, restated ------------------------------------------------------------

VIEW = {"project.read", "environment.read", "environment.watch", "audit.read", "team.read"}
ROLE_ALLOWS = {
    "viewer": VIEW,
    "member": VIEW
    | {"environment.create", "environment.redeploy", "environment.delete", "environment.shell"},
}
ROLE_ALLOWS["admin"] = ROLE_ALLOWS["member"] | {
    "project.create",
    "project.update",
    "project.delete",
    "secret.write",
    "environment.share",
    "team.manage",
}
ROLE_ALLOWS["owner"] = ROLE_ALLOWS["admin"] | {"team.own"}
SCOPE_OF = dict.fromkeys(VIEW, "read") | {
    "project.create": "write",
    "project.update": "write",
    "secret.write": "write",
    "environment.create": "write",
    "environment.redeploy": "write",
    "environment.shell": "shell",
    "project.delete": "admin",
    "environment.delete": "admin",
    "environment.share": "admin",
    "team.manage": "admin",
    "team.own": "admin",
}
TOKEN_SCOPES = {
    "user": None,
    "pat": {"read", "write", "shell", "admin"},
    "pat-read": {"read"},
    "agent": {"read", "write", "shell", "admin"},
}


@dataclass(frozen=True)
class Op:
    name: str  # module.function
    where: str  # team | env | person | any | self | shared
    action: str | None
    run: Callable[[MatrixWorld, Session, Principal, int], Any]  # -> truthy when acme's object is visible
    on_env: Callable[[MatrixWorld], int] | None = None  # the environment it acts on (default e1)


def scope_ok(kind: str, action: str | None) -> bool:
    scopes = TOKEN_SCOPES[kind]
    return scopes is None or action is None or SCOPE_OF[action] in scopes


def expected(op: Op, kind: str, role: str, own: bool) -> str:
    """'allowed', or how it must be refused: 'absent' (not_found, or left out of a list)
    or 'refused' (forbidden, or left out of a list)."""
    has_role = own and (op.action is None or op.action in ROLE_ALLOWS[role])
    if op.where == "team":
        if kind == "agent" or not own:
            return "absent"
        return "allowed" if has_role and scope_ok(kind, op.action) else "refused"
    if op.where == "env":
        if not own:
            return "absent"
        return "allowed" if has_role and scope_ok(kind, op.action) else "refused"
    if op.where == "person":  # only a person at the dashboard, never a token
        if kind != "user":
            return "refused"  # refused as a token, before any object is looked at
        if op.action is None:
            return "allowed"
        return "allowed" if has_role else ("absent" if not own else "refused")
    if op.where == "any":  # no team involved; tokens need the scope, agents never
        return "allowed" if kind != "agent" and scope_ok(kind, op.action) else "refused"
    if op.where == "shared":  # environments shared with the other team (viewer)
        return "allowed" if not own and kind != "agent" and scope_ok(kind, "environment.read") else "absent"
    if op.where == "self":  # the principal's own things
        return "allowed"
    raise AssertionError(op.where)


# -- every operation ------------------------------------------------------------------


def _acme_events(items: Any) -> bool:
    """Acme's own event from the world's setup (not one the principal caused itself)."""
    return any(e.actor == "envhub" and e.team_id is not None for e in items)


def _fresh_env(w: MatrixWorld) -> int:
    return w.environment()


OPS: list[Op] = [
    Op(
        "projects.create_project",
        "team",
        "project.create",
        lambda w, s, a, _e: projects.create_project(session=s, actor=a, team_id=w.acme, name=unique("new")),
    ),
    Op(
        "projects.list_projects",
        "team",
        "project.read",
        lambda w, s, a, _e: any(
            i.project.id == w.shop for i in projects.list_projects(session=s, actor=a, search="shop").items
        ),
    ),
    Op(
        "projects.get_project",
        "team",
        "project.read",
        lambda w, s, a, _e: projects.get_project(session=s, actor=a, project_id=w.shop),
    ),
    Op(
        "projects.update_project",
        "team",
        "project.update",
        lambda w, s, a, _e: projects.update_project(
            session=s, actor=a, project_id=w.shop, changes={"description": "x"}
        ),
    ),
    Op(
        "projects.delete_project",
        "team",
        "project.delete",
        lambda w, s, a, _e: projects.delete_project(session=s, actor=a, project_id=w.project()) or True,
    ),
    Op(
        "environments.suggest_environment_name",
        "team",
        "project.read",
        lambda w, s, a, _e: environments.suggest_environment_name(session=s, actor=a, project_id=w.shop),
    ),
    Op(
        "environments.create_environment",
        "team",
        "environment.create",
        lambda w, s, a, _e: environments.create_environment(
            session=s, actor=a, queue=FakeQueue(), project_id=w.shop
        ),
    ),
    Op(
        "environments.list_environments",
        "team",
        "project.read",
        lambda w, s, a, _e: environments.list_environments(session=s, actor=a, project_id=w.shop).total,
    ),
    Op(
        "environments.get_environment",
        "env",
        "environment.read",
        lambda w, s, a, e: environments.get_environment(session=s, actor=a, environment_id=e),
    ),
    Op(
        "environments.environment_context",
        "env",
        "environment.read",
        lambda w, s, a, e: environments.environment_context(session=s, actor=a, environment_id=e),
    ),
    Op(
        "environments.latest_run",
        "env",
        "environment.read",
        lambda w, s, a, e: environments.latest_run(session=s, actor=a, environment_id=e) or True,
    ),
    Op(
        "environments.redeploy_environment",
        "env",
        "environment.redeploy",
        lambda w, s, a, e: (
            w.reset_e1(),
            environments.redeploy_environment(session=s, actor=a, queue=FakeQueue(), environment_id=e),
        )[1],
    ),
    Op(
        "environments.delete_environment",
        "env",
        "environment.delete",
        lambda w, s, a, e: environments.delete_environment(
            session=s, actor=a, queue=FakeQueue(), environment_id=e
        ),
        on_env=_fresh_env,
    ),
    Op(
        "logs.environment_logs",
        "env",
        "environment.read",
        lambda w, s, a, e: logs.environment_logs(session=s, actor=a, runtime=w.runtime, environment_id=e),
    ),  # type: ignore[arg-type]
    Op(
        "logs.follow_environment_logs",
        "env",
        "environment.read",
        lambda w, s, a, e: list(
            logs.follow_environment_logs(session=s, actor=a, runtime=w.runtime, environment_id=e)
        ),
    ),  # type: ignore[arg-type]
    Op(
        "inspection.inspect_environment",
        "env",
        "environment.read",
        lambda w, s, a, e: inspection.inspect_environment(
            session=s, actor=a, runtime=w.runtime, environment_id=e
        ),
    ),  # type: ignore[arg-type]
    Op(
        "terminal.watch (authorize_environment)",
        "env",
        "environment.watch",
        lambda w, s, a, e: authorize_environment(
            s, a, s.get(environments.Environment, e), Action.environment_watch, what="environment"
        ),
    ),  # type: ignore[arg-type]
    Op(
        "terminal.shell (authorize_environment)",
        "env",
        "environment.shell",
        lambda w, s, a, e: authorize_environment(
            s, a, s.get(environments.Environment, e), Action.environment_shell, what="environment"
        ),
    ),  # type: ignore[arg-type]
    Op(
        "credentials.environment_credentials",
        "env",
        "environment.shell",
        lambda w, s, a, e: credentials.environment_credentials(
            session=s, actor=a, runtime=w.runtime, environment_id=e
        ),
    ),  # type: ignore[arg-type]
    Op(
        "credentials.kubernetes_groups",
        "team",
        "team.read",
        lambda w, s, a, _e: "envhub:team:acme" in credentials.kubernetes_groups(session=s, actor=a),
    ),
    Op(
        "audit_log.environment_audit_trail",
        "env",
        "environment.read",
        lambda w, s, a, e: audit_log.environment_audit_trail(session=s, actor=a, environment_id=e),
    ),
    Op(
        "audit_log.search_events",
        "team",
        "audit.read",
        lambda w, s, a, _e: _acme_events(
            audit_log.search_events(session=s, actor=a, filters=AuditFilter(action="test.setup")).items
        ),
    ),
    Op(
        "audit_log.export_events",
        "team",
        "audit.read",
        lambda w, s, a, _e: any(
            r["team_id"] == w.acme and r["actor"] == "envhub"
            for r in audit_log.export_events(session=s, actor=a, filters=AuditFilter(action="test.setup"))
        ),
    ),
    Op(
        "audit_log.recent_events",
        "team",
        "audit.read",
        lambda w, s, a, _e: _acme_events(audit_log.recent_events(session=s, actor=a, limit=200)),
    ),
    Op(
        "audit_log.distinct_actions",
        "team",
        "audit.read",
        lambda w, s, a, _e: "test.setup" in audit_log.distinct_actions(session=s, actor=a),
    ),
    Op(
        "audit_log.check_chain",
        "any",
        "audit.read",
        lambda w, s, a, _e: audit_log.check_chain(session=s, actor=a),
    ),
    Op(
        "teams.create_team",
        "any",
        "team.own",
        lambda w, s, a, _e: teams.create_team(session=s, actor=a, name=unique("t")),
    ),
    Op(
        "teams.list_my_teams",
        "team",
        "team.read",
        lambda w, s, a, _e: any(t.team.id == w.acme for t in teams.list_my_teams(session=s, actor=a)),
    ),
    Op(
        "teams.get_team",
        "team",
        "team.read",
        lambda w, s, a, _e: teams.get_team(session=s, actor=a, team_id=w.acme),
    ),
    Op(
        "teams.list_members",
        "team",
        "team.read",
        lambda w, s, a, _e: teams.list_members(session=s, actor=a, team_id=w.acme),
    ),
    Op(
        "teams.list_invites",
        "team",
        "team.manage",
        lambda w, s, a, _e: teams.list_invites(session=s, actor=a, team_id=w.acme) or True,
    ),
    Op(
        "teams.invite",
        "team",
        "team.manage",
        lambda w, s, a, _e: teams.invite(
            session=s, actor=a, team_id=w.acme, email=f"{unique('x')}@acme.example"
        ),
    ),
    Op(
        "teams.revoke_invite",
        "team",
        "team.manage",
        lambda w, s, a, _e: teams.revoke_invite(session=s, actor=a, invite_id=w.invite()) or True,
    ),
    Op(
        "teams.change_role",
        "team",
        "team.manage",
        lambda w, s, a, _e: teams.change_role(
            session=s, actor=a, team_id=w.acme, user_id=w.member(), role="viewer"
        ),
    ),
    Op(
        "teams.remove_member",
        "team",
        "team.manage",
        lambda w, s, a, _e: (
            teams.remove_member(session=s, actor=a, team_id=w.acme, user_id=w.member()) or True
        ),
    ),
    Op(
        "sharing.list_access",
        "env",
        "environment.read",
        lambda w, s, a, e: sharing.list_access(session=s, actor=a, environment_id=e),
    ),
    Op(
        "sharing.share_environment",
        "env",
        "environment.share",
        lambda w, s, a, e: sharing.share_environment(
            session=s, actor=a, environment_id=e, role="viewer", user=w.outsider()
        ),
    ),
    Op(
        "sharing.revoke_share",
        "env",
        "environment.share",
        lambda w, s, a, _e: sharing.revoke_share(session=s, actor=a, share_id=w.share()) or True,
    ),
    Op(
        "sharing.list_shared_environments",
        "shared",
        None,
        lambda w, s, a, _e: any(
            i.environment.id == w.shared for i in sharing.list_shared_environments(session=s, actor=a)
        ),
    ),
    Op(
        "tokens.create_personal_token",
        "person",
        None,
        lambda w, s, a, _e: tokens.create_personal_token(
            session=s, actor=a, name="n", scopes=["read"], expires_in_days=1
        ),
    ),
    Op(
        "tokens.create_agent_token",
        "person",
        "environment.shell",
        lambda w, s, a, e: tokens.create_agent_token(
            session=s, actor=a, environment_id=e, name="n", scopes=["read"], expires_in_days=1
        ),
    ),
    Op(
        "tokens.list_tokens",
        "self",
        None,
        lambda w, s, a, _e: tokens.list_tokens(session=s, actor=a) or a.is_agent,
    ),
    Op(
        "tokens.revoke_token",
        "self",
        None,
        lambda w, s, a, _e: tokens.revoke_token(session=s, actor=a, token_id=w.own_token(a)),
    ),
    Op(
        "secrets.set_secret",
        "team",
        "secret.write",
        lambda w, s, a, _e: secrets.set_secret(
            session=s, actor=a, project_id=w.shop, name=unique("K").replace("-", "_"), value="v"
        ),
    ),
    Op(
        "secrets.list_secrets",
        "team",
        "project.read",
        lambda w, s, a, _e: secrets.list_secrets(session=s, actor=a, project_id=w.shop) or True,
    ),
    Op(
        "secrets.delete_secret",
        "team",
        "secret.write",
        lambda w, s, a, _e: secrets.delete_secret(session=s, actor=a, secret_id=w.secret()) or True,
    ),
    Op(
        "device.approve",
        "person",
        None,
        lambda w, s, a, _e: device.approve(
            s, actor=a, user_code=device.start(s, client_id="envhub-cli", scope="read").user_code
        ),
    ),
    Op(
        "device.deny",
        "person",
        None,
        lambda w, s, a, _e: (
            device.deny(s, actor=a, user_code=device.start(s, client_id="envhub-cli", scope="read").user_code)
            or True
        ),
    ),
]

# Functions taking an actor that are not operations of their own, and why.
NOT_OPERATIONS = {
    "access.*": "the authorization functions themselves",
    "common.audit": "records an event for an operation",
    "common.audited": "records a failed operation",
    "device.pending": "the look-up approve and deny start with (people only, covered by them)",
    "teams.accept_invites": "runs inside sign-in for the person signing in",
    "signin._record_failure": "records a refused sign-in",
}


def test_every_service_operation_is_in_the_matrix() -> None:
    covered = {op.name for op in OPS}
    missing = []
    for module_info in pkgutil.iter_modules(envhub.services.__path__):
        module = importlib.import_module(f"envhub.services.{module_info.name}")
        for name, function in inspect.getmembers(module, inspect.isfunction):
            qualified = f"{module_info.name}.{name}"
            if function.__module__ != module.__name__ or (
                name.startswith("_") and qualified not in NOT_OPERATIONS
            ):
                continue
            if "actor" not in inspect.signature(function).parameters:
                continue
            if (
                qualified in covered
                or qualified in NOT_OPERATIONS
                or f"{module_info.name}.*" in NOT_OPERATIONS
            ):
                continue
            missing.append(qualified)
    assert missing == [], f"service operations with no row in the authorization matrix: {missing}"


# -- running it ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def matrix(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MatrixWorld]:
    engine = engine_for(database_url)
    clean_tables(engine)
    configured = build_settings(
        data_dir=tmp_path_factory.mktemp("matrix"), database_url=database_url, redis_url=""
    )
    with override_settings(configured):
        yield build_world(engine)
    clean_tables(engine)


def outcome(op: Op, world: MatrixWorld, session: Session, actor: Principal, environment_id: int) -> str:
    try:
        result = op.run(world, session, actor, environment_id)
    except NotFound:
        return "not_found"
    except PermissionDenied:
        return "forbidden"
    finally:
        session.rollback()
    return "allowed" if result else "left_out"


ACCEPTED = {"allowed": {"allowed"}, "absent": {"not_found", "left_out"}, "refused": {"forbidden", "left_out"}}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("op", OPS, ids=[op.name for op in OPS])
def test_matrix(matrix: MatrixWorld, op: Op, kind: str) -> None:
    table, wrong = [], []
    for own in (True, False):
        for role in ROLES:
            environment_id = op.on_env(matrix) if op.on_env else matrix.e1
            with matrix.session() as session:
                actor = matrix.principal(session, kind, role, own, environment_id)
                got = outcome(op, matrix, session, actor, environment_id)
            want = expected(op, kind, role, own)
            table.append(f"{'own' if own else 'other'} team {role:<7} expected {want:<8} got {got}")
            if got not in ACCEPTED[want]:
                wrong.append(table[-1])
    assert wrong == [], f"{op.name} as {kind}:\n  " + "\n  ".join(table)


def test_the_matrix_allows_something_and_refuses_something_for_every_kind() -> None:
    """Guards the expectations themselves against being vacuous."""
    for kind in KINDS:
        cells = [expected(op, kind, role, own) for op in OPS for role in ROLES for own in (True, False)]
        assert "allowed" in cells
        assert {"absent", "refused"} & set(cells)
    assert expected(OPS[0], "user", "admin", True) == "allowed"  # admins create projects
    assert expected(OPS[0], "user", "member", True) == "refused"
    assert expected(OPS[0], "user", "owner", False) == "absent"  # owner of another team: nothing here
