"""The GitHub connection through every face: REST, the envhub command, MCP (the dashboard: tests/browser)."""

from __future__ import annotations

import json
from pathlib import Path

from sqlmodel import Session, select

from envhub.models import AuditEvent, GithubConnection, Project
from tests.api.conftest import Clients
from tests.cli.conftest import Cli
from tests.mcp.conftest import Agent
from tests.support.github_stub import GithubStub
from tests.terminal.harness import People, Serve

ADMIN = ("read", "write", "shell", "admin")


def test_rest_round_trip(clients: Clients, project: Project, stub: GithubStub, session: Session) -> None:
    admin = clients.of(clients.world.admin, ("read", "write"))
    viewer = clients.of(clients.world.viewer, ("read",))
    base = f"/api/v1/projects/{project.id}/github"
    assert admin.get(base).json()["code"] == "github_not_connected"
    token = stub.add_token("acme/shop")
    refused = admin.put(base, json={"repository": "acme/shop", "auth": "token", "api_url": stub.api_url,
                                    "token": "ghp_wrong"})  # fmt: skip
    assert (refused.status_code, refused.json()["code"]) == (422, "github_unauthorized")
    assert refused.json()["hint"]
    limited = None
    stub.fail(429, retry_after=9)
    limited = admin.put(base, json={"repository": "acme/shop", "auth": "token", "api_url": stub.api_url,
                                    "token": token})  # fmt: skip
    assert (limited.status_code, limited.json()["code"]) == (429, "github_rate_limited")
    assert limited.headers["retry-after"] == "9"
    answer = admin.put(base, json={"repository": "acme/shop", "auth": "token", "api_url": stub.api_url,
                                   "token": token})  # fmt: skip
    assert answer.status_code == 200, answer.text
    secret = answer.json()["webhook_secret"]
    assert secret
    assert answer.json()["webhook_url"].endswith("/webhooks/github")
    shown = viewer.get(base)
    assert shown.status_code == 200
    assert secret not in shown.text
    assert token not in shown.text
    assert viewer.patch(base, json={"drafts": True}).status_code == 403
    assert admin.get(base).json()["check_runs"] is True  # on by default
    changed = admin.patch(base, json={"drafts": True, "push_branches": ["main"], "check_runs": False})
    assert (changed.json()["drafts"], changed.json()["push_branches"]) == (True, ["main"])
    assert changed.json()["check_runs"] is False
    bad = admin.patch(base, json={"push_branches": ["a b"]})
    assert (bad.status_code, bad.json()["code"], bad.json()["details"]["field"]) == (
        422, "github_connection_invalid", "push_branches",
    )  # fmt: skip
    rotated = admin.post(f"{base}/webhook-secret").json()["webhook_secret"]
    assert rotated not in ("", secret)
    assert admin.delete(base).json() == {"project_id": project.id, "disconnected": True}
    assert admin.get(base).status_code == 404
    session.expire_all()
    trail = json.dumps([e.details for e in session.exec(select(AuditEvent)).all()])
    assert secret not in trail
    assert rotated not in trail
    assert token not in trail


def test_cli_connect_show_set_rotate_disconnect(
    cli: Cli,
    serve: Serve,
    people: People,
    project: Project,
    stub: GithubStub,
    tmp_path: Path,
    session: Session,
) -> None:
    server = serve()
    env = {
        "ENVHUB_SERVER": server,
        "ENVHUB_TOKEN": people.token(people.world.admin, ADMIN).headers["Authorization"][7:],
    }
    key_file = tmp_path / "app.pem"
    key_file.write_text(stub.add_app(42))
    stub.install(42, 7, "acme/shop")
    app = ("--app-id", "42", "--installation-id", "7", "--private-key-file", str(key_file))
    done = cli(
        "projects", "github", "connect", "shop", "--repo", "acme/shop", "--api-url", stub.api_url, *app, **env
    )
    assert done.returncode == 0, done.stderr
    assert "Copy the secret now" in done.stdout
    row = session.exec(select(GithubConnection)).one()
    assert (row.auth, row.app_id, row.installation_id) == ("app", 42, 7)
    shown = cli("projects", "github", "show", "shop", "--output", "json", **env)
    view = json.loads(shown.stdout)
    assert (view["repository"], view["auth"], view["events"]) == (
        "acme/shop",
        "app",
        ["pull_request", "push"],
    )
    assert "PRIVATE KEY" not in shown.stdout
    changed = cli("projects", "github", "set", "shop", "--drafts", "--opt-in-label", "preview",
                  "--push-branch", "main", "--push-branch", "release/*", "--no-check-runs",
                  "-o", "json", **env)  # fmt: skip
    assert changed.returncode == 0, changed.stderr
    assert json.loads(changed.stdout)["push_branches"] == ["main", "release/*"]
    assert json.loads(changed.stdout)["check_runs"] is False
    again = cli("projects", "github", "set", "shop", "--check-runs", **env)
    assert again.returncode == 0, again.stderr
    assert "check runs" in again.stdout
    rotated = cli("projects", "github", "rotate-secret", "shop", "-o", "json", **env)
    assert len(json.loads(rotated.stdout)["webhook_secret"]) >= 40
    token_file = tmp_path / "token"
    token_file.write_text(stub.add_token("acme/shop") + "\n")
    invalid = cli(
        "projects", "github", "connect", "shop", "--repo", "nope", "--token-file", str(token_file), **env
    )
    assert invalid.returncode == 7
    assert "github_connection_invalid" in invalid.stderr
    assert "next" in invalid.stderr
    gone = cli("projects", "github", "disconnect", "shop", **env)
    assert gone.returncode == 0, gone.stderr
    missing = cli("projects", "github", "show", "shop", "-o", "json", **env)
    assert missing.returncode == 5
    assert json.loads(missing.stderr)["error"]["code"] == "github_not_connected"


def test_mcp_tools(serve: Serve, people: People, project: Project, stub: GithubStub) -> None:
    agent = Agent(serve(), people.token(people.world.admin, ADMIN))
    token = stub.add_token("acme/shop")
    refused = agent.error("connect_github", project_id=project.id, repository="acme/shop", auth="token",
                          api_url="https://user:pw@github.example/api/v3", token=token)  # fmt: skip
    assert (refused["code"], refused["details"]["field"]) == ("github_connection_invalid", "api_url")
    connected = agent.call("connect_github", project_id=project.id, repository="acme/shop", auth="token",
                           api_url=stub.api_url, token=token)  # fmt: skip
    assert connected["webhook_secret"]
    view = agent.call("get_github", project_id=project.id)
    assert connected["webhook_secret"] not in json.dumps(view)
    assert agent.call("update_github", project_id=project.id, opt_out_label="")["opt_out_label"] == ""
    assert agent.call("update_github", project_id=project.id, check_runs=False)["check_runs"] is False
    assert agent.call("rotate_github_webhook_secret", project_id=project.id)["webhook_secret"]
    assert agent.call("disconnect_github", project_id=project.id)["disconnected"] is True
    assert agent.error("get_github", project_id=project.id)["code"] == "github_not_connected"
