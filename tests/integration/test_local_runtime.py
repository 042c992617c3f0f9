"""The local runtime for real: sandboxed process trees, git workspaces, PTY shells."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from envhub.errors import NotReady, ProcessExited, WorkspaceFailed
from envhub.runtime.base import Endpoint, RuntimeState
from envhub.runtime.local import LocalRuntime
from envhub.runtime.local.shell import LocalExecSession
from tests.support.components import require
from tests.support.runtime import (
    RecordingProgress,
    endpoint_get,
    git,
    is_gone,
    kill_environments,
    make_git_repo,
    make_target,
    process_tree,
    recorded_pid,
)
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

SERVE = "python3 -m http.server $PORT"


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[LocalRuntime]:
    require("bwrap")
    rt = LocalRuntime(tmp_path / "envs", sandbox="auto", health_timeout=30, allow_local_repos=True)
    yield rt
    kill_environments(rt)


def get(endpoint: Endpoint | None, path: str = "/") -> httpx.Response:
    assert endpoint is not None
    return endpoint_get(endpoint, path)


def read_until(session: LocalExecSession, pattern: str, *, timeout: float = 30) -> str:
    """Read PTY output until ``pattern`` (a regex) appears; return everything read."""
    seen = b""

    def found() -> bool:
        nonlocal seen
        with contextlib.suppress(TimeoutError):
            seen += session.read(timeout=0.5)
        return re.search(pattern, seen.decode(errors="replace")) is not None

    wait_for(
        found, timeout=timeout, interval=0, what=f"{pattern!r} in the shell", describe=lambda: repr(seen)
    )
    return seen.decode(errors="replace")


def test_apply_starts_a_sandboxed_process_serving_on_port(runtime: LocalRuntime) -> None:
    command = 'echo "pwd=$PWD env=$ENVHUB_ENVIRONMENT project=$ENVHUB_PROJECT x=$X" > where.txt; ' + SERVE
    progress = RecordingProgress()
    status = runtime.apply(make_target(1, command=command, env={"X": "42"}), progress=progress)

    assert status.state is RuntimeState.ready
    assert status.generation == 1
    assert status.endpoint is not None
    response = get(status.endpoint, "/where.txt")
    assert response.status_code == 200
    workspace = runtime.workspace_path(1)
    inside = "/workspace" if runtime.sandbox.kind == "bwrap" else str(workspace)
    assert response.text.strip() == f"pwd={inside} env=dev project=shop x=42"
    assert [(e, k) for e, k, _ in progress.events] == [
        ("begin", "workspace"),
        ("finish", "workspace"),
        ("begin", "start"),
        ("finish", "start"),
        ("begin", "health"),
        ("finish", "health"),
    ]
    state = json.loads((workspace.parent / "state.json").read_text())
    assert state["port"] == status.endpoint.port
    assert state["sandbox"] == runtime.sandbox.kind
    assert runtime.endpoint(1) == status.endpoint
    assert runtime.status(1).state is RuntimeState.ready
    assert runtime.managed_environments() == {1}


def test_bubblewrap_hides_the_host(runtime: LocalRuntime, tmp_path: Path) -> None:
    assert runtime.sandbox.kind == "bwrap", "bubblewrap must be installed and usable for these tests"
    secret = tmp_path / "host-secret.txt"
    secret.write_text("do not leak")
    command = (
        f"(test -e {secret} && echo secret=visible || echo secret=hidden; "
        "touch /usr/x 2>/dev/null && echo usr=writable || echo usr=readonly; "
        "echo pid=$$) > probe.txt; " + SERVE
    )
    status = runtime.apply(make_target(1, command=command), progress=RecordingProgress())
    assert status.endpoint is not None
    probe = get(status.endpoint, "/probe.txt").text.split()
    assert "secret=hidden" in probe
    assert "usr=readonly" in probe
    # Its own PID namespace: the shell sees a tiny pid, unlike its pid on the host.
    inside_pid = int(probe[-1].removeprefix("pid="))
    host_pids = {p.pid for p in process_tree(recorded_pid(runtime.workspace_path(1).parent))}
    assert inside_pid <= 3
    assert inside_pid not in host_pids


def test_apply_again_is_idempotent_and_a_new_generation_restarts(runtime: LocalRuntime) -> None:
    first = runtime.apply(make_target(1, command=SERVE), progress=RecordingProgress())
    env_dir = runtime.workspace_path(1).parent
    pid = recorded_pid(env_dir)

    progress = RecordingProgress()
    again = runtime.apply(make_target(1, command=SERVE), progress=progress)
    assert recorded_pid(env_dir) == pid
    assert again.endpoint == first.endpoint
    assert progress.outcome("workspace") == "skip"
    assert progress.outcome("start") == "skip"
    assert progress.outcome("health") == "finish"

    old = process_tree(pid)
    bumped = runtime.apply(make_target(1, command=SERVE, generation=2), progress=RecordingProgress())
    assert recorded_pid(env_dir) != pid
    assert bumped.generation == 2
    assert all(is_gone(p) for p in old)
    assert bumped.endpoint is not None
    assert get(bumped.endpoint).status_code == 200


def test_git_project_is_checked_out_at_the_ref(runtime: LocalRuntime, tmp_path: Path) -> None:
    repo = make_git_repo(tmp_path / "repo")
    feature = runtime.apply(
        make_target(1, command=SERVE, repo_url=repo.url, ref="feature"), progress=RecordingProgress()
    )
    assert feature.endpoint is not None
    assert get(feature.endpoint, "/VERSION").text == "feature\n"

    progress = RecordingProgress()
    main = runtime.apply(
        make_target(1, command=SERVE, repo_url=repo.url, ref="main", generation=2), progress=progress
    )
    assert main.endpoint is not None
    assert get(main.endpoint, "/VERSION").text == "two\n"
    assert repo.main_commit[:12] in next(
        d for e, k, d in progress.events if (e, k) == ("finish", "workspace")
    )

    pinned = runtime.apply(
        make_target(1, command=SERVE, repo_url=str(repo.path), ref=repo.first_commit, generation=3),
        progress=RecordingProgress(),
    )
    assert pinned.endpoint is not None
    assert get(pinned.endpoint, "/VERSION").text == "one\n"


def test_git_default_branch_and_missing_ref(runtime: LocalRuntime, tmp_path: Path) -> None:
    repo = make_git_repo(tmp_path / "repo")
    default = runtime.apply(make_target(1, command=SERVE, repo_url=repo.url), progress=RecordingProgress())
    assert default.endpoint is not None
    assert get(default.endpoint, "/VERSION").text == "two\n"

    with pytest.raises(WorkspaceFailed) as caught:
        runtime.apply(
            make_target(2, command=SERVE, repo_url=repo.url, ref="no-such-branch"),
            progress=RecordingProgress(),
        )
    assert caught.value.code == "workspace_failed"
    assert caught.value.details == {"ref": "no-such-branch"}

    with pytest.raises(WorkspaceFailed) as clone:
        runtime.apply(
            make_target(3, command=SERVE, repo_url=str(tmp_path / "missing")), progress=RecordingProgress()
        )
    assert "git fetch failed" in clone.value.message


def test_refs_outside_branches_and_tags_are_fetched_by_name(runtime: LocalRuntime, tmp_path: Path) -> None:
    repo = make_git_repo(tmp_path / "repo")
    git("update-ref", "refs/pull/7/head", repo.feature_commit, cwd=repo.path)
    git("branch", "--quiet", "-D", "feature", cwd=repo.path)  # now only refs/pull/7/head reaches it
    for environment_id, ref in enumerate(("refs/pull/7/head", repo.feature_commit), start=1):
        status = runtime.apply(
            make_target(environment_id, command=SERVE, repo_url=repo.url, ref=ref),
            progress=RecordingProgress(),
        )
        assert status.endpoint is not None
        assert get(status.endpoint, "/VERSION").text == "feature\n"


def test_a_command_that_exits_gives_process_exited_with_the_log_tail(runtime: LocalRuntime) -> None:
    command = "echo starting the app; echo 'Error: cannot find module app.js' >&2; exit 3"
    with pytest.raises(ProcessExited) as caught:
        runtime.apply(make_target(1, command=command), progress=RecordingProgress())
    error = caught.value
    assert error.code == "process_exited"
    assert not error.retryable
    assert "Error: cannot find module app.js" in error.details["log_tail"]
    assert "starting the app" in error.details["log_tail"]
    assert error.details["command"] == command
    assert runtime.status(1).state is RuntimeState.absent


def test_a_command_that_never_listens_is_not_ready_after_the_health_timeout(tmp_path: Path) -> None:
    runtime = LocalRuntime(tmp_path / "envs", health_timeout=1.5)
    try:
        progress = RecordingProgress()
        with pytest.raises(NotReady) as caught:
            runtime.apply(make_target(1, command="exec sleep 600"), progress=progress)
        assert caught.value.retryable
        assert caught.value.code == "not_ready"
        assert "no answer" in caught.value.message
        assert progress.outcome("health") == "begin"
        # The process is left running: the next attempt finds it instead of starting another.
        assert runtime.status(1).state is RuntimeState.starting
    finally:
        kill_environments(runtime)


ERROR_500_APP = """
import http.server, os
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(500 if self.path == "/health" else 200)
        self.end_headers()
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""


