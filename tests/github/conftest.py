"""GitHub tests: envhub's PyGithub client against the loopback GitHub stub (tests/support/github_stub.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from envhub.integrations.github import TOKENS
from tests.support.github_stub import GithubStub, github_stub


@pytest.fixture(scope="module")
def _served() -> Iterator[GithubStub]:
    with github_stub() as stub:
        yield stub


@pytest.fixture
def stub(_served: GithubStub) -> Iterator[GithubStub]:
    """The stub, emptied for the test, with acme/shop in it; no installation token cached."""
    _served.reset()
    _served.add_repo("acme/shop", private=True)
    TOKENS.forget()
    yield _served
    TOKENS.forget()


# The faces' harnesses: the real envhub command (tests/cli), the API app over HTTP
# (tests/api), envhub under Granian for the MCP client (tests/mcp).
from tests.api.conftest import api_url, clients  # noqa: E402, F401
from tests.cli.conftest import cli, people, serve  # noqa: E402, F401
