"""Attack: stall or fool envhub through its preview gateway with the Host and X-Forwarded-* headers.

Anyone who can reach envhub can send any Host. The gateway (real server,
real database; only the runtime port is a stub saying where environments
listen) must not turn that into database load or unbounded memory: host
labels that are not valid names are answered without a query, answers are
cached (negative ones too) in a bounded LRU, and a flood of distinct names
never grows the cache past its bound. The app behind it must not be fooled
either: what the client claims about itself (``X-Forwarded-*``, ``Forwarded``,
``X-Real-IP``) is replaced by envhub's own account, and envhub's session
cookie is not passed on.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event
from sqlmodel import Session
from websockets.sync.client import connect as ws_connect

from envhub.api import gateway as gateway_module
from envhub.api.app import create_api
from envhub.api.gateway import GatewayMiddleware
from envhub.config import Settings, override_settings
from envhub.domain.phases import Phase
from envhub.models import Environment, Project
from envhub.models.db import engine_for
from envhub.runtime.base import Endpoint
from envhub.services.sessions import session_cookie_name
from tests.conftest import build_settings
from tests.support.servers import serve_asgi

CLAIMS = {
    "x-forwarded-for": "6.6.6.6",
    "x-forwarded-host": "bank.example",
    "x-forwarded-proto": "https",
    "x-forwarded-port": "443",
    "forwarded": "for=6.6.6.6;proto=https;host=bank.example",
    "x-real-ip": "6.6.6.6",
}


FORWARDED = 5678  # the one forwarded port the stub runtime serves


class StubRuntime:
    name = "stub"

    def __init__(self, endpoints: dict[int, Endpoint]) -> None:
        self.endpoints = endpoints

    def endpoint(self, environment_id: int) -> Endpoint | None:
        return self.endpoints.get(environment_id)

    def port_endpoint(self, environment_id: int, port: int) -> Endpoint | None:
        """Every environment's forwarded port 5678 is its app (the echo app) here."""
        return self.endpoints.get(environment_id) if port == FORWARDED else None


@dataclass
class Gateway:
    port: int
    client: httpx.Client
    api: FastAPI
    queries: list[str]

    def get(self, host: str, path: str = "/", **headers: str) -> httpx.Response:
        return self.client.get(path, headers={"host": f"{host}:{self.port}", **headers})

    def middleware(self) -> GatewayMiddleware:
        layer: Any = self.api.middleware_stack
        while layer is not None and not isinstance(layer, GatewayMiddleware):
            layer = getattr(layer, "app", None)
        assert isinstance(layer, GatewayMiddleware), "the gateway middleware is not in the stack"
        return layer

    def lookups(self) -> int:
        """Queries that looked an environment up (not pings or anything else)."""
        return sum(1 for statement in self.queries if "FROM environment" in statement)


@contextlib.contextmanager
def serving(
    settings: Settings,
    session: Session,
    project: Project,
    upstreams: tuple[int, int],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Gateway]:
    assert project.id is not None
    endpoints: dict[int, Endpoint] = {}
    for name, port in (("web", upstreams[0]), ("chat", upstreams[1])):
        row = Environment(project_id=project.id, name=name, phase=Phase.ready, message="Ready")
        session.add(row)
        session.flush()
        assert row.id is not None
        endpoints[row.id] = Endpoint("127.0.0.1", port)
    session.commit()
    monkeypatch.setattr("envhub.api.gateway.runtime", lambda: StubRuntime(endpoints))
    monkeypatch.setattr(gateway_module, "CACHE_SIZE", 32)
    queries: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        queries.append(statement)

    engine = engine_for(settings.database_url)
    event.listen(engine, "before_cursor_execute", count)
    api = create_api()
    try:
        with (
            serve_asgi(api) as port,
            httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60, trust_env=False) as client,
        ):
            yield Gateway(port=port, client=client, api=api, queries=queries)
    finally:
        event.remove(engine, "before_cursor_execute", count)


@pytest.fixture
def gateway(
    settings: Settings,
    session: Session,
    project: Project,
    upstreams: tuple[int, int],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Gateway]:
    with serving(settings, session, project, upstreams, monkeypatch) as served:
        yield served