def test_a_health_path_answering_500_is_not_ready(tmp_path: Path) -> None:
    runtime = LocalRuntime(tmp_path / "envs", health_timeout=1.5)
    try:
        target = make_target(
            1, command='python3 -c "$APP"', env={"APP": ERROR_500_APP}, health_path="/health"
        )
        with pytest.raises(NotReady) as caught:
            runtime.apply(target, progress=RecordingProgress())
        assert "HTTP 500" in caught.value.message
        assert caught.value.details["health_path"] == "/health"
        # A 404 is an answer: the app is up, just not at that path.
        healthy = runtime.apply(
            make_target(2, command=SERVE, health_path="/missing"), progress=RecordingProgress()
        )
        assert healthy.state is RuntimeState.ready
    finally:
        kill_environments(runtime)


def test_destroy_kills_the_whole_process_tree_and_removes_the_workspace(runtime: LocalRuntime) -> None:
    command = "sleep 1000 & (sleep 1000 & sleep 1000) & " + SERVE
    runtime.apply(make_target(1, command=command), progress=RecordingProgress())
    env_dir = runtime.workspace_path(1).parent
    tree = wait_for(
        lambda: (t := process_tree(recorded_pid(env_dir))) and len(t) >= 4 and t,
        what="the sleeps to start",
    )
    assert all(p.is_running() for p in tree)

    progress = RecordingProgress()
    runtime.destroy(1, progress=progress)
    assert [p.pid for p in tree if not is_gone(p)] == []
    assert not env_dir.exists()
    assert progress.outcome("stop") == "finish"
    assert progress.outcome("cleanup") == "finish"
    assert runtime.status(1).state is RuntimeState.absent
    assert runtime.managed_environments() == set()


