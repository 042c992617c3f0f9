"""The local runtime's logs and inspection for real: a crashed process tree's output stays readable
as the previous instance after the next start, which counts as a restart with the exit status or
signal that ended the tree before, each line has the time it was printed (a time never
recorded is refused, not made up), and its variables are shown with secret values kept on the server."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from envhub.domain import logs as rules
from envhub.errors import Unsupported
from envhub.runtime.base import RuntimeState
from envhub.runtime.local import LocalRuntime
from envhub.services.inspection import workload_rows
from tests.support.components import require
from tests.support.runtime import RecordingProgress, kill_environments, make_target
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

# Serves until a file named "crash" appears in the workspace, then says why it dies and exits 3
# (or, when the file says "kill", is killed by SIGKILL).
CRASHING = (
    "echo booted; python3 -m http.server $PORT & "
    "while [ ! -f crash ]; do sleep 0.1; done; echo 'fatal: out of widgets' >&2; kill $!; "
    '[ "$(cat crash)" = kill ] && kill -KILL $$; exit 3'
)


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[LocalRuntime]:
    require("bwrap")
    rt = LocalRuntime(tmp_path / "envs", sandbox="auto", health_timeout=30, allow_local_repos=True)
    yield rt
    kill_environments(rt)


def test_a_crashed_processs_output_is_the_previous_instance_after_the_restart(runtime: LocalRuntime) -> None:
    target = make_target(1, command=CRASHING)
    runtime.apply(target, progress=RecordingProgress())
    assert list(runtime.logs(1, previous=True)) == []  # nothing ran before it

    (runtime.workspace_path(1) / "crash").write_text("now")
    wait_for(lambda: runtime.status(1).state is RuntimeState.absent, what="the crash")
    assert "fatal: out of widgets" in list(runtime.logs(1))
    [ended] = runtime.inspect(1).pods[0].containers
    assert (ended.state, ended.reason, ended.restarts) == ("terminated", "Error (code 3)", 0)

    (runtime.workspace_path(1) / "crash").unlink()
    runtime.apply(target, progress=RecordingProgress())  # what the reconciler does on the crash
    previous = list(runtime.logs(1, previous=True, tail=50))
    current = list(runtime.logs(1, tail=50))
    assert "fatal: out of widgets" in previous
    assert previous[0].startswith("--- envhub: starting generation 1")
    assert "fatal: out of widgets" not in current
    assert current[0].startswith("--- envhub: starting generation 1")
    assert "booted" in current
    # A previous instance prints nothing more: following it ends after its last line.
    assert list(runtime.logs(1, previous=True, follow=True, tail=3)) == previous[-3:]

    # Started again after it ended by itself: a restart, with how it ended, as a kubelet counts one.
    [pod] = runtime.inspect(1).pods
    [main] = pod.containers
    assert (main.state, main.restarts) == ("running", 1)
    assert main.last_termination is not None
    assert (main.last_termination.exit_code, main.last_termination.reason) == (3, "Error")
    assert main.last_termination.signal is None
    [row] = workload_rows((pod,))
    assert row["restarts"] == "1"
    assert row["last_exit"].startswith("Error (exit 3)")

    # Killed by a signal this time: its name is the reason, 128 + its number the exit status.
    (runtime.workspace_path(1) / "crash").write_text("kill")
    wait_for(lambda: runtime.status(1).state is RuntimeState.absent, what="the second crash")
    (runtime.workspace_path(1) / "crash").unlink()
    runtime.apply(target, progress=RecordingProgress())
    [pod] = runtime.inspect(1).pods
    [main] = pod.containers
    assert main.restarts == 2
    assert main.last_termination is not None
    assert (main.last_termination.reason, main.last_termination.exit_code) == ("SIGKILL", 137)
    assert main.last_termination.signal == 9
    assert workload_rows((pod,))[0]["last_exit"].startswith("SIGKILL (exit 137)")

    # envhub stopping it (sleep, a redeploy) is no restart: the next start counts from 0, as a new pod.
    runtime.sleep(1, progress=RecordingProgress())
    assert runtime.inspect(1).pods[0].containers[0].reason == "stopped by envhub"
    runtime.wake(target, progress=RecordingProgress())
    [main] = runtime.inspect(1).pods[0].containers
    assert (main.restarts, main.last_termination) == (0, None)


def test_each_line_has_the_time_the_supervisor_noted_for_it(runtime: LocalRuntime) -> None:
    command = "echo early; sleep 2.5; echo late; python3 -m http.server $PORT"
    runtime.apply(make_target(1, command=command), progress=RecordingProgress())
    wait_for(lambda: "late" in list(runtime.logs(1)), what="the late line")
    stamped = [rules.split_stamp(line) for line in runtime.logs(1, timestamps=True)]
    assert all(moment is not None for moment, _ in stamped)  # every line, envhub's own included
    times = {text: moment for moment, text in stamped}
    early, late = times["early"], times["late"]
    assert early is not None
    assert late is not None
    assert late - early > timedelta(seconds=1)  # printed 2.5 s apart; noted to the second
    assert stamped[0][1].startswith("--- envhub: starting generation 1")

    # A tree that started before envhub noted times says so instead of making times up.
    (runtime.workspace_path(1).parent / "output.times").unlink()
    with pytest.raises(Unsupported, match="no recorded times"):
        runtime.logs(1, timestamps=True)


def test_the_process_is_inspected_with_its_variables_and_secret_values_stay_on_the_server(
    runtime: LocalRuntime,
) -> None:
    target = dataclasses.replace(
        make_target(
            1,
            command="python3 -m http.server $PORT",
            env={
                "MODE": "debug",
                "API_TOKEN": "tok-live-123",
                "DATABASE_URL": "postgres://app:hunter2@db/app",
            },
        ),
        secrets={"STRIPE": "sk_live_abc"},
    )
    runtime.apply(target, progress=RecordingProgress())
    [pod] = runtime.inspect(1).pods
    [main] = pod.containers
    assert main.image == "python3 -m http.server $PORT"
    assert [probe.kind for probe in main.probes] == ["readiness"]
    [row] = workload_rows((pod,))
    env = {variable["name"]: variable for variable in row["env"]}
    assert (env["MODE"]["value"], env["MODE"]["redacted"]) == ("debug", False)
    assert (env["API_TOKEN"]["redacted"], env["STRIPE"]["source"], env["STRIPE"]["redacted"]) == (
        True,
        "secret",
        True,
    )
    assert env["DATABASE_URL"]["value"] == "postgres://app:••••••@db/app"
    assert env["ENVHUB_ENVIRONMENT"]["value"] == "dev"
    for secret in ("tok-live-123", "hunter2", "sk_live_abc"):
        assert secret not in str(row)
        assert secret not in (runtime.workspace_path(1).parent / "state.json").read_text()
