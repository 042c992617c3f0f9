"""The MCP server at /mcp through the official MCP client: schemas, tokens, rights, errors."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import jsonschema
from mcp import ClientSession
from sqlmodel import Session

from envhub.domain.phases import Phase
from envhub.domain.specs import Trigger
from envhub.models import Environment, Project
from envhub.services import tokens
from tests.mcp.conftest import Agent
from tests.support.loops import run_in_fresh_loop
from tests.terminal.harness import People, Serve
from tests.terminal.signin import agent_token

TOOLS = {
    "whoami",
    "list_projects",
    "list_environments",
    "find_environments",
    "get_environment",
    "get_events",
    "create_environment",
    "update_environment",
    "redeploy_environment",
    "sleep_environment",
    "wake_environment",
    "pin_environment",
    "list_services",
    "rotate_service_credentials",
    "list_backups",
    "list_catalog",
    "create_backup",
    "restore_backup",
    "delete_environment",
    "wait_until_ready",
    "get_public_url",
    "get_logs",
    "run_command",
    "read_file",
    "write_file",
    "list_files",
    "delete_file",
    "start_process",
    "list_processes",
    "read_process_output",
    "stop_process",
    "list_shares",
    "share_environment",
    "revoke_share",
    "get_project",
    "create_project",
    "update_project",
    "delete_project",
    "list_secrets",
    "set_secret",
    "delete_secret",
    "list_teams",
    "get_team",
    "invite_member",
    "revoke_invite",
    "change_role",
    "remove_member",
    "search_audit",
    "get_workloads",
    "get_usage",
    "get_environment_costs",
    "get_team_costs",
    "create_team",
    "list_tokens",
    "revoke_token",
    "connect_github",
    "get_github",
    "update_github",
    "rotate_github_webhook_secret",
    "disconnect_github",
    "get_deployments",
    "configure_deployments",
    "create_release",
    "list_releases",
    "get_release",
    "approve_release",
    "cancel_release",
    "rollback_release",
    "promote_release",
}


def test_every_tool_has_input_and_output_schemas_and_answers_in_them(
    serve: Serve, people: People, project: Project
) -> None:
    agent = Agent(serve(), people.token(people.world.member, ("read",)))
    tools = {tool.name: tool for tool in agent.tools()}
    assert set(tools) == TOOLS
    for tool in tools.values():
        assert tool.description, tool.name
        assert tool.input_schema["type"] == "object", tool.name
        assert (tool.output_schema or {}).get("type") == "object", tool.name
        jsonschema.Draft202012Validator.check_schema(tool.output_schema or {})
    me = agent.call("whoami")
    jsonschema.validate(me, tools["whoami"].output_schema)
    assert (me["name"], me["type"], me["scopes"], me["environment_id"]) == ("max", "token", ["read"], None)
    projects = agent.call("list_projects")
    jsonschema.validate(projects, tools["list_projects"].output_schema)
    assert [p["name"] for p in projects["projects"]] == ["shop"]


def test_no_token_or_a_bad_one_is_401_before_any_tool_runs(serve: Serve, people: People) -> None:
    base = serve()
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    accept = {"Accept": "application/json, text/event-stream"}
    browser = people.me(base).headers
    csrf = httpx.get(f"{base}/api/v1/me", headers=browser, timeout=30).json()["csrf_token"]
    for headers in (
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": "Bearer ehp_" + "0" * 40},
        {**browser, "X-CSRF-Token": csrf},  # a browser's session is not a token, even with its CSRF token
    ):
        answer = httpx.post(f"{base}/mcp", json=call, headers={**accept, **headers}, timeout=30)
        assert answer.status_code == 401, answer.text
        assert answer.json()["code"] == "unauthenticated"
        assert answer.headers["www-authenticate"].startswith("Bearer")
    revoked = people.token(people.world.member)
    tokens.revoke_token(session=people.session, actor=people.world.member, token_id=revoked.token_id or 0)
    answer = httpx.post(f"{base}/mcp", json=call, headers={**accept, **revoked.headers}, timeout=30)
    assert answer.status_code == 401
    # Stateless: no stream to open (GET) and no session to end (DELETE).
    live = people.token(people.world.member).headers
    for method in ("GET", "DELETE"):
        answer = httpx.request(method, f"{base}/mcp", headers={**accept, **live}, timeout=30)
        assert answer.status_code == 405, (method, answer.text)


def test_errors_are_tool_errors_with_the_registry_code(
    serve: Serve, people: People, environment: Environment
) -> None:
    base = serve()
    viewer = Agent(base, people.token(people.world.viewer, ("read", "write", "shell", "admin")))
    assert viewer.call("get_environment", environment_id=environment.id)["detail"]["name"] == "dev"
    refused = viewer.error("delete_environment", environment_id=environment.id)
    assert refused["code"] == "forbidden"
    assert refused["hint"]
    assert viewer.error("get_environment", environment_id=999_999)["code"] == "not_found"
    stranger = Agent(base, people.otto)
    assert stranger.error("get_environment", environment_id=environment.id)["code"] == "not_found"
    read_only = Agent(base, people.token(people.world.member, ("read",)))
    assert (
        read_only.error("run_command", environment_id=environment.id, command=["id"])["code"] == "forbidden"
    )
    # Arguments outside the input schema are refused by the SDK as a tool error, never a 500.
    bad = read_only.raw("get_logs", environment_id=environment.id, tail=0)
    assert bad.is_error


def test_project_tools_take_url_access_and_refuse_other_values_with_the_field_named(
    serve: Serve, people: People, project: Project
) -> None:
    agent = Agent(serve(), people.token(people.world.owner, ("read", "write", "admin")))
    tools = {tool.name: tool for tool in agent.tools()}
    for name in ("create_project", "update_project"):
        argument = tools[name].input_schema["properties"]["url_access"]
        assert {"enum": ["public", "sign_in"], "type": "string"} in argument["anyOf"], name
        assert "anyone with the link" in argument["description"]
    made = agent.call("create_project", team_id=people.world.acme, name="intranet", url_access="sign_in")
    assert (made["url_access"], made["url_access_label"]) == (
        "sign_in",
        "People signed in to envhub who can see the environment",
    )
    changed = agent.call("update_project", project_id=project.id, url_access="sign_in")
    assert changed["url_access"] == "sign_in"
    assert agent.call("get_project", project_id=project.id)["header"]["url_access"] == "sign_in"
    refused = agent.error("update_project", project_id=project.id, url_access="private")
    assert refused["code"] == "validation_failed"
    assert [p["field"] for p in refused["details"]["problems"]] == ["url_access"]
    assert refused["hint"]
    assert agent.call("get_project", project_id=project.id)["header"]["url_access"] == "sign_in"


def test_an_agent_token_sees_and_acts_on_its_one_environment_only(
    serve: Serve, people: People, environment: Environment, project: Project, session: Session
) -> None:
    base = serve()
    world = people.world
    other = Environment(project_id=project.id or 0, name="other", spec=environment.spec)
    session.add(other)
    session.commit()
    agent = Agent(base, agent_token(session, world.member, environment.id or 0, ("read", "write", "shell")))
    me = agent.call("whoami")
    assert (me["type"], me["environment_id"]) == ("agent", environment.id)
    assert agent.call("get_environment", environment_id=environment.id)["detail"]["id"] == environment.id
    assert agent.call("get_public_url", environment_id=environment.id)["phase"] == "pending"
    assert agent.error("get_environment", environment_id=other.id)["code"] == "not_found"
    assert agent.call("list_projects")["projects"] == []
    assert agent.error("list_environments", project_id=project.id)["code"] == "not_found"
    assert [e["id"] for e in agent.call("find_environments")["environments"]] == [environment.id]
    assert agent.error("create_environment", project_id=project.id)["code"] == "not_found"
    # Agents never delete or share, whatever their creator may do.
    assert agent.error("delete_environment", environment_id=environment.id)["code"] == "forbidden"
    assert agent.error("list_shares", environment_id=other.id)["code"] == "not_found"


def test_environments_created_over_mcp_are_recorded_as_made_by_an_agent(
    serve: Serve, people: People, project: Project, session: Session
) -> None:
    agent = Agent(serve(), people.token(people.world.member, ("read", "write")))
    started = agent.call(
        "create_environment", project_id=project.id, name="by-agent", env={"A": "1"}, idempotency_key="k1"
    )
    created = started["environment"]
    assert (created["name"], created["trigger"], created["phase"]) == ("by-agent", "agent", "pending")
    assert (started["replayed"], started["job_id"] is not None) == (False, True)
    row = session.get(Environment, created["id"])
    assert row is not None
    assert row.trigger is Trigger.agent
    assert row.spec["env"]["A"] == "1"
    # The same key again (a retried call) answers the first creation; with other arguments it is refused.
    again = agent.call(
        "create_environment", project_id=project.id, name="by-agent", env={"A": "1"}, idempotency_key="k1"
    )
    assert (again["environment"]["id"], again["replayed"]) == (created["id"], True)
    refused = agent.error("create_environment", project_id=project.id, name="other", idempotency_key="k1")
    assert refused["code"] == "idempotency_key_reused"
    listed = agent.call("list_environments", project_id=project.id, phase="pending")
    assert ([e["name"] for e in listed["environments"]], listed["next_cursor"]) == (["by-agent"], "")
    assert agent.call("list_environments", project_id=project.id, phase="ready")["environments"] == []
    assert agent.error("create_environment", project_id=project.id, name="by-agent")["code"] == "conflict"
    found = agent.call("find_environments", trigger="agent", search="by-ag")
    assert ([e["name"] for e in found["environments"]], found["total"]) == (["by-agent"], 1)
    assert agent.call("find_environments", trigger="manual")["environments"] == []
    assert agent.error("find_environments", cursor="not-a-cursor")["code"] == "invalid_cursor"


def test_concurrent_calls_each_act_as_their_own_token(serve: Serve, people: People) -> None:
    base = serve()
    agents = [Agent(base, people.max), Agent(base, people.vera)] * 8
    seen: list[tuple[str, str]] = []

    async def ask(agent: Agent, expected: str) -> None:
        async def whoami(session: ClientSession) -> Any:
            return (await session.call_tool("whoami", {})).structured_content

        me = await agent._session(whoami)
        seen.append((expected, me["name"]))

    async def all_at_once() -> None:
        async with anyio.create_task_group() as group:
            for agent, name in zip(agents, ["max", "vera"] * 8, strict=True):
                group.start_soon(ask, agent, name)

    run_in_fresh_loop(all_at_once())
    assert len(seen) == 16
    assert all(expected == got for expected, got in seen), seen


def test_an_agent_pins_wakes_and_puts_its_environment_to_sleep(
    serve: Serve, people: People, environment: Environment, session: Session
) -> None:
    agent = Agent(serve(), agent_token(session, people.world.member, environment.id or 0, ("read", "write")))
    pinned = agent.call("pin_environment", environment_id=environment.id)
    assert (pinned["pinned"], pinned["sleeps"], pinned["expires"]) == (True, "", "")
    assert agent.call("get_environment", environment_id=environment.id)["idle"]["pinned"] is True
    assert agent.call("pin_environment", environment_id=environment.id, pinned=False)["pinned"] is False
    # Still pending: there is nothing to put to sleep yet, and nothing asleep to wake.
    refused = agent.error("sleep_environment", environment_id=environment.id)
    assert refused["code"] == "invalid_transition"
    assert agent.error("wake_environment", environment_id=environment.id)["code"] == "invalid_transition"
    environment.phase = Phase.sleeping
    session.add(environment)
    session.commit()
    woken = agent.call("wake_environment", environment_id=environment.id)
    assert (woken["environment"]["message"], woken["job_id"] is not None) == ("Waking up", True)
