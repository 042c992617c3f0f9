"""``envhub proc start|ls|logs|stop`` and the REST routes under them (``/api/v1/.../processes``)."""

from __future__ import annotations

import json

import httpx

from envhub.models import Environment
from tests.cli.conftest import Cli
from tests.cli.test_exec import token_env
from tests.support.waiting import wait_for
from tests.terminal.harness import People, Serve


def test_proc_start_ls_logs_and_stop(
    cli: Cli, serve: Serve, people: People, environment: Environment
) -> None:
    env = token_env(people, serve())
    eid = str(environment.id)
    started = cli(
        "proc", "start", eid, "watcher", "-o", "json", "--", "sh", "-c", "echo watching; sleep 600", **env
    )
    assert started.returncode == 0, started.stderr
    row = json.loads(started.stdout)
    assert (row["name"], row["state"]) == ("watcher", "running")
    pid = str(row["id"])

    wait_for(
        lambda: cli("proc", "logs", eid, pid, **env).stdout == "watching\n",
        timeout=60,
        interval=0.5,
        what="the watcher's output through envhub proc logs",
    )
    listed = cli("proc", "ls", eid, "-o", "json", **env)
    assert [(p["id"], p["state"]) for p in json.loads(listed.stdout)["processes"]] == [(row["id"], "running")]
    assert "watcher" in cli("proc", "ls", eid, **env).stdout

    stopped = cli("proc", "stop", eid, pid, "--grace", "1", **env)
    assert stopped.returncode == 0, stopped.stderr
    assert f"{pid} watcher: stopped (exit code 143)" in stopped.stdout
    # --follow returns once the process has ended, after printing everything.
    assert cli("proc", "logs", eid, pid, "--follow", **env).stdout.startswith("watching\n")
    both = cli("proc", "start", eid, "x", "--shell", "true", "--", "true", **env)
    assert both.returncode == 7


def test_the_process_routes_refuse_bad_input_and_need_the_shell_right(
    serve: Serve, people: People, environment: Environment
) -> None:
    base = serve()
    url = f"{base}/api/v1/environments/{environment.id}/processes"
    headers = people.token(people.world.member, ("read", "shell")).headers
    for body in ({"name": "x"}, {"name": "No", "command": ["id"]}, {"name": "x", "command": []}):
        answer = httpx.post(url, json=body, headers=headers)
        assert answer.status_code == 422, answer.text
        assert answer.json()["code"] == "validation_failed"
    read_only = people.token(people.world.member, ("read",)).headers
    assert httpx.post(url, json={"name": "x", "shell": "true"}, headers=read_only).status_code == 403
    assert httpx.get(url, headers=read_only).status_code == 403
    assert httpx.get(f"{url}/999999/output", headers=headers).status_code == 404
