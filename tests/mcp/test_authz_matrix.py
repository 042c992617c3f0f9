"""The authorization matrix through MCP: every tool × role × own/other team × token kind.

The same world and the same expectations as the service matrix
(tests/identity/test_authz_matrix.py), asked through the official MCP client
over HTTP against envhub's API app: a cell is *allowed* when the tool answers
(and, for lists, shows acme's object), else it must be a tool error with
``not_found`` (no access at all) or ``forbidden`` (some access), or leave the
object out. Sessions are not a kind here: /mcp takes tokens only (test_tools.py).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlmodel import select

from envhub.config import override_settings
from envhub.domain import credentials
from envhub.domain.releases import ReleaseStatus
from envhub.models import ApiToken
from envhub.models.db import engine_for
from tests.conftest import build_settings, clean_tables
from tests.identity.matrix_ops import Op, latest_backup, with_backup, with_service
from tests.identity.matrix_world import DEPLOYMENTS, ROLES, MatrixWorld, build_world, unique
from tests.identity.test_authz_matrix import ACCEPTED, expected
from tests.mcp.conftest import Agent, text_of
from tests.support.github_stub import shared_stub
from tests.terminal.harness import servers
from tests.terminal.signin import Credential

KINDS = ("pat", "pat-read", "pat-deploy", "agent")
_shas = itertools.count(10**6)  # commits nobody released yet


@dataclass(frozen=True)
class ToolCase:
    tool: str
    where: str
    action: str | None
    arguments: Callable[[MatrixWorld, int, int], dict[str, Any]]
    reached: Callable[[MatrixWorld, Any], bool] = lambda w, out: True
    on_env: Callable[[MatrixWorld], int] | None = None
    before: Callable[[MatrixWorld], None] | None = None

    def op(self) -> Op:
        return Op(self.tool, self.where, self.action, lambda *_: None, self.on_env)


def _env(w: MatrixWorld, e: int, t: int) -> dict[str, Any]:
    return {"environment_id": e}


CASES = [
    ToolCase("whoami", "self", None, lambda w, e, t: {}),
    ToolCase("list_catalog", "self", None, lambda w, e, t: {}),
    ToolCase(
        "list_projects",
        "team",
        "project.read",
        lambda w, e, t: {"search": "shop"},
        lambda w, out: any(p["id"] == w.shop for p in out["projects"]),
    ),
    ToolCase(
        "list_environments",
        "team",
        "project.read",
        lambda w, e, t: {"project_id": w.shop},
        lambda w, out: bool(out["environments"]),
    ),
    ToolCase(
        "find_environments",
        "env",
        "environment.read",
        lambda w, e, t: {"project_id": w.shop, "limit": 100},
        lambda w, out: any(row["id"] == w.e1 for row in out["environments"]),
    ),
    ToolCase("get_environment", "env", "environment.read", _env),
    ToolCase("get_events", "env", "environment.read", _env),
    ToolCase("get_public_url", "env", "environment.read", _env),
    ToolCase("get_logs", "env", "environment.read", _env, lambda w, out: bool(out["lines"])),
    ToolCase(
        "wait_until_ready",
        "env",
        "environment.read",
        lambda w, e, t: {"environment_id": e, "timeout_seconds": 1},
    ),
    ToolCase("list_shares", "env", "environment.read", _env),
    ToolCase("create_environment", "team", "environment.create", lambda w, e, t: {"project_id": w.shop}),
    ToolCase("redeploy_environment", "env", "environment.redeploy", _env, before=lambda w: w.reset_e1()),
    ToolCase("sleep_environment", "env", "environment.redeploy", _env, before=lambda w: w.reset_e1()),
    ToolCase("wake_environment", "env", "environment.redeploy", _env, before=lambda w: w.reset_e1()),
    ToolCase("pin_environment", "env", "environment.redeploy", _env),
    ToolCase("list_services", "env", "environment.read", _env, before=lambda w: with_service(w)),
    ToolCase(
        "rotate_service_credentials",
        "env",
        "environment.redeploy",
        lambda w, e, t: {"environment_id": e, "service": "db"},
        before=lambda w: with_service(w),
    ),
    ToolCase("list_backups", "env", "environment.read", _env, before=lambda w: with_backup(w)),
    ToolCase(
        "create_backup",
        "env",
        "environment.redeploy",
        lambda w, e, t: {"environment_id": e, "service": "db"},
        before=lambda w: with_service(w),
    ),
    ToolCase(
        "restore_backup",
        "env",
        "environment.redeploy",
        lambda w, e, t: {"backup_id": latest_backup(w, e)},
        before=lambda w: with_backup(w),
    ),
    ToolCase(
        "update_environment",
        "env",
        "environment.redeploy",
        lambda w, e, t: {"environment_id": e, "env": {"GREETING": "hi"}},
        before=lambda w: w.reset_e1(),
    ),
    ToolCase("delete_environment", "env", "environment.delete", _env, on_env=lambda w: w.environment()),
    ToolCase(
        "run_command",
        "env",
        "environment.shell",
        lambda w, e, t: {"environment_id": e, "command": ["true"]},
        lambda w, out: out["exit_code"] == 0,
    ),
    ToolCase("read_file", "env", "environment.shell", lambda w, e, t: {"environment_id": e, "path": "a.txt"}),
    ToolCase(
        "write_file",
        "env",
        "environment.shell",
        lambda w, e, t: {"environment_id": e, "path": "a.txt", "content": "a"},
    ),
    ToolCase("list_files", "env", "environment.shell", _env),
    ToolCase(
        "delete_file", "env", "environment.shell", lambda w, e, t: {"environment_id": e, "path": "a.txt"}
    ),
    ToolCase(
        "start_process",
        "env",
        "environment.shell",
        lambda w, e, t: {"environment_id": e, "name": unique("p"), "command": ["true"]},
    ),
    ToolCase("list_processes", "env", "environment.shell", _env),
    ToolCase(
        "read_process_output",
        "env",
        "environment.shell",
        lambda w, e, t: {"environment_id": e, "process_id": w.process(e)},
    ),
    ToolCase(
        "stop_process",
        "env",
        "environment.shell",
        lambda w, e, t: {"environment_id": e, "process_id": w.process(e)},
    ),
    ToolCase(
        "share_environment",
        "env",
        "environment.share",
        lambda w, e, t: {"environment_id": e, "role": "viewer", "user": w.outsider()},
    ),
    ToolCase("revoke_share", "env", "environment.share", lambda w, e, t: {"share_id": w.share()}),
    ToolCase("get_workloads", "env", "environment.read", _env),
    ToolCase("get_usage", "env", "environment.read", _env),
    ToolCase("get_environment_costs", "env", "environment.read", _env),
    ToolCase("get_team_costs", "team", "team.read", lambda w, e, t: {"team_id": w.acme}),
    ToolCase("create_team", "any", "team.own", lambda w, e, t: {"name": unique("t")}),
    ToolCase("list_tokens", "self", None, lambda w, e, t: {}),
    ToolCase("revoke_token", "self", None, lambda w, e, t: {"token_id": t}),
    ToolCase("get_project", "team", "project.read", lambda w, e, t: {"project_id": w.shop}),
    ToolCase(
        "create_project", "team", "project.create", lambda w, e, t: {"team_id": w.acme, "name": unique("new")}
    ),
    ToolCase(
        "update_project", "team", "project.update", lambda w, e, t: {"project_id": w.shop, "description": "x"}
    ),
    ToolCase("delete_project", "team", "project.delete", lambda w, e, t: {"project_id": w.project()}),
    ToolCase("list_secrets", "team", "project.read", lambda w, e, t: {"project_id": w.shop}),
    ToolCase(
        "set_secret",
        "team",
        "secret.write",
        lambda w, e, t: {"project_id": w.shop, "name": unique("K").replace("-", "_"), "value": "v"},
    ),
    ToolCase("delete_secret", "team", "secret.write", lambda w, e, t: {"secret_id": w.secret()}),
    ToolCase(
        "connect_github",
        "team",
        "secret.write",
        lambda w, e, t: {
            "project_id": w.shop,
            "repository": "acme/shop",
            "auth": "token",
            "api_url": shared_stub().api_url,
            "token": w.github_token(),
        },
    ),
    ToolCase("get_github", "team", "project.read", lambda w, e, t: {"project_id": w.github()}),
    ToolCase(
        "update_github", "team", "project.update", lambda w, e, t: {"project_id": w.github(), "drafts": True}
    ),
    ToolCase(
        "rotate_github_webhook_secret", "team", "secret.write", lambda w, e, t: {"project_id": w.github()}
    ),
    ToolCase(
        "disconnect_github", "team", "project.update", lambda w, e, t: {"project_id": w.github(w.project())}
    ),
    ToolCase("get_deployments", "team", "project.read", lambda w, e, t: {"project_id": w.deploying()}),
    ToolCase(
        "configure_deployments",
        "team",
        "project.update",
        lambda w, e, t: {"project_id": w.deploying(), "settings": DEPLOYMENTS},
    ),
    ToolCase(
        "create_release",
        "team",
        "release.create",
        lambda w, e, t: {"project_id": w.deploying(), "commit": f"{next(_shas):040x}"},
        lambda w, out: bool(out["releases"]),
    ),
    ToolCase(
        "list_releases",
        "env",
        "environment.read",
        lambda w, e, t: {"environment_id": e},
        lambda w, out: bool(out["releases"]),
        on_env=lambda w: (w.release("staging"), w.stages["staging"])[1],
    ),
    ToolCase("get_release", "team", "project.read", lambda w, e, t: {"release_id": w.release("production")}),
    ToolCase(
        "approve_release", "team", "release.approve", lambda w, e, t: {"release_id": w.release("production")}
    ),
    ToolCase(
        "cancel_release", "team", "release.cancel", lambda w, e, t: {"release_id": w.release("production")}
    ),
    ToolCase(
        "rollback_release",
        "team",
        "release.rollback",
        lambda w, e, t: {"release_id": w.release("production", ReleaseStatus.ready)},
    ),
    ToolCase(
        "promote_release",
        "team",
        "release.promote",
        lambda w, e, t: {"release_id": w.release("staging", ReleaseStatus.ready), "to": "production"},
    ),
    ToolCase(
        "list_teams",
        "team",
        "team.read",
        lambda w, e, t: {},
        lambda w, out: any(row["id"] == str(w.acme) for row in out["teams"]),
    ),
    ToolCase("get_team", "team", "team.read", lambda w, e, t: {"team_id": w.acme}),
    ToolCase(
        "invite_member",
        "team",
        "team.manage",
        lambda w, e, t: {"team_id": w.acme, "email": f"{unique('x')}@acme.example"},
    ),
    ToolCase("revoke_invite", "team", "team.manage", lambda w, e, t: {"invite_id": w.invite()}),
    ToolCase(
        "change_role",
        "team",
        "team.manage",
        lambda w, e, t: {"team_id": w.acme, "user_id": w.member(), "role": "viewer"},
    ),
    ToolCase(
        "remove_member", "team", "team.manage", lambda w, e, t: {"team_id": w.acme, "user_id": w.member()}
    ),
    ToolCase(
        "search_audit",
        "team",
        "audit.read",
        lambda w, e, t: {"action": "test.setup"},
        lambda w, out: any(row["actor"] == "envhub" and row["team_id"] == w.acme for row in out["events"]),
    ),
]


@pytest.fixture(scope="module")
def matrix(
    database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[MatrixWorld, str]]:
    engine = engine_for(database_url)
    clean_tables(engine)
    configured = build_settings(
        data_dir=tmp_path_factory.mktemp("mcp-matrix"),
        database_url=database_url,
        redis_url=redis_url,
        queue_name="envhub-mcp-matrix",
    )
    with override_settings(configured), servers(configured, tmp_path_factory.mktemp("logs")) as start:
        world = build_world(engine, configured.data_dir)
        yield world, start(app="tests.mcp.matrix_app:app", ENVHUB_QUEUE_NAME=configured.queue_name)
    clean_tables(engine)


def outcome(case: ToolCase, world: MatrixWorld, base: str, token: str, environment_id: int) -> str:
    with world.session() as session:
        token_id = session.exec(
            select(ApiToken.id).where(ApiToken.token_hash == credentials.digest(token))
        ).one()
    agent = Agent(base, Credential("matrix", {"Authorization": f"Bearer {token}"}))
    result = agent.raw(case.tool, **case.arguments(world, environment_id, token_id or 0))
    if result.is_error:
        code = text_of(result)
        for known in ("not_found", "forbidden"):
            if f'"code": "{known}"' in code:
                return known
        return f"error {code}"
    return "allowed" if case.reached(world, result.structured_content) else "left_out"


def test_every_tool_is_in_the_matrix() -> None:
    from tests.mcp.test_tools import TOOLS

    assert {case.tool for case in CASES} == TOOLS


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", CASES, ids=[case.tool for case in CASES])
def test_matrix_through_mcp(matrix: tuple[MatrixWorld, str], case: ToolCase, kind: str) -> None:
    world, base = matrix
    table, wrong = [], []
    for own in (True, False):
        for role in ROLES:
            if case.before:
                case.before(world)
            environment_id = case.on_env(world) if case.on_env else world.e1
            with world.session() as session:
                token = world.token(
                    session, kind, world.users[("acme" if own else "globex", role)], environment_id
                )
            got = outcome(case, world, base, token, environment_id)
            want = expected(case.op(), kind, role, own)
            table.append(f"{'own' if own else 'other'} team {role:<7} expected {want:<8} got {got}")
            if got not in ACCEPTED[want]:
                wrong.append(table[-1])
    assert wrong == [], f"{case.tool} as {kind}:\n  " + "\n  ".join(table)
