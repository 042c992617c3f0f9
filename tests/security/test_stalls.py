"""No single client can stall the service, and tokens get no more than they may (issue 9, point 8).

The attacks tried here, each against envhub's real app served over HTTP,
the real database (SQLite, where one write lock is shared by every process,
and PostgreSQL) and the real Redis:

* a slow audit export: a client asks for a large export and then reads a
  little at a time, while another person creates an environment; the
  creation finishes within a second while the export is still half-sent;
* making envhub re-check the whole audit chain by visiting /audit (or by
  reading the last result over the API): nothing is checked;
* tampering with the chain around a stored checkpoint, and forging the
  checkpoint itself: an incremental check still catches what came after it,
  a full check what came before;
* an agent token with ``admin``: refused when made, and a token row given
  ``admin`` in the database acts without it;
* a cross-site-style request with a junk ``Authorization: Bearer`` header
  next to the session cookie: it still needs the CSRF token.

The gateway's share of point 8 (host cache, host labels, X-Forwarded-*) is tested with the gateway.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from reflex.istate.data import RouterData
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from starlette import types as asgi

from envhub.api.app import create_api
from envhub.config import Settings, override_settings
from envhub.domain import credentials
from envhub.domain.credentials import SecretKind
from envhub.domain.principals import SYSTEM, Principal, PrincipalType, Scope
from envhub.errors import Conflict, PermissionDenied, ScopeNotAllowed
from envhub.launcher import login_link, migrate
from envhub.models import ApiToken, AuditChainCheck, AuditEvent, Membership, Role, Team, User
from envhub.models.base import utcnow
from envhub.models.db import engine_for
from envhub.services import audit_chain, ports, tokens
from envhub.services.audit_chain import CheckMode, run_check
from envhub.services.audit_log import check_chain
from envhub.services.authentication import principal_for_token
from envhub.services.common import audit
from envhub.services.environments import create_environment, delete_environment
from envhub.services.identity import ensure_local_principal
from envhub.services.projects import create_project
from envhub.services.sessions import session_cookie_name
from envhub.services.sharing import share_environment
from tests.conftest import build_settings, clean_tables
from tests.support.fakes import FakeQueue
from tests.support.net import free_port
from tests.support.servers import serve_asgi

EXPORT_PATH = "/api/v1/audit/export"


# -- envhub served for real, with a window on the export's progress ----------------------


@dataclass
class ExportProgress:
    """Counts what the export route has handed to the server, at the ASGI boundary."""

    sent: int = 0
    finished: threading.Event = field(default_factory=threading.Event)


class Watched:
    """envhub's app, unchanged, with the export's progress observed from outside."""

    def __init__(self, app: asgi.ASGIApp) -> None:
        self.app = app
        self.progress = ExportProgress()

    async def __call__(self, scope: asgi.Scope, receive: asgi.Receive, send: asgi.Send) -> None:
        if scope["type"] != "http" or scope.get("path") != EXPORT_PATH:
            await self.app(scope, receive, send)
            return
        progress = self.progress

        async def tracked(message: asgi.Message) -> None:
            await send(message)
            if message["type"] == "http.response.body":
                progress.sent += len(message.get("body", b""))
                if not message.get("more_body"):
                    progress.finished.set()

        await self.app(scope, receive, tracked)


@pytest.fixture(scope="module")
def envhub_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def watched() -> Watched:
    return Watched(create_api())


@pytest.fixture(scope="module")
def served(watched: Watched, envhub_port: int) -> Iterator[str]:
    with serve_asgi(watched, envhub_port):
        yield f"http://localhost:{envhub_port}"


def served_settings(base: Settings, port: int, database_url: str, data_dir: Path) -> Settings:
    return build_settings(
        data_dir=data_dir,
        database_url=database_url,
        redis_url=base.redis_url,
        queue_name=base.queue_name,
        base_url=f"http://localhost:{port}",
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def any_database(
    request: pytest.FixtureRequest,
    settings: Settings,
    database_url: str,
    tmp_path: Path,
    envhub_port: int,
) -> Iterator[Settings]:
    """This test's settings on a fresh SQLite file, or on the session's PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'stalls.db'}"
        migrate(build_settings(data_dir=tmp_path, database_url=url))
    else:
        url = database_url
    configured = served_settings(settings, envhub_port, url, settings.data_dir)
    ports.reset()
    with override_settings(configured):
        yield configured
    ports.reset()
    if request.param == "sqlite":
        engine_for(url).dispose()


