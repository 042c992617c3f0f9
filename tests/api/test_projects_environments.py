"""REST API v1: projects and environments over real HTTP, on the test PostgreSQL.

Happy paths, validation errors with their codes, who may see and do what
(another team's project is not found; a viewer cannot create), idempotent
creates, and cursor pages that neither repeat nor skip.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy.engine import Engine

from envhub.domain.phases import Phase
from envhub.models import Environment, IdempotencyKey, JobRun
from tests.api.conftest import Clients
from tests.support.db import audit_events, fetch_all


def make_project(client: httpx.Client, team_id: int, name: str = "shop") -> dict[str, object]:
    made = client.post("/api/v1/projects", json={"team_id": team_id, "name": name, "description": "the shop"})
    assert made.status_code == 201, made.text
    body: dict[str, object] = made.json()
    return body


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, object] = response.json()
    assert body["code"] == code
    assert isinstance(body["message"], str)
    assert body["message"]
    assert isinstance(body["hint"], str)
    return body


# -- projects -------------------------------------------------------------------


def test_a_project_is_created_read_changed_listed_and_deleted(
    clients: Clients, owner: httpx.Client, db: Engine
) -> None:
    project = make_project(owner, clients.world.acme)
    assert (project["name"], project["team"], project["description"]) == ("shop", "acme", "the shop")
    pid = project["id"]
    assert owner.get(f"/api/v1/projects/{pid}").json() == project

    changed = owner.patch(
        f"/api/v1/projects/{pid}", json={"description": "the new shop", "command": "sleep 1"}
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["description"], changed.json()["command"]) == ("the new shop", "sleep 1")

    listed = owner.get("/api/v1/projects").json()
    assert [p["name"] for p in listed["items"]] == ["shop"]
    assert listed["next_cursor"] is None

    assert owner.delete(f"/api/v1/projects/{pid}").status_code == 204
    assert_error(owner.get(f"/api/v1/projects/{pid}"), 404, "not_found")
    actions = [e.action for e in audit_events(db) if e.action.startswith("project.")]
    assert actions == ["project.create", "project.update", "project.delete"]


def test_project_validation_errors_have_codes(clients: Clients, owner: httpx.Client) -> None:
    acme = clients.world.acme
    assert_error(
        owner.post("/api/v1/projects", json={"team_id": acme, "name": "Not A Label"}),
        422,
        "validation_failed",
    )
    assert_error(owner.post("/api/v1/projects", json={"team_id": acme}), 422, "validation_failed")
    refused = owner.post(
        "/api/v1/projects", json={"team_id": acme, "name": "x", "repo_url": "http://u:p@h/r"}
    )
    assert_error(refused, 422, "repo_url_refused")
    make_project(owner, acme)
    assert_error(owner.post("/api/v1/projects", json={"team_id": acme, "name": "shop"}), 409, "conflict")
    assert_error(owner.patch("/api/v1/projects/1", json={"team_id": 3}), 422, "validation_failed")
    assert_error(owner.get("/api/v1/projects?cursor=bm9wZQ"), 422, "invalid_cursor")


def test_url_access_is_chosen_on_create_and_update_and_shown(clients: Clients, owner: httpx.Client) -> None:
    acme = clients.world.acme
    plain = make_project(owner, acme)
    assert (plain["url_access"], plain["url_access_label"]) == ("public", "Anyone with the link")
    made = owner.post("/api/v1/projects", json={"team_id": acme, "name": "intranet", "url_access": "sign_in"})
    assert made.status_code == 201, made.text
    assert made.json()["url_access"] == "sign_in"
    assert made.json()["url_access_label"] == "People signed in to envhub who can see the environment"

    pid = plain["id"]
    changed = owner.patch(f"/api/v1/projects/{pid}", json={"url_access": "sign_in"})
    assert changed.status_code == 200, changed.text
    assert owner.get(f"/api/v1/projects/{pid}").json()["url_access"] == "sign_in"
    # Null leaves it as it is, like the other fields null does not clear.
    kept = owner.patch(f"/api/v1/projects/{pid}", json={"url_access": None, "description": "d"})
    assert kept.json()["url_access"] == "sign_in"

    for refused in (
        owner.patch(f"/api/v1/projects/{pid}", json={"url_access": "private"}),
        owner.post("/api/v1/projects", json={"team_id": acme, "name": "x", "url_access": "sign-in"}),
    ):
        body = assert_error(refused, 422, "validation_failed")
        problems = body["details"]["problems"]  # type: ignore[index]
        assert [p["field"] for p in problems] == ["url_access"]
    assert owner.get(f"/api/v1/projects/{pid}").json()["url_access"] == "sign_in"


def test_the_openapi_document_lists_the_url_access_choices(owner: httpx.Client) -> None:
    schemas = owner.get("/api/v1/openapi.json").json()["components"]["schemas"]
    assert schemas["ProjectHeader"]["properties"]["url_access"]["enum"] == ["public", "sign_in"]
    assert schemas["ProjectIn"]["properties"]["url_access"]["enum"] == ["public", "sign_in"]
    choices = schemas["ProjectChanges"]["properties"]["url_access"]["anyOf"]
    assert {"enum": ["public", "sign_in"], "type": "string"} in choices


def test_another_teams_project_is_not_found_and_a_viewer_cannot_create(
    clients: Clients, owner: httpx.Client
) -> None:
    world = clients.world
    project = make_project(owner, world.acme)
    otto, vera = clients.of(world.outsider), clients.of(world.viewer)
    assert_error(otto.get(f"/api/v1/projects/{project['id']}"), 404, "not_found")
    assert_error(otto.get(f"/api/v1/projects/{project['id']}/environments"), 404, "not_found")
    assert otto.get("/api/v1/projects").json()["items"] == []
    assert_error(otto.post(f"/api/v1/projects/{project['id']}/environments", json={}), 404, "not_found")

    assert vera.get(f"/api/v1/projects/{project['id']}").status_code == 200
    assert_error(
        vera.post("/api/v1/projects", json={"team_id": world.acme, "name": "mine"}), 403, "forbidden"
    )
    assert_error(vera.post(f"/api/v1/projects/{project['id']}/environments", json={}), 403, "forbidden")
    assert_error(vera.delete(f"/api/v1/projects/{project['id']}"), 403, "forbidden")
    assert_error(clients.anonymous().get("/api/v1/projects"), 401, "unauthenticated")
    # A read-only token of the owner cannot write either.
    reader = clients.of(world.owner, ("read",))
    assert_error(
        reader.post("/api/v1/projects", json={"team_id": world.acme, "name": "mine"}), 403, "forbidden"
    )


def test_projects_page_by_cursor(clients: Clients, owner: httpx.Client) -> None:
    names = [f"p{i}" for i in range(5)]
    for name in reversed(names):
        make_project(owner, clients.world.acme, name)
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = owner.get("/api/v1/projects", params=params).json()
        seen += [p["name"] for p in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert (seen, pages) == (names, 3)


# -- environments --------------------------------------------------------------------


def test_a_named_devcontainer_is_set_cleared_and_refused_over_rest(
    clients: Clients, owner: httpx.Client
) -> None:
    made = owner.post(
        "/api/v1/projects", json={"team_id": clients.world.acme, "name": "docs", "devcontainer": "writer"}
    )
    assert made.status_code == 201, made.text
    pid = made.json()["id"]
    assert made.json()["devcontainer"] == "writer"
    refused = owner.patch(f"/api/v1/projects/{pid}", json={"devcontainer": "../../etc"})
    body = assert_error(refused, 422, "validation_failed")
    assert "devcontainer" in body["details"]  # type: ignore[operator]
    # Null clears it: environments then read .devcontainer/devcontainer.json or .devcontainer.json.
    cleared = owner.patch(f"/api/v1/projects/{pid}", json={"devcontainer": None})
    assert cleared.json()["devcontainer"] == ""
    environment = owner.post(f"/api/v1/projects/{pid}/environments", json={"name": "dev"}).json()[
        "environment"
    ]
    # Nothing deployed yet: no configuration, no ports, nothing refused (the fields are always there).
    assert (environment["devcontainer"], environment["devcontainer_ports"]) == ("", [])
    assert environment["devcontainer_unsupported"] == []


def test_create_answers_202_with_the_job_and_a_wait_url(
    clients: Clients, owner: httpx.Client, db: Engine
) -> None:
    project = make_project(owner, clients.world.acme)
    made = owner.post(
        f"/api/v1/projects/{project['id']}/environments",
        json={"name": "dev", "kind": "deployment", "ref": "main", "env": {"GREETING": "hi"}},
    )
    assert made.status_code == 202, made.text
    body = made.json()
    env = body["environment"]
    assert (env["name"], env["kind"], env["phase"], env["trigger"]) == (
        "dev",
        "deployment",
        "pending",
        "manual",
    )
    assert (env["ref"], env["env_keys"]) == ("main", "GREETING")
    [run] = fetch_all(db, JobRun)
    assert body["job_id"] == run.id
    assert run.kind == "provision"
    assert body["wait_url"] == f"/api/v1/environments/{env['id']}/wait"
    assert body["replayed"] is False

    assert owner.get(f"/api/v1/environments/{env['id']}").json() == env
    status = owner.get(body["status_url"]).json()
    assert status["detail"]["phase"] == "pending"
    assert status["run"]["kind"] == "provision"
    assert [s["key"] for s in status["steps"]]  # the job's plan, step by step
    assert status["permissions"]["can_delete"] is True

    started = time.monotonic()
    waited = owner.get(body["wait_url"], params={"timeout": 1})
    assert waited.status_code == 200
    assert waited.json()["reached"] is False
    assert waited.json()["settled"] is False
    assert 0.9 < time.monotonic() - started < 10


def test_wait_returns_as_soon_as_the_phase_is_reached(
    clients: Clients, owner: httpx.Client, db: Engine
) -> None:
    project = make_project(owner, clients.world.acme)
    env = owner.post(f"/api/v1/projects/{project['id']}/environments", json={"name": "dev"}).json()[
        "environment"
    ]
    with db.begin() as conn:
        conn.execute(Environment.__table__.update().values(phase=Phase.ready.value))  # type: ignore[attr-defined]
    started = time.monotonic()
    waited = owner.get(f"/api/v1/environments/{env['id']}/wait").json()
    assert waited["reached"] is True
    assert waited["environment"]["phase"] == "ready"
    assert time.monotonic() - started < 5


def test_redeploy_and_delete_answer_202(clients: Clients, owner: httpx.Client, db: Engine) -> None:
    project = make_project(owner, clients.world.acme)
    env = owner.post(f"/api/v1/projects/{project['id']}/environments", json={"name": "dev"}).json()[
        "environment"
    ]
    assert_error(owner.post(f"/api/v1/environments/{env['id']}/redeploy"), 409, "invalid_transition")
    with db.begin() as conn:
        conn.execute(Environment.__table__.update().values(phase=Phase.failed.value))  # type: ignore[attr-defined]
    redeployed = owner.post(f"/api/v1/environments/{env['id']}/redeploy")
    assert redeployed.status_code == 202, redeployed.text
    assert redeployed.json()["environment"]["phase"] == "provisioning"
    deleted = owner.delete(f"/api/v1/environments/{env['id']}")
    assert deleted.status_code == 202, deleted.text
    assert deleted.json()["environment"]["phase"] == "deleting"
    # Being deleted, it will not become ready: a wait for ready ends at once, settled.
    started = time.monotonic()
    waited = owner.get(f"/api/v1/environments/{env['id']}/wait", params={"timeout": 10}).json()
    assert (waited["reached"], waited["settled"]) == (False, True)
    assert time.monotonic() - started < 5
    gone = owner.get(f"/api/v1/environments/{env['id']}/wait", params={"phase": "deleting", "timeout": 0})
    assert gone.json()["reached"] is True
    kinds = [run.kind for run in sorted(fetch_all(db, JobRun), key=lambda r: r.id or 0)]
    assert kinds == ["provision", "redeploy", "teardown"]
    assert deleted.json()["job_id"] == max(run.id or 0 for run in fetch_all(db, JobRun))
    assert_error(owner.delete(f"/api/v1/projects/{project['id']}"), 409, "conflict")


def test_environment_validation_and_authorization(clients: Clients, owner: httpx.Client) -> None:
    project = make_project(owner, clients.world.acme)
    url = f"/api/v1/projects/{project['id']}/environments"
    assert_error(owner.post(url, json={"name": "Bad Name"}), 422, "validation_failed")
    assert_error(owner.post(url, json={"kind": "nonsense"}), 422, "validation_failed")
    assert_error(owner.post(url, json={"surprise": 1}), 422, "validation_failed")
    assert_error(owner.post(url, json={"env": {"LD_PRELOAD": "x"}}), 422, "env_name_forbidden")
    assert owner.post(url, json={"name": "dev"}).status_code == 202
    assert_error(owner.post(url, json={"name": "dev"}), 409, "conflict")
    env_id = owner.get(url).json()["items"][0]["id"]
    otto, vera = clients.of(clients.world.outsider), clients.of(clients.world.viewer)
    for path in ("", "/status", "/wait?timeout=0", "/events", "/history", "/logs"):
        assert_error(otto.get(f"/api/v1/environments/{env_id}{path}"), 404, "not_found")
    assert_error(otto.delete(f"/api/v1/environments/{env_id}"), 404, "not_found")
    assert vera.get(f"/api/v1/environments/{env_id}/status").json()["permissions"]["can_delete"] is False
    history = vera.get(f"/api/v1/environments/{env_id}/history").json()
    trail = [(e["action"], e["outcome"]) for e in history["events"]]  # newest first: otto's refused delete
    assert trail == [("environment.delete", "failure"), ("environment.create", "success")]
    # Every environment one can see, across projects: the viewer sees acme's, the outsider none.
    seen = vera.get("/api/v1/environments", params={"project": project["id"], "q": "de"}).json()
    assert ([row["id"] for row in seen["items"]], seen["total"], seen["next_cursor"]) == ([env_id], 1, None)
    assert seen["items"][0]["project"] == "shop"
    assert otto.get("/api/v1/environments").json()["items"] == []
    assert_error(owner.get("/api/v1/environments", params={"cursor": "nope"}), 422, "invalid_cursor")
    assert_error(vera.delete(f"/api/v1/environments/{env_id}"), 403, "forbidden")
    assert_error(owner.get(f"/api/v1/environments/{2**31}"), 422, "validation_failed")
    assert_error(owner.get("/api/v1/environments/999999"), 404, "not_found")


def test_the_same_idempotency_key_makes_one_environment(
    clients: Clients, owner: httpx.Client, db: Engine
) -> None:
    project = make_project(owner, clients.world.acme)
    url = f"/api/v1/projects/{project['id']}/environments"
    key = {"Idempotency-Key": "create-dev-1"}
    first = owner.post(url, json={"name": "dev"}, headers=key)
    again = owner.post(url, json={"name": "dev"}, headers=key)
    assert (first.status_code, again.status_code) == (202, 202)
    assert {k: v for k, v in again.json().items() if k != "replayed"} == {
        k: v for k, v in first.json().items() if k != "replayed"
    }
    assert again.json()["replayed"] is True
    assert len(fetch_all(db, Environment)) == 1
    assert len(fetch_all(db, JobRun)) == 1
    assert len(fetch_all(db, IdempotencyKey)) == 1

    other = owner.post(url, json={"name": "other"}, headers=key)
    assert_error(other, 409, "idempotency_key_reused")
    # Another person's key of the same name is theirs.
    adam = clients.of(clients.world.admin)
    assert adam.post(url, json={"name": "adams"}, headers=key).status_code == 202
    # Without a key, the same request is a second (refused: same name) create.
    assert_error(owner.post(url, json={"name": "dev"}), 409, "conflict")


def test_a_failed_create_does_not_keep_its_key(clients: Clients, owner: httpx.Client, db: Engine) -> None:
    project = make_project(owner, clients.world.acme)
    url = f"/api/v1/projects/{project['id']}/environments"
    key = {"Idempotency-Key": "k"}
    assert_error(owner.post(url, json={"name": "Bad"}, headers=key), 422, "validation_failed")
    assert fetch_all(db, IdempotencyKey) == []
    assert owner.post(url, json={"name": "fine"}, headers={"Idempotency-Key": "k2"}).status_code == 202


def test_environments_page_by_cursor_without_duplicates_or_gaps(
    clients: Clients, owner: httpx.Client
) -> None:
    project = make_project(owner, clients.world.acme)
    url = f"/api/v1/projects/{project['id']}/environments"
    for i in range(6):
        assert owner.post(url, json={"name": f"e{i}"}).status_code == 202
    seen, cursor, pages = [], None, 0
    while True:
        page = owner.get(url, params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        assert len(page["items"]) == 2
        seen += [e["name"] for e in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
        # Rows created meanwhile (newer, so on an earlier page) do not shift later pages.
        owner.post(url, json={"name": f"late{pages}"})
    assert pages == 3
    assert seen == [f"e{i}" for i in reversed(range(6))]
    decoded = json.loads(base64.urlsafe_b64decode(page_cursor(owner, url) + "=="))
    assert decoded[0] == "environments"


def page_cursor(client: httpx.Client, url: str) -> str:
    cursor: str = client.get(url, params={"limit": 1}).json()["next_cursor"]
    return cursor


def test_environment_filters(clients: Clients, owner: httpx.Client, db: Engine) -> None:
    project = make_project(owner, clients.world.acme)
    url = f"/api/v1/projects/{project['id']}/environments"
    owner.post(url, json={"name": "web-dev"})
    owner.post(url, json={"name": "web-prod", "kind": "deployment"})
    owner.post(url, json={"name": "api-dev"})
    with db.begin() as conn:
        conn.execute(
            Environment.__table__.update()  # type: ignore[attr-defined]
            .where(Environment.__table__.c.name == "api-dev")  # type: ignore[attr-defined]
            .values(phase=Phase.failed.value, trigger="agent")
        )

    def names(**params: str) -> list[str]:
        response = owner.get(url, params=params)
        assert response.status_code == 200, response.text
        return sorted(e["name"] for e in response.json()["items"])

    assert names(kind="deployment") == ["web-prod"]
    assert names(phase="failed") == ["api-dev"]
    assert names(trigger="agent") == ["api-dev"]
    assert names(search="WEB") == ["web-dev", "web-prod"]
    assert names(search="%") == []
    assert names(phase="deleted") == []
    assert_error(owner.get(url, params={"phase": "sideways"}), 422, "validation_failed")
    other = owner.get(f"/api/v1/projects/{project['id']}/environments", params={"limit": 1}).json()[
        "next_cursor"
    ]
    assert_error(owner.get("/api/v1/projects", params={"cursor": other}), 422, "invalid_cursor")


def test_logs_events_and_follow(clients: Clients, owner: httpx.Client, settings: object, db: Engine) -> None:
    project = make_project(owner, clients.world.acme)
    env = owner.post(f"/api/v1/projects/{project['id']}/environments", json={"name": "dev"}).json()[
        "environment"
    ]
    log_dir = settings.envs_dir / str(env["id"])  # type: ignore[attr-defined]
    log_dir.mkdir(parents=True)
    (log_dir / "output.log").write_text("one\ntwo\n")
    logs = owner.get(f"/api/v1/environments/{env['id']}/logs", params={"tail": 1})
    assert logs.status_code == 200, logs.text
    assert logs.json()["lines"] == ["two"]
    events = owner.get(f"/api/v1/environments/{env['id']}/events")
    assert events.status_code == 200, events.text
    assert events.json()["info"]["local"] is True

    def print_later() -> None:
        time.sleep(0.5)
        with (log_dir / "output.log").open("a") as out:
            out.write("three\n")

    printer = threading.Thread(target=print_later)
    started = time.monotonic()
    printer.start()
    with owner.stream(
        "GET", f"/api/v1/environments/{env['id']}/logs", params={"follow": "true", "seconds": 2, "tail": 5}
    ) as followed:
        assert followed.status_code == 200
        assert followed.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in followed.iter_lines() if line]
    assert 1.5 < time.monotonic() - started < 15
    printer.join()
    # The tail, then what was printed while following; the stream ended on time though quiet after.
    assert lines == [{"line": "one"}, {"line": "two"}, {"line": "three"}]


def test_the_same_key_sent_twice_at_once_makes_one_environment(
    clients: Clients, owner: httpx.Client, db: Engine
) -> None:
    project = make_project(owner, clients.world.acme)
    url = f"/api/v1/projects/{project['id']}/environments"
    key = {"Idempotency-Key": "at-once"}
    barrier = threading.Barrier(4)
    answers: list[httpx.Response] = []

    def send() -> None:
        with httpx.Client(base_url=clients.base_url, headers=owner.headers, timeout=60) as client:
            barrier.wait()
            answers.append(client.post(url, json={"kind": "development"}, headers=key))

    senders = [threading.Thread(target=send) for _ in range(4)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    assert len(fetch_all(db, Environment)) == 1
    made = [a for a in answers if a.status_code == 202]
    assert made, [a.text for a in answers]
    for answer in answers:
        if answer.status_code != 202:  # lost the race while the winner was being recorded
            assert_error(answer, 409, "conflict")
    assert len({a.json()["environment"]["id"] for a in made}) == 1
    again = owner.post(url, json={"kind": "development"}, headers=key)
    assert again.json()["replayed"] is True
    assert again.json()["environment"]["id"] == made[0].json()["environment"]["id"]


def test_keys_are_forgotten_after_a_day(clients: Clients, owner: httpx.Client, db: Engine) -> None:
    project = make_project(owner, clients.world.acme)
    url = f"/api/v1/projects/{project['id']}/environments"
    assert owner.post(url, json={"name": "one"}, headers={"Idempotency-Key": "old"}).status_code == 202
    with db.begin() as conn:
        conn.execute(
            IdempotencyKey.__table__.update().values(  # type: ignore[attr-defined]
                created_at=datetime.now(UTC) - timedelta(hours=25)
            )
        )
    # A day later the key names a new request, and old keys of the person are gone.
    again = owner.post(url, json={"name": "two"}, headers={"Idempotency-Key": "other"})
    assert again.status_code == 202, again.text
    assert [row.key for row in fetch_all(db, IdempotencyKey)] == ["other"]
    reused = owner.post(url, json={"name": "three"}, headers={"Idempotency-Key": "old"})
    assert reused.status_code == 202, reused.text
    assert reused.json()["replayed"] is False


def test_an_environment_is_changed_and_redeployed_with_the_change(
    clients: Clients, owner: httpx.Client, db: Engine
) -> None:
    project = make_project(owner, clients.world.acme)
    env = owner.post(f"/api/v1/projects/{project['id']}/environments", json={"name": "dev"}).json()[
        "environment"
    ]
    url = f"/api/v1/environments/{env['id']}"
    assert_error(owner.patch(url, json={"ref": "main"}), 409, "invalid_transition")  # still being made
    with db.begin() as conn:
        conn.execute(Environment.__table__.update().values(phase=Phase.ready.value))  # type: ignore[attr-defined]
    changed = owner.patch(url, json={"ref": "feature/x", "env": {"GREETING": "hi"}})
    assert changed.status_code == 202, changed.text
    body = changed.json()
    assert (body["environment"]["ref"], body["environment"]["env_keys"]) == ("feature/x", "GREETING")
    assert body["environment"]["phase"] == "updating"
    [run] = [r for r in fetch_all(db, JobRun) if r.kind == "redeploy"]
    assert body["job_id"] == run.id
    [event] = [e for e in audit_events(db, "environment.update") if e.outcome == "success"]
    assert event.details["changed"] == ["env", "ref"]
    assert_error(owner.patch(url, json={"name": "renamed"}), 422, "validation_failed")
    vera = clients.of(clients.world.viewer)
    assert_error(vera.patch(url, json={"ref": "main"}), 403, "forbidden")
