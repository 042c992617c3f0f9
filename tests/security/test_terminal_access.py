"""A shell ends when access ends: the attacks on the terminal's authorization, at the protocol level.

Everyone signs in for real (tests/terminal/signin.py): the local user with the
browser's session cookie from the local sign-in flow, people with personal
tokens (read, shell), an agent with an agent token. Each test opens a shell
over the WebSocket, ends the access the way it ends in life (sign out through
the HTTP route, revoke a token through the API or the Tokens page's use case,
remove someone from the team, revoke a share, let a share or session run out)
and shows the socket closed with 4410 ("access ended") within 10 seconds; the
server re-checks every second here (every 3 by default). Then: a session still opening, an ended session's
record, and ids out of range.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event, update
from sqlmodel import Session, col, select
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from envhub.api.terminal import relay
from envhub.config import Settings
from envhub.launcher import login_link
from envhub.models import ApiToken, Environment, Project, WebSession
from envhub.models.base import utcnow
from envhub.services import sessions, sharing, teams, tokens
from envhub.services import terminal as terminal_service
from envhub.services.authentication import authenticate
from tests.support.waiting import wait_for
from tests.support.world import World
from tests.terminal.client import Term, new_id
from tests.terminal.harness import People, Serve, make_environment, processes_with, servers, shell_events
from tests.terminal.signin import ANONYMOUS, Credential, agent_token

pytestmark = pytest.mark.timeout(180)

ACCESS_ENDED = 4410
BOUND = 10.0  # seconds; the server re-checks every second here


@pytest.fixture
def environment(session: Session, world: World, project: Project, settings: Settings) -> Environment:
    return make_environment(session, world, project, settings)


@pytest.fixture
def people(settings: Settings, session: Session, world: World) -> People:
    return People(settings, session, world)


@pytest.fixture
def serve(settings: Settings, tmp_path: Path) -> Iterator[Serve]:
    """envhub re-checking open shells every second (3 by default): the bound below holds either way."""
    with servers(settings, tmp_path) as start:
        yield lambda **extra: start(**{"ENVHUB_TERMINAL_ACCESS_CHECK_INTERVAL": "1", **extra})


def open_shell(base: str, environment: Environment, auth: Credential) -> tuple[Term, str]:
    """A shell with a background process in it; returns the process's marker."""
    term = Term(base, environment.id or 0, auth=auth)
    assert term.wait_control("hello")["role"] == "driver"
    marker = str(800000 + time.monotonic_ns() % 99999)
    term.run(f"sleep {marker} & echo started-$((1+1))", "started-2")
    wait_for(lambda: processes_with(marker), timeout=10, what="the background sleep")
    return term, marker


def assert_access_ended(term: Term, timeout: float = BOUND) -> None:
    """The socket closes with 4410 within ``timeout`` seconds, and says why first."""
    code = term.wait_closed(timeout=timeout)
    errors = [c for c in term.controls if c["type"] == "error"]
    assert code == ACCESS_ENDED, (code, term.controls)
    assert [e["code"] for e in errors][-1:] == ["access_ended"], term.controls


def assert_shell_ended(session: Session, environment: Environment, marker: str) -> None:
    """No one may use the shell any more: its processes end and the trail says why."""
    wait_for(lambda: not processes_with(marker), timeout=BOUND, what="the shell's processes to end")
    end = wait_for(
        lambda: [e for e in shell_events(session, environment.id or 0) if e.action.endswith(".end")],
        timeout=BOUND,
        what="the end event",
    )[-1]
    assert "access ended" in end.details["reason"]


def csrf(base: str, auth: Credential) -> str:
    token = httpx.get(f"{base}/api/v1/me", headers=auth.headers).json()["csrf_token"]
    assert isinstance(token, str)
    return token


# -- the browser's session ends ------------------------------------------------


def sign_out(base: str, auth: Credential, settings: Settings, session: Session) -> None:
    response = httpx.post(f"{base}/auth/logout", headers={**auth.headers, "X-CSRF-Token": csrf(base, auth)})
    assert response.status_code == 303, response.text


def sign_in_again(base: str, auth: Credential, settings: Settings, session: Session) -> None:
    """The same browser opens a new login link: its old session is replaced (revoked)."""
    token = login_link(settings).rsplit("/", 1)[1]
    response = httpx.get(f"{base}/auth/local/{token}", headers=auth.headers)
    assert response.status_code == 303, response.text


def revoke_every_session(base: str, auth: Credential, settings: Settings, session: Session) -> None:
    """What the OpenID re-check does when the provider no longer knows the person."""
    live = session.exec(select(WebSession).where(col(WebSession.revoked_at).is_(None))).all()
    assert live
    for user_id in {row.user_id for row in live}:
        sessions.revoke_all_for(session, user_id)
    session.commit()


