"""Terminals with two web replicas behind a round-robin load balancer and no sticky sessions.

Two real envhub web processes (tests/terminal/app.py under Granian), sharing
the test PostgreSQL, Redis and data folder, stand behind a TCP proxy that
sends each new connection to the next process in turn (roundrobin.py). Every
socket goes through the proxy; ``land_next_on`` only says which process the
next one reaches. The processes know each other from the registry in Redis
alone, and each is told only its own address, as pods are.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from redis import Redis
from sqlmodel import Session

from envhub.api.terminal.manager import LOST, RESTARTING
from envhub.models import Environment
from tests.support.net import free_port
from tests.support.waiting import wait_for
from tests.terminal.client import Term, new_id
from tests.terminal.harness import People, Servers, processes_with, shell_events
from tests.terminal.roundrobin import RoundRobin, round_robin

pytestmark = pytest.mark.timeout(240)

A, B = 0, 1
OWNER_KEY = "envhub:terminal:owner:"
ENDED_KEY = "envhub:terminal:ended:"


@pytest.fixture
def replicas(serve: Servers) -> Iterator[tuple[RoundRobin, list[str]]]:
    """The proxy and the two processes' own URLs (A, B), every process configured with the proxy's URL."""
    port = free_port()
    url = f"http://localhost:{port}"
    backends = [serve(ENVHUB_BASE_URL=url), serve(ENVHUB_BASE_URL=url)]
    with round_robin(backends, port) as proxy:
        yield proxy, backends


def through(proxy: RoundRobin, replica: int, environment: Environment, **kwargs: object) -> Term:
    """A socket through the load balancer that reaches ``replica``."""
    proxy.land_next_on(replica)
    term = Term(proxy.url, environment.id or 0, **kwargs)  # type: ignore[arg-type]
    assert proxy.routed[-1] == replica
    return term


def owner_of(redis: Redis, session_id: str) -> str:
    raw = redis.get(OWNER_KEY + session_id)
    assert raw is not None, "the session is not in the registry"
    return str(json.loads(raw)["address"])


def internal(url: str) -> str:
    return url.replace("localhost", "127.0.0.1")


def starts(session: Session, environment: Environment) -> list[str]:
    return [e.action for e in shell_events(session, environment.id or 0) if e.action.endswith(".start")]


def test_reattach_sharing_live_output_and_hand_over_whichever_replica_each_socket_reaches(
    replicas: tuple[RoundRobin, list[str]],
    people: People,
    environment: Environment,
    session: Session,
    redis: Redis,
) -> None:
    proxy, backends = replicas
    me = people.me(proxy.url)
    first = through(proxy, A, environment, auth=me)
    assert first.wait_control("hello")["role"] == "driver"
    first.run("export X=42; clear; echo top-$((1+1))", "top-2")
    assert owner_of(redis, first.session) == internal(backends[A])
    first.ws.close()  # the tab reloads; its new socket reaches the other process

    again = through(proxy, B, environment, auth=me, session=first.session, client=first.client)
    assert again.wait_control("hello")["role"] == "driver"
    again.wait_control("reset")
    again.wait_for("top-2")
    assert b"\x1b[1;1Htop-2" in bytes(again.output)  # the screen as it is, rendered by the owner
    again.run("echo X is $X", "X is 42")  # the same shell

    # A teammate opens the sharing link; their socket reaches the owner directly.
    vera = through(proxy, A, environment, auth=people.vera, session=first.session, mode="watch")
    assert (vera.wait_control("hello")["role"]) == "viewer"
    vera.wait_for("X is 42")
    again.run("echo live-$((6*7))", "live-42")
    vera.wait_for("live-42")  # live output of a driver relayed through B, seen on A
    vera.type("echo typed-by-vera\r")

    # A member watches through B (relayed) and is handed the keyboard.
    max_ = through(proxy, B, environment, auth=people.max, session=first.session, mode="watch")
    hello = max_.wait_control("hello")
    assert (hello["role"], hello["may_drive"]) == ("viewer", True)
    again.send_control("handover", to=hello["you"])
    assert max_.wait_control("role")["role"] == "driver"
    assert again.wait_control("role")["role"] == "viewer"
    max_.run("echo max-drives", "max-drives")
    again.wait_for("max-drives")
    vera.wait_for("max-drives")
    again.type("echo olivia-typed\r")  # no longer the driver: not heard
    max_.run("echo mark", "mark")
    assert b"olivia-typed" not in max_.output
    assert b"typed-by-vera" not in max_.output

    # One shell, started and audited once, wherever its sockets came in.
    assert starts(session, environment) == ["environment.shell.start"]
    assert owner_of(redis, first.session) == internal(backends[A])


def test_two_replicas_starting_the_same_session_at_once_start_one_shell(
    serve: Servers, people: People, environment: Environment, session: Session
) -> None:
    # Shells take a second to start (as a pod exec does), so both sockets arrive while neither is up.
    slow = {"ENVHUB_TEST_EXEC_DELAY": "1"}
    backends = [serve(**slow), serve(**slow)]
    session_id = new_id()
    auth = people.token(people.world.owner)
    terms: list[Term] = []

    def connect(base: str) -> None:
        terms.append(Term(base, environment.id or 0, auth=auth, session=session_id))

    threads = [threading.Thread(target=connect, args=(base,)) for base in backends]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(terms) == 2
    hellos = [term.wait_control("hello") for term in terms]
    assert {hello["session"] for hello in hellos} == {session_id}
    driver = next(term for term, hello in zip(terms, hellos, strict=True) if hello["role"] == "driver")
    other = next(term for term in terms if term is not driver)
    driver.run("echo one-shell-$((2*21))", "one-shell-42")
    other.wait_for("one-shell-42")
    assert starts(session, environment) == ["environment.shell.start"]


def test_a_stopping_replica_ends_its_shells_and_says_so_on_every_replica(
    replicas: tuple[RoundRobin, list[str]],
    serve: Servers,
    people: People,
    environment: Environment,
    session: Session,
    redis: Redis,
) -> None:
    proxy, backends = replicas
    me = people.me(proxy.url)
    driver = through(proxy, A, environment, auth=me)
    driver.wait_control("hello")
    marker = str(700000 + time.monotonic_ns() % 99999)
    driver.run(f"sleep {marker} & echo started-$((1+1))", "started-2")
    wait_for(lambda: processes_with(marker), timeout=10, what="the background sleep")
    relayed = through(proxy, B, environment, auth=people.vera, session=driver.session, mode="watch")
    relayed.wait_for("started-2")

    serve.stop(backends[A])  # SIGTERM, as Kubernetes stops a pod

    for term in (driver, relayed):
        ended = term.wait_control("exit", timeout=20)
        assert ended["restarting"] is True
        assert ended["reason"] == RESTARTING
        assert term.wait_closed() == 1001
    assert not processes_with(marker)
    assert redis.get(OWNER_KEY + driver.session) is None
    assert redis.get(ENDED_KEY + driver.session) is not None
    end = [e for e in shell_events(session, environment.id or 0) if e.action.endswith(".end")]
    assert [e.details["reason"] for e in end] == [RESTARTING]

    # A late reconnect, through the replica that is left, learns how the shell ended.
    late = through(proxy, B, environment, auth=me, session=driver.session, client=driver.client)
    assert late.wait_control("exit")["reason"] == RESTARTING
    assert late.wait_closed() == 1000


def test_a_crashed_replicas_sessions_are_reported_gone_by_the_others(
    replicas: tuple[RoundRobin, list[str]],
    serve: Servers,
    people: People,
    environment: Environment,
    redis: Redis,
) -> None:
    proxy, backends = replicas
    me = people.me(proxy.url)
    driver = through(proxy, A, environment, auth=me)
    driver.wait_control("hello")
    relayed = through(proxy, B, environment, auth=me, session=driver.session, client=new_id(), mode="watch")
    relayed.wait_control("hello")

    serve.crash(backends[A])
    assert relayed.wait_closed() == 1012  # "restarting": the browser reconnects

    again = through(proxy, B, environment, auth=me, session=driver.session, client=driver.client)
    assert again.wait_control("exit")["reason"] == LOST
    assert again.wait_closed() == 1000
    assert redis.get(OWNER_KEY + driver.session) is None


def test_every_replica_lists_the_environments_sessions_held_by_either(
    replicas: tuple[RoundRobin, list[str]], people: People, environment: Environment
) -> None:
    proxy, backends = replicas
    me = people.me(proxy.url)
    on_a = through(proxy, A, environment, auth=me, cols=100, rows=30)
    on_a.wait_control("hello")
    on_b = through(proxy, B, environment, auth=people.max)
    on_b.wait_control("hello")
    # vera watches A's session through B (relayed): she is on A's session, as A publishes it.
    vera = through(proxy, B, environment, auth=people.vera, session=on_a.session, mode="watch")
    vera.wait_control("hello")

    def listing(base: str) -> dict[str, Any]:
        url = f"{base}/api/v1/environments/{environment.id}/terminals"
        response = httpx.get(url, headers=people.vera.headers)
        assert response.status_code == 200, response.text
        return {s["id"]: s for s in response.json()["sessions"]}

    def complete(base: str) -> dict[str, Any] | None:
        found = listing(base)
        with_vera = len(found.get(on_a.session, {}).get("participants", [])) == 2
        with_max = len(found.get(on_b.session, {}).get("participants", [])) == 1
        return found if with_vera and with_max else None

    for base in backends:
        found = wait_for(lambda base=base: complete(base), timeout=20, what=f"both sessions listed by {base}")
        assert set(found) == {on_a.session, on_b.session}
        a, b = found[on_a.session], found[on_b.session]
        assert (a["owner"], a["container"], a["cols"], a["rows"]) == ("local", "", 100, 30)
        assert sorted((p["name"], p["role"]) for p in a["participants"]) == [
            ("local", "driver"),
            ("vera", "viewer"),
        ]
        assert (b["owner"], [p["role"] for p in b["participants"]]) == ("max", ["driver"])
        assert isinstance(a["started"], float)
        assert 0 <= a["age_seconds"] < 60

    on_b.run("exit 0", "")
    on_b.wait_control("exit")
    for base in backends:  # an ended session leaves every replica's list at once
        assert set(listing(base)) == {on_a.session}
