"""Attack: a project variable makes a program on the host load the attacker's code.

``LD_PRELOAD`` (and its kin) make the dynamic loader run a library's code in
every program started with them. If a project's variables reached envhub's
launchers (bwrap, unshare, nsenter, slirp4netns, the supervisor), that code
would run on the host, outside every sandbox.

The library built here writes a marker file, named by its pid and holding
its program's path, from its constructor: into a host folder, and into the
workspace's ``markers/`` folder. The host folder does not exist inside the
sandbox, so a marker there can only come from a process on the host. The
variable names it twice (the host path and the workspace path) so it loads
wherever it can.

* Validation refuses the names with ``env_name_forbidden``, naming the variable.
* Forced past validation (a target built without it), a real environment
  starts; the environment's own processes do load the library (markers in
  the workspace: the variable was delivered, inside), and no process on the
  host ever does (the host folder stays empty), although the supervisor,
  bubblewrap and slirp4netns all ran.
* The control: the same library and variable given to a launcher directly
  do write a host marker, so an empty folder means something.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlmodel import Session

from envhub.domain.specs import EnvironmentSpec, EnvironmentTarget, parse_spec
from envhub.errors import EnvNameForbidden, NotReady, ValidationFailed
from envhub.models import Project
from envhub.runtime.local import LocalRuntime
from envhub.runtime.local.sandbox import LAUNCHER_ENV
from envhub.services import secrets
from tests.support.components import require
from tests.support.runtime import RecordingProgress, kill_environments, process_tree, recorded_pid
from tests.support.waiting import wait_for
from tests.support.world import World

pytestmark = pytest.mark.slow

MARKER_LIBRARY = r"""
#include <limits.h>
#include <stdio.h>
#include <unistd.h>

