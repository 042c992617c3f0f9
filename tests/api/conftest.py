"""REST API v1 tests stand on the real app (create_api, every middleware) served over HTTP.

* ``api_url``: envhub's app on a real port for the module (granian, as in
  production); each test's settings (its own database tables, Redis, data
  folder) apply to it as to everything in this process. The job queue is the
  real Redis queue: creates enqueue jobs that no worker runs.
* ``clients``: an ``httpx.Client`` per person of the world (tests/support/world.py),
  signed in with a personal access token made through the tokens use case.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from sqlmodel import Session

from envhub.api.app import create_api
from envhub.config import Settings
from envhub.domain.principals import Principal
from tests.support.servers import serve_asgi
from tests.support.world import World
from tests.terminal.signin import personal_token

ALL_SCOPES = ("read", "write", "shell", "admin")


@pytest.fixture(scope="module")
def api_url() -> Iterator[str]:
    with serve_asgi(create_api()) as port:
        yield f"http://localhost:{port}"


@dataclass
class Clients:
    base_url: str
    session: Session
    world: World
    opened: list[httpx.Client] = field(default_factory=list)

    def of(self, person: Principal, scopes: tuple[str, ...] = ALL_SCOPES) -> httpx.Client:
        credential = personal_token(self.session, person, scopes)
        client = httpx.Client(base_url=self.base_url, headers=credential.headers, timeout=60)
        self.opened.append(client)
        return client

    def anonymous(self) -> httpx.Client:
        client = httpx.Client(base_url=self.base_url, timeout=60)
        self.opened.append(client)
        return client


@pytest.fixture
def clients(api_url: str, settings: Settings, session: Session, world: World) -> Iterator[Clients]:
    made = Clients(api_url, session, world)
    yield made
    for client in made.opened:
        client.close()


@pytest.fixture
def owner(clients: Clients) -> httpx.Client:
    return clients.of(clients.world.owner)
