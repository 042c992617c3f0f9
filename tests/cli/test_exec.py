"""``envhub exec``: output streamed, the remote status passed through, timeouts and caps.

And the REST route under it (``POST /api/v1/environments/{id}/exec``).
"""

from __future__ import annotations

import json

import httpx
from sqlmodel import col, select

from envhub.models import AuditEvent, Environment
from tests.cli.conftest import Cli
from tests.terminal.harness import People, Serve, shell_events


def token_env(people: People, base: str, person: object = None) -> dict[str, str]:
    credential = people.token(person or people.world.member, ("read", "shell"))
    return {"ENVHUB_SERVER": base, "ENVHUB_TOKEN": credential.headers["Authorization"][7:]}


def test_exec_streams_output_and_passes_the_exit_status_through(
    cli: Cli, serve: Serve, people: People, environment: Environment
) -> None:
    env = token_env(people, serve())
    done = cli("exec", str(environment.id), "--", "sh", "-c", "echo out; echo err >&2; exit 4", **env)
    assert done.returncode == 4, done.stderr
    assert done.stdout.splitlines() == ["out", "err"]  # stdout and stderr, merged by the exec port
    assert cli("exec", str(environment.id), "--", "true", **env).returncode == 0

    as_json = cli("exec", str(environment.id), "-o", "json", "--", "printf", "%s", "a b", **env)
    assert as_json.returncode == 0, as_json.stderr
    answer = json.loads(as_json.stdout)
    assert (answer["exit_code"], answer["output"], answer["timed_out"]) == (0, "a b", False)


def test_exec_ends_a_command_at_its_timeout_or_output_cap(
    cli: Cli, serve: Serve, people: People, environment: Environment
) -> None:
    env = token_env(people, serve())
    slow = cli("exec", str(environment.id), "--timeout", "1", "--", "sleep", "30", **env)
    assert slow.returncode == 124, slow.stderr
    assert "still running after 1 s" in slow.stderr
    chatty = cli("exec", str(environment.id), "--max-output", "1000", "-o", "json", "--", "yes", **env)
    answer = json.loads(chatty.stdout)
    assert (answer["truncated"], answer["output_bytes"], len(answer["output"])) == (True, 1000, 1000)


def test_exec_is_a_shell_right_and_is_audited(
    cli: Cli, serve: Serve, people: People, environment: Environment
) -> None:
    base = serve()
    viewer = cli(
        "exec", str(environment.id), "-o", "json", "--", "id", **token_env(people, base, people.world.viewer)
    )
    assert viewer.returncode == 255
    assert json.loads(viewer.stderr)["error"]["code"] == "forbidden"
    stranger = cli("exec", str(environment.id), "--", "id", **token_env(people, base, people.world.outsider))
    assert stranger.returncode == 255
    assert "not_found" in stranger.stderr
    missing = cli("exec", "999999", "--", "id", **token_env(people, base))
    assert (missing.returncode, "not_found" in missing.stderr) == (255, True)

    assert (
        cli("exec", str(environment.id), "--", "echo", "audited", **token_env(people, base)).returncode == 0
    )
    session = people.session
    session.expire_all()
    events = session.exec(
        select(AuditEvent).where(AuditEvent.action == "environment.exec").order_by(col(AuditEvent.id))
    ).all()
    outcomes = [(e.actor, e.outcome, (e.details or {}).get("command")) for e in events]
    assert ("max", "success", "echo audited") in outcomes
    assert any(actor == "vera" and outcome != "success" for actor, outcome, _ in outcomes)
    assert shell_events(session, environment.id or 0) == []  # exec is its own trail, not a shell session


def test_the_exec_route_refuses_bad_input_with_a_code(
    serve: Serve, people: People, environment: Environment
) -> None:
    base = serve()
    headers = people.token(people.world.member, ("read", "shell")).headers
    for body in (
        {"command": []},
        {"command": ["id"], "timeout_seconds": 0},
        {"command": ["id"], "container": "A!"},
        {"command": ["echo", "a\x00b"]},
    ):
        answer = httpx.post(f"{base}/api/v1/environments/{environment.id}/exec", json=body, headers=headers)
        assert answer.status_code == 422, answer.text
        assert answer.json()["code"] == "validation_failed"
    read_only = people.token(people.world.member, ("read",)).headers
    answer = httpx.post(
        f"{base}/api/v1/environments/{environment.id}/exec", json={"command": ["id"]}, headers=read_only
    )
    assert answer.status_code == 403