__attribute__((constructor)) static void mark(void) {
    char exe[PATH_MAX] = {0};
    readlink("/proc/self/exe", exe, sizeof exe - 1);
    const char *folders[] = {HOST_MARKERS, "/workspace/markers"};
    for (int i = 0; i < 2; i++) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%d", folders[i], (int)getpid());
        FILE *out = fopen(path, "w");
        if (out) {
            fputs(exe, out);
            fclose(out);
        }
    }
}
"""


@dataclass
class Library:
    host_path: Path  # where the host has it
    markers: Path  # where host processes that load it leave their marks
    preload: str  # LD_PRELOAD naming it on the host and in the workspace


@pytest.fixture
def library(tmp_path: Path) -> Library:
    gcc = str(require("gcc"))
    markers = tmp_path / "host-markers"
    markers.mkdir()
    source = tmp_path / "marker.c"
    source.write_text(MARKER_LIBRARY)
    built = tmp_path / "marker.so"
    subprocess.run(
        [gcc, "-shared", "-fPIC", "-o", str(built), str(source), f'-DHOST_MARKERS="{markers}"'],
        check=True,
        capture_output=True,
    )
    return Library(host_path=built, markers=markers, preload=f"{built} /workspace/marker.so")


def _forced_target(environment_id: int, library: Library, *, via: str) -> EnvironmentTarget:
    """A target carrying LD_PRELOAD as if validation had let it through (the spec is not validated)."""
    variables = {"LD_PRELOAD": library.preload}
    spec = EnvironmentSpec.model_construct(
        command="mkdir -p markers; exec python3 -m http.server $PORT",
        env=variables if via == "env" else {},
    )
    return EnvironmentTarget(
        id=environment_id,
        name="dev",
        project="shop",
        team="acme",
        generation=1,
        spec=spec,
        secrets=variables if via == "secret" else {},
    )


@pytest.mark.parametrize(
    "name", ["LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "GCONV_PATH", "BASH_ENV", "ENV"]
)
def test_validation_refuses_loader_and_shell_variables_naming_them(name: str) -> None:
    with pytest.raises(EnvNameForbidden) as refused:
        parse_spec({"env": {"APP_MODE": "dev", name: "/tmp/x"}})
    assert refused.value.code == "env_name_forbidden"
    assert refused.value.details == {"field": "env", "name": name}
    assert name in refused.value.message
    with pytest.raises(EnvNameForbidden):
        parse_spec({"services": [{"name": "web", "image": "nginx", "env": {name: "x"}}]})


def test_a_project_secret_named_ld_preload_is_refused(
    session: Session, world: World, project: Project
) -> None:
    with pytest.raises(EnvNameForbidden) as refused:
        secrets.set_secret(
            session=session, actor=world.owner, project_id=project.id, name="LD_PRELOAD", value="/x.so"
        )
    assert refused.value.details == {"field": "name", "name": "LD_PRELOAD"}


def test_language_variables_stay_allowed() -> None:
    spec = parse_spec({"env": {"PYTHONPATH": "src", "NODE_OPTIONS": "--max-old-space-size=512"}})
    assert set(spec.env) == {"PYTHONPATH", "NODE_OPTIONS"}


@pytest.mark.parametrize("via", ["env", "secret"])
def test_forced_past_validation_it_never_loads_on_the_host(
    library: Library, tmp_path: Path, via: str
) -> None:
    runtime = LocalRuntime(tmp_path / "envs", health_timeout=30)
    workspace = runtime.workspace_path(1)
    workspace.mkdir(parents=True)
    shutil.copy(library.host_path, workspace / "marker.so")
    (workspace / "markers").mkdir()
    try:
        status = runtime.apply(_forced_target(1, library, via=via), progress=RecordingProgress())
        assert status.endpoint is not None
        host_side = {Path(p.exe()).name for p in process_tree(recorded_pid(workspace.parent))}
        assert {"bwrap", "slirp4netns"} <= host_side, host_side  # the launchers did run

        inside = wait_for(lambda: list((workspace / "markers").iterdir()), what="markers from inside")
        assert any("python3" in marker.read_text() for marker in inside)  # delivered, inside only
        shell = runtime.exec(1, ["/bin/sh", "-c", "true"], tty=False)  # a terminal's launchers too
        assert shell.wait(30) == 0
        shell.close()
        assert list(library.markers.iterdir()) == [], "a process on the host loaded the library"
    finally:
        kill_environments(runtime)


def test_unshare_and_none_sandboxes_keep_it_from_their_launchers_too(
    library: Library, tmp_path: Path
) -> None:
    # For trusted code the app shares the host's files, so it loads the library
    # by its host path; the launchers (unshare, the supervisor) must not.
    launchers = {os.path.realpath(p) for p in (shutil.which("unshare") or "", sys.executable)}
    for kind in ("unshare", "none"):
        runtime = LocalRuntime(tmp_path / kind, sandbox=kind, health_timeout=1.0)
        target = _forced_target(1, library, via="env")
        target = EnvironmentTarget(
            id=1,
            name="dev",
            project="shop",
            team="acme",
            generation=1,
            spec=EnvironmentSpec.model_construct(command="exec sleep 600", env=target.spec.env),
        )
        try:
            with pytest.raises(NotReady):  # sleep never answers; the tree runs on
                runtime.apply(target, progress=RecordingProgress())
            marks = wait_for(lambda: list(library.markers.iterdir()), what=f"the app's marker ({kind})")
            programs = {os.path.realpath(marker.read_text()) for marker in marks}
            assert programs & launchers == set(), f"{kind}: a launcher loaded the library: {programs}"
            assert os.path.realpath(shutil.which("sleep") or "") in programs
        finally:
            kill_environments(runtime)
            for marker in library.markers.iterdir():
                marker.unlink()


def test_control_the_library_does_load_when_a_launcher_is_given_the_variable(library: Library) -> None:
    bwrap = str(require("bwrap"))
    subprocess.run(
        [bwrap, "--version"], env={**LAUNCHER_ENV, "LD_PRELOAD": str(library.host_path)}, check=True
    )
    [marker] = list(library.markers.iterdir())
    assert os.path.realpath(marker.read_text()) == os.path.realpath(bwrap)


def test_a_nul_in_a_value_cannot_smuggle_options_to_bubblewrap(tmp_path: Path) -> None:
    # bubblewrap reads its options NUL-separated: a NUL in a value would end the
    # --setenv and start an option of the attacker's (here: the host's / writable).
    smuggled = "x\0--bind\0/\0/host"
    with pytest.raises(ValidationFailed) as refused:
        parse_spec({"env": {"GREETING": smuggled}})
    assert refused.value.details == {"field": "env", "name": "GREETING"}

    runtime = LocalRuntime(tmp_path / "envs", health_timeout=30)
    spec = EnvironmentSpec.model_construct(
        command="ls /host > seen.txt; exec sleep 600", env={"GREETING": smuggled}
    )
    target = EnvironmentTarget(id=1, name="dev", project="shop", team="acme", generation=1, spec=spec)
    try:
        with pytest.raises(ValidationFailed):
            runtime.apply(target, progress=RecordingProgress())
        assert not (runtime.workspace_path(1) / "seen.txt").exists()
    finally:
        kill_environments(runtime)
