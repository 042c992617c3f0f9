"""An agent with its agent token works in the workspace over MCP only: files, commands, background processes.

Every call is in the audit trail as the agent's (its token), with paths and sizes, never contents.
"""

from __future__ import annotations

import base64
from typing import Any

from sqlmodel import col, select

from envhub.config import Settings
from envhub.models import AuditEvent, Environment
from tests.mcp.conftest import Agent
from tests.support.waiting import wait_for
from tests.terminal.harness import People, Serve
from tests.terminal.signin import agent_token


def test_an_agent_token_reads_writes_lists_and_deletes_files_over_mcp(
    serve: Serve, people: People, environment: Environment, settings: Settings
) -> None:
    assert environment.id is not None
    credential = agent_token(people.session, people.world.member, environment.id)
    agent = Agent(serve(), credential)
    eid = environment.id

    script = "import sys\nprint('sum', sum(int(a) for a in sys.argv[1:]))\n"
    assert agent.call("write_file", environment_id=eid, path="tools/add.py", content=script) == {
        "path": "tools/add.py",
        "size": len(script),
    }
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    agent.call(
        "write_file",
        environment_id=eid,
        path="img/x.png",
        content=base64.b64encode(png).decode(),
        encoding="base64",
    )

    listing = agent.call("list_files", environment_id=eid)
    assert [(e["name"], e["type"]) for e in listing["entries"]] == [("img", "dir"), ("tools", "dir")]
    text = agent.call("read_file", environment_id=eid, path="tools/add.py")
    assert (text["content"], text["encoding"]) == (script, "utf-8")
    image = agent.call("read_file", environment_id=eid, path="img/x.png")
    assert (image["encoding"], base64.b64decode(image["content"])) == ("base64", png)

    ran = agent.call("run_command", environment_id=eid, command=["python3", "tools/add.py", "2", "40"])
    assert (ran["exit_code"], ran["output"]) == (0, "sum 42\n")

    assert agent.call("delete_file", environment_id=eid, path="img/x.png") == {"path": "img/x.png"}
    assert agent.error("read_file", environment_id=eid, path="img/x.png")["code"] == "not_found"
    escape = agent.error("write_file", environment_id=eid, path="/etc/envhub-was-here", content="x")
    assert (escape["code"], escape["details"]["reason"]) == ("workspace_path_invalid", "escapes")
    assert (
        agent.error("read_file", environment_id=eid, path="../state.json")["code"] == "workspace_path_invalid"
    )
    bad = agent.error("write_file", environment_id=eid, path="a", content="not base64!", encoding="base64")
    assert bad["code"] == "validation_failed"
    assert (settings.envs_dir / str(eid) / "workspace" / "tools" / "add.py").read_text() == script

    session = people.session
    session.expire_all()
    events = session.exec(
        select(AuditEvent)
        .where(AuditEvent.target_id == eid, col(AuditEvent.action).startswith("environment.file_"))
        .order_by(col(AuditEvent.id))
    ).all()
    assert {(e.principal_type, e.token_id) for e in events} == {("agent", credential.token_id)}
    assert [(e.action, e.outcome, e.details.get("path")) for e in events][:4] == [
        ("environment.file_write", "success", "tools/add.py"),
        ("environment.file_write", "success", "img/x.png"),
        ("environment.file_list", "success", "."),
        ("environment.file_read", "success", "tools/add.py"),
    ]
    assert not any("sum(int" in str(e.details) for e in events)


def test_an_agent_token_keeps_a_process_running_reads_its_output_and_stops_it_over_mcp(
    serve: Serve, people: People, environment: Environment
) -> None:
    assert environment.id is not None
    credential = agent_token(people.session, people.world.member, environment.id)
    agent = Agent(serve(), credential)
    eid = environment.id
    agent.call("write_file", environment_id=eid, path="serve.sh", content="echo serving; exec sleep 600\n")
    started = agent.call("start_process", environment_id=eid, name="dev-server", command=["sh", "serve.sh"])
    assert (started["name"], started["state"]) == ("dev-server", "running")

    def printed() -> dict[str, Any] | None:
        answer: dict[str, Any] = agent.call(
            "read_process_output", environment_id=eid, process_id=started["id"]
        )
        return answer if answer["output"] else None

    output = wait_for(printed, timeout=60, interval=0.5, what="the process's first line")
    assert (output["output"], output["next_offset"], output["state"]) == ("serving\n", 8, "running")
    # Still running after the calls that started and read it have ended.
    listed = agent.call("list_processes", environment_id=eid)["processes"]
    assert [(p["id"], p["state"]) for p in listed] == [(started["id"], "running")]
    clash = agent.error("start_process", environment_id=eid, name="dev-server", shell="true")
    assert clash["code"] == "conflict"

    stopped = agent.call("stop_process", environment_id=eid, process_id=started["id"], grace_seconds=2)
    assert (stopped["state"], stopped["exit_code"]) == ("stopped", 143)
    assert agent.error("stop_process", environment_id=eid, process_id=999_999)["code"] == "not_found"

    session = people.session
    session.expire_all()
    events = session.exec(
        select(AuditEvent)
        .where(AuditEvent.target_id == eid, col(AuditEvent.action).startswith("environment.process_"))
        .order_by(col(AuditEvent.id))
    ).all()
    assert [(e.action, e.outcome, e.principal_type, e.token_id) for e in events] == [
        ("environment.process_start", "success", "agent", credential.token_id),
        ("environment.process_start", "failure", "agent", credential.token_id),
        ("environment.process_stop", "success", "agent", credential.token_id),
        ("environment.process_stop", "failure", "agent", credential.token_id),  # the unknown one
    ]