@pytest.fixture
def local(settings: Settings, envhub_port: int) -> Iterator[Settings]:
    """The session database, served in single-user mode on ``envhub_port``."""
    configured = served_settings(settings, envhub_port, settings.database_url, settings.data_dir)
    with override_settings(configured):
        yield configured


@contextmanager
def signed_in(settings: Settings, **client: Any) -> Iterator[httpx.Client]:
    """A person's HTTP client with the session cookie of a one-time sign-in link."""
    with httpx.Client(timeout=30, **client) as person:
        assert person.get(login_link(settings)).status_code == 303
        yield person


# -- 1. a slow export reader stalls nobody --------------------------------------------------


def _largest_send_buffer() -> int:
    return int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])


# An export several times larger than what the kernel may buffer for one
# connection (4 MiB by default), so that the server really waits for the
# reader: 1500 events of about 12 KB, or more where the buffers are larger.
SEED_EVENTS = 1500
SEED_DETAIL = "x" * max(12_000, 4 * _largest_send_buffer() // SEED_EVENTS)


@dataclass(frozen=True)
class Shop:
    team_id: int
    project_id: int
    other: Principal  # a second person in the team, who creates environments


def seed(engine: Engine) -> Shop:
    with Session(engine, expire_on_commit=False) as session:
        local = ensure_local_principal(session)
        team = session.exec(select(Team).where(Team.name == "default")).one()
        assert team.id is not None
        project = create_project(session=session, actor=local, team_id=team.id, name="shop")
        bea = User(username="bea", display_name="Bea")
        session.add(bea)
        session.flush()
        assert bea.id is not None
        session.add(Membership(team_id=team.id, user_id=bea.id, role=Role.member))
        for number in range(SEED_EVENTS):
            audit(
                session,
                local,
                "stall.seed",
                target_type="thing",
                target_id=number,
                target=f"thing-{number}",
                team_id=team.id,
                details={"n": number, "padding": SEED_DETAIL},
            )
        session.commit()
        assert project.id is not None
        return Shop(team.id, project.id, Principal(name="bea", user_id=bea.id))


def timed_creation(engine: Engine, shop: Shop, name: str) -> tuple[threading.Thread, dict[str, Any]]:
    """Another person creates an environment (in a thread); the result records how long it took."""
    result: dict[str, Any] = {}

    def create() -> None:
        started = time.monotonic()
        try:
            with Session(engine, expire_on_commit=False) as session:
                environment = create_environment(
                    session=session,
                    actor=shop.other,
                    queue=ports.queue(),
                    project_id=shop.project_id,
                    name=name,
                )
            result["id"] = environment.id
        except BaseException as exc:  # reported by the test
            result["error"] = exc
        result["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=create, name="creator", daemon=True)
    thread.start()
    return thread, result


def test_a_slow_export_reader_does_not_stall_anyone(
    any_database: Settings, served: str, watched: Watched
) -> None:
    engine = engine_for(any_database.database_url)
    clean_tables(engine)
    shop = seed(engine)
    watched.progress = ExportProgress()
    # A reader with a small receive window, as a slow network would give.
    small_window = httpx.HTTPTransport(socket_options=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)])
    with (
        signed_in(any_database, transport=small_window) as reader,
        reader.stream("GET", f"{served}{EXPORT_PATH}", params={"action": "stall.seed"}) as response,
    ):
        assert response.status_code == 200
        chunks = response.iter_raw(16 * 1024)
        received = len(next(chunks))
        # The server sends until the socket is full, then waits for the reader.
        last = -1
        while watched.progress.sent != last:
            last = watched.progress.sent
            time.sleep(0.5)
        assert not watched.progress.finished.is_set(), "the export fit in the buffers: seed more"

        thread, creation = timed_creation(engine, shop, "while-exporting")
        thread.join(5)
        still_exporting = not watched.progress.finished.is_set()
        for chunk in chunks:  # now read the rest (this also frees a creation that is stuck)
            received += len(chunk)
        thread.join(60)
    assert "error" not in creation, creation.get("error")
    assert creation["seconds"] < 1.0, f"creating an environment waited {creation['seconds']:.1f}s"
    assert still_exporting, "the export had finished before the creation: the test proved nothing"
    assert watched.progress.finished.is_set()
    assert received == watched.progress.sent


