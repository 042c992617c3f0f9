"""Attack: open a sign-in project's environment without being let in, or carry its pass elsewhere.

envhub's app runs on a real server with the gateway in front, on the test
database; the environments behind it are a real HTTP app and a real
``websockets`` server (only the runtime port is a stub saying where they
listen). A browser is played by hand with httpx: every redirect is looked at,
every cookie is carried explicitly, as a browser would on each host.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlmodel import Session, select
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

from envhub.api import gateway as gateway_module
from envhub.api.gateway import ACCESS_COOKIE
from envhub.config import Settings, get_settings
from envhub.domain import url_access as passes
from envhub.domain.credentials import digest
from envhub.domain.phases import Phase
from envhub.domain.url_access import ACCESS_PATH, PassKind, UrlPass
from envhub.models import AuditEvent, Environment, Membership, Project, User
from envhub.services import projects, sessions
from envhub.services.sessions import session_cookie_name
from tests.security.test_gateway import FORWARDED, Gateway, serving
from tests.support.world import World


@pytest.fixture
def guarded(
    settings: Settings,
    session: Session,
    project: Project,
    world: World,
    upstreams: tuple[int, int],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Gateway]:
    """acme/shop with URLs that need sign-in; ``web`` (HTTP) and ``chat`` (WebSocket) ready."""
    assert project.id is not None
    projects.update_project(
        session=session, actor=world.owner, project_id=project.id, changes={"url_access": "sign_in"}
    )
    monkeypatch.setattr(gateway_module, "_ADMITTED_SECONDS", 0.2)  # re-checked almost at once
    with serving(settings, session, project, upstreams, monkeypatch) as served:
        for row in session.exec(select(Environment).where(Environment.project_id == project.id)):
            row.public_url = f"http://{row.name}.shop.acme.localhost:{served.port}/"
            session.add(row)
        session.commit()
        yield served


def environment_id(session: Session, name: str) -> int:
    row = session.exec(select(Environment).where(Environment.name == name)).one()
    assert row.id is not None
    return row.id


def sign_in(session: Session, username: str) -> str:
    user = session.exec(select(User).where(User.username == username)).one()
    started = sessions.start_session(session, user=user, method="local", source_ip=None, user_agent=None)
    session.commit()
    return started.token


def on_envhub(gateway: Gateway, path: str, token: str | None) -> httpx.Response:
    """A request to envhub's own host, with the envhub session cookie when there is one."""
    cookies = {"cookie": f"{session_cookie_name()}={token}"} if token else {}
    return gateway.client.get(path, headers={"host": "localhost:3000", **cookies})


def on_environment(gateway: Gateway, name: str, path: str, access: str | None = None) -> httpx.Response:
    headers = {"host": f"{name}.shop.acme.localhost:{gateway.port}"}
    if access is not None:
        headers["cookie"] = f"{ACCESS_COOKIE}={access}; theme=dark"
    return gateway.client.get(path, headers=headers)


def socket_to(gateway: Gateway, name: str, headers: dict[str, str] | None = None) -> ClientConnection:
    """A WebSocket to the environment's host (connected to the gateway's port, as DNS would)."""
    sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=30)
    url = f"ws://{name}.shop.acme.localhost:{gateway.port}/"
    return ws_connect(url, sock=sock, additional_headers=headers or {}, open_timeout=30)


def let_in(gateway: Gateway, session: Session, username: str, name: str = "web", path: str = "/x?y=1") -> str:
    """Walk the whole hand-over as a browser does; returns the pass cookie."""
    token = sign_in(session, username)
    first = on_environment(gateway, name, path)
    assert first.status_code == 303
    handover = urlsplit(first.headers["location"])
    assert handover.path == f"/auth/environment/{environment_id(session, name.split('.')[-1])}"
    back = on_envhub(gateway, f"{handover.path}?{handover.query}", token)
    assert back.status_code == 303, back.text
    ticket_url = urlsplit(back.headers["location"])
    assert ticket_url.netloc == f"{name}.shop.acme.localhost:{gateway.port}"
    assert ticket_url.path == ACCESS_PATH
    taken = on_environment(gateway, name, f"{ticket_url.path}?{ticket_url.query}")
    assert taken.status_code == 303
    assert taken.headers["location"] == path
    cookie = taken.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Domain" not in cookie  # host-only: no other environment's host gets it
    return cookie.split(";")[0].split("=", 1)[1]


