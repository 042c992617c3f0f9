"""``/api/v1/environments/{id}/logs``: searched on the server, the previous instance, a log whose
times were never noted (the range is refused, not guessed), and the download as a text file."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from tests.api.conftest import Clients
from tests.api.test_projects_environments import assert_error, make_project


def _environment(client: httpx.Client, clients: Clients, settings: object) -> tuple[int, Path]:
    project = make_project(client, clients.world.acme)
    made = client.post(f"/api/v1/projects/{project['id']}/environments", json={"name": "dev"})
    env_id = int(made.json()["environment"]["id"])
    folder: Path = settings.envs_dir / str(env_id)  # type: ignore[attr-defined]
    folder.mkdir(parents=True)
    return env_id, folder


def test_a_search_is_applied_on_the_server(clients: Clients, owner: httpx.Client, settings: object) -> None:
    env_id, folder = _environment(owner, clients, settings)
    lines = [f"GET /item/{i} status={500 if i % 10 == 3 else 200}" for i in range(100)]
    (folder / "output.log").write_text("".join(line + "\n" for line in lines))
    path = f"/api/v1/environments/{env_id}/logs"

    found = owner.get(path, params={"search": "status=500", "tail": 3}).json()
    assert found["lines"] == [line for line in lines if "status=500" in line][-3:]
    assert (found["matched"], found["scanned"], found["capped"]) == (10, 100, True)

    expression = owner.get(path, params={"search": r"item/(1|2)3 ", "regex": "true"}).json()
    assert expression["lines"] == ["GET /item/13 status=500", "GET /item/23 status=500"]
    assert expression["capped"] is False
    folded = owner.get(path, params={"search": "GET /ITEM/99 ", "ignore_case": "true"}).json()
    assert folded["lines"] == ["GET /item/99 status=200"]

    bad = assert_error(owner.get(path, params={"search": "(", "regex": "true"}), 422, "validation_failed")
    assert "regular expression" in str(bad["message"])


def test_the_previous_instance_is_what_the_process_before_printed(
    clients: Clients, owner: httpx.Client, settings: object
) -> None:
    env_id, folder = _environment(owner, clients, settings)
    path = f"/api/v1/environments/{env_id}/logs"
    (folder / "output.log").write_text("started again\n")
    assert owner.get(path, params={"previous": "true"}).json()["lines"] == []  # it never restarted
    (folder / "output.previous.log").write_text("serving\nTraceback: boom\n")
    previous = owner.get(path, params={"previous": "true"}).json()
    assert (previous["lines"], previous["previous"]) == (["serving", "Traceback: boom"], True)
    assert owner.get(path).json()["lines"] == ["started again"]


def test_a_log_without_recorded_times_cannot_be_cut_to_a_time_range(
    clients: Clients, owner: httpx.Client, settings: object
) -> None:
    env_id, folder = _environment(owner, clients, settings)
    (folder / "output.log").write_text("one\n")  # as a tree started before envhub noted times
    path = f"/api/v1/environments/{env_id}/logs"
    refused = assert_error(owner.get(path, params={"since": "15m"}), 409, "not_supported")
    assert "no recorded times" in str(refused["message"])
    assert_error(owner.get(path, params={"timestamps": "true"}), 409, "not_supported")
    assert_error(owner.get(path, params={"since": "last tuesday"}), 422, "validation_failed")


def test_a_download_is_a_text_file_of_every_line_that_passes(
    clients: Clients, owner: httpx.Client, settings: object
) -> None:
    env_id, folder = _environment(owner, clients, settings)
    lines = [f"line {i}{' warn' if i % 2 else ''}" for i in range(3000)]
    (folder / "output.log").write_text("".join(line + "\n" for line in lines))
    path = f"/api/v1/environments/{env_id}/logs/download"

    whole = owner.get(path)
    assert whole.status_code == 200, whole.text
    assert whole.headers["content-type"] == "text/plain; charset=utf-8"
    disposition = whole.headers["content-disposition"]
    assert re.fullmatch(r'attachment; filename="dev-\d{8}T\d{6}Z\.log"', disposition), disposition
    assert whole.text.splitlines() == lines  # more than a page shows (200), all of them

    warned = owner.get(path, params={"search": "warn", "previous": "false"})
    assert warned.text.splitlines() == [line for line in lines if "warn" in line]

    (folder / "output.previous.log").write_text("crashed\n")
    previous = owner.get(path, params={"previous": "true"})
    assert previous.text == "crashed\n"
    assert "-previous-" in previous.headers["content-disposition"]


def test_logs_are_read_like_the_environment(clients: Clients, owner: httpx.Client, settings: object) -> None:
    env_id, folder = _environment(owner, clients, settings)
    (folder / "output.log").write_text("secret-ish output\n")
    outsider = clients.of(clients.world.outsider)
    for path in ("logs", "logs/download"):
        assert_error(outsider.get(f"/api/v1/environments/{env_id}/{path}"), 404, "not_found")