def test_the_export_is_still_one_whole_download(any_database: Settings, served: str) -> None:
    engine = engine_for(any_database.database_url)
    clean_tables(engine)
    seed(engine)
    with signed_in(any_database) as reader:
        whole = reader.get(f"{served}{EXPORT_PATH}", params={"action": "stall.seed"})
        filtered = reader.get(f"{served}{EXPORT_PATH}", params={"action": "stall.seed", "target": "thing-1"})
    assert whole.status_code == 200
    assert whole.headers["content-disposition"].startswith('attachment; filename="envhub-audit-')
    records = [json.loads(line) for line in whole.text.splitlines()]
    assert [r["details"]["n"] for r in records] == list(range(SEED_EVENTS))  # every page, in order, once
    # Filters apply as before (thing-1, thing-10..19, thing-100..199, ...), across pages too.
    wanted = [n for n in range(SEED_EVENTS) if "thing-1" in f"thing-{n}"]
    assert [json.loads(line)["details"]["n"] for line in filtered.text.splitlines()] == wanted


# -- 2. the chain is checked on request, from a checkpoint -----------------------------------


def write(engine: Engine, count: int) -> None:
    with Session(engine) as session:
        for number in range(count):
            audit(
                session,
                Principal(name="someone"),
                "test.event",
                target_type="thing",
                target_id=number,
                target=f"thing-{number}",
                team_id=None,
            )
            session.commit()


def sql(engine: Engine, statement: str, **params: object) -> None:
    with engine.begin() as conn:
        conn.execute(text(statement), params)


def check(engine: Engine, mode: CheckMode) -> audit_chain.ChainReport:
    with Session(engine) as session:
        return run_check(session, actor=SYSTEM, mode=mode)


def found(report: audit_chain.ChainReport) -> set[tuple[str, int | None]]:
    return {(p.kind, p.seq) for p in report.problems}


