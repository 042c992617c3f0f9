"""The OpenAPI document at /api/v1/openapi.json tells the truth, checked by schemathesis.

``st run`` (schemathesis's own command, every phase: examples, coverage,
fuzzing and stateful; every check) runs against envhub's real app served
over HTTP on the test PostgreSQL, signed in with a personal token of acme's
owner, over a world with a project and an environment to find. Any failed
check, and any 5xx answer, fails the test; the report names the request.
Examples are limited so that the run stays near a minute.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlmodel import Session

from envhub.config import Settings
from envhub.services.environments import create_environment
from envhub.services.projects import create_project
from tests.support.fakes import FakeQueue
from tests.support.world import World
from tests.terminal.signin import personal_token

ST = Path(sys.executable).with_name("st")
CONFIG = Path(__file__).with_name("schemathesis.toml")


def test_the_api_keeps_its_openapi_promises(
    api_url: str, settings: Settings, session: Session, world: World, tmp_path: Path
) -> None:
    project = create_project(session=session, actor=world.owner, team_id=world.acme, name="shop")
    create_environment(
        session=session, actor=world.owner, queue=FakeQueue(), project_id=project.id or 0, name="dev"
    )
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG.read_text().replace("ACME_TEAM_ID", str(world.acme)))
    token = personal_token(session, world.owner, ("read", "write", "shell", "admin"))
    argv = [
        str(ST),
        f"--config-file={config}",
        "run",
        f"{api_url}/api/v1/openapi.json",
        "--phases=examples,coverage,fuzzing,stateful",
        "--checks=all",
        "--seed=20261205",
        "--workers=1",
        "--request-timeout=45",
        "--no-shrink",
        "--suppress-health-check=all",
        "--warnings=off",
        f"--report-dir={tmp_path}",
        "--report=junit",
        "-H",
        f"Authorization: {token.headers['Authorization']}",
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "", "NO_COLOR": "1"}
    # In tmp_path: schemathesis keeps a cache folder where it runs.
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=600, env=env, check=False, cwd=tmp_path
    )
    report = done.stdout + done.stderr
    (tmp_path / "st-output.txt").write_text(report)
    # `--checks=all` includes not_a_server_error: any 5xx answer is a failure, and fails the run.
    assert done.returncode == 0, report[-20000:]
    assert "No issues found" in report, report[-20000:]
