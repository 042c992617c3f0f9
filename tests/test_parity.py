"""Parity is tested: each service operation × face (dashboard, REST, CLI, MCP), read from the code.

The table (tests/support/parity.py) lists, for every operation of the
authorization matrix, the routes, commands' requests, tools and dashboard
modules that reach it. A service operation without a REST route, a CLI
command or an MCP tool fails here unless ``NOT_IN`` says why; a reason that
no longer excuses anything fails too. ``pytest -s`` prints the table.
"""

from __future__ import annotations

import pytest

from tests.support import parity
from tests.support.callgraph import cli_requests, template
from tests.support.parity import FACES, NOT_IN, Table, operations


@pytest.fixture(scope="module")
def table() -> Table:
    built = parity.build()
    print("\n" + built.render())
    return built


@pytest.mark.parametrize("face", [face for face in FACES if face != "dashboard"])
def test_every_service_operation_is_in_every_face_or_says_why(table: Table, face: str) -> None:
    missing = table.missing(face)
    assert missing == [], f"no way in through {face} for {missing}\n\n{table.render()}"


@pytest.mark.parametrize("face", sorted(NOT_IN))
def test_every_stated_reason_is_still_needed(table: Table, face: str) -> None:
    assert table.stale(face) == [], (
        f"{face} reaches these now (or they name no operation): drop their reasons"
    )


def test_every_request_the_cli_sends_has_a_route(table: Table) -> None:
    assert table.unrouted == []


def test_reasons_name_real_operations() -> None:
    modules = {name.split(".", 1)[0] for name in operations()}
    for reasons in NOT_IN.values():
        for key in reasons:
            assert key in operations() or (key.endswith(".*") and key[:-2] in modules), key


def test_the_reading_sees_routes_tools_and_the_cli() -> None:
    """Guards the reading itself, so an empty column cannot pass as "no gaps"."""
    table = parity.build()
    row = table.cells["environment_requests.create_environment_once"]
    assert "POST /projects/{project_id}/environments" in row["REST"]
    assert row["MCP"] == ["create_environment"]
    assert "ui/pages/environment" in table.cells["environments.redeploy_environment"]["dashboard"]
    assert ("POST", "/api/v1/environments/{}/exec") in cli_requests(parity.ENVHUB / "cli")
    assert "envhub exec" in table.cells["commands.start_command"]["CLI"]
    assert template("/api/v1/environments/{environment_id}/wait") == "/api/v1/environments/{}/wait"
    assert "commands.start_command" not in table.cells["terminal.open_shell"]["REST"]
