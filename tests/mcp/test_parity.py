"""Parity, MCP's column: every service operation is reached by an MCP tool, or says why not.

Read from the code itself (tests/support/callgraph.py): the service functions
each tool calls (``envhub/mcp``), and what those call in turn inside
``services/`` (a view calls its use cases), against every operation of the
authorization matrix. The reasons live with the whole table's
(tests/support/parity.py, checked in tests/test_parity.py).
"""

from __future__ import annotations

from pathlib import Path

import envhub.mcp
from tests.support.callgraph import reached_from
from tests.support.parity import NOT_IN, operations, reason

MCP = Path(envhub.mcp.__file__).parent


def reached_from_mcp() -> set[str]:
    return reached_from(MCP, "tools_*.py")


def test_every_service_operation_has_an_mcp_tool_or_a_reason() -> None:
    reached = reached_from_mcp()
    missing = [name for name in operations() if name not in reached and not reason("MCP", name)]
    assert missing == [], f"service operations no MCP tool reaches: {missing}"
    stale = sorted(name for name in NOT_IN["MCP"] if "*" not in name and name in reached)
    assert stale == [], f"excused as not in MCP, yet reached by a tool: {stale}"


def test_the_call_graph_sees_through_views() -> None:
    """Guards the reading itself: tools call views, views call use cases."""
    reached = reached_from_mcp()
    assert {"project_views.project_overview", "environment_views.environment_rows"} <= reached
    assert {"environments.list_environments", "environments.get_environment"} <= reached
    assert {"commands.run_command", "commands.start_command", "sharing.revoke_share"} <= reached
    assert "terminal.open_shell" not in reached
