"""GitHub tests.

* ``stub``: the loopback GitHub REST API (tests/support/github_stub.py) that
  envhub's PyGithub client talks to;
* ``connection``: acme/shop connected to GitHub's example repository through
  the connect use case (verified against the stub), with its webhook secret;
* ``github``: deliveries as GitHub sends them, GitHub's published example
  payloads (``@octokit/webhooks-examples``, installed by ``make test-tools``)
  signed with that secret, to envhub's real app.
"""

from __future__ import annotations

import copy
import hashlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlmodel import Session, select

from envhub.api.app import create_api
from envhub.domain.github import signature
from envhub.integrations.github import TOKENS
from envhub.models import GithubConnection, Project
from envhub.services.github import connect_github
from tests.support.github_stub import GithubStub, github_stub
from tests.support.servers import serve_asgi
from tests.support.tools import webhook_examples
from tests.support.world import World

REPOSITORY = "Codertocat/Hello-World"  # the repository of GitHub's examples
START = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)


class Examples:
    """GitHub's example payloads by event and action; each call returns a fresh copy to change."""

    def __init__(self) -> None:
        events = json.loads(webhook_examples().read_text())
        self._by_event = {event["name"]: event["examples"] for event in events}
        self._clock = 0

    def get(
        self, event: str, action: str | None = None, *, installation: bool | None = None
    ) -> dict[str, Any]:
        for example in self._by_event[event]:
            if action is not None and example.get("action") != action:
                continue
            if installation is not None and installation != ("installation" in example):
                continue
            return copy.deepcopy(example)
        raise LookupError(f"GitHub's examples have no {event} {action or ''} payload")

    def pull_request(
        self, action: str, *, number: int = 2, sha: str | None = None, **changes: Any
    ) -> dict[str, Any]:
        """The example ``pull_request`` ``action``, about PR ``number`` at commit ``sha``.

        Each payload made is newer than the one before (``updated_at``), as a
        pull request's events are, unless the test says otherwise.
        """
        payload = self.get("pull_request", action)
        payload["number"] = payload["pull_request"]["number"] = number
        if sha is not None:
            payload["pull_request"]["head"]["sha"] = sha
        self._clock += 1
        updated = START + timedelta(seconds=self._clock)
        payload["pull_request"]["updated_at"] = updated.strftime("%Y-%m-%dT%H:%M:%SZ")
        payload["pull_request"].update(changes)
        return payload

    def push(self, branch: str, after: str) -> dict[str, Any]:
        """The example push to a branch, of ``branch`` at ``after``."""
        payload = next(copy.deepcopy(p) for p in self._by_event["push"] if p["ref"].startswith("refs/heads/"))
        payload["ref"], payload["after"] = f"refs/heads/{branch}", after
        return payload


def commit(n: int) -> str:
    """A commit id for the n-th push."""
    return hashlib.sha1(f"commit {n}".encode()).hexdigest()


@pytest.fixture
def examples() -> Examples:
    return Examples()


@pytest.fixture(scope="module")
def _served() -> Iterator[GithubStub]:
    with github_stub() as stub:
        yield stub


@pytest.fixture
def stub(_served: GithubStub) -> Iterator[GithubStub]:
    """The stub, emptied for the test, with acme/shop and GitHub's example repository in it;
    no installation token cached."""
    _served.reset()
    _served.add_repo("acme/shop", private=True)
    _served.add_repo(REPOSITORY)
    TOKENS.forget()
    yield _served
    TOKENS.forget()


@dataclass
class Connected:
    row: GithubConnection
    secret: str


@pytest.fixture
def connected(session: Session, project: Project, world: World, stub: GithubStub) -> Connected:
    """acme/shop connected to GitHub's example repository with a token, as its admin would."""
    assert project.id is not None
    made = connect_github(
        session=session,
        actor=world.admin,
        project_id=project.id,
        repository=REPOSITORY,
        auth="token",
        api_url=stub.api_url,
        token=stub.add_token(REPOSITORY),
    )
    session.commit()
    row = session.exec(select(GithubConnection).where(GithubConnection.project_id == project.id)).one()
    return Connected(row, made["webhook_secret"])


@pytest.fixture
def connection(connected: Connected) -> GithubConnection:
    return connected.row


@dataclass
class GitHub:
    """Sends deliveries to envhub as GitHub does: JSON body, event, delivery id, signature."""

    client: httpx.Client
    secret: str

    def send(
        self,
        event: str,
        payload: Any,
        *,
        secret: str | None = None,
        delivery: str | None = None,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        raw = body if body is not None else json.dumps(payload).encode()
        sent = {
            "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/044aadd",
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
            "X-GitHub-Hook-ID": "292430182",
            "X-Hub-Signature-256": signature(self.secret if secret is None else secret, raw),
            **(headers or {}),
        }
        return self.client.post("/webhooks/github", content=raw, headers={k: v for k, v in sent.items() if v})


@pytest.fixture(scope="module")
def app_url() -> Iterator[str]:
    with serve_asgi(create_api()) as port:
        yield f"http://localhost:{port}"


@pytest.fixture
def github(app_url: str, connected: Connected) -> Iterator[GitHub]:
    with httpx.Client(base_url=app_url, timeout=60) as client:
        yield GitHub(client, connected.secret)


# The faces' harnesses: the real envhub command (tests/cli), the API app over HTTP
# (tests/api), envhub under Granian for the MCP client (tests/mcp).
from tests.api.conftest import api_url, clients  # noqa: E402, F401
from tests.cli.conftest import cli, people, serve  # noqa: E402, F401

# Real workers for the tests that run pull requests end to end (tests/github/live.py).
from tests.github.live import worker_settings, workers  # noqa: E402, F401