MALFORMED = [
    "web_1.shop.acme.localhost",  # underscore
    "-web.shop.acme.localhost",  # leading hyphen
    "web-.shop.acme.localhost",  # trailing hyphen
    "web.sh%op.acme.localhost",
    "web.shop.ac'me.localhost",  # quote
    "web.shop.a;me.localhost",
    "web.shop.a*.localhost",
    "w\u00e9b.shop.acme.localhost",  # not ASCII
    f"{'a' * 64}.shop.acme.localhost",  # longer than a DNS label
]


@pytest.mark.parametrize("host", MALFORMED)
def test_malformed_host_labels_never_reach_the_database(gateway: Gateway, host: str) -> None:
    before = gateway.lookups()
    for _ in range(5):
        response = gateway.client.get("/", headers={b"host": f"{host}:{gateway.port}".encode("latin-1")})
        assert response.status_code == 404
        assert "No such environment" in response.text
    assert gateway.lookups() == before
    assert len(gateway.middleware()._cache) == 0  # nor are they remembered


def test_a_flood_of_unknown_hosts_stays_within_the_cache_bound(gateway: Gateway) -> None:
    gateway.get("web.shop.acme.localhost")  # builds the middleware stack
    cache = gateway.middleware()._cache
    before = gateway.lookups()
    for i in range(120):
        assert gateway.get(f"nope-{i}.shop.acme.localhost").status_code == 404
        assert len(cache) <= 32
    assert gateway.lookups() - before == 120  # one lookup per distinct name, no more
    assert cache.maxsize == 32


def test_a_repeated_unknown_host_costs_one_query(gateway: Gateway) -> None:
    before = gateway.lookups()
    for _ in range(40):
        assert gateway.get("ghost.shop.acme.localhost").status_code == 404
    assert gateway.lookups() - before == 1  # the negative answer is cached


def test_client_sent_forwarding_headers_are_replaced_not_passed_on(gateway: Gateway) -> None:
    cookie = f"{session_cookie_name()}=stolen-session; theme=dark"
    response = gateway.get("web.shop.acme.localhost", "/page", cookie=cookie, **CLAIMS)
    assert response.status_code == 200
    seen = response.json()["headers"]
    _check_headers(seen, host=f"web.shop.acme.localhost:{gateway.port}", client="127.0.0.1")
    assert [v for k, v in seen if k == "cookie"] == ["theme=dark"]

    sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=30)
    host = f"chat.shop.acme.localhost:{gateway.port}"
    with ws_connect(f"ws://{host}/", sock=sock, additional_headers=CLAIMS, open_timeout=30) as ws:
        _check_headers(json.loads(ws.recv(timeout=30)), host=host, client="127.0.0.1")


def test_behind_a_trusted_proxy_the_app_gets_envhub_s_reading_of_the_chain(
    settings: Settings,
    session: Session,
    project: Project,
    upstreams: tuple[int, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    behind = build_settings(**{**settings.model_dump(), "trusted_proxy_hops": 1})
    claims = {**CLAIMS, "x-forwarded-for": "6.6.6.6, 203.0.113.9"}
    with override_settings(behind), serving(behind, session, project, upstreams, monkeypatch) as gateway:
        # The client claims 6.6.6.6; the trusted proxy appended what it saw (203.0.113.9).
        response = gateway.get("web.shop.acme.localhost", **claims)
        host = f"web.shop.acme.localhost:{gateway.port}"
        _check_headers(response.json()["headers"], host=host, client="203.0.113.9")


def _check_headers(seen: list[list[str]], *, host: str, client: str) -> None:
    def values(name: str) -> list[str]:
        return [v for k, v in seen if k == name]

    assert values("x-forwarded-for") == [client]
    assert values("x-forwarded-host") == [host]
    assert values("x-forwarded-proto") == ["http"]
    assert values("x-forwarded-port") == []
    assert values("forwarded") == []
    assert values("x-real-ip") == []
    assert "6.6.6.6" not in json.dumps(seen)
    assert "bank.example" not in json.dumps(seen)
