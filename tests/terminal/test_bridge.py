"""The terminal bridge at the protocol level: real app under Granian, real shells on PTYs.

People, each signed in for real (conftest.People): the local user owns acme
and drives, from a browser session; max is a member (may drive), vera a viewer
(may only watch), otto belongs to another team, each with a personal token.
The client acks output the moment it arrives unless a test turns that off.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session

from envhub.api.terminal.session import HIGH_WATER
from envhub.config import Settings
from envhub.models import AuditEvent, Environment
from tests.support.waiting import wait_for
from tests.terminal.client import Term, new_id
from tests.terminal.harness import People, Serve, processes_with, shell_events
from tests.terminal.signin import ANONYMOUS

pytestmark = pytest.mark.timeout(180)


def test_type_a_command_then_exit_is_audited_and_recorded(
    serve: Serve, people: People, environment: Environment, session: Session, settings: Settings
) -> None:
    base = serve()
    term = Term(base, environment.id or 0, auth=people.me(base))
    hello = term.wait_control("hello")
    assert hello["role"] == "driver"
    assert hello["environment"] == "shop/dev"
    term.run("echo hi-$((6*7))", "hi-42")
    term.run("exit 3", "")
    ended = term.wait_control("exit")
    assert ended["code"] == 3
    assert term.wait_closed() == 1000

    def both() -> list[AuditEvent] | None:
        events = shell_events(session, environment.id or 0)
        return events if [e.action for e in events][-1:] == ["environment.shell.end"] else None

    start, end = wait_for(both, timeout=30, what="the end event")
    assert start.action == "environment.shell.start"
    assert start.actor == "local"
    assert end.details["exit_code"] == 3
    assert end.details["recording"] == start.details["recording"]
    cast = (settings.data_dir / end.details["recording"]).read_text().splitlines()
    header = json.loads(cast[0])
    assert header["version"] == 2
    assert (header["width"], header["height"]) == (80, 24)
    events = [json.loads(line) for line in cast[1:]]
    assert "hi-42" in "".join(e[2] for e in events if e[1] == "o")
    assert all(isinstance(e[0], float | int) for e in events)

    # The recording is served to people who may read the trail, not to others.
    url = f"{base}/api/v1/terminal/recordings/{end.id}"
    response = httpx.get(url, headers=people.vera.headers)
    assert response.status_code == 200
    assert response.text.splitlines()[0] == cast[0]
    assert httpx.get(url, headers=people.otto.headers).status_code == 404


def test_reconnect_reattaches_to_the_same_shell_and_restores_the_screen(
    serve: Serve, people: People, environment: Environment
) -> None:
    base = serve()
    first = Term(base, environment.id or 0, auth=people.me(base))
    first.run("export X=42; clear; echo top-$((1+1))", "top-2")
    first.run("printf '\\033[1;31mred-%s\\033[0m\\n' text", "red-text")
    first.ws.close()  # the tab reloads: the socket goes, the shell stays

    again = Term(base, environment.id or 0, auth=people.me(base), session=first.session, client=first.client)
    hello = again.wait_control("hello")
    assert hello["role"] == "driver"
    again.wait_control("reset")
    again.wait_for("red-text")
    restored = bytes(again.output)
    # A rendered screen (cells at positions, colours as SGR), not the raw command stream.
    assert b"\x1b[1;1Htop-2" in restored
    assert b"\x1b[0;1;31mred-text" in restored
    assert b"clear" not in restored  # cleared away, as on the real screen
    again.run("echo X is $X", "X is 42")


def test_grace_period_ends_an_abandoned_shell(
    serve: Serve, people: People, environment: Environment, session: Session
) -> None:
    base = serve(grace=1.0)
    marker = str(900000 + int(time.time()) % 99999)
    term = Term(base, environment.id or 0, auth=people.me(base))
    term.run(f"sleep {marker} & echo started", "started")
    wait_for(lambda: processes_with(marker), timeout=10, what="the background sleep")
    term.ws.close()

    wait_for(lambda: not processes_with(marker), timeout=30, what="the shell's processes to end")
    late = Term(base, environment.id or 0, auth=people.me(base), session=term.session, client=term.client)
    ended = late.wait_control("exit")
    assert "grace period" in ended["reason"]
    end = wait_for(
        lambda: [e for e in shell_events(session, environment.id or 0) if e.action.endswith(".end")],
        what="the end event",
    )[0]
    assert "grace period" in end.details["reason"]


def test_keepalive_pings_and_closes_silent_sockets(
    serve: Serve, people: People, environment: Environment
) -> None:
    base = serve(ping=1.0)
    live = Term(base, environment.id or 0, auth=people.me(base))
    live.wait_control("hello")
    silent = Term(base, environment.id or 0, auth=people.me(base), session=live.session, mode="watch")
    # ``silent`` never reads or answers; after three missed intervals it is dropped.
    started = time.monotonic()
    live.wait_control("ping", timeout=10)
    live.drain(6.0)
    assert live.close_code is None
    assert silent.wait_closed(timeout=30) == 4408
    assert time.monotonic() - started >= 3.0
    live.run("echo still-here", "still-here")


def test_flow_control_pauses_a_flood_and_ctrl_c_interrupts_it(
    serve: Serve, people: People, environment: Environment
) -> None:
    base = serve()
    term = Term(base, environment.id or 0, auth=people.me(base), auto_ack=False)
    term.run("stty -echo; echo ready", "ready")
    term.ack()
    term.type("yes\r")
    term.drain(3.0)
    # Nothing acknowledged: the server stopped reading at its high-water mark.
    assert HIGH_WATER // 2 < term.received < HIGH_WATER + 256 * 1024
    paused_at = term.received
    term.drain(1.0)
    assert term.received == paused_at
    term.ack()
    term.drain(0.5)
    assert term.received > paused_at  # acknowledging resumes the stream

    term.auto_ack = True
    term.ack()
    term.drain(2.0)
    pressed = time.monotonic()
    term.type("\x03")
    term.type("echo after-$((40+2))\r")
    term.wait_for("after-42", timeout=20)
    assert time.monotonic() - pressed < 10


def test_viewer_sees_output_cannot_type_and_is_audited(
    serve: Serve, people: People, environment: Environment, session: Session
) -> None:
    base = serve()
    driver = Term(base, environment.id or 0, auth=people.me(base))
    driver.wait_control("hello")
    viewer = Term(base, environment.id or 0, auth=people.vera, session=driver.session, mode="watch")
    hello = viewer.wait_control("hello")
    assert (hello["role"], hello["may_drive"]) == ("viewer", False)
    presence = driver.wait_control("presence")
    while len(presence["participants"]) < 2:
        presence = driver.wait_control("presence")
    assert sorted((p["name"], p["role"]) for p in presence["participants"]) == [
        ("local", "driver"),
        ("vera", "viewer"),
    ]
    driver.run("echo from-the-driver", "from-the-driver")
    viewer.wait_for("from-the-driver")
    viewer.type("echo typed-by-vera\r")
    driver.run("echo checkpoint", "checkpoint")
    assert b"typed-by-vera" not in driver.output
    wait_for(
        lambda: "environment.shell.watch" in [e.action for e in shell_events(session, environment.id or 0)],
        timeout=30,
        what="the watch event",
    )


def test_hand_over_to_a_member(
    serve: Serve, people: People, environment: Environment, session: Session
) -> None:
    base = serve()
    olivia = Term(base, environment.id or 0, auth=people.me(base))
    olivia.wait_control("hello")
    max_ = Term(base, environment.id or 0, auth=people.max, session=olivia.session, mode="watch")
    me = max_.wait_control("hello")
    assert (me["role"], me["may_drive"]) == ("viewer", True)
    olivia.send_control("handover", to=me["you"])
    assert max_.wait_control("role")["role"] == "driver"
    assert olivia.wait_control("role")["role"] == "viewer"
    max_.run("echo max-drives", "max-drives")
    olivia.wait_for("max-drives")
    olivia.type("echo olivia-typed\r")
    max_.run("echo mark", "mark")
    assert b"olivia-typed" not in max_.output
    handover = wait_for(
        lambda: [e for e in shell_events(session, environment.id or 0) if e.action.endswith("handover")],
        timeout=30,
        what="the hand-over event",
    )
    assert (handover[0].actor, handover[0].details["to"]) == ("local", "max")


def test_resize_reaches_the_process(serve: Serve, people: People, environment: Environment) -> None:
    base = serve()
    term = Term(base, environment.id or 0, auth=people.me(base), cols=90, rows=30)
    term.run("stty size", "30 90")
    term.send_control("resize", cols=132, rows=41)
    assert term.wait_control("size") == {"type": "size", "cols": 132, "rows": 41}
    term.run("stty size", "41 132")


@pytest.mark.parametrize(
    ("user", "origin", "mode", "code"),
    [
        ("local", "http://evil.example", "drive", 4403),
        ("anonymous", None, "drive", 4401),
        ("otto", None, "drive", 4404),  # another team's environment does not exist for him
        ("vera", None, "drive", 4403),  # a viewer may not open a shell
        ("local", None, "watch", 4404),  # nothing to watch under a fresh id
    ],
)
def test_refusals(
    serve: Serve,
    people: People,
    environment: Environment,
    user: str,
    origin: str | None,
    mode: str,
    code: int,
) -> None:
    base = serve()
    auth = {"local": people.me(base), "anonymous": ANONYMOUS, "otto": people.otto, "vera": people.vera}[user]
    term = Term(base, environment.id or 0, auth=auth, origin=origin, mode=mode)
    assert term.wait_closed() == code
    assert term.controls[0]["type"] == "error"


def test_running_sessions_are_listed_for_watchers(
    serve: Serve, people: People, environment: Environment
) -> None:
    base = serve()
    term = Term(base, environment.id or 0, auth=people.me(base))
    term.wait_control("hello")
    url = f"{base}/api/v1/environments/{environment.id}/terminals"
    listed = httpx.get(url, headers=people.vera.headers).json()["sessions"]
    assert [(s["id"], s["owner"]) for s in listed] == [(term.session, "local")]
    assert httpx.get(url, headers=people.otto.headers).status_code == 404


def test_session_ids_are_scoped_to_their_environment(
    serve: Serve, people: People, environment: Environment, session: Session, settings: Settings
) -> None:
    base = serve()
    term = Term(base, environment.id or 0, auth=people.me(base))
    term.wait_control("hello")
    other = Environment(project_id=environment.project_id, name="other", spec=environment.spec)
    session.add(other)
    session.commit()
    (Path(settings.envs_dir) / str(other.id) / "workspace").mkdir(parents=True)
    probe = Term(
        base, other.id or 0, auth=people.me(base), session=term.session, client=new_id(), mode="watch"
    )
    assert probe.wait_closed() == 4404
