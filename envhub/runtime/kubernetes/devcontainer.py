"""A development environment's dev container on Kubernetes: read on the worker, its commands run in its pod.

:func:`read_workspace` fetches the one commit the environment's ref names into a
scratch repository of envhub's own (:class:`~envhub.hostgit.HostGit`, as
deployment sources are fetched: nothing of the repository runs) and reads the
devcontainer.json there; ``domain/kube/workspace.py`` says what of it is honoured
and renders the workspace.

:class:`LifecycleRunner` runs ``postCreateCommand``, ``postStartCommand`` and
``postAttachCommand`` through ``pods/exec`` in the workspace's container once its
pod is ready, each hook one provisioning step showing the end of its output (the
named commands of the object form run at once). What ran is remembered on the
workspace's claim, which the workload cannot write: ``postCreateCommand`` runs
again only for a new commit (as the local runtime does), the other two once per
pod.
"""

from __future__ import annotations

import dataclasses
import re
import tempfile
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes.client import CoreV1Api
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from envhub.domain.devcontainer import (
    HOOK_STEPS,
    MAX_BYTES,
    Command,
    LifecycleStep,
    Workspace,
    command_failed,
    find,
    printable,
)
from envhub.domain.kube.workspace import (
    COMMIT_ANNOTATION,
    CREATED_ANNOTATION,
    STARTED_ANNOTATION,
    WORKSPACE,
    kubernetes_config,
)
from envhub.domain.kube.workspace_shell import with_remote_env
from envhub.domain.repos import GIT_TOKEN_SECRET, GIT_USERNAME_SECRET, RepoKind, require_allowed
from envhub.domain.specs import EnvironmentKind, EnvironmentTarget
from envhub.errors import NotReady, RepoUrlRefused, SourceFetchFailed
from envhub.hostgit import HostGit
from envhub.runtime.base import ExecSession, ProgressReporter
from envhub.runtime.kubernetes.errors import kube_call, kube_json
from envhub.runtime.kubernetes.streams import KubernetesExecSession

STEP = "devcontainer"
# Seconds a lifecycle run waits for the workspace's new pod to be listed as running.
POD_WAIT = 60.0
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_TAIL = 15
_OUTPUT_LIMIT = 256 * 1024  # bytes of one command's output kept (its end)


def read_workspace(
    target: EnvironmentTarget,
    *,
    git_config: Path | None,
    allow_local: bool,
    builder: bool = False,
    commit: str | None = None,
) -> Workspace | None:
    """The repository's dev container at the commit the environment's ref names (``commit`` when
    given: the one this generation was made from); None when the environment is not a development
    one, has no repository, or the commit has no devcontainer.json."""
    repo_url = target.spec.repo_url
    if target.kind is not EnvironmentKind.development or repo_url is None:
        return None
    try:
        source = require_allowed(repo_url, allow_local=allow_local)
    except RepoUrlRefused as exc:
        raise SourceFetchFailed(
            exc.message, hint=exc.hint, details={"reason": exc.details["reason"]}
        ) from None
    assert source is not None
    token = target.secrets.get(GIT_TOKEN_SECRET) if repo_url.startswith("https://") else None
    with tempfile.TemporaryDirectory(prefix="envhub-devcontainer-") as scratch:
        git = HostGit(
            cwd=Path(scratch),
            protocols=("https", "ssh") if source.kind is RepoKind.remote else ("file",),
            token=token or None,
            username=target.secrets.get(GIT_USERNAME_SECRET) or "x-access-token",
            config_file=git_config,
            failure=SourceFetchFailed,
        )
        git_dir = Path(scratch) / "repo.git"
        git.init(git_dir, bare=True)
        commit = commit or resolve(git, git_dir, repo_url, target.spec.ref)
        git.fetch_commit(git_dir, repo_url, commit)
        found = find(
            lambda path: git.read_file(git_dir, commit, path, limit=MAX_BYTES), name=target.spec.devcontainer
        )
    if found is None:
        return None
    path, text = found
    config = kubernetes_config(text, path=path, repo_url=repo_url, local_env=target.spec.env, builder=builder)
    if target.spec.services:  # the app is a container service: no forwarded port is on the environment's URL
        config = dataclasses.replace(config, published_port=None)
    return Workspace(config=config, commit=commit)


def resolve(git: HostGit, git_dir: Path, repo_url: str, ref: str | None) -> str:
    """The commit ``ref`` names on the remote: a full commit id, a branch, a tag, a full ref
    (``refs/pull/1/head``), or the default branch when None."""
    if ref and _COMMIT.fullmatch(ref.lower()):
        return ref.lower()
    listed: dict[str, str] = {}
    for line in git.run("ls-remote", "--end-of-options", repo_url, git_dir=git_dir).splitlines():
        sha, _, name = line.partition("\t")
        listed[name] = sha
    names = [f"refs/heads/{ref}", f"refs/tags/{ref}^{{}}", f"refs/tags/{ref}", ref] if ref else ["HEAD"]
    commit = next((listed[name] for name in names if name in listed), None)
    if commit is None:
        raise SourceFetchFailed(
            f"ref {ref or 'HEAD'!r} was not found in the repository",
            hint="Name a branch, a tag or a full commit id, and check that it was pushed.",
            details={"ref": ref or "HEAD"},
        )
    return commit


OpenExec = Callable[[list[str]], ExecSession]