def test_without_a_pass_nothing_of_the_environment_shows(guarded: Gateway, session: Session) -> None:
    response = on_environment(guarded, "web", "/secret/page?a=1")
    assert response.status_code == 303
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}" == "http://localhost:3000"
    assert parse_qs(location.query)["next"] == ["/secret/page?a=1"]
    assert "ready" not in response.text.lower()
    posted = guarded.client.post("/echo", headers={"host": f"web.shop.acme.localhost:{guarded.port}"})
    assert posted.status_code == 401
    assert "Sign in to envhub first" in posted.text
    with pytest.raises(InvalidStatus) as refused:
        socket_to(guarded, "chat")
    assert refused.value.response.status_code == 403


def test_a_member_signs_in_once_and_the_app_never_sees_envhubs_cookies(
    guarded: Gateway, session: Session
) -> None:
    access = let_in(guarded, session, "max")
    response = on_environment(guarded, "web", "/anything", access)
    assert response.status_code == 200
    forwarded = dict(response.json()["headers"])
    assert ACCESS_COOKIE not in forwarded.get("cookie", "")
    assert forwarded.get("cookie") == "theme=dark"
    events = session.exec(select(AuditEvent).where(AuditEvent.action == "environment.url_access")).all()
    assert [(event.outcome, event.actor) for event in events] == [("success", "max")]


def test_a_viewer_may_open_it_but_not_someone_of_another_team(guarded: Gateway, session: Session) -> None:
    assert on_environment(guarded, "web", "/", let_in(guarded, session, "vera")).status_code == 200
    token = sign_in(session, "otto")
    refused = on_envhub(guarded, f"/auth/environment/{environment_id(session, 'web')}?next=/", token)
    assert refused.status_code == 404
    assert "Cannot open this environment" in refused.text
    assert "ticket" not in refused.text


def test_signed_out_visitors_are_sent_to_sign_in_and_back(guarded: Gateway, session: Session) -> None:
    env_id = environment_id(session, "web")
    response = on_envhub(guarded, f"/auth/environment/{env_id}?next=/deep", None)
    assert response.status_code == 303
    location = urlsplit(response.headers["location"])
    assert location.path == "/sign-in"
    assert parse_qs(location.query)["next"] == [f"/auth/environment/{env_id}?next=%2Fdeep"]


def test_websockets_pass_with_the_cookie(guarded: Gateway, session: Session) -> None:
    access = let_in(guarded, session, "max", name="chat", path="/")
    with socket_to(guarded, "chat", {"Cookie": f"{ACCESS_COOKIE}={access}; theme=dark"}) as connection:
        headers = json.loads(connection.recv(timeout=10))
    assert [value for key, value in headers if key == "cookie"] == ["theme=dark"]


def test_a_pass_for_one_environment_does_not_open_another(guarded: Gateway, session: Session) -> None:
    access = let_in(guarded, session, "max", name="web")
    assert on_environment(guarded, "chat", "/", access).status_code == 303


def test_forged_replayed_and_swapped_passes_are_refused(guarded: Gateway, session: Session) -> None:
    access = let_in(guarded, session, "max")
    body, signature = access.split(".")
    assert on_environment(guarded, "web", "/", f"{body}.{signature[:-2]}AA").status_code == 303
    # A cookie pass offered as a ticket, and a ticket offered as a cookie.
    as_ticket = on_environment(guarded, "web", f"{ACCESS_PATH}?ticket={access}&next=/")
    assert as_ticket.status_code == 403
    assert "expired" in as_ticket.text
    ticket = passes.seal(
        url_access_key(),
        UrlPass(
            kind=PassKind.ticket,
            environment_id=environment_id(session, "web"),
            session_hash="x" * 64,
            expires=int(time.time()) + 60,
        ),
    )
    assert on_environment(guarded, "web", "/", ticket).status_code == 303
    # A genuine ticket of a session that does not exist lets nobody in.
    assert on_environment(guarded, "web", f"{ACCESS_PATH}?ticket={ticket}&next=/").status_code == 403