def run_out(base: str, auth: Credential, settings: Settings, session: Session) -> None:
    """The session reaches its maximum age."""
    session.exec(update(WebSession).values(expires_at=utcnow() - timedelta(seconds=1)))  # type: ignore[call-overload]
    session.commit()


@pytest.mark.parametrize(
    "end_session",
    [sign_out, sign_in_again, revoke_every_session, run_out],
    ids=["signed-out", "signed-in-again", "revoked", "expired"],
)
def test_a_browser_shell_ends_with_its_session(
    serve: Serve,
    people: People,
    environment: Environment,
    session: Session,
    settings: Settings,
    end_session: Callable[[str, Credential, Settings, Session], None],
) -> None:
    base = serve()
    me = people.me(base)
    term, marker = open_shell(base, environment, me)
    end_session(base, me, settings, session)
    assert_access_ended(term)
    assert_shell_ended(session, environment, marker)
    # Reconnecting with the old cookie gets nothing.
    again = Term(base, environment.id or 0, auth=me, session=term.session, client=term.client)
    assert again.wait_closed() == 4401


# -- tokens ----------------------------------------------------------------------


def test_a_personal_token_revoked_through_the_api_ends_its_shell(
    serve: Serve, people: People, environment: Environment, session: Session
) -> None:
    base = serve()
    token = people.max
    term, marker = open_shell(base, environment, token)
    # The CLI's "log out": the token revokes itself over the REST API.
    response = httpx.delete(f"{base}/api/v1/tokens/{token.token_id}", headers=token.headers)
    assert response.status_code == 200, response.text
    assert_access_ended(term)
    assert_shell_ended(session, environment, marker)
    again = Term(base, environment.id or 0, auth=token, session=term.session, client=term.client)
    assert again.wait_closed() == 4401


def test_an_expired_personal_token_ends_its_shell(
    serve: Serve, people: People, environment: Environment, session: Session
) -> None:
    base = serve()
    token = people.max
    term, marker = open_shell(base, environment, token)
    session.exec(  # type: ignore[call-overload]
        update(ApiToken).where(col(ApiToken.id) == token.token_id).values(expires_at=utcnow())
    )
    session.commit()
    assert_access_ended(term)
    assert_shell_ended(session, environment, marker)


def test_an_agent_token_revoked_by_its_maker_ends_its_shell(
    serve: Serve, people: People, environment: Environment, session: Session, world: World
) -> None:
    base = serve()
    agent = agent_token(session, world.owner, environment.id or 0)
    term, marker = open_shell(base, environment, agent)
    tokens.revoke_token(session=session, actor=world.owner, token_id=agent.token_id or 0)  # the Tokens page
    assert_access_ended(term)
    assert_shell_ended(session, environment, marker)


# -- the team and shares ---------------------------------------------------------


def test_removal_from_the_team_ends_a_members_shell(
    serve: Serve, people: People, environment: Environment, session: Session, world: World
) -> None:
    base = serve()
    term, marker = open_shell(base, environment, people.max)
    teams.remove_member(
        session=session, actor=world.owner, team_id=world.acme, user_id=world.member.user_id or 0
    )
    assert_access_ended(term)
    assert_shell_ended(session, environment, marker)


def test_leaving_the_team_ends_a_browser_shell(
    serve: Serve, people: People, environment: Environment, session: Session, world: World
) -> None:
    base = serve()
    term, marker = open_shell(base, environment, people.me(base))
    assert people.local.user_id is not None
    teams.remove_member(session=session, actor=people.local, team_id=world.acme, user_id=people.local.user_id)
    assert_access_ended(term)
    assert_shell_ended(session, environment, marker)


def test_a_removed_watcher_is_closed_and_the_driver_goes_on(
    serve: Serve, people: People, environment: Environment, session: Session, world: World
) -> None:
    base = serve()
    driver, _ = open_shell(base, environment, people.me(base))
    watcher = Term(base, environment.id or 0, auth=people.vera, session=driver.session, mode="watch")
    watcher.wait_control("hello")
    driver.run("echo before-$((2+2))", "before-4")
    watcher.wait_for("before-4")
    teams.remove_member(
        session=session, actor=world.owner, team_id=world.acme, user_id=world.viewer.user_id or 0
    )
    assert_access_ended(watcher)
    driver.run("echo after-$((3+3))", "after-6")
    assert driver.close_code is None
    assert b"after-6" not in watcher.output


