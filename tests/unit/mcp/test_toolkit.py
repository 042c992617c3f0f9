"""The MCP face's own rules, in-process (the SDK's in-memory client, no HTTP).

MCP reports every error with the registry's code and the same body as REST; a
tool reached without an authenticated request refuses rather than acting as
nobody; output schemas are the services' view models.
"""

from __future__ import annotations

import json
from typing import Any, TypedDict

import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer
from mcp.types import TextContent

from envhub import errors
from envhub.api import errors as api_errors
from envhub.domain.principals import Principal
from envhub.mcp.endpoint import build_server
from envhub.mcp.toolkit import add_tool, error_result
from envhub.services.environment_views import EnvironmentDetail
from tests.support.loops import run_in_fresh_loop
from tests.unit.test_errors import _all_error_classes


@pytest.mark.parametrize("cls", _all_error_classes(), ids=lambda cls: cls.code)
def test_mcp_reports_errors_as_rest_does(cls: type[errors.EnvhubError]) -> None:
    error = cls("boom")
    result = error_result(error)
    assert result.is_error
    [block] = result.content
    assert isinstance(block, TextContent)
    assert json.loads(block.text) == api_errors.body_of(error)


class Pair(TypedDict):
    left: int
    detail: EnvironmentDetail


def pair(actor: Principal, left: int) -> Pair:
    """A tool for the test."""
    raise AssertionError("never reached without a principal")


def _call(server: MCPServer[Any], tool: str, arguments: dict[str, Any]) -> Any:
    async def go() -> Any:
        async with Client(server) as client:
            return await client.call_tool(tool, arguments)

    return run_in_fresh_loop(go())


def test_a_tool_without_an_authenticated_request_is_refused_not_run() -> None:
    server: MCPServer[Any] = MCPServer("t")
    add_tool(server, pair, title="Pair")
    result = _call(server, "pair", {"left": 1})
    assert result.is_error
    assert json.loads(result.content[0].text)["code"] == "unauthenticated"
    for name in ("whoami", "list_projects"):
        answer = _call(build_server(), name, {})
        assert json.loads(answer.content[0].text)["code"] == "unauthenticated"


def test_output_schemas_are_the_view_models() -> None:
    server: MCPServer[Any] = MCPServer("t")
    add_tool(server, pair, title="Pair")
    [tool] = run_in_fresh_loop(server.list_tools())
    schema = tool.output_schema
    assert schema is not None
    assert set(schema["required"]) == {"left", "detail"}
    detail = schema["$defs"]["EnvironmentDetail"]
    assert set(detail["required"]) == set(EnvironmentDetail.__annotations__)
    assert detail["additionalProperties"] is False


def test_a_tool_must_take_the_actor_first() -> None:
    def no_actor(left: int) -> Pair:
        raise AssertionError

    with pytest.raises(TypeError, match="actor"):
        add_tool(MCPServer("t"), no_actor, title="x")
