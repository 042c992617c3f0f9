"""Background processes through the service, on the real local runtime (bubblewrap sandbox).

A process started here outlives the call that started it (an exec's would
not: test_local_runtime's test_exec_close_kills_what_the_shell_started), its
output is read by offset during and after its life, a stop is TERM then KILL,
and envhub's rows say how each ended, also to a runtime object made afresh
(envhub restarted). Deleting the environment ends them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import psutil
import pytest
from sqlmodel import Session, col, select

from envhub.config import Settings
from envhub.errors import Conflict, PermissionDenied, ValidationFailed
from envhub.models import AuditEvent, Project
from envhub.runtime.local import LocalRuntime
from envhub.services import background
from tests.support.components import require
from tests.support.runtime import RecordingProgress, kill_environments
from tests.support.waiting import wait_for
from tests.support.world import World
from tests.terminal.harness import make_environment

pytestmark = pytest.mark.slow

TICKER = "echo started; i=0; while :; do i=$((i + 1)); echo tick $i; sleep 0.2; done"


@pytest.fixture
def runtime(settings: Settings) -> Iterator[LocalRuntime]:
    require("bwrap")
    local = LocalRuntime(settings.envs_dir, sandbox="auto")
    yield local
    kill_environments(local)


@pytest.fixture
def env_id(session: Session, world: World, project: Project, settings: Settings) -> int:
    environment = make_environment(session, world, project, settings)
    assert environment.id is not None
    return environment.id


def test_a_background_process_outlives_its_call_and_is_stopped_by_name(
    session: Session, world: World, runtime: LocalRuntime, env_id: int, settings: Settings
) -> None:
    ops = {"session": session, "actor": world.member, "runtime": runtime, "environment_id": env_id}
    ticker = background.start_process(**ops, name="ticker", shell=TICKER)
    assert (ticker["name"], ticker["state"], ticker["exit_code"], ticker["started_by"]) == (
        "ticker",
        "running",
        None,
        "max",
    )
    assert ticker["command"] == f"sh -c '{TICKER}'"
    with pytest.raises(Conflict):
        background.start_process(**ops, name="ticker", command=["true"])

    def ticks() -> str | None:
        seen = background.process_output(**ops, process_id=ticker["id"])["output"]
        return seen if "tick 3\n" in seen else None

    printed = wait_for(ticks, timeout=30, interval=0.2, what="the ticker's output")
    assert printed.startswith("started\ntick 1\ntick 2\n")
    later = background.process_output(**ops, process_id=ticker["id"], offset=len("started\n"), limit=7)
    assert (later["output"], later["offset"], later["next_offset"]) == ("tick 1\n", 8, 15)
    assert later["size"] >= len(printed)
    assert later["state"] == "running"

    once = background.start_process(**ops, name="once", command=["sh", "-c", "echo bye; exit 7"])

    def ended() -> dict[str, object] | None:
        rows = background.list_processes(**ops)["processes"]
        row = next(r for r in rows if r["id"] == once["id"])
        return dict(row) if row["state"] != "running" else None

    finished = wait_for(ended, timeout=30, interval=0.2, what="the short process to end")
    assert (finished["state"], finished["exit_code"]) == ("exited", 7)
    assert finished["ended_at"]
    assert background.process_output(**ops, process_id=once["id"])["output"] == "bye\n"

    # envhub restarted: a fresh runtime object and the rows still know the ticker runs.
    again = {**ops, "runtime": LocalRuntime(settings.envs_dir, sandbox="auto")}
    listed = background.list_processes(**again)["processes"]
    assert [(r["name"], r["state"]) for r in listed] == [("once", "exited"), ("ticker", "running")]

    stopped = background.stop_process(**again, process_id=ticker["id"], grace_seconds=2)
    assert (stopped["state"], stopped["exit_code"]) == ("stopped", 143)
    assert background.stop_process(**ops, process_id=ticker["id"]) == stopped  # asked twice: as it was
    size = background.process_output(**ops, process_id=ticker["id"])["size"]
    assert background.process_output(**ops, process_id=ticker["id"], offset=size)["output"] == ""

    # A process that ignores SIGTERM is killed after the grace period.
    stubborn = background.start_process(
        **ops, name="stubborn", shell="trap '' TERM; echo up; while :; do sleep 0.1; done"
    )
    wait_for(
        lambda: background.process_output(**ops, process_id=stubborn["id"])["output"] == "up\n",
        timeout=30,
        interval=0.2,
        what="the stubborn process to start",
    )
    ended_stubborn = background.stop_process(**ops, process_id=stubborn["id"], grace_seconds=0.5)
    assert ended_stubborn["state"] == "stopped"
    assert ended_stubborn["exit_code"] is not None

    session.expire_all()
    events = session.exec(
        select(AuditEvent)
        .where(AuditEvent.target_id == env_id, col(AuditEvent.action).startswith("environment.process_"))
        .order_by(col(AuditEvent.id))
    ).all()
    summary = [(e.action, e.outcome, e.details.get("name") or e.error_code) for e in events]
    assert summary == [
        ("environment.process_start", "success", "ticker"),
        ("environment.process_start", "failure", "conflict"),
        ("environment.process_start", "success", "once"),
        ("environment.process_stop", "success", "ticker"),
        ("environment.process_start", "success", "stubborn"),
        ("environment.process_stop", "success", "stubborn"),
    ]
    assert events[0].details["command"] == f"sh -c '{TICKER}'"


def test_a_chatty_process_keeps_only_its_newest_output_and_the_api_says_what_was_dropped(
    session: Session, world: World, env_id: int, settings: Settings
) -> None:
    limit = 256 * 1024
    runtime = LocalRuntime(settings.envs_dir, sandbox="auto", output_limit=limit)
    ops = {"session": session, "actor": world.member, "runtime": runtime, "environment_id": env_id}
    # 2 MB of numbered 16-byte lines (" line 000000001\n"...), then a last word.
    chatty = "seq -f ' line %09g' 1 131072; echo the end"
    row = background.start_process(**ops, name="chatty", shell=chatty)
    total = 131072 * 16 + len("the end\n")

    def ended() -> bool:
        return background.list_processes(**ops)["processes"][0]["state"] == "exited"

    wait_for(ended, timeout=60, interval=0.2, what="the chatty process to end")
    first = background.process_output(**ops, process_id=row["id"], limit=64)
    assert first["size"] == total  # offsets count every byte ever printed
    assert 0 < first["dropped"] <= total - limit // 2
    assert first["offset"] == first["dropped"]  # offset 0 is gone: the answer starts at the oldest kept
    # Offsets keep their meaning: the byte at offset n is the one the process printed n-th.
    line = (first["offset"] + 15) // 16
    aligned = background.process_output(**ops, process_id=row["id"], offset=line * 16, limit=16)
    assert aligned["output"] == f" line {line + 1:09d}\n"
    tail = background.process_output(**ops, process_id=row["id"], offset=total - 8)
    assert (tail["output"], tail["next_offset"]) == ("the end\n", total)
    log = settings.envs_dir / str(env_id) / "background" / f"{row['id']}.log"
    assert log.stat().st_size <= limit + 64  # on disk: never much more than the limit


def test_deleting_the_environment_ends_its_background_processes(
    session: Session, world: World, runtime: LocalRuntime, env_id: int, settings: Settings
) -> None:
    ops = {"session": session, "actor": world.member, "runtime": runtime, "environment_id": env_id}
    row = background.start_process(**ops, name="sleeper", command=["sleep", "600"])
    record = json.loads((settings.envs_dir / str(env_id) / "background" / f"{row['id']}.json").read_text())
    wrapper = psutil.Process(record["pid"])
    assert wrapper.is_running()
    runtime.destroy(env_id, progress=RecordingProgress())
    wrapper.wait(10)
    assert not wrapper.is_running()


def test_background_processes_need_the_shell_right_and_good_input(
    session: Session, world: World, runtime: LocalRuntime, env_id: int
) -> None:
    with pytest.raises(PermissionDenied):
        background.start_process(
            session=session,
            actor=world.viewer,
            runtime=runtime,
            environment_id=env_id,
            name="x",
            command=["id"],
        )
    with pytest.raises(PermissionDenied):
        background.list_processes(session=session, actor=world.viewer, runtime=runtime, environment_id=env_id)
    for bad in (
        {"name": "Bad Name", "command": ["id"]},
        {"name": "x"},
        {"name": "x", "command": ["id"], "shell": "id"},
    ):
        with pytest.raises(ValidationFailed):
            background.start_process(
                session=session,
                actor=world.member,
                runtime=runtime,
                environment_id=env_id,
                **bad,  # type: ignore[arg-type]
            )
