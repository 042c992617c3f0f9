"""Sessions, CSRF, Origin and Host checks, security headers: over real HTTP and WebSockets."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI, WebSocket
from fastapi.responses import HTMLResponse
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from envhub.api.auth import principal_from_scope
from envhub.config import Settings, override_settings
from envhub.launcher import login_link
from envhub.models import WebSession
from envhub.models.base import utcnow
from tests.conftest import build_settings


@pytest.fixture(scope="module")
def envhub_app() -> FastAPI:
    """envhub's app plus two probe routes: a WebSocket and an HTML page with inline scripts."""
    from envhub.api.app import create_api

    app = create_api()

    @app.websocket("/ws/probe")
    async def probe(socket: WebSocket) -> None:
        principal = await asyncio.to_thread(principal_from_scope, socket.scope)
        await socket.accept()
        await socket.send_text(principal.name if principal else "anonymous")
        await socket.close()

    @app.get("/probe/page")
    def page() -> HTMLResponse:
        return HTMLResponse(
            "<html><script>window.a = 1;</script><script src='/x.js'></script>"
            "<script type='module'>window.b = 2;</script></html>"
        )

    return app


@pytest.fixture
def signed_in(local: Settings, envhub_http: str) -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        assert client.get(login_link(local)).status_code == 303
        yield client


def csrf(client: httpx.Client, base: str) -> str:
    token: str = client.get(f"{base}/api/v1/me").json()["csrf_token"]
    return token


def test_inactive_sessions_expire(signed_in: httpx.Client, envhub_http: str, db: Engine) -> None:
    assert signed_in.get(f"{envhub_http}/api/v1/me").status_code == 200
    with Session(db) as session:
        session.exec(update(WebSession).values(last_seen_at=utcnow() - timedelta(hours=9)))  # type: ignore[call-overload]
        session.commit()
    response = signed_in.get(f"{envhub_http}/api/v1/me")
    assert response.status_code == 401
    assert response.json()["code"] == "unauthenticated"


def test_sessions_end_at_their_maximum_age(signed_in: httpx.Client, envhub_http: str, db: Engine) -> None:
    with Session(db) as session:
        session.exec(update(WebSession).values(expires_at=utcnow() - timedelta(seconds=1)))  # type: ignore[call-overload]
        session.commit()
    assert signed_in.get(f"{envhub_http}/api/v1/me").status_code == 401


def test_activity_keeps_a_session_alive(signed_in: httpx.Client, envhub_http: str, db: Engine) -> None:
    with Session(db) as session:
        session.exec(update(WebSession).values(last_seen_at=utcnow() - timedelta(hours=7)))  # type: ignore[call-overload]
        session.commit()
    assert signed_in.get(f"{envhub_http}/api/v1/me").status_code == 200
    with Session(db) as session:
        assert session.exec(select(WebSession)).one().last_seen_at > utcnow() - timedelta(minutes=1)


def test_cookies_are_secure_and_host_only_over_https(
    settings: Settings, envhub_port: int, envhub_http: str
) -> None:
    values = {name: getattr(settings, name) for name in ("data_dir", "database_url", "redis_url")}
    https = build_settings(**values, base_url=f"https://localhost:{envhub_port}")
    with override_settings(https):
        link = login_link(https).replace("https://", "http://")  # TLS ends at a proxy in front
        response = httpx.get(link, headers={"X-Forwarded-Proto": "https"})
    assert response.status_code == 303
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("__Host-envhub_session=")
    parts = {part.strip().lower() for part in cookie.split(";")}
    assert {"secure", "httponly", "samesite=lax", "path=/"} <= parts
    assert not any(part.startswith("domain=") for part in parts)
    assert response.headers["strict-transport-security"].startswith("max-age=")


def test_state_changes_with_the_cookie_need_the_csrf_token(signed_in: httpx.Client, envhub_http: str) -> None:
    body = {"name": "ci", "scopes": ["read"], "expires_in_days": 7}
    refused = signed_in.post(f"{envhub_http}/api/v1/tokens", json=body)
    assert refused.status_code == 403
    assert refused.json()["code"] == "csrf_failed"
    wrong = signed_in.post(f"{envhub_http}/api/v1/tokens", json=body, headers={"X-CSRF-Token": "0" * 64})
    assert wrong.json()["code"] == "csrf_failed"
    made = signed_in.post(
        f"{envhub_http}/api/v1/tokens", json=body, headers={"X-CSRF-Token": csrf(signed_in, envhub_http)}
    )
    assert made.status_code == 201, made.text
    # A bearer token is no ambient credential: no CSRF token needed (and tokens cannot make tokens).
    with httpx.Client(timeout=10) as program:
        by_token = program.post(
            f"{envhub_http}/api/v1/tokens",
            json=body,
            headers={"Authorization": f"Bearer {made.json()['token']}"},
        )
    assert by_token.status_code == 403
    assert by_token.json()["code"] == "forbidden"