def test_a_driver_whose_role_is_lowered_stops_driving(
    serve: Serve, people: People, environment: Environment, session: Session, world: World
) -> None:
    base = serve()
    owner, _ = open_shell(base, environment, people.me(base))
    member = Term(base, environment.id or 0, auth=people.max, session=owner.session, mode="watch")
    me = member.wait_control("hello")
    owner.send_control("handover", to=me["you"])
    assert member.wait_control("role")["role"] == "driver"
    assert owner.wait_control("role")["role"] == "viewer"
    member.run("echo max-drives", "max-drives")
    teams.change_role(
        session=session,
        actor=world.owner,
        team_id=world.acme,
        user_id=world.member.user_id or 0,
        role="viewer",
    )
    role = member.wait_control("role", timeout=BOUND)
    assert (role["role"], role["may_drive"]) == ("viewer", False)
    member.type("echo typed-after-$((9*9))\r")
    owner.send_control("take")  # nobody drives now: the owner takes the wheel back
    assert owner.wait_control("role")["role"] == "driver"
    owner.run("echo owner-again", "owner-again")
    assert b"typed-after-81" not in owner.output
    assert member.close_code is None  # a viewer may still watch


def share(session: Session, world: World, environment: Environment, **extra: Any) -> int:
    row = sharing.share_environment(
        session=session,
        actor=world.owner,
        environment_id=environment.id or 0,
        role="editor",
        user="otto",
        **extra,
    )
    assert row.id is not None
    return row.id


def test_a_revoked_share_ends_the_shell(
    serve: Serve, people: People, environment: Environment, session: Session, world: World
) -> None:
    base = serve()
    share_id = share(session, world, environment)
    term, marker = open_shell(base, environment, people.otto)
    sharing.revoke_share(session=session, actor=world.owner, share_id=share_id)
    assert_access_ended(term)
    assert_shell_ended(session, environment, marker)


def test_an_expired_share_ends_the_shell(
    serve: Serve, people: People, environment: Environment, session: Session, world: World
) -> None:
    base = serve()
    expires = utcnow() + timedelta(seconds=8)
    share(session, world, environment, expires_at=expires)
    term, marker = open_shell(base, environment, people.otto)
    term.wait_closed(timeout=(expires - utcnow()).total_seconds() + BOUND)
    assert utcnow() >= expires
    assert utcnow() - expires < timedelta(seconds=BOUND)
    assert_access_ended(term, timeout=0)
    assert_shell_ended(session, environment, marker)
    refused = Term(base, environment.id or 0, auth=people.otto)
    assert refused.wait_closed() == 4404


# -- a session still opening, an ended session, ids ------------------------------


def test_a_session_still_opening_is_joined_only_with_authorization(
    serve: Serve, people: People, environment: Environment, session: Session, world: World, settings: Settings
) -> None:
    delay = 4.0
    base = serve(ENVHUB_TEST_EXEC_DELAY=str(delay))  # a slow exec handshake keeps it opening
    elsewhere = make_other_environment(session, environment, settings)
    foreign_agent = agent_token(session, world.owner, elsewhere)
    owner = Term(base, environment.id or 0, auth=people.me(base))
    asked = time.monotonic()
    outsider = Term(base, environment.id or 0, auth=people.otto, session=owner.session)
    agent = Term(base, environment.id or 0, auth=foreign_agent, session=owner.session)
    anonymous = Term(base, environment.id or 0, auth=ANONYMOUS, session=owner.session)
    viewer = Term(base, environment.id or 0, auth=people.vera, session=owner.session)
    assert time.monotonic() - asked < delay  # all of them asked while it was opening
    assert owner.wait_control("hello")["role"] == "driver"
    assert outsider.wait_closed() == 4404  # another team's environment does not exist for him
    assert agent.wait_closed() == 4404  # an agent sees its own environment only
    assert anonymous.wait_closed() == 4401
    hello = viewer.wait_control("hello")  # a viewer may watch, as in any session, and no more
    assert (hello["role"], hello["may_drive"]) == ("viewer", False)
    viewer.type("echo from-the-viewer\r")
    owner.run("echo from-the-owner", "from-the-owner")
    assert b"from-the-viewer" not in owner.output
    assert [b"from-the-owner" in t.output for t in (outsider, agent, anonymous)] == [False] * 3


def make_other_environment(session: Session, environment: Environment, settings: Settings) -> int:
    other = Environment(project_id=environment.project_id, name="other", spec=environment.spec)
    session.add(other)
    session.commit()
    (settings.envs_dir / str(other.id) / "workspace").mkdir(parents=True)
    assert other.id is not None
    return other.id


