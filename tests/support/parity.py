"""The parity table: each service operation × face (dashboard, REST, CLI, MCP), read from the code.

* operations: the rows of the authorization matrix (tests/identity/matrix_ops.py,
  which fails when a use case has none);
* REST: each route of ``envhub/api/v1`` and the service functions it reaches;
* MCP: each tool (a public function of ``envhub/mcp/tools_*.py``) likewise;
* CLI: each ``envhub`` command (from the typer app) and the REST requests it
  sends, itself or through the CLI's helpers (``callgraph.read_cli``), matched
  to the routes, hence to what those reach;
* dashboard: the modules of ``envhub/ui`` that reach the operation.

:data:`NOT_IN` is the one place that says why an operation has no route,
command or tool in a face; tests/test_parity.py fails on a gap without a reason
and on a reason no longer needed.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Iterator
from dataclasses import dataclass, field

from fastapi.routing import APIRoute

import envhub.api.v1
from tests.identity.matrix_ops import OPS
from tests.support.callgraph import (
    ENVHUB,
    closure,
    face_graph,
    module_uses,
    read_cli,
    service_graph,
    template,
)

FACES = ("dashboard", "REST", "CLI", "MCP")

_TERMINAL = "an interactive terminal over the WebSocket /ws/terminal (dashboard, `envhub shell`)"
_PEOPLE_TOKENS = "people only: tokens cannot make tokens (dashboard, REST with a session)"
_DEVICE = "people only: the browser half of `envhub login` (the dashboard's device page)"
_DASHBOARD_PAGE = "the dashboard's page, in one piece; REST, MCP and the CLI ask for its parts"
_CLI_SCOPE = (
    "the CLI does what issue 10 point 3 lists (login, projects, env, shell, exec, kubeconfig); "
    "this is done in the dashboard, over REST or MCP"
)
_EXPORT = "a download of the trail (REST, JSON lines); search_audit pages through it"
_OFFSET_VIEW = (
    "the dashboard's numbered pages (offset, page n of m, live channels); programs page the same "
    "use case by cursor (services/listing.py)"
)
_OWN_BODY = (
    "REST answers with its own body (api/v1/account.py, teams.py, sharing.py, secrets.py, audit.py), "
    "built from the same use cases, not this view model yet"
)
_HANDOVER = (
    "a browser's hand-over of its envhub session to an environment's URL (/auth/environment/<id>, "
    "which the gateway sends it to); tokens never ride along"
)
_STREAM = "a stream (REST's logs?follow=true, `envhub env logs -f`); a tool answers once: get_logs"

# face -> operation (``module.function``, or ``module.*``) -> why that face has no way to it.
NOT_IN: dict[str, dict[str, str]] = {
    "REST": {
        "url_access.grant": _HANDOVER,
        "terminal.*": _TERMINAL,
        "device.approve": _DEVICE,
        "device.deny": _DEVICE,
        "environments.suggest_environment_name": "the create form's placeholder; REST generates a name "
        "when given none",
        "environment_views.environment_overview": _DASHBOARD_PAGE,
        "audit_log.recent_events": "the dashboard's recent activity; /audit/trail answers the same",
        "audit_log.distinct_actions": "the dashboard's filter menu",
        "commands.run_command": "exec streams the output as it comes (start_command, the same use case "
        "underneath); run_command is its run-to-the-end form for tools",
        "environment_views.environment_permissions": "GET /environments/{id}/status carries them",
        "environment_views.environment_rows": _OFFSET_VIEW,
        "project_views.project_overview": _OFFSET_VIEW,
        "project_views.projects_overview": _OFFSET_VIEW,
        "identity_views.audit_page": _OFFSET_VIEW,
        "identity_views.access_overview": _OWN_BODY,
        "identity_views.chain_overview": _OWN_BODY,
        "identity_views.secret_rows": _OWN_BODY,
        "identity_views.shared_rows": _OWN_BODY,
        "identity_views.team_overview": _OWN_BODY,
        "identity_views.team_rows": _OWN_BODY,
        "identity_views.token_rows": _OWN_BODY,
    },
    "MCP": {
        "url_access.grant": _HANDOVER,
        "terminal.*": _TERMINAL + "; agents use run_command",
        "device.approve": _DEVICE,
        "device.deny": _DEVICE,
        "tokens.create_personal_token": _PEOPLE_TOKENS,
        "tokens.create_agent_token": _PEOPLE_TOKENS,
        "environments.suggest_environment_name": "create_environment generates a name when given none",
        "environment_views.environment_overview": _DASHBOARD_PAGE,
        "environment_views.environment_permissions": "get_environment carries the same permissions",
        "project_views.projects_overview": _OFFSET_VIEW,
        "identity_views.audit_page": _OFFSET_VIEW,
        "logs.follow_environment_logs": _STREAM,
        "environment_requests.follow_logs": _STREAM,
        "credentials.environment_credentials": "kubectl's exec credential plugin (`envhub kubeconfig`)",
        "credentials.kubernetes_groups": "the groups `envhub kubeconfig` names, from /api/v1/me",
        "audit_log.export_pages": _EXPORT,
        "audit_log.recent_events": "the dashboard's recent activity; search_audit answers the same",
        "audit_log.distinct_actions": "the dashboard's filter menu",
        "audit_log.check_chain": "an operator's integrity check of the trail (dashboard, REST)",
        "audit_log.last_check": "an operator's integrity check of the trail (dashboard, REST)",
        "identity_views.chain_overview": "an operator's integrity check of the trail (dashboard, REST)",
    },
    "CLI": {
        "url_access.grant": _HANDOVER,
        "terminal.*": "`envhub shell` opens the terminal WebSocket (/ws/terminal), not a REST route",
        "device.approve": _DEVICE,
        "device.deny": _DEVICE,
        "tokens.create_personal_token": "`envhub login` gets its token by the device flow",
        "tokens.create_agent_token": "agent tokens are handed out in the dashboard or over REST",
        "environments.suggest_environment_name": "`envhub env create` lets the server generate a name",
        "environment_views.environment_overview": _DASHBOARD_PAGE,
        "audit_log.*": _CLI_SCOPE,
        "identity_views.*": _CLI_SCOPE,
        "teams.*": _CLI_SCOPE,
        "sharing.*": _CLI_SCOPE,
        "secrets.*": _CLI_SCOPE,
        "project_views.project_overview": _CLI_SCOPE,
        "projects.delete_project": _CLI_SCOPE,
        "environments.update_environment": _CLI_SCOPE,
        "environment_requests.update": _CLI_SCOPE,
        "inspection.*": _CLI_SCOPE,
        "environment_views.environment_events": _CLI_SCOPE,
        "environment_views.environment_permissions": _CLI_SCOPE,
        "environment_views.environment_rows": _CLI_SCOPE,
        "listing.audit_page": _CLI_SCOPE,
        "audit_log.environment_audit_trail": _CLI_SCOPE,
        "tokens.list_tokens": _CLI_SCOPE,
        "project_views.projects_overview": _CLI_SCOPE,
        "commands.run_command": "`envhub exec` streams the command (start_command) instead of waiting for it",
    },
}


def operations() -> list[str]:
    return sorted({op.name.split(" ", 1)[0] for op in OPS})


def reason(face: str, operation: str) -> str | None:
    reasons = NOT_IN.get(face, {})
    return reasons.get(operation) or reasons.get(f"{operation.split('.', 1)[0]}.*")


@dataclass
class Table:
    """operation -> face -> the ways in (routes, tools, modules); empty when there is none."""

    cells: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    unrouted: list[str] = field(default_factory=list)  # "command: METHOD path" no route answers

    def add(self, face: str, reached: set[str], way: str) -> None:
        for operation in self.cells:
            if operation in reached and way not in self.cells[operation][face]:
                self.cells[operation][face].append(way)

    def missing(self, face: str) -> list[str]:
        return [op for op, row in self.cells.items() if not row[face] and not reason(face, op)]

    def stale(self, face: str) -> list[str]:
        """Reasons that excuse nothing: every operation they name has a way in, or none exists."""
        stale = []
        for key in NOT_IN.get(face, {}):
            covered = [
                op for op in self.cells if op == key or (key.endswith(".*") and op.startswith(key[:-1]))
            ]
            if not covered or all(self.cells[op][face] for op in covered):
                stale.append(key)
        return stale

    def render(self) -> str:
        width = max(len(op) for op in self.cells)
        lines = [f"{'operation':<{width}}  " + "  ".join(f"{face:<32}" for face in FACES)]
        for op, row in self.cells.items():
            cells = []
            for face in FACES:
                ways = row[face]
                text = template(ways[0]) + (f" +{len(ways) - 1}" if len(ways) > 1 else "") if ways else ""
                if not ways and face != "dashboard":
                    text = "- (reason)" if reason(face, op) else "MISSING"
                cells.append(f"{text[:32]:<32}")
            lines.append(f"{op:<{width}}  " + "  ".join(cells))
        return "\n".join(lines)


def rest_routes() -> Iterator[APIRoute]:
    for info in pkgutil.iter_modules(envhub.api.v1.__path__):
        module = importlib.import_module(f"envhub.api.v1.{info.name}")
        router = getattr(module, "router", None)
        for route in getattr(router, "routes", []):
            if isinstance(route, APIRoute):
                yield route


def _tools() -> Iterator[tuple[str, str]]:
    """(tools module, tool name): the public functions of tools_*.py whose first parameter is the caller."""
    for path in sorted((ENVHUB / "mcp").glob("tools_*.py")):
        module = importlib.import_module(f"envhub.mcp.{path.stem}")
        for name, function in inspect.getmembers(module, inspect.isfunction):
            if function.__module__ == module.__name__ and not name.startswith("_"):
                first = next(iter(inspect.signature(function).parameters), None)
                if first == "actor":
                    yield path.stem, name


def cli_commands() -> Iterator[tuple[str, str]]:
    """(command line, ``module.function``) for every command of the ``envhub`` typer app."""
    import typer

    from envhub.cli.main import app

    def walk(group: typer.Typer, prefix: str) -> Iterator[tuple[str, str]]:
        for command in group.registered_commands:
            callback = command.callback
            assert callback is not None
            name = command.name or callback.__name__.replace("_", "-")
            yield f"{prefix}{name}", f"{callback.__module__.rsplit('.', 1)[1]}.{callback.__name__}"
        for sub in group.registered_groups:
            assert sub.typer_instance is not None
            name = sub.name or sub.typer_instance.info.name
            yield from walk(sub.typer_instance, f"{prefix}{getattr(name, 'value', name)} ")

    yield from walk(app, "envhub ")


def build() -> Table:
    """The table, read from the code of every face."""
    services = service_graph()
    table = Table({op: {face: [] for face in FACES} for op in operations()})
    rest = {**services, **face_graph(ENVHUB / "api" / "v1", "rest:")}
    by_request: dict[tuple[str, str], set[str]] = {}
    for route in rest_routes():
        module = route.endpoint.__module__.rsplit(".", 1)[1]
        reached = closure([f"rest:{module}.{route.endpoint.__name__}"], rest)
        for method in sorted(route.methods):
            way = f"{method} {route.path.removeprefix('/api/v1')}"
            table.add("REST", reached, way)
            by_request[(method, template(route.path))] = reached
    cli = read_cli(ENVHUB / "cli")
    for command, function in cli_commands():
        for request in sorted(cli.sent_by(function)):
            if request not in by_request:
                table.unrouted.append(f"{command}: {' '.join(request)}")
            table.add("CLI", by_request.get(request, set()), command)
    mcp = {**services, **face_graph(ENVHUB / "mcp", "mcp:")}
    for module, tool in _tools():
        table.add("MCP", closure([f"mcp:{module}.{tool}"], mcp), tool)
    for path in sorted((ENVHUB / "ui").rglob("*.py")):
        name = path.relative_to(ENVHUB / "ui").with_suffix("").as_posix()
        starts = set().union(*module_uses(path, name).values()) if path.stat().st_size else set()
        table.add("dashboard", closure(starts, services), f"ui/{name}")
    return table