@pytest.fixture
def counted_walks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many events each walk of the chain verified (instrumenting the real walk)."""
    walks: list[int] = []
    real = audit_chain.verify_chain

    def counting(session: Session, **kwargs: Any) -> audit_chain.ChainReport:
        report = real(session, **kwargs)
        walks.append(report.checked)
        return report

    monkeypatch.setattr(audit_chain, "verify_chain", counting)
    return walks


def test_an_incremental_check_verifies_only_what_came_after_the_checkpoint(
    settings: Settings, db: Engine, counted_walks: list[int]
) -> None:
    write(db, 5)
    first = check(db, CheckMode.full)
    assert (first.ok, first.checked, first.to_seq) == (True, 5, 5)  # the check's own event is #6
    write(db, 3)
    second = check(db, CheckMode.incremental)
    assert second.ok, second.problems
    assert (second.from_seq, second.checked, second.to_seq) == (5, 4, 9)
    assert second.summary() == "audit chain intact: 4 event(s) after the checkpoint at #5 verified"
    assert counted_walks == [5, 4]


def test_tampering_after_the_checkpoint_is_caught_by_the_incremental_check(
    settings: Settings, db: Engine
) -> None:
    write(db, 5)
    check(db, CheckMode.full)  # checkpoint at #5
    write(db, 3)  # #7..#9
    sql(db, "UPDATE audit_event SET actor = 'mallory' WHERE seq = 8")
    sql(db, "DELETE FROM audit_event WHERE seq = 9")
    report = check(db, CheckMode.incremental)
    assert ("edited", 8) in found(report)
    assert "deleted" in {kind for kind, _ in found(report)}
    assert not report.ok


def test_tampering_before_the_checkpoint_is_caught_by_the_full_check_and_sticks(
    settings: Settings, db: Engine
) -> None:
    write(db, 5)
    check(db, CheckMode.full)
    write(db, 2)
    sql(db, "UPDATE audit_event SET outcome = 'failure' WHERE seq = 2")
    # What an incremental check does not cover: it starts after the checkpoint.
    assert check(db, CheckMode.incremental).ok
    full = check(db, CheckMode.full)
    assert ("edited", 2) in found(full)
    # Once broken, later incremental checks start where the failed one did.
    again = check(db, CheckMode.incremental)
    assert ("edited", 2) in found(again)
    assert again.from_seq == 0


def test_the_checkpoints_own_event_is_verified_again(settings: Settings, db: Engine) -> None:
    write(db, 5)
    check(db, CheckMode.full)  # checkpoint at #5
    sql(db, "UPDATE audit_event SET target = 'elsewhere' WHERE seq = 5")
    assert ("edited", 5) in found(check(db, CheckMode.incremental))


def test_a_forged_or_edited_checkpoint_is_refused(settings: Settings, db: Engine) -> None:
    write(db, 5)
    check(db, CheckMode.full)  # a genuine checkpoint at #5, check #1
    write(db, 4)  # #7..#10
    sql(db, "UPDATE audit_event SET actor = 'mallory' WHERE seq = 8")
    with Session(db, expire_on_commit=False) as session:
        genuine = session.exec(select(AuditChainCheck)).one()
        tenth = session.exec(select(AuditEvent).where(AuditEvent.seq == 10)).one()
        forged = AuditChainCheck(
            **{name: getattr(genuine, name) for name in ("mode", "checked_by", "started_at", "finished_at")},
            from_seq=0,
            to_seq=10,
            last_hash=tenth.hash or "",
            checked=10,
            ok=True,
            problems=[],
            mac="0" * 64,  # without envhub's key, no valid MAC
        )
        session.add(forged)
        session.commit()
    report = check(db, CheckMode.incremental)
    assert ("edited", 8) in found(report)
    assert ("checkpoint", None) in found(report)
    assert report.from_seq == 5  # started from the genuine checkpoint, not the forged one
    # Editing a genuine one (to skip ahead) breaks its MAC the same way.
    sql(db, "DELETE FROM audit_chain_check WHERE id <> :id", id=genuine.id)
    sql(db, "UPDATE audit_chain_check SET to_seq = 10, last_hash = :h", h=tenth.hash)
    edited = check(db, CheckMode.incremental)
    assert ("edited", 8) in found(edited)
    assert ("checkpoint", None) in found(edited)


def test_a_genuine_result_copied_into_a_newer_row_is_refused(settings: Settings, db: Engine) -> None:
    """Replaying an old intact result as the newest would make a failure be forgotten."""
    write(db, 5)
    check(db, CheckMode.full)  # check 1: intact up to #5
    sql(db, "UPDATE audit_event SET outcome = 'failure' WHERE seq = 2")
    assert ("edited", 2) in found(check(db, CheckMode.full))  # check 2: broken, from the start
    columns = (
        "mode, from_seq, to_seq, last_hash, checked, ok, problems, checked_by, started_at, finished_at, mac"
    )
    sql(
        db,
        f"INSERT INTO audit_chain_check ({columns}) SELECT {columns} FROM audit_chain_check "
        "WHERE id = (SELECT min(id) FROM audit_chain_check)",
    )
    report = check(db, CheckMode.incremental)
    assert ("checkpoint", None) in found(report)
    assert ("edited", 2) in found(report)
    assert report.from_seq == 0


def test_the_audit_page_shows_the_last_result_and_checks_nothing(
    local: Settings, db: Engine, served: str, counted_walks: list[int]
) -> None:
    """Loading /audit runs the page's real load handler: it reads, it does not check."""
    from envhub.ui.pages.audit import AuditState

    write(db, 3)
    with signed_in(local) as person:
        cookie = f"{session_cookie_name()}={person.cookies[session_cookie_name()]}"
        # The API: reading the last result runs nothing either.
        before = person.get(f"{served}/api/v1/audit/verify").json()
        assert before == {"checked": False, "summary": "the audit chain has not been checked yet"}

        def visit() -> AuditState:
            page = AuditState(_reflex_internal_init=True)  # type: ignore[call-arg]
            page.router = RouterData.from_router_data(
                {"headers": {"cookie": cookie}, "ip": "127.0.0.1", "pathname": "/audit"}
            )
            page.signed_in = True
            # Nothing queued after it either (the check used to be chained from here).
            assert AuditState.event_handlers["load"].fn(page) is None
            assert page.loaded, page.load_error
            return page

        for _ in range(3):
            assert visit().chain["checked"] is False
        assert counted_walks == []
        with Session(db) as session:
            assert session.exec(select(AuditChainCheck)).all() == []
            assert session.exec(select(AuditEvent).where(AuditEvent.action == "audit.verify")).all() == []

        csrf = person.get(f"{served}/api/v1/me").json()["csrf_token"]
        ran = person.post(f"{served}/api/v1/audit/verify", headers={"X-CSRF-Token": csrf})
        assert ran.status_code == 200, ran.text
        assert ran.json()["ok"] is True
        assert len(counted_walks) == 1
        shown = visit().chain
        assert (shown["checked"], shown["ok"]) == (True, True)
        assert shown["summary"].startswith("audit chain intact")
        assert shown["when"].startswith("incremental check just now by local")
        after = person.get(f"{served}/api/v1/audit/verify").json()
        assert (after["checked"], after["ok"], after["checked_by"]) == (True, True, "local")
    assert len(counted_walks) == 1


