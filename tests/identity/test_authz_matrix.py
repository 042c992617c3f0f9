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
from collections.abc import Iterator

import pytest
from sqlmodel import Session

import envhub.services
from envhub.config import override_settings
from envhub.domain.principals import Principal
from envhub.errors import NotFound, PermissionDenied
from envhub.models.db import engine_for
from tests.conftest import build_settings, clean_tables
from tests.identity.matrix_ops import OPS, Op
from tests.identity.matrix_world import KINDS, ROLES, MatrixWorld, build_world

# -- the rules, restated ------------------------------------------------------------

VIEW = {"project.read", "environment.read", "environment.watch", "audit.read", "team.read"}
ROLE_ALLOWS = {
    "viewer": VIEW,
    "member": VIEW
    | {"environment.create", "environment.redeploy", "environment.delete", "environment.shell"}
    | {"release.create", "release.promote", "release.approve", "release.cancel"},
}
ROLE_ALLOWS["admin"] = ROLE_ALLOWS["member"] | {
    "release.rollback",
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
    "release.create": "write",
    # Not an action of its own in the policy: release.create on a release one can read.
    "release.promote": "write",
    "release.approve": "write",
    "release.cancel": "write",
    "release.rollback": "write",
}
# CI's token: it makes releases, and does nothing else (not even read what it released).
DEPLOY_ALLOWS = {"release.create"}
TOKEN_SCOPES = {
    "user": None,
    "pat": {"read", "write", "shell", "admin"},
    "pat-read": {"read"},
    "pat-deploy": {"deploy"},
    # The agent's token row carries admin too (matrix_world writes it past the
    # service): agents never act with it.
    "agent": {"read", "write", "shell"},
}


def scope_ok(kind: str, action: str | None) -> bool:
    scopes = TOKEN_SCOPES[kind]
    return (
        scopes is None
        or action is None
        or SCOPE_OF[action] in scopes
        or ("deploy" in scopes and action in DEPLOY_ALLOWS)
    )


def expected(op: Op, kind: str, role: str, own: bool) -> str:
    """'allowed', or how it must be refused: 'absent' (not_found, or left out of a list),
    'refused' (forbidden, or left out of a list) or 'unscoped' (either)."""
    has_role = own and (op.action is None or op.action in ROLE_ALLOWS[role])
    if not own and op.where in ("team", "env") and not scope_ok(kind, "project.read"):
        # A token that reads nothing (deploy) may be refused for its scope before any team or
        # object is looked at: the same answer in every team, so it says nothing of acme's.
        return "unscoped"
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


# Functions taking an actor that are not operations of their own, and why.
NOT_OPERATIONS = {
    "access.*": "the authorization functions themselves",
    "audit_chain.run_check": "the check behind audit_log.check_chain (authorized there) and the CLI",
    "commands.shell_access": "the shell right's check behind commands.*, files.* and background.* (each "
    "authorizes through it)",
    "commands.open_exec": "the exec behind commands.start_command and files.* (authorized and audited "
    "in each)",
    "common.audit": "records an event for an operation",
    "sleeping.require_awake": "the wake behind commands.shell_access and terminal.open_shell on a sleeping "
    "environment (each authorizes the shell right first)",
    "inspection.shared_inspection": "the throttled inspection behind usage.environment_usage, which "
    "authorizes the environment first (get_environment)",
    "common.audited": "records a failed operation",
    "device.pending": "the look-up approve and deny start with (people only, covered by them)",
    "idempotency.claim": "names a request's idempotency key (create_environment_once authorizes)",
    "teams.accept_invites": "runs inside sign-in for the person signing in",
    "signin._record_failure": "records a refused sign-in",
    "terminal.end_shell": "records the end of a session its opener was authorized for (open_shell)",
    "releases.release_from_push": "a signed GitHub push delivery, acted on as envhub's github "
    "principal (pull_requests._push_event); it calls create_release, whose row this is",
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
        yield build_world(engine, configured.data_dir)
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


ACCEPTED = {
    "allowed": {"allowed"},
    "absent": {"not_found", "left_out"},
    "refused": {"forbidden", "left_out"},
    "unscoped": {"not_found", "forbidden", "left_out"},
}


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