def test_destroy_of_a_missing_environment_is_quiet(runtime: LocalRuntime) -> None:
    progress = RecordingProgress()
    runtime.destroy(404, progress=progress)
    assert [(e, k) for e, k, _ in progress.events] == [("skip", "stop"), ("skip", "cleanup")]
    runtime.destroy(404, progress=RecordingProgress())  # and again


def test_stop_keeps_the_workspace_and_apply_brings_it_back(runtime: LocalRuntime) -> None:
    runtime.apply(make_target(1, command="echo data > kept.txt; " + SERVE), progress=RecordingProgress())
    env_dir = runtime.workspace_path(1).parent
    pid = recorded_pid(env_dir)
    runtime.stop(1)
    assert not psutil.pid_exists(pid) or is_gone(psutil.Process(pid))
    assert runtime.status(1).state is RuntimeState.absent
    assert runtime.endpoint(1) is None
    assert (runtime.workspace_path(1) / "kept.txt").read_text() == "data\n"

    progress = RecordingProgress()
    runtime.apply(make_target(1, command=SERVE), progress=progress)
    assert progress.outcome("start") == "finish"
    assert recorded_pid(env_dir) != pid


def test_logs_return_output(runtime: LocalRuntime) -> None:
    runtime.apply(
        make_target(1, command="echo hello-from-env; echo oops >&2; " + SERVE), progress=RecordingProgress()
    )
    lines = list(runtime.logs(1))
    assert any(line.startswith("--- envhub: starting generation 1") for line in lines)
    assert "hello-from-env" in lines
    assert "oops" in lines
    get(runtime.endpoint(1), "/logged")
    wait_for(lambda: any("GET /logged" in line for line in runtime.logs(1)), what="the access log line")
    assert len(list(runtime.logs(1, tail=1))) == 1
    assert list(runtime.logs(999)) == []


def test_logs_follow(runtime: LocalRuntime) -> None:
    runtime.apply(
        make_target(1, command="(for i in 1 2 3 4 5 6; do echo tick-$i; sleep 0.2; done) & " + SERVE),
        progress=RecordingProgress(),
    )
    followed = runtime.logs(1, follow=True, tail=0)
    seen = []
    for line in followed:
        seen.append(line)
        if "tick-6" in line:
            break
    assert "tick-6" in seen[-1]


