"""The local gateway in front of the API, over real HTTP and WebSockets.

envhub's app runs on a real server (granian, as in production). The
environments behind it are real servers too: an HTTP app and a ``websockets``
echo server. Only the runtime port is replaced, by a stub that says where each
environment listens.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from sqlalchemy.engine import Engine
from sqlmodel import Session
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect
from websockets.sync.server import ServerConnection
from websockets.sync.server import serve as ws_serve

import envhub.api.gateway as gateway_module
from envhub.api.app import create_api
from envhub.config import Settings, override_settings
from envhub.domain.phases import Phase
from envhub.models import Environment, JobRun, JobStatus, Project
from envhub.runtime.base import Endpoint, RuntimeState, RuntimeStatus
from envhub.services import activity
from tests.conftest import build_settings
from tests.support.db import audit_events, fetch, fetch_all, other_session
from tests.support.net import free_port
from tests.support.servers import serve_asgi
from tests.support.waiting import wait_for

# -- the environments' side ---------------------------------------------------


@dataclass
class Upstream:
    port: int
    release_stream: threading.Event = field(default_factory=threading.Event)


def upstream_app(release: threading.Event) -> FastAPI:
    app = FastAPI()

    @app.api_route("/echo/{rest:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
    async def echo(request: Request, rest: str) -> Response:
        body = await request.body()
        status = int(request.query_params.get("status", "200"))
        return JSONResponse(
            {
                "method": request.method,
                "path": request.url.path,
                "query": request.url.query,
                "headers": dict(request.headers),
                "body_sha256": hashlib.sha256(body).hexdigest(),
                "body_length": len(body),
            },
            status_code=status,
            headers={"x-upstream": "yes"},
        )

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> object:
            yield b"first\n"
            # Only continue once the client has seen the first chunk: a buffering
            # gateway would never deliver it, and we would answer "timeout".
            released = await asyncio.to_thread(release.wait, 30)
            yield b"second\n" if released else b"timeout\n"

        return StreamingResponse(chunks(), media_type="text/plain")  # type: ignore[arg-type]

    @app.get("/redirect")
    async def redirect() -> Response:
        return Response(status_code=302, headers={"location": "/echo/target"})

    @app.get("/cookies")
    async def cookies() -> Response:
        response = Response("ok")
        response.set_cookie("a", "1")
        response.set_cookie("b", "2")
        return response

    return app


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    release = threading.Event()
    with serve_asgi(upstream_app(release)) as port:
        yield Upstream(port=port, release_stream=release)


def _echo(connection: ServerConnection) -> None:
    for message in connection:
        request = connection.request
        assert request is not None
        if message == "where":
            connection.send(f"{request.path} {connection.subprotocol}")
        else:
            connection.send(message)


@pytest.fixture(scope="module")
def ws_upstream() -> Iterator[int]:
    port = free_port()
    server = ws_serve(_echo, "127.0.0.1", port, subprotocols=["chat.v1", "chat.v2"])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield port
    server.shutdown()
    thread.join(10)


class StubRuntime:
    """The runtime port, answering only ``endpoint`` (all the gateway asks)."""

    name = "stub"

    def __init__(self) -> None:
        self.endpoints: dict[int, Endpoint] = {}

    def endpoint(self, environment_id: int) -> Endpoint | None:
        return self.endpoints.get(environment_id)

    def status(self, environment_id: int) -> RuntimeStatus:
        endpoint = self.endpoints.get(environment_id)
        state = RuntimeState.ready if endpoint else RuntimeState.absent
        return RuntimeStatus(state, endpoint=endpoint)


# -- envhub's side --------------------------------------------------------------


@dataclass
class Gateway:
    port: int
    client: httpx.Client

    def host(self, environment: str) -> str:
        return f"{environment}.shop.acme.localhost:{self.port}"

    def get(self, environment: str, path: str, **kwargs: object) -> httpx.Response:
        return self.client.get(path, headers={"host": self.host(environment)}, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def gateway(
    settings: Settings,
    session: Session,
    project: Project,
    upstream: Upstream,
    ws_upstream: int,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Gateway]:
    stub = StubRuntime()
    monkeypatch.setattr("envhub.api.gateway.runtime", lambda: stub)
    assert project.id is not None
    rows = {
        "web": (Phase.ready, Endpoint("127.0.0.1", upstream.port)),
        "chat": (Phase.ready, Endpoint("127.0.0.1", ws_upstream)),
        "busy": (Phase.updating, Endpoint("127.0.0.1", upstream.port)),
        "wip": (Phase.provisioning, Endpoint("127.0.0.1", upstream.port)),
        "down": (Phase.ready, Endpoint("127.0.0.1", free_port())),
        "gone": (Phase.deleted, Endpoint("127.0.0.1", upstream.port)),
    }
    for name, (phase, endpoint) in rows.items():
        env = Environment(project_id=project.id, name=name, phase=phase, message=f"{name} says hi")
        session.add(env)
        session.flush()
        assert env.id is not None
        stub.endpoints[env.id] = endpoint
    session.commit()
    upstream.release_stream.clear()
    with (
        serve_asgi(create_api()) as port,
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client,
    ):
        yield Gateway(port=port, client=client)


# -- pass-through ---------------------------------------------------------------


@pytest.mark.parametrize("host", ["localhost:{port}", "127.0.0.1:{port}", "shop.acme.localhost:{port}", None])
def test_other_hosts_reach_the_app(gateway: Gateway, host: str | None) -> None:
    headers = {"host": host.format(port=gateway.port)} if host else {}
    response = gateway.client.get("/healthz", headers=headers)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_openapi_is_served(gateway: Gateway) -> None:
    response = gateway.client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.json()["info"]["title"] == "envhub"


def test_healthz_reports_a_broken_database(settings: Settings) -> None:
    broken = build_settings(
        **{**settings.model_dump(), "database_url": "sqlite:////nonexistent/dir/envhub.db"}
    )
    with override_settings(broken), serve_asgi(create_api()) as port:
        response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=30)
    assert response.status_code == 503
    assert response.json()["status"] == "unhealthy"


# -- status pages ---------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "nope.shop.acme.localhost",
        "gone.shop.acme.localhost",
        "web.other.acme.localhost",
        "web.shop.x.localhost",
    ],
)
def test_unknown_environments_get_a_404_page(gateway: Gateway, host: str) -> None:
    response = gateway.client.get("/anything", headers={"host": f"{host}:{gateway.port}"})
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "No such environment" in response.text
    assert 'http-equiv="refresh"' not in response.text


def test_an_environment_not_ready_gets_a_503_page_that_refreshes(gateway: Gateway) -> None:
    response = gateway.get("wip", "/")
    assert response.status_code == 503
    assert '<meta http-equiv="refresh" content="3">' in response.text
    assert "shop/wip is <b>provisioning</b>: wip says hi" in response.text
    assert response.headers["cache-control"] == "no-store"


def test_an_environment_that_does_not_answer_gets_a_502_page(gateway: Gateway) -> None:
    response = gateway.get("down", "/")
    assert response.status_code == 502
    assert "Environment not answering" in response.text
    assert 'http-equiv="refresh"' in response.text


# -- sleep -------------------------------------------------------------------------


def test_a_visit_wakes_a_sleeping_environment_and_its_page_turns_into_the_app(
    gateway: Gateway, session: Session, project: Project, db: Engine, upstream: Upstream
) -> None:
    assert project.id is not None
    env = Environment(project_id=project.id, name="dozy", phase=Phase.sleeping, message="Asleep")
    session.add(env)
    session.commit()
    assert env.id is not None

    for _ in range(2):  # a burst of requests wakes it once
        response = gateway.get("dozy", "/echo/page")
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert response.headers["cache-control"] == "no-store"
        assert "<title>Waking up shop/dozy · envhub</title>" in response.text
        assert '<meta http-equiv="refresh" content="1">' in response.text  # no script: it reloads itself
        assert '<div role="status" aria-live="polite">' in response.text
        assert '<progress aria-label="Waking up shop/dozy">' in response.text
    [run] = fetch_all(db, JobRun, JobRun.environment_id == env.id)
    assert (run.kind, run.status) == ("wake", JobStatus.queued)
    [woken] = audit_events(db, "environment.wake")
    assert (woken.principal_type, woken.details["reason"]) == ("system", "visit")

    # The wake job brings it up; the next refresh of the page is the app.
    with other_session(db) as other:
        row = other.get(Environment, env.id)
        assert row is not None
        row.phase = Phase.ready
        other.add(row)
        other.commit()
    stub = gateway_module.runtime()
    assert isinstance(stub, StubRuntime)
    stub.endpoints[env.id] = Endpoint("127.0.0.1", upstream.port)
    served = wait_for(
        lambda: (answer := gateway.get("dozy", "/echo/page")).status_code == 200 and answer,
        what="the waking page to turn into the app",
    )
    assert served.json()["path"] == "/echo/page"


def test_traffic_through_the_gateway_is_activity_written_at_most_once_a_minute(
    gateway: Gateway, db: Engine
) -> None:
    activity.forget()
    [web] = fetch_all(db, Environment, Environment.name == "web")
    assert web.last_active_at is None
    assert gateway.get("web", "/echo/one").status_code == 200
    activity.flush()
    first = fetch(db, Environment, web.id or 0)
    assert first is not None
    assert first.last_active_at is not None
    assert gateway.get("web", "/echo/two").status_code == 200
    activity.flush()
    again = fetch(db, Environment, web.id or 0)
    assert again is not None
    assert again.last_active_at == first.last_active_at  # coalesced: no second write this minute


# -- proxying HTTP ----------------------------------------------------------------


def test_get_is_proxied_with_status_headers_and_body(gateway: Gateway) -> None:
    response = gateway.client.get(
        "/echo/a%20b/c?x=1&y=two",
        headers={"host": gateway.host("web"), "x-custom": "kept", "accept": "text/x"},
    )
    assert response.status_code == 200
    assert response.headers["x-upstream"] == "yes"
    seen = response.json()
    assert seen["method"] == "GET"
    assert seen["path"] == "/echo/a b/c"
    assert seen["query"] == "x=1&y=two"
    assert seen["headers"]["x-custom"] == "kept"
    assert seen["headers"]["accept"] == "text/x"
    assert seen["headers"]["x-forwarded-host"] == gateway.host("web")
    assert seen["headers"]["x-forwarded-proto"] == "http"
    assert seen["headers"]["x-forwarded-for"] == "127.0.0.1"
    assert seen["body_length"] == 0


def test_an_updating_environment_keeps_serving(gateway: Gateway) -> None:
    assert gateway.get("busy", "/echo/x").json()["path"] == "/echo/x"


@pytest.mark.parametrize("status", [201, 404, 500])
def test_upstream_status_codes_pass_through(gateway: Gateway, status: int) -> None:
    response = gateway.get("web", f"/echo/s?status={status}")
    assert response.status_code == status
    assert response.json()["method"] == "GET"  # the app's answer, not a gateway page


def test_post_bodies_are_forwarded(gateway: Gateway) -> None:
    body = os.urandom(1024 * 1024 + 17)
    response = gateway.client.post(
        "/echo/upload",
        content=body,
        headers={"host": gateway.host("web"), "content-type": "application/x-bin"},
    )
    assert response.status_code == 200
    seen = response.json()
    assert (seen["method"], seen["body_length"]) == ("POST", len(body))
    assert seen["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert seen["headers"]["content-type"] == "application/x-bin"


def test_streamed_request_bodies_are_forwarded(gateway: Gateway) -> None:
    parts = [os.urandom(50_000) for _ in range(8)]

    def chunks() -> Iterator[bytes]:
        yield from parts

    response = gateway.client.put("/echo/stream-up", content=chunks(), headers={"host": gateway.host("web")})
    seen = response.json()
    assert (seen["method"], seen["body_length"]) == ("PUT", sum(len(p) for p in parts))
    assert seen["body_sha256"] == hashlib.sha256(b"".join(parts)).hexdigest()


def test_responses_are_streamed_not_buffered(gateway: Gateway, upstream: Upstream) -> None:
    with gateway.client.stream("GET", "/stream", headers={"host": gateway.host("web")}) as response:
        assert response.status_code == 200
        received = b""
        chunks = response.iter_raw()
        while b"first\n" not in received:
            received += next(chunks)
        upstream.release_stream.set()
        for chunk in chunks:
            received += chunk
    assert received == b"first\nsecond\n"


def test_redirects_are_passed_on_not_followed(gateway: Gateway) -> None:
    response = gateway.get("web", "/redirect")
    assert response.status_code == 302
    assert response.headers["location"] == "/echo/target"


def test_repeated_response_headers_survive(gateway: Gateway) -> None:
    response = gateway.get("web", "/cookies")
    assert sorted(c.split(";")[0] for c in response.headers.get_list("set-cookie")) == ["a=1", "b=2"]


# -- proxying WebSockets ------------------------------------------------------------


def _ws(gateway: Gateway, environment: str, path: str, **kwargs: object) -> object:
    sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=30)
    return ws_connect(f"ws://{gateway.host(environment)}{path}", sock=sock, open_timeout=30, **kwargs)  # type: ignore[arg-type]


def test_websocket_echo_through_the_gateway(gateway: Gateway) -> None:
    with _ws(gateway, "chat", "/room?id=7", subprotocols=["chat.v2"]) as ws:  # type: ignore[attr-defined]
        assert ws.subprotocol == "chat.v2"
        ws.send("hello")
        assert ws.recv(timeout=30) == "hello"
        ws.send(b"\x00\x01binary")
        assert ws.recv(timeout=30) == b"\x00\x01binary"
        ws.send("where")
        assert ws.recv(timeout=30) == "/room?id=7 chat.v2"
        for i in range(50):
            ws.send(f"m{i}")
        assert [ws.recv(timeout=30) for _ in range(50)] == [f"m{i}" for i in range(50)]


@pytest.mark.parametrize("environment", ["wip", "nope"])
def test_websocket_to_an_environment_not_serving_is_refused(gateway: Gateway, environment: str) -> None:
    with pytest.raises(InvalidStatus):
        _ws(gateway, environment, "/")
