"""Fixtures shared by the attack tests."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI, Request
from websockets.sync.server import ServerConnection
from websockets.sync.server import serve as ws_serve

from tests.support.net import free_port
from tests.support.servers import serve_asgi


def echo_app() -> FastAPI:
    app = FastAPI()

    @app.get("/{rest:path}")
    async def echo(request: Request) -> dict[str, Any]:
        return {"headers": [[k.decode(), v.decode()] for k, v in request.headers.raw]}

    return app


def _ws_echo_headers(connection: ServerConnection) -> None:
    request = connection.request
    assert request is not None
    connection.send(json.dumps([[k.lower(), v] for k, v in request.headers.raw_items()]))


@pytest.fixture
def upstreams() -> Iterator[tuple[int, int]]:
    ws_port = free_port()
    server = ws_serve(_ws_echo_headers, "127.0.0.1", ws_port)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    with serve_asgi(echo_app()) as http_port:
        yield http_port, ws_port
    server.shutdown()
    thread.join(10)