def test_exec_gives_a_pty_shell_that_echoes_and_resizes(runtime: LocalRuntime) -> None:
    runtime.apply(make_target(1, command=SERVE), progress=RecordingProgress())
    session = runtime.exec(1)
    try:
        session.write(b"echo marker-$((40 + 2)) in $PWD\n")
        out = read_until(session, r"marker-42 in /")
        assert "echo marker-$((40 + 2))" in out  # the terminal echoes what was typed
        session.resize(120, 33)
        session.write(b"stty size\n")
        read_until(session, r"\b33 120\b")
        session.write(b"test -t 0 && echo stdin-is-a-tty port=$PORT\n")
        read_until(session, r"stdin-is-a-tty port=\d+")
        # The shell shares the app's network: the app answers on localhost:$PORT.
        session.write(b'python3 -c "import os, urllib.request as u; print(\'app\', '
                      b'u.urlopen(\'http://localhost:\' + os.environ[\'PORT\']).status)"\n')  # fmt: skip
        read_until(session, r"app 200")
        session.write(b"exit 5\n")
        assert wait_for(lambda: session.wait(0.5) is not None, what="the shell to exit")
        assert session.wait(0) == 5
    finally:
        session.close()


def test_exec_a_command_without_tty(runtime: LocalRuntime) -> None:
    runtime.apply(make_target(1, command=SERVE), progress=RecordingProgress())
    session = runtime.exec(1, ["/bin/sh", "-c", "echo out; echo err >&2; exit 7"], tty=False)
    try:
        output = b""
        while True:
            chunk = session.read(timeout=30)
            if not chunk:
                break
            output += chunk
        assert output.split() == [b"out", b"err"]
        assert session.wait(30) == 7
    finally:
        session.close()


def test_a_shell_has_what_the_app_was_started_with_and_envhubs_own_values(runtime: LocalRuntime) -> None:
    """As a shell in a pod has its container's variables: the project's, its secrets, the services'."""
    target = dataclasses.replace(
        make_target(1, command=SERVE, env={"X": "42"}),
        secrets={"DATABASE_URL": "postgresql://u:pw@127.0.0.1:5432/db", "ENVHUB_PROJECT": "forged"},
    )
    runtime.apply(target, progress=RecordingProgress())
    session = runtime.exec(1, ["/bin/sh", "-c", "printenv X DATABASE_URL ENVHUB_PROJECT PORT"], tty=False)
    try:
        output = b""
        while chunk := session.read(timeout=30):
            output += chunk
        state = json.loads((runtime.workspace_path(1).parent / "state.json").read_text())
        assert output.decode().split() == [
            "42",
            "postgresql://u:pw@127.0.0.1:5432/db",
            "shop",
            str(state["port"]),
        ]
        assert session.wait(30) == 0
    finally:
        session.close()
    # Nothing of it was written down: the state file holds envhub's own values only.
    assert "pw@" not in (runtime.workspace_path(1).parent / "state.json").read_text()


def test_a_shell_of_a_stopped_app_has_none_of_its_secrets(runtime: LocalRuntime) -> None:
    target = dataclasses.replace(make_target(1, command=SERVE), secrets={"API_TOKEN": "t0ken"})
    runtime.apply(target, progress=RecordingProgress())
    runtime.stop(1)
    session = runtime.exec(1, ["/bin/sh", "-c", "echo token=${API_TOKEN:-none}"], tty=False)
    try:
        output = b""
        while chunk := session.read(timeout=30):
            output += chunk
        assert output.decode().split() == ["token=none"]
    finally:
        session.close()


def test_exec_close_kills_what_the_shell_started(runtime: LocalRuntime) -> None:
    runtime.apply(make_target(1, command=SERVE), progress=RecordingProgress())
    session = runtime.exec(1)
    session.write(b"sleep 1000 & echo bg=$!\n")
    read_until(session, r"bg=\d+")
    family = process_tree(session.pid)
    assert len(family) >= 2
    session.close()
    assert [p.pid for p in family if not is_gone(p)] == []


def test_exec_before_the_workspace_exists_is_not_ready(runtime: LocalRuntime) -> None:
    with pytest.raises(NotReady):
        runtime.exec(77)


def test_environment_processes_survive_the_caller(runtime: LocalRuntime) -> None:
    # Started in their own session: the worker that ran the job exiting must not take them along.
    runtime.apply(make_target(1, command=SERVE), progress=RecordingProgress())
    pid = recorded_pid(runtime.workspace_path(1).parent)
    assert os.getsid(pid) == pid
    assert os.getsid(pid) != os.getsid(0)
