"""Deployment environments and releases over MCP, on the local runtime with real workers:
configure, CI's release with a deploy-scoped token, approval (not by its author), a diff,
cancel, rollback, and deleting production only with its name.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from envhub.config import Settings
from envhub.models import Project
from envhub.runtime.local import LocalRuntime
from tests.mcp.conftest import Agent
from tests.support.releases import COMMAND, SETTINGS, render
from tests.support.runtime import kill_environments
from tests.support.waiting import wait_for
from tests.support.workers import Workers
from tests.terminal.harness import People, Serve

pytestmark = pytest.mark.slow

SHA1 = "a" * 40
SHA2 = "b" * 40
EVERY = ("read", "write", "shell", "admin")


@pytest.fixture
def workers(settings: Settings, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(settings, tmp_path)
    pool.start()
    yield pool
    pool.stop_all()
    kill_environments(LocalRuntime(settings.envs_dir))


def settled(agent: Agent, release_id: int, status: str, workers: Workers) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        detail: dict[str, Any] = agent.call("get_release", release_id=release_id)
        return detail if detail["release"]["status"] == status else None

    return wait_for(
        reached,
        timeout=180,
        interval=0.5,
        what=f"release {release_id} to be {status}",
        describe=lambda: (
            str(agent.call("get_release", release_id=release_id)["release"]) + workers.log_tail()
        ),
    )


def test_release_approve_cancel_and_roll_back_over_mcp(
    serve: Serve, people: People, project: Project, workers: Workers
) -> None:
    base = serve()
    world = people.world
    owner = Agent(base, people.token(world.owner, EVERY))
    adam = Agent(base, people.token(world.admin, EVERY))
    ci = Agent(base, people.token(world.admin, ("deploy",)))
    owner.call("update_project", project_id=project.id, command=COMMAND)
    view = owner.call("configure_deployments", project_id=project.id, settings=SETTINGS)
    stages = {env["name"]: env["id"] for env in view["environments"]}
    assert list(stages) == ["staging", "production"]
    assert view["configured"]
    assert view["environments"][1]["rules"] == "1 approval(s) (admin+)"

    [first] = ci.call("create_release", project_id=project.id, commit=SHA1, ref="main")["releases"]
    assert (first["environment"], first["status"]) == ("staging", "rendering")
    # The deploy token releases, and that is all it does.
    assert ci.error("get_release", release_id=first["id"])["code"] == "forbidden"
    assert ci.error("approve_release", release_id=first["id"])["code"] == "forbidden"
    assert ci.error("get_deployments", project_id=project.id)["code"] == "forbidden"
    render(first["id"])
    settled(owner, first["id"], "ready", workers)

    [promoted] = wait_for(
        lambda: owner.call("list_releases", environment_id=stages["production"])["releases"],
        timeout=60,
        what="the promotion to production",
    )
    assert (promoted["status"], promoted["trigger"]) == ("waiting", "promotion")
    selfish = adam.error("approve_release", release_id=promoted["id"])
    assert (selfish["code"], selfish["details"]["reason"]) == ("forbidden", "self_approval")
    assert "someone else" in selfish["message"]
    approved = owner.call("approve_release", release_id=promoted["id"], comment="ship it")
    assert [a["name"] for a in approved["approvals"]] == ["olivia"]
    assert settled(owner, promoted["id"], "ready", workers)["gates"][0]["passed"]

    # A second release changes the command; staging runs it, production's copy is cancelled.
    owner.call("update_project", project_id=project.id, command=COMMAND.replace("$GREETING", "v2"))
    [second] = ci.call("create_release", project_id=project.id, commit=SHA2)["releases"]
    render(second["id"])
    detail = owner.call("get_release", release_id=second["id"], against=first["id"])
    [change] = detail["changes"]
    assert (change["key"], change["change"]) == ("Process.envhub.dev/app", "changed")
    assert "+  command: echo $STAGE v2;" in change["diff"]
    settled(owner, second["id"], "ready", workers)
    waiting = wait_for(
        lambda: [
            r
            for r in owner.call("list_releases", environment_id=stages["production"])["releases"]
            if r["commit"] == SHA2
        ],
        timeout=60,
        what="the second promotion",
    )[0]
    cancelled = owner.call("cancel_release", release_id=waiting["id"])
    assert cancelled["release"]["status"] == "cancelled"
    assert owner.error("cancel_release", release_id=waiting["id"])["code"] == "invalid_transition"

    # Roll staging back to the first release: a new release of its content, landing at once.
    back = adam.call("rollback_release", release_id=first["id"])["release"]
    assert (back["number"], back["trigger"], back["commit"]) == (3, "rollback", SHA1)
    settled(owner, back["id"], "ready", workers)
    # Being ready promoted it; asking for that promotion again answers with the same release.
    carried = wait_for(
        lambda: [
            r
            for r in owner.call("list_releases", environment_id=stages["production"])["releases"]
            if r["source_release_id"] == back["id"]
        ],
        timeout=60,
        what="the rollback's promotion",
    )[0]
    again = owner.call("promote_release", release_id=back["id"], to="production")["release"]
    assert (again["id"], again["environment"], again["commit"]) == (carried["id"], "production", SHA1)

    # Production goes only with its name, and only by an owner.
    refused = owner.error("delete_environment", environment_id=stages["production"])
    assert (refused["code"], refused["details"]["field"]) == ("validation_failed", "confirm")
    assert (
        adam.error("delete_environment", environment_id=stages["production"], confirm="production")["code"]
        == "forbidden"
    )
    started = owner.call("delete_environment", environment_id=stages["production"], confirm="production")
    assert started["environment"]["phase"] == "deleting"
