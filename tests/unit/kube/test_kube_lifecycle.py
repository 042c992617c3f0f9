"""A workspace's lifecycle commands as the Kubernetes runtime runs them (runtime/kubernetes/devcontainer.py).

The exec port is faked (:class:`~envhub.runtime.base.ExecSession`): each command
runs as a local process, as the container's shell would run it. The real path
through the apiserver is tests/kube/test_devcontainer.py.
"""

from __future__ import annotations

import dataclasses
import subprocess
import time
from typing import Any

import pytest

from envhub.domain.devcontainer import Workspace
from envhub.domain.kube.workspace import CREATED_ANNOTATION, STARTED_ANNOTATION, kubernetes_config
from envhub.domain.specs import EnvironmentKind
from envhub.errors import LifecycleCommandFailed, SourceFetchFailed
from envhub.hostgit import HostGit
from envhub.runtime.kubernetes.devcontainer import LifecycleRunner, read_workspace, resolve, workspace_pod
from tests.support.repos import WorkRepo
from tests.support.runtime import RecordingProgress, make_target

COMMIT = "89abcdef0123456789abcdef0123456789abcdef"


class LocalSession:
    """A command run here, read as an exec stream (stdout and stderr together)."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def read(self, max_bytes: int = 65536, timeout: float | None = None) -> bytes:
        assert self.proc.stdout is not None
        return self.proc.stdout.read1(max_bytes)

    def write(self, data: bytes) -> None:
        raise AssertionError("lifecycle commands get no input")

    def resize(self, columns: int, rows: int) -> None:
        raise AssertionError("lifecycle commands have no terminal")

    def wait(self, timeout: float | None = None) -> int | None:
        return self.proc.wait(timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def workspace(hooks: str) -> Workspace:
    text = f'{{"image": "ghcr.io/devcontainers/base:bookworm", "remoteEnv": {{"WHO": "dev"}}, {hooks}}}'
    config = kubernetes_config(text, path=".devcontainer.json", repo_url="https://x.test/shop", local_env={})
    return Workspace(config=config, commit=COMMIT)


def runner(
    claim: dict[str, str], remembered: list[dict[str, str]], opened: list[list[str]]
) -> LifecycleRunner:
    def open_exec(argv: list[str]) -> LocalSession:
        opened.append(argv)
        return LocalSession(argv)

    return LifecycleRunner(
        open_exec=open_exec, remote_env={"WHO": "dev"}, claim=claim, remember=remembered.append, pod_uid="u1",
        timeout=10,
    )  # fmt: skip


def test_every_form_runs_with_remote_env_and_is_remembered() -> None:
    found = workspace(
        '"postCreateCommand": "echo created by $WHO", '
        '"postStartCommand": ["printf", "%s\\\\n", "started"], '
        '"postAttachCommand": {"one": "sleep 0.3; echo one", "two": "sleep 0.3; echo two"}'
    )
    progress, remembered, opened = RecordingProgress(), [], []
    begun = time.monotonic()
    runner({}, remembered, opened).run(found, progress)
    assert time.monotonic() - begun < 2.5  # the object form's commands ran at once
    finished = {key: detail for event, key, detail in progress.events if event == "finish"}
    assert finished == {
        "post_create": "created by dev",
        "post_start": "started",
        "post_attach": "[one] one\n[two] two",
    }
    assert remembered == [{CREATED_ANNOTATION: COMMIT}, {STARTED_ANNOTATION: "u1"}]
    assert all(argv[:2] == ["/bin/sh", "-c"] and argv[3] == "envhub" for argv in opened)


def test_what_ran_is_not_run_again() -> None:
    found = workspace('"postCreateCommand": "echo created", "postStartCommand": "echo started"')
    progress, remembered, opened = RecordingProgress(), [], []
    claim = {CREATED_ANNOTATION: COMMIT, STARTED_ANNOTATION: "u1"}
    runner(claim, remembered, opened).run(found, progress)
    assert opened == []
    assert progress.outcome("post_create") == "skip"
    assert progress.outcome("post_start") == "skip"
    # A new commit runs postCreateCommand again; a new pod, postStartCommand.
    runner({CREATED_ANNOTATION: "0" * 40, STARTED_ANNOTATION: "u0"}, remembered, opened).run(found, progress)
    assert len(opened) == 2


def test_a_failing_command_fails_its_step_with_its_output() -> None:
    found = workspace('"postCreateCommand": "echo half done; exit 3"')
    remembered: list[dict[str, str]] = []
    with pytest.raises(LifecycleCommandFailed) as failed:
        runner({}, remembered, []).run(found, RecordingProgress())
    assert failed.value.details["exit_code"] == 3
    assert failed.value.details["log_tail"] == "half done"
    assert remembered == []  # it runs again next time


def test_the_workspace_pod_is_the_running_one_of_the_commit() -> None:
    def pod(name: str, commit: str, phase: str, **meta: Any) -> dict[str, Any]:
        return {
            "metadata": {
                "name": name,
                "labels": {"app.kubernetes.io/name": "workspace"},
                "annotations": {"envhub.dev/workspace-commit": commit},
                **meta,
            },
            "status": {"phase": phase},
        }

    pods = [
        pod("a-old", "0" * 40, "Running"),
        pod("b-going", COMMIT, "Running", deletionTimestamp="2026-01-01T00:00:00Z"),
        pod("c-new", COMMIT, "Running"),
    ]
    assert workspace_pod(pods, COMMIT)["metadata"]["name"] == "c-new"


def test_refs_resolve_on_the_remote(tmp_path: Any) -> None:

    repo = WorkRepo(tmp_path / "repo")
    first = repo.commit("one", {"a": "1"})
    repo.git("tag", "-a", "v1", "-m", "v1")
    repo.git("checkout", "--quiet", "-b", "feature")
    second = repo.commit("two", {"a": "2"})
    repo.git("checkout", "--quiet", "main")
    git = HostGit(cwd=tmp_path, protocols=("file",), failure=SourceFetchFailed)
    git_dir = tmp_path / "scratch.git"
    git.init(git_dir, bare=True)
    url = f"file://{repo.path}"
    assert resolve(git, git_dir, url, None) == first
    assert resolve(git, git_dir, url, "feature") == second
    assert resolve(git, git_dir, url, "v1") == first  # the tag's commit, not the tag object
    assert resolve(git, git_dir, url, second.upper()) == second
    with pytest.raises(SourceFetchFailed):
        resolve(git, git_dir, url, "nope")


def test_the_worker_reads_the_devcontainer_of_the_environment_s_commit(tmp_path: Any) -> None:
    repo = WorkRepo(tmp_path / "repo")
    text = '{"image": "ghcr.io/devcontainers/base:bookworm", "forwardPorts": [3000, 9229]}'
    first = repo.commit("one", {".devcontainer.json": text})
    url = f"file://{repo.path}"
    found = read_workspace(make_target(1, repo_url=url), git_config=None, allow_local=True)
    assert found is not None
    assert found.commit == first
    assert found.config.path == ".devcontainer.json"
    assert found.config.published_port == 3000
    # Beside a container service the app is that service's: no forwarded port is on the environment's URL.
    web = {"name": "web", "image": "shop:1", "ports": [8080], "public": True}
    beside = read_workspace(make_target(1, repo_url=url, services=[web]), git_config=None, allow_local=True)
    assert beside is not None
    assert beside.config.published_port is None
    assert beside.config.ports_relayed
    # The commit named for this generation is read, not the branch's newest.
    repo.commit("two", {".devcontainer.json": text.replace("3000", "4000")})
    pinned = read_workspace(make_target(1, repo_url=url), git_config=None, allow_local=True, commit=first)
    assert pinned is not None
    assert pinned.config.published_port == 3000
    deployment = dataclasses.replace(make_target(1, repo_url=url), kind=EnvironmentKind.deployment)
    assert read_workspace(deployment, git_config=None, allow_local=True) is None
    repo.git("rm", "--quiet", ".devcontainer.json")
    repo.commit("none")
    assert read_workspace(make_target(1, repo_url=url), git_config=None, allow_local=True) is None
    with pytest.raises(SourceFetchFailed):  # a repository on this machine only where the operator allows it
        read_workspace(make_target(1, repo_url=url), git_config=None, allow_local=False)