def test_sign_out_needs_the_csrf_token_and_ends_the_session(
    signed_in: httpx.Client, envhub_http: str, db: Engine
) -> None:
    assert signed_in.post(f"{envhub_http}/auth/logout").json()["code"] == "csrf_failed"
    form = signed_in.post(f"{envhub_http}/auth/logout", data={"csrf_token": "forged"})
    assert form.status_code == 403
    token = csrf(signed_in, envhub_http)
    done = signed_in.post(f"{envhub_http}/auth/logout", data={"csrf_token": token})
    assert done.status_code == 303
    assert done.headers["location"].endswith("/sign-in?signed_out=1")
    assert (
        'envhub_session=""' in done.headers["set-cookie"] or "max-age=0" in done.headers["set-cookie"].lower()
    )
    with Session(db) as session:
        assert session.exec(select(WebSession)).one().revoked_at is not None


def test_foreign_origins_cannot_change_state(signed_in: httpx.Client, envhub_http: str) -> None:
    headers = {"Origin": "http://evil.example", "X-CSRF-Token": csrf(signed_in, envhub_http)}
    response = signed_in.post(f"{envhub_http}/api/v1/tokens", json={}, headers=headers)
    assert response.status_code == 403
    assert response.json()["code"] == "origin_not_allowed"


def _ws(url: str, **headers: str) -> str:
    with ws_connect(url, additional_headers=headers, open_timeout=10) as socket:
        return str(socket.recv(timeout=10))


def test_websockets_check_the_origin(signed_in: httpx.Client, envhub_http: str, envhub_port: int) -> None:
    url = f"ws://localhost:{envhub_port}/ws/probe"
    cookie = f"envhub_session={signed_in.cookies['envhub_session']}"
    assert _ws(url, Cookie=cookie, Origin=f"http://localhost:{envhub_port}") == "local"
    assert _ws(url, Cookie=cookie) == "local"  # a program sends no Origin; it still needs a credential
    assert _ws(url, Origin=f"http://localhost:{envhub_port}") == "anonymous"
    for origin in ("http://evil.example", f"http://localhost:{envhub_port + 1}", "null"):
        with pytest.raises(InvalidStatus) as refused:
            _ws(url, Cookie=cookie, Origin=origin)
        assert refused.value.response.status_code == 403


def test_unknown_host_names_are_refused(local: Settings, envhub_http: str, envhub_port: int) -> None:
    """A page on another name pointing at 127.0.0.1 (DNS rebinding) cannot talk to envhub."""
    with httpx.Client(timeout=10) as client:
        refused = client.get(
            f"http://127.0.0.1:{envhub_port}/api/v1/me", headers={"Host": f"rebound.example:{envhub_port}"}
        )
        assert refused.status_code == 400
        assert refused.json()["code"] == "host_not_allowed"
        probe = client.get(f"http://127.0.0.1:{envhub_port}/healthz", headers={"Host": "10.1.2.3"})
        assert probe.status_code == 200  # platform probes use any Host


def test_git_credentials_also_answer_at_envhubs_in_cluster_name_and_nothing_else_does(
    local: Settings, envhub_port: int
) -> None:
    """A workspace's git credential helper calls envhub's Service by its cluster name."""
    from envhub.domain.git_credentials import ENDPOINT

    values = {name: getattr(local, name) for name in ("data_dir", "database_url", "redis_url", "base_url")}
    internal = build_settings(**values, gateway_internal_url="http://envhub-web.envhub.svc:80")
    host = {"Host": "envhub-web.envhub.svc"}
    with (
        override_settings(internal),
        httpx.Client(base_url=f"http://127.0.0.1:{envhub_port}", timeout=10) as client,
    ):
        asked = client.post(ENDPOINT, json={"protocol": "https", "host": "github.com"}, headers=host)
        assert (asked.status_code, asked.json()["code"]) == (401, "unauthenticated")  # the route's answer
        refused = client.get("/api/v1/me", headers=host)
        assert (refused.status_code, refused.json()["code"]) == (400, "host_not_allowed")


def test_pages_get_security_headers_and_a_hashed_script_policy(local: Settings, envhub_http: str) -> None:
    response = httpx.get(f"{envhub_http}/probe/page", headers={"Accept": "text/html"})
    headers = response.headers
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "same-origin"
    policy = dict(part.strip().split(" ", 1) for part in headers["content-security-policy"].split(";"))
    assert policy["frame-ancestors"] == "'none'"
    assert policy["object-src"] == "'none'"
    scripts = policy["script-src"].split()
    assert "'unsafe-inline'" not in scripts  # an injected <script> does not run
    assert "'unsafe-eval'" in scripts  # Reflex's server-sent toasts need it (see api/headers.py)
    import base64
    import hashlib

    for inline in (b"window.a = 1;", b"window.b = 2;"):
        assert f"'sha256-{base64.b64encode(hashlib.sha256(inline).digest()).decode()}'" in scripts
    assert len(scripts) == 4  # 'self', 'unsafe-eval' and the two inline scripts, nothing else
    api = httpx.get(f"{envhub_http}/api/v1/me")
    assert api.headers["cache-control"] == "no-store"
    assert "default-src 'self'" in api.headers["content-security-policy"]


def test_the_api_grants_no_cross_origin_reads(signed_in: httpx.Client, envhub_http: str) -> None:
    """envhub's own app adds no CORS grant (the Reflex layer's is checked in tests/browser)."""
    response = signed_in.get(f"{envhub_http}/api/v1/me", headers={"Origin": "http://evil.example"})
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers
