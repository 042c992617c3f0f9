"""MCP tests: envhub's production API app under Granian (tests/terminal/harness.py), spoken
to by the official MCP client (the SDK's streamable HTTP transport and ClientSession).
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, ListToolsResult, TextContent, Tool
from sqlmodel import Session

from envhub.config import Settings
from envhub.models import Environment, Project
from tests.support.loops import run_in_fresh_loop
from tests.support.world import World
from tests.terminal.harness import People, Serve, make_environment, servers
from tests.terminal.signin import Credential


@pytest.fixture
def environment(session: Session, world: World, project: Project, settings: Settings) -> Environment:
    return make_environment(session, world, project, settings)


@pytest.fixture
def people(settings: Settings, session: Session, world: World) -> People:
    return People(settings, session, world)


@pytest.fixture
def serve(settings: Settings, tmp_path: Path) -> Iterator[Serve]:
    """``serve(**env)`` starts envhub (on the test's queue) and returns its base URL."""
    with servers(settings, tmp_path) as start:
        yield lambda **extra: start(ENVHUB_QUEUE_NAME=settings.queue_name, **extra)


# Built once: each connection would otherwise load the CA bundle again (about 50 ms of CPU).
_TLS = ssl.create_default_context()


class _Session(ClientSession):
    """The SDK's session, with each tool's compiled output-schema validator kept across sessions.

    Every result is still validated against the schema the server lists; only compiling
    the validator (a quarter of a second per tool) happens once per schema in this process,
    not once per connection.
    """

    _compiled: ClassVar[dict[tuple[str, str], Any]] = {}
    _listings: ClassVar[dict[str, ListToolsResult]] = {}

    async def listed(self, url: str) -> None:
        """What ``list_tools`` leaves behind for ``call_tool`` (the output schemas it validates with),
        from this server's first listing: the same process lists the same tools to every caller."""
        listing = self._listings.get(url)
        if listing is None:
            self._listings[url] = (await self.list_tools()).model_copy(deep=True)
        else:
            self._absorb_tool_listing(listing.model_copy(deep=True), complete=True)

    def _output_schema_validator(self, name: str, output_schema: dict[str, Any]) -> Any:
        key = (name, json.dumps(output_schema, sort_keys=True))
        if key not in self._compiled:
            self._compiled[key] = super()._output_schema_validator(name, output_schema)
        return self._compiled[key]


class Agent:
    """One MCP client's calls against ``base``/mcp with ``credential``; each call is its own connection."""

    def __init__(self, base: str, credential: Credential) -> None:
        self.url, self.headers = f"{base}/mcp", credential.headers

    async def _session(self, work: Any) -> Any:
        async with (
            httpx2.AsyncClient(
                headers=self.headers, timeout=httpx2.Timeout(120, read=900), verify=_TLS
            ) as http,
            streamable_http_client(self.url, http_client=http) as (read, write),
            _Session(read, write) as session,
        ):
            await session.initialize()
            return await work(session)

    def tools(self) -> list[Tool]:
        async def work(session: ClientSession) -> list[Tool]:
            return (await session.list_tools()).tools

        result: list[Tool] = run_in_fresh_loop(self._session(work))
        return result

    def raw(self, tool: str, **arguments: Any) -> CallToolResult:
        async def work(session: _Session) -> CallToolResult:
            await session.listed(self.url)  # the client checks structured content against the listed schema
            return await session.call_tool(tool, arguments)

        result: CallToolResult = run_in_fresh_loop(self._session(work))
        return result

    def call(self, tool: str, **arguments: Any) -> Any:
        """The tool's structured answer; fails the test on a tool error."""
        result = self.raw(tool, **arguments)
        assert not result.is_error, f"{tool} failed: {text_of(result)}"
        return result.structured_content

    def error(self, tool: str, **arguments: Any) -> dict[str, Any]:
        """The error body of a call expected to fail as a tool error."""
        result = self.raw(tool, **arguments)
        assert result.is_error, f"{tool} unexpectedly succeeded: {result.structured_content}"
        body: dict[str, Any] = json.loads(text_of(result))
        return body


def text_of(result: CallToolResult) -> str:
    return "".join(block.text for block in result.content if isinstance(block, TextContent))
