"""Every environment a principal can see, across projects and teams (services.environment_views).

The estate: acme's projects ``shop`` and ``api``, globex's ``portal``. Some of
portal's environments are shared (with nina, once lapsed, and with team acme);
one of shop's is deleted. Rows are written directly with chosen timestamps so
the order and the cursor's tie-break on id are exercised exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import event
from sqlmodel import Session

from envhub.domain.phases import Phase
from envhub.domain.policy import ShareRole
from envhub.domain.principals import SYSTEM, Principal, PrincipalType, Scope
from envhub.domain.specs import EnvironmentKind, Trigger
from envhub.errors import PermissionDenied, ValidationFailed
from envhub.models import Environment, EnvironmentShare, Project
from envhub.models.base import utcnow
from envhub.queue.events import project_channel
from envhub.services.environment_listing import EnvironmentFilters, filters_from_query
from envhub.services.environment_views import visible_environments
from tests.support.world import World

# A day and a half ago: every "age" reads "1 d ago" however long the run takes.
START = utcnow() - timedelta(days=1, hours=12)


@dataclass(frozen=True)
class Estate:
    shop: int
    api: int
    portal: int
    ids: dict[str, int]  # environment name -> id


def _project(session: Session, team_id: int, name: str) -> int:
    project = Project(team_id=team_id, name=name)
    session.add(project)
    session.flush()
    assert project.id is not None
    return project.id


def _environment(
    session: Session,
    project_id: int,
    name: str,
    minute: int,
    creator: Principal | None,
    *,
    phase: Phase = Phase.pending,
    kind: EnvironmentKind = EnvironmentKind.development,
    trigger: Trigger = Trigger.manual,
) -> int:
    environment = Environment(
        project_id=project_id,
        name=name,
        phase=phase,
        kind=kind,
        trigger=trigger,
        public_url=f"http://{name}.example.test" if phase is Phase.ready else None,
        created_by_id=creator.user_id if creator else None,
        created_at=START + timedelta(minutes=minute),
    )
    session.add(environment)
    session.flush()
    assert environment.id is not None
    return environment.id


@pytest.fixture
def estate(session: Session, world: World) -> Estate:
    shop = _project(session, world.acme, "shop")
    api = _project(session, world.acme, "api")
    portal = _project(session, world.globex, "portal")
    w = world
    ids = {
        "alpha": _environment(session, shop, "alpha", 1, w.member),
        "beta": _environment(
            session, shop, "beta", 2, w.owner, phase=Phase.ready, kind=EnvironmentKind.deployment,
            trigger=Trigger.agent,
        ),
        "gamma": _environment(
            session, api, "gamma", 3, w.admin, phase=Phase.failed, trigger=Trigger.pull_request
        ),
        "old": _environment(session, shop, "old", 4, w.member, phase=Phase.deleted),
        "delta": _environment(
            session, portal, "delta", 5, w.outsider, phase=Phase.ready, trigger=Trigger.push
        ),
        "epsilon": _environment(session, portal, "epsilon", 6, w.outsider),
        "zeta": _environment(session, portal, "zeta", 7, w.outsider),
        "eta": _environment(session, portal, "eta", 8, None, phase=Phase.sleeping),
    }  # fmt: skip
    session.add(
        EnvironmentShare(environment_id=ids["epsilon"], user_id=w.nobody.user_id, role=ShareRole.viewer)
    )
    session.add(
        EnvironmentShare(
            environment_id=ids["zeta"],
            user_id=w.nobody.user_id,
            role=ShareRole.admin,
            expires_at=utcnow() - timedelta(minutes=1),
        )
    )
    session.add(EnvironmentShare(environment_id=ids["eta"], team_id=w.acme, role=ShareRole.viewer))
    session.commit()
    return Estate(shop=shop, api=api, portal=portal, ids=ids)


def names(
    session: Session, actor: Principal, filters: EnvironmentFilters | None = None, **kw: object
) -> list[str]:
    view = visible_environments(session=session, actor=actor, filters=filters, **kw)  # type: ignore[arg-type]
    return [row["name"] for row in view["rows"]]


ACME_SEES = ["eta", "gamma", "beta", "alpha"]  # newest first; eta is shared with team acme


@pytest.mark.parametrize("role", ["owner", "admin", "member", "viewer"])
def test_every_role_of_a_team_sees_its_environments_and_those_shared_with_the_team(
    session: Session, world: World, estate: Estate, role: str
) -> None:
    assert names(session, getattr(world, role)) == ACME_SEES


def test_another_teams_owner_sees_only_their_own_teams_environments(
    session: Session, world: World, estate: Estate
) -> None:
    assert names(session, world.outsider) == ["eta", "zeta", "epsilon", "delta"]


def test_someone_in_no_team_sees_what_is_shared_with_them_and_not_a_lapsed_share(
    session: Session, world: World, estate: Estate
) -> None:
    view = visible_environments(session=session, actor=world.nobody)
    assert [row["name"] for row in view["rows"]] == ["epsilon"]
    assert (view["total"], view["visible_total"]) == (1, 1)
    assert [o["label"] for o in view["options"]["projects"]] == ["portal"]


def test_an_agent_token_sees_its_one_environment_only_while_its_person_can(
    session: Session, world: World, estate: Estate
) -> None:
    def agent(person: Principal, environment: str) -> Principal:
        return Principal(
            name="bot",
            type=PrincipalType.agent,
            user_id=person.user_id,
            environment_id=estate.ids[environment],
            scopes=frozenset({Scope.read}),
            token_id=1,
        )

    assert names(session, agent(world.member, "alpha")) == ["alpha"]
    # The token names alpha, but its person (globex's owner) cannot read alpha.
    assert names(session, agent(world.outsider, "alpha")) == []
    view = visible_environments(session=session, actor=agent(world.member, "alpha"))
    assert view["channels"] == [project_channel(estate.shop)]  # nothing of the rest of the team


def test_a_token_without_the_read_scope_is_refused_not_shown_an_empty_list(
    session: Session, world: World, estate: Estate
) -> None:
    token = Principal(
        name="max", type=PrincipalType.token, user_id=world.member.user_id, scopes=frozenset({Scope.write})
    )
    with pytest.raises(PermissionDenied):
        visible_environments(session=session, actor=token)
    reader = Principal(
        name="max", type=PrincipalType.token, user_id=world.member.user_id, scopes=frozenset({Scope.read})
    )
    assert names(session, reader) == ACME_SEES


def test_envhub_itself_sees_every_live_environment(session: Session, world: World, estate: Estate) -> None:
    assert names(session, SYSTEM) == ["eta", "zeta", "epsilon", "delta", "gamma", "beta", "alpha"]


def test_deleted_environments_are_hidden_unless_asked_for(
    session: Session, world: World, estate: Estate
) -> None:
    assert "old" not in names(session, world.owner)
    assert names(session, world.owner, EnvironmentFilters(include_deleted=True)) == [
        "eta", "old", "gamma", "beta", "alpha",
    ]  # fmt: skip
    assert names(session, world.owner, EnvironmentFilters(phase=Phase.deleted)) == ["old"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"project": "SHOP"}, ["beta", "alpha"]),
        ({"project": "API"}, ["gamma"]),
        ({"team": "GLOBEX"}, ["eta"]),
        ({"team": "ACME"}, ["gamma", "beta", "alpha"]),
        ({"phase": "ready"}, ["beta"]),
        ({"phase": "failed"}, ["gamma"]),
        ({"phase": "sleeping"}, ["eta"]),
        ({"kind": "deployment"}, ["beta"]),
        ({"kind": "development"}, ["eta", "gamma", "alpha"]),
        ({"trigger": "agent"}, ["beta"]),
        ({"trigger": "pull_request"}, ["gamma"]),
        ({"trigger": "manual"}, ["eta", "alpha"]),
        ({"trigger": "push"}, []),  # delta is pushed, but not acme's
        ({"creator": "max"}, ["alpha"]),
        ({"creator": "adam"}, ["gamma"]),
        ({"creator": "otto"}, []),
        ({"project": "SHOP", "phase": "ready", "kind": "deployment", "creator": "olivia"}, ["beta"]),
        ({"project": "SHOP", "trigger": "pull_request"}, []),
    ],
)
def test_each_filter_narrows_the_list(
    session: Session, world: World, estate: Estate, query: dict[str, str], expected: list[str]
) -> None:
    ids = {"SHOP": estate.shop, "API": estate.api, "ACME": world.acme, "GLOBEX": world.globex}
    concrete = {key: str(ids.get(value, value)) for key, value in query.items()}
    filters = filters_from_query(concrete)
    view = visible_environments(session=session, actor=world.member, filters=filters)
    assert [row["name"] for row in view["rows"]] == expected
    assert view["total"] == len(expected)
    assert view["visible_total"] == len(ACME_SEES)
    assert view["filters"] == concrete  # the applied filters, as a link would carry them


@pytest.mark.parametrize(
    ("search", "expected"),
    [
        ("gam", ["gamma"]),
        ("ALPHA", ["alpha"]),  # case does not matter
        ("shop", ["beta", "alpha"]),  # a project's name
        ("globex", ["eta"]),  # a team's name
        ("shop/al", ["alpha"]),  # project/environment
        ("acme/", ["gamma", "beta", "alpha"]),
        ("ta", ["eta", "beta"]),
        ("%", []),  # wildcards are literal
        ("_", []),
        ("nothing-like-this", []),
    ],
)
def test_search_matches_environment_project_and_team_names(
    session: Session, world: World, estate: Estate, search: str, expected: list[str]
) -> None:
    assert names(session, world.member, EnvironmentFilters(search=search)) == expected


def test_the_view_carries_rows_counts_options_and_channels(
    session: Session, world: World, estate: Estate
) -> None:
    view = visible_environments(
        session=session, actor=world.owner, filters=EnvironmentFilters(phase=Phase.ready)
    )
    [beta] = view["rows"]
    assert beta["id"] == estate.ids["beta"]
    assert beta["href"] == f"/projects/{estate.shop}/environments/{estate.ids['beta']}"
    assert (beta["project"], beta["team"], beta["phase"], beta["tone"]) == ("shop", "acme", "ready", "green")
    assert (beta["kind"], beta["trigger"], beta["creator"]) == ("deployment", "agent", "olivia")
    assert beta["url"] == "http://beta.example.test"
    assert beta["age"] == "1 d ago"
    # Phase counts leave the phase filter out, so every phase's chip keeps its count.
    assert [(c["phase"], c["count"], c["tone"]) for c in view["phase_counts"]] == [
        ("pending", 1, "gray"), ("ready", 1, "green"), ("sleeping", 1, "gray"), ("failed", 1, "red"),
    ]  # fmt: skip
    options = view["options"]
    assert [o["label"] for o in options["projects"]] == ["acme/api", "globex/portal", "acme/shop"]
    assert [o["label"] for o in options["teams"]] == ["acme", "globex"]
    assert [o["value"] for o in options["creators"]] == ["adam", "max", "olivia"]
    assert [o["value"] for o in options["phases"]] == [phase.value for phase in Phase]
    assert [o["value"] for o in options["triggers"]] == ["manual", "agent", "pull_request", "push"]
    assert [o["value"] for o in options["kinds"]] == ["development", "deployment"]
    assert set(view["channels"]) == {project_channel(p) for p in (estate.shop, estate.api, estate.portal)}
    # The one on envhub (no creator) reads as such; others only serve a URL when ready.
    newest = visible_environments(session=session, actor=world.owner)["rows"][0]
    assert (newest["name"], newest["creator"], newest["url"]) == ("eta", "envhub", "")


def test_pages_follow_the_cursor_with_no_duplicates_and_no_gaps(session: Session, world: World) -> None:
    shop = _project(session, world.acme, "shop")
    # Several share a timestamp: the cursor must break ties by id, not skip them.
    made = [(i // 4, _environment(session, shop, f"env-{i}", i // 4, world.member)) for i in range(23)]
    session.commit()
    expected = [ident for _minute, ident in sorted(made, reverse=True)]

    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        view = visible_environments(session=session, actor=world.member, cursor=cursor, limit=5)
        assert view["total"] == (23 if pages < 2 else 24)
        seen += [row["id"] for row in view["rows"]]
        pages += 1
        if pages == 2:  # a newer environment arriving mid-listing does not shift later pages
            _environment(session, shop, "latecomer", 100, world.member)
            session.commit()
        cursor = view["next_cursor"]
        if not cursor:
            break
    assert pages == 5
    assert seen == expected
    assert len(set(seen)) == 23


def test_a_filtered_list_pages_too(session: Session, world: World) -> None:
    shop = _project(session, world.acme, "shop")
    for i in range(7):
        _environment(
            session, shop, f"env-{i}", i, world.member, trigger=Trigger.agent if i % 2 else Trigger.manual
        )
    session.commit()
    filters = EnvironmentFilters(trigger=Trigger.agent)
    first = visible_environments(session=session, actor=world.member, filters=filters, limit=2)
    second = visible_environments(
        session=session, actor=world.member, filters=filters, cursor=first["next_cursor"], limit=2
    )
    assert [r["name"] for r in first["rows"] + second["rows"]] == ["env-5", "env-3", "env-1"]
    assert second["next_cursor"] == ""


@pytest.mark.parametrize("cursor", ["nope", "e30", "WyIyMDI2LTEyLTA1IiwgMV0", "W10"])
def test_a_cursor_this_list_did_not_hand_out_is_refused(session: Session, world: World, cursor: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        visible_environments(session=session, actor=world.member, cursor=cursor)
    assert caught.value.details["field"] == "cursor"


@pytest.mark.parametrize(
    ("query", "field"),
    [({"phase": "asleep"}, "phase"), ({"kind": "x"}, "kind"), ({"trigger": "cron"}, "trigger"),
     ({"project": "shop"}, "project"), ({"team": "-1"}, "team"), ({"q": "x" * 201}, "q")],
)  # fmt: skip
def test_bad_filter_values_are_refused_with_their_field(query: dict[str, str], field: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        filters_from_query(query)
    assert caught.value.details["field"] == field


def test_filters_read_from_a_query_write_back_the_same_query() -> None:
    query = {"project": "3", "team": "2", "phase": "ready", "kind": "deployment", "trigger": "push",
             "creator": "max", "q": "shop/pr", "deleted": "1"}  # fmt: skip
    assert filters_from_query(query).to_query() == query
    assert filters_from_query({"phase": "", "q": "  ", "other": "x"}) == EnvironmentFilters()


def _statements(session: Session, call: Callable[[], object]) -> int:
    """Queries ``call`` sends (not SQLite's BEGIN and PRAGMA around a transaction)."""
    seen: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append(statement)

    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", count)
    try:
        call()
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return len(seen)


def test_the_dashboards_list_costs_the_same_few_statements_however_many_environments(
    session: Session, world: World, estate: Estate
) -> None:
    # The page, one grouped count (per phase, whose sum is the total and, unfiltered, the
    # visible total), the projects and the creators on offer (an EXISTS each, not a DISTINCT
    # over every environment; the teams come from the projects), the projects to watch.
    def listing() -> object:
        return visible_environments(session=session, actor=world.member)

    assert _statements(session, listing) == 5
    for n in range(24):
        _environment(session, estate.shop, f"more-{n}", 10 + n, world.member)
    session.commit()
    assert _statements(session, listing) == 5


def test_programs_get_the_same_rows_and_total_from_two_statements(
    session: Session, world: World, estate: Estate
) -> None:
    full = visible_environments(session=session, actor=world.member, limit=2)
    bare: list[object] = []
    count = _statements(
        session,
        lambda: bare.append(visible_environments(session=session, actor=world.member, limit=2, facets=False)),
    )
    assert count == 2  # the page and its total
    [listing] = bare
    assert isinstance(listing, dict)
    assert (listing["rows"], listing["total"], listing["next_cursor"]) == (
        full["rows"],
        full["total"],
        full["next_cursor"],
    )
    assert listing["phase_counts"] == []


@pytest.mark.parametrize(
    ("query", "joins"),
    [({}, False), ({"q": "shop"}, False), ({"q": "acme/al"}, False), ({"team": "TEAM"}, True)],
)
def test_counts_read_environments_alone_unless_a_filter_reads_more(
    session: Session, world: World, estate: Estate, query: dict[str, str], joins: bool
) -> None:
    # A count reads every visible environment: joining each to its project, team and
    # creator for nothing (or matching the project's and team's names on each row, for a
    # search) was most of a search's time at 10,000 environments.
    filters = filters_from_query({k: str(world.acme) if v == "TEAM" else v for k, v in query.items()})
    seen: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if "count(" in statement.lower():
            seen.append(" ".join(statement.split()).upper())

    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", count)
    try:
        view = visible_environments(session=session, actor=world.member, filters=filters, facets=False)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert view["total"] == len(view["rows"]) > 0
    [statement] = seen
    outer = statement.split("WHERE", 1)[0]  # the count's own FROM, before any subquery
    assert (" JOIN " in outer) is joins, statement