def test_an_expired_ticket_is_refused(guarded: Gateway, session: Session) -> None:
    token = sign_in(session, "max")
    expired = passes.seal(
        url_access_key(),
        UrlPass(
            kind=PassKind.ticket,
            environment_id=environment_id(session, "web"),
            session_hash=digest(token),
            expires=int(time.time()) - 1,
        ),
    )
    response = on_environment(guarded, "web", f"{ACCESS_PATH}?ticket={expired}&next=/")
    assert response.status_code == 403
    assert "set-cookie" not in response.headers


def test_the_next_path_never_leaves_the_environment(guarded: Gateway, session: Session) -> None:
    token = sign_in(session, "max")
    for evil in ("//evil.example/", "/\\evil.example", "https://evil.example/"):
        back = on_envhub(guarded, f"/auth/environment/{environment_id(session, 'web')}?next={evil}", token)
        ticket_url = urlsplit(back.headers["location"])
        taken = on_environment(guarded, "web", f"{ticket_url.path}?{ticket_url.query}")
        assert taken.headers["location"] == "/"


def test_signing_out_of_envhub_ends_the_pass(guarded: Gateway, session: Session) -> None:
    token = sign_in(session, "max")
    first = urlsplit(on_environment(guarded, "web", "/").headers["location"])
    back = urlsplit(on_envhub(guarded, f"{first.path}?{first.query}", token).headers["location"])
    taken = on_environment(guarded, "web", f"{back.path}?{back.query}")
    access = taken.headers["set-cookie"].split(";")[0].split("=", 1)[1]
    assert on_environment(guarded, "web", "/", access).status_code == 200
    sessions.revoke(session, token=token)
    session.commit()
    time.sleep(0.3)  # the gateway believes an answer for _ADMITTED_SECONDS
    assert on_environment(guarded, "web", "/", access).status_code == 303


def test_leaving_the_team_ends_the_pass(guarded: Gateway, session: Session, world: World) -> None:
    access = let_in(guarded, session, "max")
    assert on_environment(guarded, "web", "/", access).status_code == 200
    membership = session.exec(select(Membership).where(Membership.user_id == world.member.user_id)).one()
    session.delete(membership)
    session.commit()
    time.sleep(0.3)
    assert on_environment(guarded, "web", "/", access).status_code == 303


def test_a_public_project_lets_everyone_through(
    guarded: Gateway, session: Session, project: Project, world: World
) -> None:
    assert project.id is not None
    projects.update_project(
        session=session, actor=world.owner, project_id=project.id, changes={"url_access": "public"}
    )
    time.sleep(1.1)  # the gateway's host cache
    assert on_environment(guarded, "web", "/").status_code == 200


def test_an_environment_without_a_url_yet_says_so(guarded: Gateway, session: Session) -> None:
    row = session.exec(select(Environment).where(Environment.name == "web")).one()
    row.public_url = None
    row.phase = Phase.provisioning
    session.add(row)
    session.commit()
    token = sign_in(session, "max")
    response = on_envhub(guarded, f"/auth/environment/{row.id}?next=/", token)
    assert response.status_code == 409
    assert "has no public URL yet" in response.text


def test_a_forwarded_port_s_host_is_signed_in_to_on_its_own_host(guarded: Gateway, session: Session) -> None:
    row = session.exec(select(Environment).where(Environment.name == "web")).one()
    port_host = f"{FORWARDED}.web.shop.acme.localhost:{guarded.port}"
    row.devcontainer = {"ports": [{"port": FORWARDED, "label": "Debugger", "url": f"http://{port_host}/"}]}
    session.add(row)
    session.commit()
    # The hand-over comes back to the port's host (a browser keeps its pass there: host-only).
    first = on_environment(guarded, f"{FORWARDED}.web", "/")
    assert parse_qs(urlsplit(first.headers["location"]).query)["port"] == [str(FORWARDED)]
    port_pass = let_in(guarded, session, "max", name=f"{FORWARDED}.web", path="/debug")
    guarded.client.cookies.clear()  # httpx keeps cookies by address, not by Host header
    assert on_environment(guarded, f"{FORWARDED}.web", "/", port_pass).status_code == 200
    assert on_environment(guarded, f"{FORWARDED}.web", "/", None).status_code == 303
    # A port without a URL of its own gets no ticket.
    token = sign_in(session, "max")
    refused = on_envhub(guarded, f"/auth/environment/{row.id}?next=/&port=9999", token)
    assert refused.status_code == 409
    assert "has no URL of its own" in refused.text


def url_access_key() -> bytes:
    return get_settings().derived_key("url-access")
