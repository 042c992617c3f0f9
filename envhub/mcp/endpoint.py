"""``/mcp``: the MCP server on envhub's API app, behind a bearer token.

The endpoint authenticates every request before the SDK sees it: no token, a
bad one, a revoked or expired one, or an agent token whose environment is
gone is answered ``401 unauthenticated`` (with ``WWW-Authenticate: Bearer``)
and no tool runs. Only ``Authorization: Bearer`` counts: a browser's session
cookie is an ambient credential a page on another site could make a browser
send, and agents carry tokens anyway.

The SDK's session manager runs stateless with JSON answers: every POST is a
whole exchange, nothing is kept between requests, so any web process can
answer any call. It needs a task group while the app serves: :meth:`McpEndpoint.run`,
which ``create_api`` makes the FastAPI app's lifespan and ``envhub.py``
registers with Reflex (which does not run a mounted app's lifespan).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.concurrency import run_in_threadpool
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from envhub.domain.principals import Principal
from envhub.errors import Unauthenticated
from envhub.mcp import (
    tools_access,
    tools_costs,
    tools_environments,
    tools_files,
    tools_github,
    tools_processes,
    tools_projects,
    tools_releases,
    tools_services,
    tools_teams,
)
from envhub.mcp.toolkit import PRINCIPAL_KEY, ToolServer, add_tool, error_body

PATH = "/mcp"
# Resolves the request's bearer token to its principal (None: anonymous or not valid); blocking.
Identify = Callable[[Scope], Principal | None]

INSTRUCTIONS = (
    "envhub runs preview and development environments. Find a project with list_projects, "
    "create_environment in it, wait_until_ready, then get_public_url, run_command, get_logs; "
    "read_file, write_file, list_files and delete_file work on its workspace; start_process keeps "
    "a dev server running (read_process_output, stop_process). "
    "Errors come back as tool errors whose text is JSON {code, message, hint}: the hint says what to do."
)


def build_server() -> MCPServer[Any]:
    """The MCP server with every tool; one per endpoint (its session manager runs once)."""
    server = _without_logging_setup(
        lambda: ToolServer("envhub", title="envhub", instructions=INSTRUCTIONS, log_level="WARNING")
    )
    envs, access, projects, teams = tools_environments, tools_access, tools_projects, tools_teams
    add_tool(server, access.whoami, title="Who am I", read_only=True)
    add_tool(server, access.list_projects, title="List projects", read_only=True)
    add_tool(server, envs.list_environments, title="List environments", read_only=True)
    add_tool(server, envs.find_environments, title="Find environments", read_only=True)
    add_tool(server, envs.get_environment, title="Get an environment", read_only=True)
    add_tool(server, envs.get_events, title="Environment events", read_only=True)
    add_tool(server, envs.create_environment, title="Create an environment")
    add_tool(server, envs.update_environment, title="Update an environment")
    add_tool(server, envs.redeploy_environment, title="Redeploy an environment")
    add_tool(server, envs.sleep_environment, title="Put an environment to sleep", idempotent=True)
    add_tool(server, envs.wake_environment, title="Wake an environment", idempotent=True)
    add_tool(server, envs.pin_environment, title="Pin or unpin an environment", idempotent=True)
    add_tool(
        server, envs.delete_environment, title="Delete an environment", destructive=True, idempotent=True
    )
    add_tool(server, envs.wait_until_ready, title="Wait until ready", read_only=True)
    add_tool(server, envs.get_public_url, title="Public URL", read_only=True)
    add_tool(server, envs.get_logs, title="Logs", read_only=True)
    add_tool(server, envs.get_workloads, title="Workloads", read_only=True)
    add_tool(server, envs.get_usage, title="CPU and memory", read_only=True)
    add_tool(server, tools_costs.get_environment_costs, title="Hours and cost", read_only=True)
    add_tool(server, tools_costs.get_team_costs, title="A team's hours and cost", read_only=True)
    add_tool(server, envs.run_command, title="Run a command", destructive=True)
    add_tool(server, tools_files.read_file, title="Read a file", read_only=True)
    add_tool(server, tools_files.write_file, title="Write a file", destructive=True, idempotent=True)
    add_tool(server, tools_files.list_files, title="List a folder", read_only=True)
    add_tool(server, tools_files.delete_file, title="Delete a file", destructive=True)
    procs = tools_processes
    add_tool(server, procs.start_process, title="Start a background process")
    add_tool(server, procs.list_processes, title="Background processes", read_only=True)
    add_tool(server, procs.read_process_output, title="A background process's output", read_only=True)
    add_tool(server, procs.stop_process, title="Stop a background process", destructive=True, idempotent=True)
    add_tool(server, tools_services.list_services, title="Managed services", read_only=True)
    add_tool(server, tools_services.rotate_service_credentials, title="Rotate a service's credential")
    add_tool(server, tools_services.list_backups, title="Database backups", read_only=True)
    add_tool(server, tools_services.list_catalog, title="The catalog of other services", read_only=True)
    add_tool(server, tools_services.create_backup, title="Back a database up")
    add_tool(server, tools_services.restore_backup, title="Restore a database backup", destructive=True)
    add_tool(server, access.list_shares, title="List shares", read_only=True)
    add_tool(server, access.share_environment, title="Share an environment", idempotent=True)
    add_tool(server, access.revoke_share, title="Revoke a share", destructive=True, idempotent=True)
    add_tool(server, projects.get_project, title="Get a project", read_only=True)
    add_tool(server, projects.create_project, title="Create a project")
    add_tool(server, projects.update_project, title="Update a project", idempotent=True)
    add_tool(server, projects.delete_project, title="Delete a project", destructive=True)
    add_tool(server, projects.list_secrets, title="List secrets", read_only=True)
    add_tool(server, projects.set_secret, title="Set a secret", idempotent=True)
    add_tool(server, projects.delete_secret, title="Delete a secret", destructive=True)
    gh = tools_github
    add_tool(server, gh.connect_github, title="Connect a GitHub repository", idempotent=True)
    add_tool(server, gh.get_github, title="Get the GitHub connection", read_only=True)
    add_tool(server, gh.update_github, title="Change the pull-request policy", idempotent=True)
    add_tool(server, gh.rotate_github_webhook_secret, title="Rotate the GitHub webhook secret")
    add_tool(server, gh.disconnect_github, title="Disconnect GitHub", destructive=True)
    rel = tools_releases
    add_tool(server, rel.get_deployments, title="Deployment environments", read_only=True)
    add_tool(server, rel.configure_deployments, title="Configure deployment environments", idempotent=True)
    add_tool(server, rel.create_release, title="Release a commit", idempotent=True)
    add_tool(server, rel.list_releases, title="List releases", read_only=True)
    add_tool(server, rel.get_release, title="Get a release", read_only=True)
    add_tool(server, rel.approve_release, title="Approve a release")
    add_tool(server, rel.cancel_release, title="Cancel a release", destructive=True)
    add_tool(server, rel.rollback_release, title="Roll back to a release", destructive=True)
    add_tool(server, rel.promote_release, title="Promote a release")
    add_tool(server, teams.list_teams, title="List teams", read_only=True)
    add_tool(server, teams.create_team, title="Create a team")
    add_tool(server, teams.get_team, title="Get a team", read_only=True)
    add_tool(server, teams.invite_member, title="Invite to a team")
    add_tool(server, teams.revoke_invite, title="Revoke an invitation", destructive=True)
    add_tool(server, teams.change_role, title="Change a member's role", idempotent=True)
    add_tool(server, teams.remove_member, title="Remove a member", destructive=True)
    add_tool(server, teams.search_audit, title="Search the audit trail", read_only=True)
    add_tool(server, access.list_tokens, title="List your tokens", read_only=True)
    add_tool(server, access.revoke_token, title="Revoke a token", destructive=True, idempotent=True)
    return server


def _without_logging_setup(make: Callable[[], MCPServer[Any]]) -> MCPServer[Any]:
    """``make()``, undoing the ``logging.basicConfig`` the SDK runs when a server is made.

    envhub's entry points configure logging themselves (the launcher, the worker);
    a handler and level set first by a library would win over theirs.
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        return make()
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


