"""``GET /api/v1/environments``: every environment one can see, across projects and teams."""

from __future__ import annotations

import httpx

from tests.api.conftest import Clients
from tests.api.test_projects_environments import assert_error, make_project


def _create(client: httpx.Client, project: dict[str, object], name: str) -> int:
    made = client.post(f"/api/v1/projects/{project['id']}/environments", json={"name": name})
    assert made.status_code == 202, made.text
    environment_id: int = made.json()["environment"]["id"]
    return environment_id


def _names(client: httpx.Client, **params: object) -> list[str]:
    answer = client.get("/api/v1/environments", params=params)
    assert answer.status_code == 200, answer.text
    return [row["name"] for row in answer.json()["items"]]


def test_each_person_sees_the_environments_of_every_project_they_can_read(
    clients: Clients, owner: httpx.Client
) -> None:
    world = clients.world
    shop, docs = make_project(owner, world.acme, "shop"), make_project(owner, world.acme, "docs")
    otto = clients.of(world.outsider)
    elsewhere = make_project(otto, world.globex, "intranet")
    _create(owner, shop, "pr-1")
    _create(owner, docs, "pr-2")
    _create(otto, elsewhere, "pr-3")

    listed = owner.get("/api/v1/environments").json()
    assert [row["name"] for row in listed["items"]] == ["pr-2", "pr-1"]
    assert listed["total"] == 2
    assert listed["next_cursor"] is None
    first = listed["items"][0]
    assert (first["project"], first["team"], first["trigger"], first["kind"]) == (
        "docs",
        "acme",
        "manual",
        "development",
    )
    assert _names(clients.of(world.viewer)) == ["pr-2", "pr-1"]
    assert _names(otto) == ["pr-3"]
    assert _names(owner, project=shop["id"]) == ["pr-1"]
    assert _names(owner, team=world.globex) == []
    assert _names(owner, q="docs/pr") == ["pr-2"]
    assert _names(owner, trigger="agent") == []
    assert _names(owner, phase="pending", kind="development") == ["pr-2", "pr-1"]
    assert_error(clients.anonymous().get("/api/v1/environments"), 401, "unauthenticated")


def test_pages_by_cursor_and_refuses_what_it_did_not_hand_out(clients: Clients, owner: httpx.Client) -> None:
    shop = make_project(owner, clients.world.acme)
    for i in range(5):
        _create(owner, shop, f"e{i}")
    seen, cursor = [], None
    while True:
        page = owner.get(
            "/api/v1/environments", params={"limit": 2, **({"cursor": cursor} if cursor else {})}
        )
        assert page.status_code == 200, page.text
        body = page.json()
        assert body["total"] == 5
        seen += [row["name"] for row in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"e{i}" for i in reversed(range(5))]
    assert_error(owner.get("/api/v1/environments", params={"cursor": "bm9wZQ"}), 422, "invalid_cursor")
    assert owner.get("/api/v1/environments", params={"phase": "asleep"}).status_code == 422