def test_an_ended_sessions_record_is_shown_only_to_who_may_see_the_environment(
    serve: Serve, people: People, environment: Environment, session: Session, world: World, settings: Settings
) -> None:
    base = serve()
    owner = Term(base, environment.id or 0, auth=people.me(base))
    owner.run("echo secret-$((7*6))", "secret-42")
    owner.run("exit 7", "")
    assert owner.wait_control("exit")["code"] == 7
    end = wait_for(
        lambda: [e for e in shell_events(session, environment.id or 0) if e.action.endswith(".end")],
        timeout=BOUND,
        what="the end event",
    )[-1]
    foreign_agent = agent_token(session, world.owner, make_other_environment(session, environment, settings))
    for outsider in (people.otto, foreign_agent):
        for mode in ("drive", "watch"):
            probe = Term(
                base, environment.id or 0, auth=outsider, session=owner.session, client=new_id(), mode=mode
            )
            assert probe.wait_closed() == 4404
            assert not [c for c in probe.controls if c["type"] == "exit"]  # not even how it ended
    viewer = Term(base, environment.id or 0, auth=people.vera, session=owner.session, mode="watch")
    assert viewer.wait_control("exit")["code"] == 7

    url = f"{base}/api/v1/terminal/recordings/{end.id}"
    assert httpx.get(url, headers=people.vera.headers).status_code == 200
    for outsider in (people.otto, foreign_agent):
        response = httpx.get(url, headers=outsider.headers)
        assert response.status_code == 404
        assert "secret-42" not in response.text
    assert httpx.get(url).status_code == 401


OUT_OF_RANGE = [
    "0",
    "-1",
    "2147483648",
    "9223372036854775808",
    "99999999999999999999999",
    "abc",
    "1.5",
    "1e3",
]


@pytest.mark.parametrize("raw", OUT_OF_RANGE)
def test_ids_out_of_range_are_refused_as_bad_requests(
    serve: Serve, people: People, environment: Environment, raw: str
) -> None:
    base = serve()
    me = people.me(base)
    term = Term(base, raw, auth=me)
    assert term.wait_closed() == 4400
    assert term.controls[0]["type"] == "error"
    for path in (f"/api/v1/environments/{raw}/terminals", f"/api/v1/terminal/recordings/{raw}"):
        response = httpx.get(f"{base}{path}", headers=me.headers)
        assert 400 <= response.status_code < 500, (path, response.status_code, response.text)


def test_the_recheck_is_cheap(
    serve: Serve, people: People, environment: Environment, session: Session, world: World
) -> None:
    """What one re-check of one socket costs: a handful of small queries, nothing written."""
    base = serve()
    statements: list[str] = []
    engine = session.get_bind()

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement.split(None, 1)[0].upper())

    share(session, world, environment)
    callers = {
        "a browser session": people.me(base),
        "a member's token": people.max,
        "a token of someone it is shared with": people.otto,
        "an agent token": agent_token(session, world.owner, environment.id or 0),
    }
    for name, credential in callers.items():
        with Session(engine) as db:
            caller = authenticate(
                db,
                cookie_header=credential.headers.get("Cookie"),
                authorization=credential.headers.get("Authorization"),
            )
            assert caller is not None
            db.commit()
            event.listen(engine, "before_cursor_execute", count)
            try:
                answer = terminal_service.access_now(
                    session=db, caller=caller, environment_id=environment.id or 0
                )
            finally:
                event.remove(engine, "before_cursor_execute", count)
        assert answer.access is not None
        assert answer.access.may_drive
        print(f"re-check with {name}: {len(statements)} statements ({', '.join(statements)})")
        assert set(statements) == {"SELECT"}
        assert len(statements) <= 8
        statements.clear()


def test_a_relayed_socket_needs_the_replicas_fresh_signature_for_its_own_path(
    serve: Serve, people: People, environment: Environment, settings: Settings
) -> None:
    """The internal hop answers a pod's address; without the replicas' signature it is refused."""
    base = serve()
    me = people.me(base)
    query = f"session={new_id()}&client={new_id()}&mode=drive&cols=80&rows=24"
    path = f"{relay.PATH}{environment.id}?{query}"
    elsewhere = f"{relay.PATH}{environment.id}?session={new_id()}&client={new_id()}"
    forged = {
        "no signature": None,
        "a made-up one": f"{int(time.time())} 127.0.0.1 {'0' * 64}",
        "another session's": relay.sign(elsewhere, "127.0.0.1"),
        "a stale one": relay.sign(path, "127.0.0.1", now=time.time() - 120),
    }
    for name, signature in forged.items():
        headers = dict(me.headers) | ({relay.HEADER: signature} if signature else {})
        with connect(base.replace("http", "ws", 1) + path, additional_headers=headers) as ws:
            error = json.loads(ws.recv(timeout=10))
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=10)
        assert (error["code"], closed.value.rcvd and closed.value.rcvd.code) == ("bad_relay", 4403), name
    # Signed with the key every replica derives from the shared secret: the shell opens.
    headers = dict(me.headers) | {relay.HEADER: relay.sign(path, "127.0.0.1")}
    with connect(base.replace("http", "ws", 1) + path, additional_headers=headers) as ws:
        hello = json.loads(ws.recv(timeout=30))
    assert (hello["type"], hello["role"]) == ("hello", "driver")
