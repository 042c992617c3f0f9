"""REST API v1: secrets (write-only), teams, members, invitations, shares, tokens, the audit trail."""

from __future__ import annotations

import httpx
from sqlalchemy.engine import Engine

from envhub.models import ApiToken, StoredSecret
from tests.api.conftest import Clients
from tests.api.test_projects_environments import assert_error, make_project
from tests.support.db import fetch_all


def test_secrets_are_write_only(clients: Clients, owner: httpx.Client, db: Engine) -> None:
    project = make_project(owner, clients.world.acme)
    url = f"/api/v1/projects/{project['id']}/secrets"
    put = owner.put(f"{url}/API_KEY", json={"value": "s3cret-value"})
    assert put.status_code == 200, put.text
    assert set(put.json()) == {"id", "name", "updated_at"}
    owner.put(f"{url}/API_KEY", json={"value": "rotated"})
    listed = owner.get(url)
    assert [s["name"] for s in listed.json()] == ["API_KEY"]
    assert "s3cret" not in listed.text
    assert "rotated" not in listed.text
    [row] = fetch_all(db, StoredSecret)
    assert "rotated" not in row.value  # stored encrypted
    assert_error(owner.put(f"{url}/1BAD", json={"value": "x"}), 422, "validation_failed")
    assert_error(owner.put(f"{url}/LD_PRELOAD", json={"value": "x"}), 422, "env_name_forbidden")
    vera, otto = clients.of(clients.world.viewer), clients.of(clients.world.outsider)
    assert vera.get(url).status_code == 200
    assert_error(vera.put(f"{url}/MINE", json={"value": "x"}), 403, "forbidden")
    assert_error(otto.get(url), 404, "not_found")
    assert_error(otto.delete(f"/api/v1/secrets/{row.id}"), 404, "not_found")
    assert owner.delete(f"/api/v1/secrets/{row.id}").status_code == 204
    assert owner.get(url).json() == []
    team_secret = owner.put(f"/api/v1/teams/{clients.world.acme}/secrets/GITHUB_TOKEN", json={"value": "t"})
    assert team_secret.status_code == 200, team_secret.text
    assert [s["name"] for s in owner.get(f"/api/v1/teams/{clients.world.acme}/secrets").json()] == [
        "GITHUB_TOKEN"
    ]


def test_teams_members_and_invitations(clients: Clients, owner: httpx.Client) -> None:
    world = clients.world
    teams = owner.get("/api/v1/teams").json()
    assert [(t["name"], t["role"]) for t in teams] == [("acme", "owner")]
    made = owner.post("/api/v1/teams", json={"name": "labs", "display_name": "Labs"})
    assert made.status_code == 201, made.text
    assert (made.json()["name"], made.json()["role"]) == ("labs", "owner")
    assert_error(owner.post("/api/v1/teams", json={"name": "labs"}), 409, "conflict")
    assert owner.get(f"/api/v1/teams/{world.acme}").json()["members"] == 4

    members = owner.get(f"/api/v1/teams/{world.acme}/members").json()
    assert {m["username"]: m["role"] for m in members} == {
        "olivia": "owner",
        "adam": "admin",
        "max": "member",
        "vera": "viewer",
    }
    vera_id = next(m["user_id"] for m in members if m["username"] == "vera")
    promoted = owner.put(f"/api/v1/teams/{world.acme}/members/{vera_id}", json={"role": "member"})
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["role"] == "member"
    assert_error(
        owner.put(f"/api/v1/teams/{world.acme}/members/{vera_id}", json={"role": "emperor"}),
        422,
        "validation_failed",
    )

    invited = owner.post(f"/api/v1/teams/{world.acme}/invitations", json={"email": "New@Example.com"})
    assert invited.status_code == 201, invited.text
    assert invited.json()["email"] == "new@example.com"
    assert [i["email"] for i in owner.get(f"/api/v1/teams/{world.acme}/invitations").json()] == [
        "new@example.com"
    ]
    assert_error(
        owner.post(f"/api/v1/teams/{world.acme}/invitations", json={"email": "nope"}),
        422,
        "validation_failed",
    )
    maxi = clients.of(world.member)
    assert_error(
        maxi.post(f"/api/v1/teams/{world.acme}/invitations", json={"email": "a@b.example"}), 403, "forbidden"
    )
    assert owner.delete(f"/api/v1/invitations/{invited.json()['id']}").status_code == 204
    assert owner.get(f"/api/v1/teams/{world.acme}/invitations").json() == []

    assert owner.delete(f"/api/v1/teams/{world.acme}/members/{vera_id}").status_code == 204
    otto = clients.of(world.outsider)
    assert_error(otto.get(f"/api/v1/teams/{world.acme}/members"), 404, "not_found")