def test_checks_wait_for_each_other_instead_of_piling_up(settings: Settings, db: Engine) -> None:
    write(db, 2)
    assert audit_chain._running.acquire(blocking=False)
    try:
        with Session(db) as session, pytest.raises(Conflict, match="already running"):
            check_chain(session=session, actor=SYSTEM, full=True)
    finally:
        audit_chain._running.release()


# -- 3. agent tokens never carry admin ------------------------------------------------------


@pytest.fixture
def agent_world(local: Settings, db: Engine) -> tuple[Principal, int]:
    from tests.identity.worlds import environment_in

    with Session(db, expire_on_commit=False) as session:
        me = ensure_local_principal(session)
        environment_id = environment_in(session, team_name="default", project="shop", name="pr-1")
    return me, environment_id


def test_an_agent_token_with_admin_is_refused_when_made(
    agent_world: tuple[Principal, int], db: Engine
) -> None:
    me, environment_id = agent_world
    with Session(db) as session:
        for scopes in (["admin"], ["read", "admin"], ["ADMIN ", "shell"]):
            with pytest.raises(ScopeNotAllowed) as refused:
                tokens.create_agent_token(
                    session=session,
                    actor=me,
                    environment_id=environment_id,
                    name="agent",
                    scopes=scopes,
                    expires_in_days=7,
                )
            assert refused.value.code == "scope_not_allowed"
            assert refused.value.details["refused"] == ["admin"]
        assert session.exec(select(ApiToken)).all() == []
        failures = session.exec(select(AuditEvent).where(AuditEvent.action == "token.create")).all()
        assert {(e.outcome, e.error_code) for e in failures} == {("failure", "scope_not_allowed")}


