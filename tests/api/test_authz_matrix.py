"""The authorization matrix through REST: every route × role × own/other team × token kind.

The same world and the same expectations as the service matrix
(tests/identity/test_authz_matrix.py) and MCP's (tests/mcp/test_authz_matrix.py),
asked over HTTP against envhub's API app: a cell is *allowed* when the route
answers 2xx (and, for lists, shows acme's object), else it must be 404
``not_found`` (no access at all) or 403 ``forbidden`` (some access), or leave
the object out. Every route of ``envhub/api/v1`` has a case.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import httpx
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
from tests.support.callgraph import template
from tests.support.github_stub import shared_stub
from tests.support.parity import rest_routes
from tests.terminal.harness import servers

KINDS = ("pat", "pat-read", "pat-deploy", "agent")
Args = Callable[[MatrixWorld, int, int], Any]


@dataclass(frozen=True)
class RouteCase:
    method: str
    path: str  # the route's template; {environment_id}, {project_id}... filled by ``ids``
    where: str
    action: str | None
    ids: Args = lambda w, e, t: {}
    body: Args | None = None
    params: Args | None = None
    reached: Callable[[MatrixWorld, Any], bool] = lambda w, out: True
    on_env: Callable[[MatrixWorld], int] | None = None
    before: Callable[[MatrixWorld], None] | None = None
    name: str = field(default="", compare=False)

    def op(self) -> Op:
        return Op(self.method + " " + self.path, self.where, self.action, lambda *_: None, self.on_env)


def _env(w: MatrixWorld, e: int, t: int) -> dict[str, int]:
    return {"environment_id": e}


def _shop(w: MatrixWorld, e: int, t: int) -> dict[str, int]:
    return {"project_id": w.shop}


def _github(w: MatrixWorld, e: int, t: int) -> dict[str, int]:
    return {"project_id": w.github()}


def _deploys(w: MatrixWorld, e: int, t: int) -> dict[str, int]:
    return {"project_id": w.deploying()}


def _waiting(w: MatrixWorld, e: int, t: int) -> dict[str, int]:
    return {"release_id": w.release("production")}


_shas = itertools.count(2 * 10**6)  # commits nobody released yet


def _acme(w: MatrixWorld, e: int, t: int) -> dict[str, int]:
    return {"team_id": w.acme}


def _acme_setup(w: MatrixWorld, out: Any) -> bool:
    items = out["items"] if isinstance(out, dict) else out
    return any(r["actor"] == "envhub" and r["team_id"] == w.acme for r in items)


SETUP = lambda w, e, t: {"action": "test.setup"}  # noqa: E731

CASES = [
    RouteCase("GET", "/me", "self", None),
    RouteCase("GET", "/tokens", "self", None),
    RouteCase(
        "POST",
        "/tokens",
        "person",
        None,
        body=lambda w, e, t: {"name": "n", "scopes": ["read"], "expires_in_days": 1},
    ),
    RouteCase("DELETE", "/tokens/{token_id}", "self", None, ids=lambda w, e, t: {"token_id": t}),
    RouteCase("GET", "/catalog", "self", None, reached=lambda w, out: isinstance(out, list)),
    RouteCase(
        "POST",
        "/environments/{environment_id}/agent-tokens",
        "person",
        "environment.shell",
        _env,
        body=lambda w, e, t: {"name": "n"},
    ),
    RouteCase("GET", "/audit/trail", "team", "audit.read", params=SETUP, reached=_acme_setup),
    RouteCase("GET", "/audit/events", "team", "audit.read", params=SETUP, reached=_acme_setup),
    RouteCase("GET", "/audit/export", "team", "audit.read", params=SETUP, reached=_acme_setup),
    RouteCase("GET", "/audit/verify", "any", "audit.read"),
    RouteCase("POST", "/audit/verify", "any", "audit.read"),
    RouteCase(
        "POST",
        "/environments/{environment_id}/exec",
        "env",
        "environment.shell",
        _env,
        body=lambda w, e, t: {"command": ["true"]},
    ),
    RouteCase(
        "GET",
        "/environments/{environment_id}/files/content",
        "env",
        "environment.shell",
        _env,
        params=lambda w, e, t: {"path": "a.txt"},
    ),
    RouteCase(
        "PUT",
        "/environments/{environment_id}/files/content",
        "env",
        "environment.shell",
        _env,
        params=lambda w, e, t: {"path": "a.txt"},
    ),
    RouteCase(
        "DELETE",
        "/environments/{environment_id}/files/content",
        "env",
        "environment.shell",
        _env,
        params=lambda w, e, t: {"path": "a.txt"},
    ),
    RouteCase("GET", "/environments/{environment_id}/files", "env", "environment.shell", _env),
    RouteCase(
        "POST",
        "/environments/{environment_id}/processes",
        "env",
        "environment.shell",
        _env,
        body=lambda w, e, t: {"name": unique("p"), "command": ["true"]},
    ),
    RouteCase("GET", "/environments/{environment_id}/processes", "env", "environment.shell", _env),
    RouteCase(
        "GET",
        "/environments/{environment_id}/processes/{process_id}/output",
        "env",
        "environment.shell",
        lambda w, e, t: {"environment_id": e, "process_id": w.process(e)},
    ),
    RouteCase(
        "POST",
        "/environments/{environment_id}/processes/{process_id}/stop",
        "env",
        "environment.shell",
        lambda w, e, t: {"environment_id": e, "process_id": w.process(e)},
    ),
    RouteCase(
        "POST",
        "/environments/{environment_id}/credentials",
        "env",
        "environment.shell",
        _env,
        body=lambda w, e, t: {},
    ),
    RouteCase(
        "POST",
        "/projects/{project_id}/environments",
        "team",
        "environment.create",
        _shop,
        body=lambda w, e, t: {},
    ),
    RouteCase(
        "GET",
        "/projects/{project_id}/environments",
        "team",
        "project.read",
        _shop,
        reached=lambda w, out: bool(out["items"]),
    ),
    RouteCase(
        "GET",
        "/environments",
        "env",
        "environment.read",
        params=lambda w, e, t: {"project": w.shop, "limit": 200},
        reached=lambda w, out: any(row["id"] == w.e1 for row in out["items"]),
    ),
    RouteCase("GET", "/environments/{environment_id}", "env", "environment.read", _env),
    RouteCase(
        "PATCH",
        "/environments/{environment_id}",
        "env",
        "environment.redeploy",
        _env,
        body=lambda w, e, t: {"env": {"GREETING": "hi"}},
        before=lambda w: w.reset_e1(),
    ),
    RouteCase(
        "POST",
        "/environments/{environment_id}/redeploy",
        "env",
        "environment.redeploy",
        _env,
        before=lambda w: w.reset_e1(),
    ),
    RouteCase(
        "POST",
        "/environments/{environment_id}/sleep",
        "env",
        "environment.redeploy",
        _env,
        before=lambda w: w.reset_e1(),
    ),
    RouteCase(
        "POST",
        "/environments/{environment_id}/wake",
        "env",
        "environment.redeploy",
        _env,
        before=lambda w: w.reset_e1(),
    ),
    RouteCase("PUT", "/environments/{environment_id}/pin", "env", "environment.redeploy", _env),
    RouteCase("DELETE", "/environments/{environment_id}/pin", "env", "environment.redeploy", _env),
    RouteCase(
        "DELETE",
        "/environments/{environment_id}",
        "env",
        "environment.delete",
        _env,
        on_env=lambda w: w.environment(),
    ),
    RouteCase("GET", "/environments/{environment_id}/status", "env", "environment.read", _env),
    RouteCase(
        "GET",
        "/environments/{environment_id}/wait",
        "env",
        "environment.read",
        _env,
        params=lambda w, e, t: {"timeout": 0},
    ),
    RouteCase("GET", "/environments/{environment_id}/events", "env", "environment.read", _env),
    RouteCase("GET", "/environments/{environment_id}/history", "env", "environment.read", _env),
    RouteCase("GET", "/environments/{environment_id}/logs", "env", "environment.read", _env),
    RouteCase("GET", "/environments/{environment_id}/logs/download", "env", "environment.read", _env),
    RouteCase("GET", "/environments/{environment_id}/usage", "env", "environment.read", _env),
    RouteCase("GET", "/environments/{environment_id}/costs", "env", "environment.read", _env),
    RouteCase(
        "GET",
        "/environments/{environment_id}/services",
        "env",
        "environment.read",
        _env,
        before=lambda w: with_service(w),
        reached=lambda w, out: [row["name"] for row in out] == ["db"],
    ),
    RouteCase(
        "POST",
        "/environments/{environment_id}/services/{service}/rotate",
        "env",
        "environment.redeploy",
        lambda w, e, t: {"environment_id": e, "service": "db"},
        before=lambda w: with_service(w),
    ),
    RouteCase(
        "GET",
        "/environments/{environment_id}/backups",
        "env",
        "environment.read",
        _env,
        before=lambda w: with_backup(w),
        reached=lambda w, out: [row["service"] for row in out["backups"]][:1] == ["db"],
    ),
    RouteCase(
        "POST",
        "/environments/{environment_id}/services/{service}/backups",
        "env",
        "environment.redeploy",
        lambda w, e, t: {"environment_id": e, "service": "db"},
        before=lambda w: with_service(w),
    ),
    RouteCase(
        "POST",
        "/backups/{backup_id}/restore",
        "env",
        "environment.redeploy",
        lambda w, e, t: {"backup_id": latest_backup(w, e)},
        body=lambda w, e, t: {},
        before=lambda w: with_backup(w),
    ),
    RouteCase(
        "GET",
        "/projects",
        "team",
        "project.read",
        params=lambda w, e, t: {"search": "shop"},
        reached=lambda w, out: any(p["id"] == w.shop for p in out["items"]),
    ),
    RouteCase(
        "POST",
        "/projects",
        "team",
        "project.create",
        body=lambda w, e, t: {"team_id": w.acme, "name": unique("new")},
    ),
    RouteCase("GET", "/projects/{project_id}", "team", "project.read", _shop),
    RouteCase(
        "PATCH",
        "/projects/{project_id}",
        "team",
        "project.update",
        _shop,
        body=lambda w, e, t: {"description": "x"},
    ),
    RouteCase(
        "DELETE",
        "/projects/{project_id}",
        "team",
        "project.delete",
        lambda w, e, t: {"project_id": w.project()},
    ),
    RouteCase("GET", "/projects/{project_id}/secrets", "team", "project.read", _shop),
    RouteCase(
        "PUT",
        "/projects/{project_id}/secrets/{name}",
        "team",
        "secret.write",
        lambda w, e, t: {"project_id": w.shop, "name": unique("K").replace("-", "_")},
        body=lambda w, e, t: {"value": "v"},
    ),
    RouteCase("GET", "/teams/{team_id}/secrets", "team", "project.read", _acme),
    RouteCase(
        "PUT",
        "/teams/{team_id}/secrets/{name}",
        "team",
        "secret.write",
        lambda w, e, t: {"team_id": w.acme, "name": unique("K").replace("-", "_")},
        body=lambda w, e, t: {"value": "v"},
    ),
    RouteCase(
        "DELETE", "/secrets/{secret_id}", "team", "secret.write", lambda w, e, t: {"secret_id": w.secret()}
    ),
    RouteCase(
        "PUT",
        "/projects/{project_id}/github",
        "team",
        "secret.write",
        _shop,
        body=lambda w, e, t: {
            "repository": "acme/shop",
            "auth": "token",
            "api_url": shared_stub().api_url,
            "token": w.github_token(),
        },
    ),
    RouteCase("GET", "/projects/{project_id}/github", "team", "project.read", _github),
    RouteCase(
        "PATCH",
        "/projects/{project_id}/github",
        "team",
        "project.update",
        _github,
        body=lambda w, e, t: {"drafts": True},
    ),
    RouteCase("POST", "/projects/{project_id}/github/webhook-secret", "team", "secret.write", _github),
    RouteCase(
        "DELETE",
        "/projects/{project_id}/github",
        "team",
        "project.update",
        lambda w, e, t: {"project_id": w.github(w.project())},
    ),
    RouteCase("GET", "/environments/{environment_id}/shares", "env", "environment.read", _env),
    RouteCase(
        "POST",
        "/environments/{environment_id}/shares",
        "env",
        "environment.share",
        _env,
        body=lambda w, e, t: {"role": "viewer", "user": w.outsider()},
    ),
    RouteCase(
        "DELETE", "/shares/{share_id}", "env", "environment.share", lambda w, e, t: {"share_id": w.share()}
    ),
    RouteCase(
        "GET",
        "/shared-environments",
        "shared",
        None,
        reached=lambda w, out: any(row["environment_id"] == w.shared for row in out),
    ),
    # Deployment environments and releases (api/v1/releases.py), each case on a fresh release.
    RouteCase("GET", "/projects/{project_id}/deployments", "team", "project.read", _deploys),
    RouteCase(
        "PUT",
        "/projects/{project_id}/deployments",
        "team",
        "project.update",
        _deploys,
        body=lambda w, e, t: {"settings": DEPLOYMENTS},
    ),
    RouteCase(
        "POST",
        "/projects/{project_id}/releases",
        "team",
        "release.create",
        _deploys,
        body=lambda w, e, t: {"commit": f"{next(_shas):040x}", "ref": "main"},
        reached=lambda w, out: bool(out["releases"]),
    ),
    RouteCase(
        "GET",
        "/environments/{environment_id}/releases",
        "env",
        "environment.read",
        _env,
        reached=lambda w, out: bool(out["items"]),
        on_env=lambda w: (w.release("staging"), w.stages["staging"])[1],
    ),
    RouteCase("GET", "/releases/{release_id}", "team", "project.read", _waiting),
    RouteCase(
        "POST",
        "/releases/{release_id}/approve",
        "team",
        "release.approve",
        _waiting,
        body=lambda w, e, t: {"comment": "ok"},
    ),
    RouteCase("POST", "/releases/{release_id}/cancel", "team", "release.cancel", _waiting),
    RouteCase(
        "POST",
        "/releases/{release_id}/rollback",
        "team",
        "release.rollback",
        lambda w, e, t: {"release_id": w.release("production", ReleaseStatus.ready)},
    ),
    RouteCase(
        "POST",
        "/releases/{release_id}/promote",
        "team",
        "release.promote",
        lambda w, e, t: {"release_id": w.release("staging", ReleaseStatus.ready)},
        body=lambda w, e, t: {"to": "production"},
    ),
    RouteCase(
        "GET", "/teams", "team", "team.read", reached=lambda w, out: any(row["id"] == w.acme for row in out)
    ),
    RouteCase("POST", "/teams", "any", "team.own", body=lambda w, e, t: {"name": unique("t")}),
    RouteCase("GET", "/teams/{team_id}", "team", "team.read", _acme),
    RouteCase("GET", "/teams/{team_id}/members", "team", "team.read", _acme),
    RouteCase("GET", "/teams/{team_id}/costs", "team", "team.read", _acme),
    RouteCase(
        "PUT",
        "/teams/{team_id}/members/{user_id}",
        "team",
        "team.manage",
        lambda w, e, t: {"team_id": w.acme, "user_id": w.member()},
        body=lambda w, e, t: {"role": "viewer"},
    ),
    RouteCase(
        "DELETE",
        "/teams/{team_id}/members/{user_id}",
        "team",
        "team.manage",
        lambda w, e, t: {"team_id": w.acme, "user_id": w.member()},
    ),
    RouteCase("GET", "/teams/{team_id}/invitations", "team", "team.manage", _acme),
    RouteCase(
        "POST",
        "/teams/{team_id}/invitations",
        "team",
        "team.manage",
        _acme,
        body=lambda w, e, t: {"email": f"{unique('x')}@acme.example"},
    ),
    RouteCase(
        "DELETE", "/invitations/{invite_id}", "team", "team.manage", lambda w, e, t: {"invite_id": w.invite()}
    ),
]


@pytest.fixture(scope="module")
def matrix(
    database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[MatrixWorld, str]]:
    """The matrix world served by envhub's API app (MCP's matrix app: the runtime answers from memory)."""
    engine = engine_for(database_url)
    clean_tables(engine)
    configured = build_settings(
        data_dir=tmp_path_factory.mktemp("rest-matrix"),
        database_url=database_url,
        redis_url=redis_url,
        queue_name="envhub-rest-matrix",
    )
    with override_settings(configured), servers(configured, tmp_path_factory.mktemp("logs")) as start:
        world = build_world(engine, configured.data_dir)
        # Every cell makes, lists or revokes a token: more than the per-client limit allows a minute.
        yield (
            world,
            start(
                app="tests.mcp.matrix_app:app",
                ENVHUB_QUEUE_NAME=configured.queue_name,
                ENVHUB_RATE_LIMIT_TOKENS="10000/60",
            ),
        )
    clean_tables(engine)


def _decoded(response: httpx.Response) -> Any:
    if response.headers.get("content-type", "").startswith("application/x-ndjson"):
        return [json.loads(line) for line in response.text.splitlines() if line.strip()]
    if response.headers.get("content-type", "").startswith("text/plain"):  # a download (logs)
        return response.text
    return response.json() if response.content else None


# One client for every cell (a client per request loads the CA bundle each time, ~50 ms of CPU),
# keeping no cookies: each cell is its token alone.
_HTTP = httpx.Client(timeout=60, cookies=CookieJar(DefaultCookiePolicy(allowed_domains=[])))


def outcome(case: RouteCase, world: MatrixWorld, base: str, token: str, environment_id: int) -> str:
    with world.session() as session:
        token_id = session.exec(
            select(ApiToken.id).where(ApiToken.token_hash == credentials.digest(token))
        ).one()
    args = (world, environment_id, token_id or 0)
    response = _HTTP.request(
        case.method,
        base + "/api/v1" + case.path.format(**case.ids(*args)),
        headers={"Authorization": f"Bearer {token}"},
        json=case.body(*args) if case.body else None,
        params=case.params(*args) if case.params else None,
    )
    if response.status_code in (403, 404):
        code = response.json()["code"]
        return code if code in ("not_found", "forbidden") else f"error {response.status_code} {code}"
    if response.status_code >= 300:
        return f"error {response.status_code} {response.text[:200]}"
    return "allowed" if case.reached(world, _decoded(response)) else "left_out"


def test_every_route_is_in_the_matrix() -> None:
    routes = {(method, template(route.path)) for route in rest_routes() for method in route.methods}
    assert {(case.method, template("/api/v1" + case.path)) for case in CASES} == routes


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", CASES, ids=[f"{case.method} {case.path}" for case in CASES])
def test_matrix_through_rest(matrix: tuple[MatrixWorld, str], case: RouteCase, kind: str) -> None:
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
    assert wrong == [], f"{case.method} {case.path} as {kind}:\n  " + "\n  ".join(table)