def test_shares_and_agent_tokens(clients: Clients, owner: httpx.Client, db: Engine) -> None:
    world = clients.world
    project = make_project(owner, world.acme)
    env = owner.post(f"/api/v1/projects/{project['id']}/environments", json={"name": "dev"}).json()[
        "environment"
    ]
    otto = clients.of(world.outsider)
    assert_error(otto.get(f"/api/v1/environments/{env['id']}"), 404, "not_found")

    shared = owner.post(f"/api/v1/environments/{env['id']}/shares", json={"user": "otto", "role": "viewer"})
    assert shared.status_code == 201, shared.text
    [share] = shared.json()["shares"]
    assert (share["grantee"], share["kind"], share["role"], share["active"]) == (
        "otto",
        "user",
        "viewer",
        True,
    )
    assert otto.get(f"/api/v1/environments/{env['id']}").status_code == 200
    assert [s["name"] for s in otto.get("/api/v1/shared-environments").json()] == ["dev"]
    assert_error(otto.delete(f"/api/v1/environments/{env['id']}"), 403, "forbidden")
    assert_error(
        owner.post(f"/api/v1/environments/{env['id']}/shares", json={"user": "otto", "role": "god"}),
        422,
        "validation_failed",
    )
    assert_error(
        owner.post(
            f"/api/v1/environments/{env['id']}/shares",
            json={"team": "globex", "role": "viewer", "expires_at": "2000-01-01"},
        ),
        422,
        "validation_failed",
    )
    assert owner.delete(f"/api/v1/shares/{share['id']}").status_code == 204
    assert_error(otto.get(f"/api/v1/environments/{env['id']}"), 404, "not_found")

    # Tokens cannot make tokens: agent tokens come from a signed-in person (or the dashboard).
    refused = owner.post(f"/api/v1/environments/{env['id']}/agent-tokens", json={"name": "bot"})
    assert_error(refused, 403, "forbidden")
    assert fetch_all(db, ApiToken, ApiToken.kind == "agent") == []


def test_tokens_listed_and_revoked(clients: Clients, owner: httpx.Client) -> None:
    listed = owner.get("/api/v1/tokens")
    assert listed.status_code == 200
    [mine] = listed.json()
    assert "token" not in mine
    spare = clients.of(clients.world.owner)
    spare_id = next(t["id"] for t in owner.get("/api/v1/tokens").json() if t["id"] != mine["id"])
    assert_error(owner.delete(f"/api/v1/tokens/{spare_id}"), 403, "forbidden")  # only itself
    revoked = spare.delete(f"/api/v1/tokens/{spare_id}")  # what `envhub logout` does
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["revoked_at"] is not None
    assert_error(spare.get("/api/v1/me"), 401, "unauthenticated")
    assert_error(
        owner.post("/api/v1/tokens", json={"name": "x", "scopes": ["read"], "expires_in_days": 1}),
        403,
        "forbidden",
    )


def test_the_audit_trail_pages_by_cursor(clients: Clients, owner: httpx.Client) -> None:
    for name in ("a1", "a2", "a3", "a4", "a5"):
        make_project(owner, clients.world.acme, name)
    seen, cursor, pages = [], None, 0
    while True:
        params: dict[str, str | int] = {"limit": 2, "action": "project.create"}
        if cursor:
            params["cursor"] = cursor
        page = owner.get("/api/v1/audit/trail", params=params)
        assert page.status_code == 200, page.text
        seen += [e["target"] for e in page.json()["items"]]
        pages += 1
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert (seen, pages) == (["a5", "a4", "a3", "a2", "a1"], 3)
    otto = clients.of(clients.world.outsider)
    assert otto.get("/api/v1/audit/trail", params={"action": "project.create"}).json()["items"] == []
    assert_error(owner.get("/api/v1/audit/trail", params={"cursor": "x"}), 422, "invalid_cursor")
