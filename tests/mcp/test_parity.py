"""Parity, MCP's column: every service operation is reached by an MCP tool, or says why not.

Read from the code itself: the service functions each tool calls (``envhub/mcp``),
and what those call in turn inside ``services/`` (an overview calls its use
cases), against every operation of the authorization matrix
(tests/identity/matrix_ops.py, which fails when a use case has no row there).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import envhub.mcp
import envhub.services
from tests.identity.matrix_ops import OPS

SERVICES = Path(envhub.services.__file__).parent
MCP = Path(envhub.mcp.__file__).parent

# Operations MCP does not offer, and why: each must really be unreached (no stale excuses).
NOT_IN_MCP = {
    "environments.suggest_environment_name": "create_environment generates a name when given none",
    "environment_views.environment_overview": "the dashboard's page; get_environment, get_events, "
    "get_logs and get_workloads answer its parts",
    "environment_views.environment_permissions": "get_environment carries the same permissions",
    "logs.follow_environment_logs": "a stream (REST, `envhub env logs -f`); a tool answers once: get_logs",
    "terminal.*": "an interactive terminal over a WebSocket (`envhub shell`); agents use run_command",
    "credentials.environment_credentials": "kubectl's exec credential plugin (`envhub kubeconfig`)",
    "credentials.kubernetes_groups": "the groups `envhub kubeconfig` names, from /api/v1/me",
    "tokens.create_personal_token": "people only: tokens cannot make tokens",
    "tokens.create_agent_token": "people only: tokens cannot make tokens",
    "device.approve": "people only: the browser half of `envhub login`",
    "device.deny": "people only: the browser half of `envhub login`",
    "audit_log.export_events": "a download of the trail (REST, JSON lines); search_audit pages through it",
    "audit_log.export_pages": "a download of the trail (REST, JSON lines); search_audit pages through it",
    "audit_log.recent_events": "the dashboard's recent activity; search_audit answers the same",
    "audit_log.distinct_actions": "the dashboard's filter menu",
    "audit_log.check_chain": "an operator's integrity check of the trail (dashboard, REST)",
    "audit_log.last_check": "an operator's integrity check of the trail (dashboard, REST)",
    "identity_views.chain_overview": "an operator's integrity check of the trail (dashboard, REST)",
}


def _calls(tree: ast.AST, module: str, local: set[str]) -> Iterator[tuple[str, str]]:
    """(function, called service function) for each top-level function of a module."""
    aliases: dict[str, str] = {}  # name in the module -> services module or "module.function"
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "envhub.services":
            aliases.update({a.asname or a.name: a.name for a in node.names})
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("envhub.services."):
            source = (node.module or "").rsplit(".", 1)[1]
            aliases.update({a.asname or a.name: f"{source}.{a.name}" for a in node.names})
    for function in getattr(tree, "body", []):
        if not isinstance(function, ast.FunctionDef):
            continue
        for node in ast.walk(function):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
                target = aliases.get(func.value.id)
                if target and "." not in target:
                    yield function.name, f"{target}.{func.attr}"
            elif isinstance(func, ast.Name):
                if func.id in local:
                    yield function.name, f"{module}.{func.id}"
                elif "." in aliases.get(func.id, ""):
                    yield function.name, aliases[func.id]


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in SERVICES.glob("*.py"):
        tree = ast.parse(path.read_text())
        local = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
        for caller, callee in _calls(tree, path.stem, local):
            graph.setdefault(f"{path.stem}.{caller}", set()).add(callee)
    return graph


def reached_from_mcp() -> set[str]:
    graph = _graph()
    todo = []
    for path in MCP.glob("tools_*.py"):
        tree = ast.parse(path.read_text())
        todo += [callee for _caller, callee in _calls(tree, path.stem, set())]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(graph.get(name, ()))
    return seen


def _excused(name: str) -> str | None:
    module = name.split(".", 1)[0]
    return NOT_IN_MCP.get(name) or NOT_IN_MCP.get(f"{module}.*")


def test_every_service_operation_has_an_mcp_tool_or_a_reason() -> None:
    reached = reached_from_mcp()
    operations = {op.name.split(" ", 1)[0] for op in OPS}
    missing = sorted(name for name in operations if name not in reached and not _excused(name))
    assert missing == [], f"service operations no MCP tool reaches: {missing}"
    stale = sorted(name for name in NOT_IN_MCP if "*" not in name and name in reached)
    assert stale == [], f"excused as not in MCP, yet reached by a tool: {stale}"


def test_the_call_graph_sees_through_views() -> None:
    """Guards the reading itself: tools call views, views call use cases."""
    reached = reached_from_mcp()
    assert {"environment_views.environment_rows", "environments.list_environments"} <= reached
    assert {"commands.run_command", "commands.start_command", "sharing.revoke_share"} <= reached
    assert "terminal.open_shell" not in reached