class McpEndpoint:
    """The ASGI app at ``/mcp``: authenticate, then hand the request to the SDK."""

    def __init__(self, identify: Identify) -> None:
        self.identify = identify
        self.server = build_server()
        # The guard middleware already checks Host and Origin for every request to envhub.
        self.server.streamable_http_app(
            streamable_http_path=PATH,
            stateless_http=True,
            json_response=True,
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )
        self.manager: StreamableHTTPSessionManager = self.server.session_manager

    @contextlib.asynccontextmanager
    async def run(self) -> AsyncIterator[None]:
        """While the app serves (a lifespan): the session manager's task group."""
        async with self.manager.run():
            yield

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        principal = await run_in_threadpool(self.identify, scope)
        if principal is None:
            await _unauthenticated(send)
            return
        # A new state dict for this request: servers may hand every request the same one.
        scope["state"] = {**(scope.get("state") or {}), PRINCIPAL_KEY: principal}
        await self.manager.handle_request(scope, receive, send)

    def route(self) -> Route:
        """``/mcp`` for an app's routes (not part of the OpenAPI document: it speaks JSON-RPC).

        POST only: stateless, the server has no stream to offer on GET and no
        session to end on DELETE, which the protocol answers with 405.
        """
        return Route(PATH, self, methods=["POST"], include_in_schema=False)


async def _unauthenticated(send: Send) -> None:
    error = Unauthenticated("MCP needs 'Authorization: Bearer <token>' with a live personal or agent token")
    payload = json.dumps(error_body(error)).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        (b"www-authenticate", b'Bearer realm="envhub"'),
    ]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def endpoint_of(app: Any) -> McpEndpoint:
    """The endpoint ``create_api`` put on ``app`` (``app.state.mcp``), whose lifespan the app runs."""
    endpoint = app.state.mcp
    assert isinstance(endpoint, McpEndpoint)
    return endpoint
