"""An agent's whole loop over MCP on the local runtime, with real workers:
create → wait → URL → run commands (exit code, output, cap, timeout) → logs → events → delete.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from envhub.config import Settings
from envhub.models import Project
from envhub.runtime.local import LocalRuntime
from tests.mcp.conftest import Agent
from tests.support.runtime import kill_environments
from tests.support.workers import Workers
from tests.terminal.harness import People, Serve

pytestmark = pytest.mark.slow

COMMAND = "echo started-by-mcp; echo hello from mcp > index.html; exec python3 -m http.server $PORT"


@pytest.fixture
def workers(settings: Settings, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(settings, tmp_path)
    pool.start()
    yield pool
    pool.stop_all()
    kill_environments(LocalRuntime(settings.envs_dir))


def test_create_wait_use_and_delete_an_environment_over_mcp(
    serve: Serve, people: People, project: Project, workers: Workers
) -> None:
    agent = Agent(serve(), people.token(people.world.member, ("read", "write", "shell", "admin")))
    created = agent.call("create_environment", project_id=project.id, name="mcp-1", command=COMMAND)[
        "environment"
    ]
    assert (created["phase"], created["trigger"]) == ("pending", "agent")
    env_id = created["id"]

    waited = agent.call("wait_until_ready", environment_id=env_id, timeout_seconds=120)
    assert waited["reached"], f"{waited}\n{workers.log_tail()}"
    assert (waited["settled"], waited["environment"]["phase"]) == (True, "ready")
    assert agent.call("get_public_url", environment_id=env_id) == {
        "url": "http://mcp-1.shop.acme.localhost:3000/",
        "serving": True,
        "phase": "ready",
    }

    ran = agent.call(
        "run_command", environment_id=env_id, command=["sh", "-c", "cat index.html; echo oops >&2; exit 3"]
    )
    assert (ran["exit_code"], ran["timed_out"], ran["truncated"]) == (3, False, False)
    assert ran["output"].splitlines() == ["hello from mcp", "oops"]
    assert ran["output_bytes"] == len(ran["output"])

    capped = agent.call("run_command", environment_id=env_id, command=["yes"], max_output_bytes=1000)
    assert (capped["truncated"], capped["output_bytes"], len(capped["output"])) == (True, 1000, 1000)
    slow = agent.call("run_command", environment_id=env_id, command=["sleep", "30"], timeout_seconds=1)
    assert (slow["timed_out"], slow["exit_code"]) == (True, None)

    logs = agent.call("get_logs", environment_id=env_id, tail=100)
    assert "started-by-mcp" in logs["lines"], logs
    events = agent.call("get_events", environment_id=env_id, limit=50)
    actions = [event["action"] for event in events["events"]]
    assert {"environment.create", "environment.exec"} <= set(actions)
    status = agent.call("get_environment", environment_id=env_id)
    assert status["run"]["status"] == "succeeded"
    assert status["permissions"]["can_delete"]

    assert agent.call("delete_environment", environment_id=env_id)["environment"]["phase"] == "deleting"
    deleted = agent.call("wait_until_ready", environment_id=env_id, phase="deleted", timeout_seconds=120)
    assert deleted["reached"], f"{deleted}\n{workers.log_tail()}"
    gone = agent.error("run_command", environment_id=env_id, command=["true"])
    assert gone["code"] == "invalid_transition"
