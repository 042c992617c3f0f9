"""The local runtime's logs for real: a crashed process tree's output stays readable as the previous
instance after the next start, and times it never recorded are refused, not made up."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from envhub.errors import Unsupported
from envhub.runtime.base import RuntimeState
from envhub.runtime.local import LocalRuntime
from tests.support.components import require
from tests.support.runtime import RecordingProgress, kill_environments, make_target
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

# Serves until a file named "crash" appears in the workspace, then says why it dies and exits 3.
CRASHING = (
    "echo booted; python3 -m http.server $PORT & "
    "while [ ! -f crash ]; do sleep 0.1; done; echo 'fatal: out of widgets' >&2; kill $!; exit 3"
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


def test_times_the_local_runtime_never_recorded_are_refused(runtime: LocalRuntime) -> None:
    runtime.apply(
        make_target(1, command="echo hi; python3 -m http.server $PORT"), progress=RecordingProgress()
    )
    with pytest.raises(Unsupported, match="does not record when each line was printed"):
        runtime.logs(1, timestamps=True)