def test_an_agent_token_row_with_admin_acts_without_it(
    agent_world: tuple[Principal, int], db: Engine, served: str
) -> None:
    """A row given admin past the service (a bug, an old row, someone with database access)."""
    me, environment_id = agent_world
    issued = credentials.issue(SecretKind.agent_token)
    with Session(db) as session:
        session.add(
            ApiToken(
                token_hash=issued.digest,
                hint=issued.hint,
                kind="agent",
                name="smuggled",
                user_id=me.user_id or 0,
                environment_id=environment_id,
                scopes=["admin", "read", "shell", "write"],
                expires_at=utcnow() + timedelta(days=1),
            )
        )
        session.commit()
    me_seen = httpx.get(f"{served}/api/v1/me", headers={"Authorization": f"Bearer {issued.plain}"}).json()
    assert (me_seen["type"], me_seen["scopes"]) == ("agent", ["read", "shell", "write"])
    with Session(db) as session:
        agent = principal_for_token(session, issued.plain)
        assert agent is not None
        assert agent.scopes == frozenset({Scope.read, Scope.shell, Scope.write})
        with pytest.raises(PermissionDenied):
            delete_environment(session=session, actor=agent, queue=FakeQueue(), environment_id=environment_id)
        with pytest.raises(PermissionDenied):
            share_environment(
                session=session, actor=agent, environment_id=environment_id, role="admin", user="local"
            )
    # No code path can even build an agent principal holding admin.
    with pytest.raises(ValueError, match="admin"):
        Principal(name="x", type=PrincipalType.agent, user_id=1, scopes=frozenset(Scope), environment_id=1)


# -- 4. the CSRF exemption needs a bearer token that really authenticated -----------------


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("POST", "/auth/logout", {}),
        ("POST", "/api/v1/tokens", {"json": {"name": "x", "scopes": ["read"], "expires_in_days": 1}}),
        ("POST", "/api/v1/audit/verify", {}),
        ("DELETE", "/api/v1/tokens/1", {}),
    ],
)
@pytest.mark.parametrize("authorization", ["Bearer x", "Bearer ehp_not-a-real-token", "Basic Zm9vOmJhcg=="])
def test_a_junk_authorization_header_does_not_lift_csrf(
    local: Settings,
    db: Engine,
    served: str,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    authorization: str,
) -> None:
    with signed_in(local) as person:
        refused = person.request(
            method, f"{served}{path}", headers={"Authorization": authorization}, **kwargs
        )
        assert refused.status_code == 403, refused.text
        assert refused.json()["code"] == "csrf_failed"
        still = person.get(f"{served}/api/v1/me")  # the session was not signed out
        assert (still.status_code, still.json()["name"]) == (200, "local")
    with Session(db) as session:
        assert session.exec(select(ApiToken)).all() == []


def test_a_real_bearer_token_next_to_the_cookie_needs_no_csrf_token(
    local: Settings, db: Engine, served: str
) -> None:
    with signed_in(local) as person:
        csrf = person.get(f"{served}/api/v1/me").json()["csrf_token"]
        made = person.post(
            f"{served}/api/v1/tokens",
            json={"name": "ci", "scopes": ["read"], "expires_in_days": 1},
            headers={"X-CSRF-Token": csrf},
        ).json()
        # A token may revoke itself; the cookie rides along but plays no part.
        revoked = person.delete(
            f"{served}/api/v1/tokens/{made['id']}", headers={"Authorization": f"Bearer {made['token']}"}
        )
        assert revoked.status_code == 200, revoked.text
        assert revoked.json()["revoked_at"] is not None
        # Once revoked it authenticates nothing, so the cookie's CSRF rule is back.
        again = person.delete(
            f"{served}/api/v1/tokens/{made['id']}", headers={"Authorization": f"Bearer {made['token']}"}
        )
        assert (again.status_code, again.json()["code"]) == (403, "csrf_failed")


def test_the_session_cookie_alone_still_needs_the_csrf_token(local: Settings, served: str) -> None:
    with signed_in(local) as person:
        refused = person.post(f"{served}/auth/logout")
        assert (refused.status_code, refused.json()["code"]) == (403, "csrf_failed")
        assert person.get(f"{served}/api/v1/me").status_code == 200
