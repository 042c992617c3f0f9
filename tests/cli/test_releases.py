"""``envhub deployments`` and ``envhub releases``: the real command against a running envhub and real
workers, from configuring staging and production to CI's release, an approval, a diff and a rollback.

The server is the production app under Granian; the workers are real
``envhub.launcher worker`` processes on the local runtime (tests/cli/test_environments.py).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlmodel import Session

from envhub.models import Project
from tests.cli.conftest import Cli
from tests.cli.test_environments import WRITER, as_json, error_of, signed_in
from tests.support.releases import COMMAND, SETTINGS, render
from tests.support.waiting import wait_for
from tests.support.workers import Workers
from tests.support.world import World
from tests.terminal.harness import People

pytestmark = pytest.mark.slow

SHA1 = "1" * 40
SHA2 = "2" * 40


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def release_of(cli: Cli, who: dict[str, str], release_id: int) -> dict[str, Any]:
    detail = as_json(cli("releases", "show", str(release_id), "-o", "json", **who))
    assert isinstance(detail, dict)
    return detail


def settled(cli: Cli, who: dict[str, str], release_id: int, status: str, workers: Workers) -> dict[str, Any]:
    """Wait for a release to reach ``status``; its detail."""
    return wait_for(
        lambda: (detail := release_of(cli, who, release_id))["release"]["status"] == status and detail,
        timeout=180,
        interval=0.5,
        what=f"release {release_id} to be {status}",
        describe=lambda: json.dumps(release_of(cli, who, release_id)["release"]) + workers.log_tail(),
    )


def releases_in(cli: Cli, who: dict[str, str], env: str) -> list[dict[str, Any]]:
    page = as_json(cli("releases", "list", env, "-o", "json", **who))
    assert isinstance(page, dict)
    items: list[dict[str, Any]] = page["items"]
    return items


def test_ci_releases_an_admin_approves_production_and_staging_rolls_back(
    cli: Cli,
    server: str,
    people: People,
    session: Session,
    world: World,
    project: Project,
    workers: Workers,
    tmp_path: Path,
) -> None:
    workers.start()
    owner = signed_in(people, server, world.owner, (*WRITER, "admin"))
    # An admin: his CI token releases, and he may not approve his own release.
    adam = signed_in(people, server, world.admin, (*WRITER, "admin"))
    ok(cli("projects", "update", "shop", "--command", COMMAND, "-e", "GREETING=one", **owner))
    settings = tmp_path / "deployments.yaml"
    settings.write_text(yaml.safe_dump(SETTINGS))
    configured = ok(cli("deployments", "configure", "shop", "--file", str(settings), **owner))
    assert "Configured shop's deployment environments: staging, production." in configured
    assert "nothing yet" in configured
    bad = tmp_path / "bad.yaml"
    bad.write_text("source: {kind: helm}\n")
    refused = cli("deployments", "configure", "shop", "--file", str(bad), "-o", "json", **owner)
    assert (refused.returncode, error_of(refused)["code"]) == (7, "validation_failed")

    # CI: a token that can only release (adam's), passed as ENVHUB_TOKEN, naming the project by id.
    ci = signed_in(people, server, world.admin, ("deploy",))
    made = as_json(
        cli("releases", "create", str(project.id), "--commit", SHA1, "--ref", "main", "-o", "json", **ci)
    )
    assert isinstance(made, dict)
    [first] = made["releases"]
    assert (first["environment"], first["number"], first["trigger"], first["commit"]) == (
        "staging", 1, "api", SHA1,
    )  # fmt: skip
    again = as_json(cli("releases", "create", str(project.id), "--commit", SHA1, "-o", "json", **ci))
    assert [row["id"] for row in again["releases"]] == [first["id"]]  # type: ignore[index]
    # ... and nothing else: not read the project, not approve, not look the project up by name.
    for args in (
        ("deployments", "show", str(project.id)),
        ("releases", "show", str(first["id"])),
        ("releases", "approve", str(first["id"])),
    ):
        denied = cli(*args, "-o", "json", **ci)
        assert (denied.returncode, error_of(denied)["code"]) == (4, "forbidden"), args
    by_name = cli("releases", "create", "shop", "--commit", SHA1, **ci)
    assert by_name.returncode == 4
    assert "by its id" in by_name.stderr

    render(first["id"])
    settled(cli, owner, first["id"], "ready", workers)
    # Staging being ready promoted it: production waits for an approval.
    production = wait_for(
        lambda: releases_in(cli, owner, "shop/production"), timeout=60, what="the promotion"
    )[0]
    assert (production["status"], production["trigger"], production["commit"]) == (
        "waiting",
        "promotion",
        SHA1,
    )
    side_by_side = ok(cli("deployments", "show", "shop", **owner))
    for seen in ("staging", "production", "#1 111111111111 (main) ready", "0 of 1 approval(s)", "env STAGE"):
        assert seen in side_by_side, side_by_side
    assert "staging → production differ in:\nProcess.envhub.dev/app (changed)" in side_by_side
    assert "-    STAGE: staging\n+    STAGE: production" in side_by_side

    # Who triggered it cannot approve it; a person who did not, with the role, can.
    selfish = cli("releases", "approve", str(production["id"]), **adam)
    assert selfish.returncode == 4
    assert "you triggered this release, so someone else must approve it" in selfish.stderr
    assert "Ask another team member" in selfish.stderr
    waiting = ok(cli("releases", "show", str(production["id"]), **owner))
    assert "✗ approvals: 0 of 1 approval(s) from a team admin or above" in waiting
    approved = ok(cli("releases", "approve", str(production["id"]), "--comment", "ship it", **owner))
    assert "Approved release" in approved
    assert "olivia" in approved
    assert "ship it" in approved
    shipped = settled(cli, owner, production["id"], "ready", workers)
    assert shipped["gates"][0] == {
        "gate": "approvals", "passed": True, "reason": "1 of 1 approval(s) (olivia)",
    }  # fmt: skip
    ok(cli("env", "wait", "shop/production", "--timeout", "60", **owner))

    # A second merge with another variable: its diff against what staging runs, object by object.
    ok(cli("projects", "update", "shop", "-e", "GREETING=two", **owner))
    [second] = as_json(cli("releases", "create", str(project.id), "--commit", SHA2, "-o", "json", **ci))[
        "releases"
    ]  # type: ignore[index]
    render(second["id"])
    diff = ok(cli("releases", "show", str(second["id"]), "--against", str(first["id"]), **owner))
    assert "Process.envhub.dev/app (changed)" in diff
    assert "-    GREETING: one" in diff
    assert "+    GREETING: two" in diff
    settled(cli, owner, second["id"], "ready", workers)

    # Back to the first: a new release of its content, landing at once (no approval for staging).
    member = signed_in(people, server, world.member)
    refused = cli("releases", "rollback", str(first["id"]), **member)
    assert refused.returncode == 4
    back = ok(cli("releases", "rollback", str(first["id"]), **adam))
    assert "Rolling staging back to release" in back
    history = releases_in(cli, owner, "shop/staging")
    assert [(r["number"], r["trigger"], r["commit"]) for r in history] == [
        (3, "rollback", SHA1), (2, "api", SHA2), (1, "api", SHA1),
    ]  # fmt: skip
    settled(cli, owner, history[0]["id"], "ready", workers)
    page = as_json(
        cli("releases", "list", "shop/staging", "--limit", "1", "--offset", "1", "-o", "json", **owner)
    )
    assert (page["total"], [r["number"] for r in page["items"]]) == (3, [2])  # type: ignore[index]

    # Deleting production takes its name, and an owner.
    unconfirmed = cli("env", "delete", "shop/production", "--yes", **owner)
    assert unconfirmed.returncode == 7
    assert "validation_failed" in unconfirmed.stderr
    assert "--confirm production" in unconfirmed.stderr
    not_owner = cli("env", "delete", "shop/production", "--confirm", "production", **adam)
    assert not_owner.returncode == 4
    assert "only a team owner" in not_owner.stderr
    deleting = ok(cli("env", "delete", "shop/production", "--confirm", "production", **owner))
    assert "Deleting production" in deleting
