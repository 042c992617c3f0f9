"""Attack surface: an environment silently runs with weaker isolation than the operator thinks.

Without a working bubblewrap, envhub used to fall back to ``unshare`` (the
whole host filesystem visible) or to no sandbox at all, with a log line.
Now bubblewrap is the only sandbox envhub picks by itself: without it, or
with one that does not work, starting an environment fails with
``sandbox_unavailable`` and a hint. The weaker sandboxes run only when an
operator names them, and the environment then carries a ``weak_sandbox``
condition that its page shows.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from envhub.domain.phases import Phase
from envhub.errors import SandboxUnavailable
from envhub.jobs.environments import converge_environment
from envhub.models import Environment, Project
from envhub.runtime.local import LocalRuntime
from envhub.services.environment_views import environment_detail
from envhub.services.environments import create_environment
from tests.support.db import fetch
from tests.support.fakes import FakeQueue
from tests.support.runtime import RecordingProgress, kill_environments, make_target
from tests.support.world import World

pytestmark = pytest.mark.slow

SERVE = "exec python3 -m http.server $PORT"


def _path_with(tmp_path: Path, tools: dict[str, str]) -> str:
    """A PATH holding only ``tools`` (name -> symlink target, or a script body starting with #!)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for name, what in tools.items():
        if what.startswith("#!"):
            (folder / name).write_text(what)
            (folder / name).chmod(0o755)
        else:
            (folder / name).symlink_to(what)
    return str(folder)


@pytest.mark.parametrize(
    ("tools", "said"),
    [
        ({}, "bwrap is not installed on this machine"),
        ({"bwrap": "#!/bin/sh\necho 'bwrap: No permissions to creating new namespace' >&2\nexit 1\n"},
         "No permissions to creating new namespace"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("preference", ["auto", "bwrap"])  # bubblewrap named explicitly: no fallback either
def test_without_a_working_bubblewrap_environments_fail_with_a_code_and_a_hint(
    tools: dict[str, str], said: str, preference: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", _path_with(tmp_path, tools))
    runtime = LocalRuntime(tmp_path / "envs", health_timeout=30, sandbox=preference)
    progress = RecordingProgress()
    with pytest.raises(SandboxUnavailable) as refused:
        runtime.apply(make_target(1, command=SERVE), progress=progress)
    assert refused.value.code == "sandbox_unavailable"
    assert not refused.value.retryable
    assert said in refused.value.message
    assert "bubblewrap" in refused.value.hint
    assert "ENVHUB_LOCAL_SANDBOX" in refused.value.hint
    assert runtime.managed_environments() == {1}
    assert not (runtime.workspace_path(1).parent / "state.json").exists()  # nothing was started


@pytest.mark.parametrize(("kind", "words"), [("unshare", "unshare sandbox"), ("none", "no sandbox")])
def test_a_weaker_sandbox_runs_only_by_name_and_says_so(kind: str, words: str, tmp_path: Path) -> None:
    assert shutil.which("unshare"), "util-linux's unshare is needed for this test"
    runtime = LocalRuntime(tmp_path / "envs", sandbox=kind, health_timeout=30)
    progress = RecordingProgress()
    try:
        status = runtime.apply(make_target(1, command=SERVE), progress=progress)
        start = next(detail for event, key, detail in progress.events if (event, key) == ("finish", "start"))
        assert f"{words}, the host's network" in start
        assert status.details["condition"] == "weak_sandbox"
        assert runtime.status(1).details["condition"] == "weak_sandbox"
        assert f"{words}" in runtime.inspect(1).pods[0].name
    finally:
        kill_environments(runtime)


def test_the_environment_page_carries_the_code_and_the_next_step(
    session: Session,
    world: World,
    project: Project,
    db: Engine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", _path_with(tmp_path, {}))  # no bubblewrap on this machine
    queue = FakeQueue()
    assert project.id is not None
    created = create_environment(
        session=session, actor=world.member, queue=queue, project_id=project.id, name="pr-1", overrides={}
    )
    job = queue.jobs[-1]
    assert converge_environment(*job.args) == "failed: sandbox_unavailable"  # type: ignore[arg-type]
    assert created.id is not None
    environment = fetch(db, Environment, created.id)
    assert environment is not None
    assert (environment.phase, environment.error_code) == (Phase.failed, "sandbox_unavailable")
    detail = environment_detail(environment)
    assert "bwrap is not installed" in detail["message"]
    assert "apt-get install bubblewrap" in detail["advice"]