@dataclass(frozen=True, slots=True)
class LifecycleRunner:
    """Runs one workspace pod's lifecycle commands through exec, reporting each hook as a step.

    ``open_exec`` starts a command (without a terminal) in the workspace
    container; ``remote_env`` is set for every command; ``claim`` holds the
    workspace claim's annotations, and ``remember`` adds to them.
    """

    open_exec: OpenExec
    remote_env: Mapping[str, str]
    claim: Mapping[str, str]
    remember: Callable[[dict[str, str]], None]
    pod_uid: str
    timeout: float

    def run(self, workspace: Workspace, progress: ProgressReporter) -> None:
        created = self.claim.get(CREATED_ANNOTATION) == workspace.commit
        started = self.claim.get(STARTED_ANNOTATION) == self.pod_uid
        for hook, key in HOOK_STEPS.items():
            step = workspace.config.step(hook)
            if step is None:
                continue
            if hook == "postCreateCommand" and created:
                progress.skip(key, f"already ran in this workspace for {workspace.commit[:12]}")
                continue
            if hook != "postCreateCommand" and started:
                progress.skip(key, "already ran in this pod")
                continue
            progress.begin(key, _describe(step))
            tails = self._run_step(step, progress)
            progress.finish(key, "\n".join(tails)[-2000:] or "done (no output)")
            if hook == "postCreateCommand":
                self.remember({CREATED_ANNOTATION: workspace.commit})
        if any(workspace.config.step(hook) for hook in ("postStartCommand", "postAttachCommand")):
            self.remember({STARTED_ANNOTATION: self.pod_uid})

    def _run_step(self, step: LifecycleStep, progress: ProgressReporter) -> list[str]:
        deadline = time.monotonic() + self.timeout
        with ThreadPoolExecutor(max_workers=len(step.commands)) as pool:
            runs = [pool.submit(self._run_command, command, deadline) for command in step.commands]
            while not all(run.done() for run in runs):
                progress.heartbeat()
                time.sleep(0.2)
            results = [run.result() for run in runs]
        tails: list[str] = []
        for command, (_code, lines) in zip(step.commands, results, strict=True):
            prefix = printable(f"[{command.name}] ") if command.name else ""
            tails += [prefix + line for line in lines[-_TAIL:]]
        for command, (code, lines) in zip(step.commands, results, strict=True):
            if code != 0:
                raise command_failed(step.hook, command, code, lines[-_TAIL:], timeout=self.timeout)
        return tails

    def _run_command(self, command: Command, deadline: float) -> tuple[int | None, list[str]]:
        session = self.open_exec(with_remote_env(self.remote_env, command.argv_to_run()))
        output = b""
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None, _lines(output)
                try:
                    chunk = session.read(timeout=min(left, 5.0))
                except TimeoutError:
                    continue
                if not chunk:
                    break
                output = (output + chunk)[-_OUTPUT_LIMIT:]
            code = session.wait(timeout=max(1.0, deadline - time.monotonic()))
        finally:
            session.close()
        return (code if code is not None else -1), _lines(output)


def _lines(output: bytes) -> list[str]:
    lines = [printable(line) for line in output.decode("utf-8", "replace").splitlines()]
    while lines and not lines[-1].strip():
        lines.pop()
    return lines[-200:]


def _describe(step: LifecycleStep) -> str:
    if len(step.commands) == 1:
        return printable(step.commands[0].describe())[:500]
    return printable("in parallel: " + ", ".join(command.name for command in step.commands))


def workspace_pod(pods: list[dict[str, Any]], commit: str) -> dict[str, Any]:
    """The workspace's running pod of ``commit`` (the one the rollout waited for)."""
    for pod in sorted(pods, key=lambda p: str(p["metadata"]["name"])):
        meta = pod["metadata"]
        labels = meta.get("labels") or {}
        if (
            labels.get("app.kubernetes.io/name") == WORKSPACE
            and not meta.get("deletionTimestamp")
            and (meta.get("annotations") or {}).get(COMMIT_ANNOTATION) == commit
            and (pod.get("status") or {}).get("phase") == "Running"
        ):
            return pod
    raise NotReady("the workspace has no running pod yet")


def run_lifecycle(
    core: CoreV1Api,
    *,
    namespace: str,
    workspace: Workspace,
    pods: Callable[[], list[dict[str, Any]]],
    progress: ProgressReporter,
    protocols: tuple[str, ...],
    timeout: float,
) -> None:
    """The workspace's lifecycle commands in its ready pod (one of ``pods()``), as :class:`LifecycleRunner`
    runs them; what ran is recorded on the workspace's claim.

    The pod is listed again while only a terminating one answers (a wake right after a sleep: the
    Deployment counts its new pod before the old one is gone), for at most ``POD_WAIT`` seconds.
    """
    if not workspace.config.lifecycle:
        return
    found = Retrying(
        retry=retry_if_exception_type(NotReady),
        stop=stop_after_delay(min(POD_WAIT, timeout)),
        wait=wait_fixed(0.25),
        reraise=True,
    )
    pod = found(lambda: workspace_pod(pods(), workspace.commit))
    name = str(pod["metadata"]["name"])
    claim = kube_json(
        "reading the workspace's claim", core.read_namespaced_persistent_volume_claim, WORKSPACE, namespace
    )

    def remember(values: dict[str, str]) -> None:
        kube_call(
            "recording the workspace's lifecycle",
            core.patch_namespaced_persistent_volume_claim,
            WORKSPACE,
            namespace,
            {"metadata": {"annotations": values}},
        )

    def open_exec(argv: list[str]) -> ExecSession:
        return KubernetesExecSession(
            core,
            namespace=namespace,
            pod=name,
            container=WORKSPACE,
            command=argv,
            tty=False,
            protocols=protocols,
        )

    LifecycleRunner(
        open_exec=open_exec,
        remote_env=workspace.config.remote_env,
        claim={str(k): str(v) for k, v in (claim["metadata"].get("annotations") or {}).items()},
        remember=remember,
        pod_uid=str(pod["metadata"]["uid"]),
        timeout=timeout,
    ).run(workspace, progress)
