"""What the Namespace remembers of a development environment's workspace, as its annotations.

The last apply writes them with the Namespace (:func:`namespace_annotations`),
which nothing in the environment can change (its RBAC is namespaced). They are
read where the repository is not: a re-apply of the same generation keeps the
commit (:func:`pinned_commit`), a terminal or a command gets ``remoteEnv``
(:func:`read_remote_env`), and a wake runs the lifecycle commands of the commit
the workspace runs (:func:`kept_workspace`) without fetching anything.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from envhub.domain.devcontainer import HOOK_STEPS, Command, Devcontainer, LifecycleStep, Workspace
from envhub.domain.kube.workspace import COMMIT_ANNOTATION
from envhub.domain.specs import EnvironmentTarget

# ``<generation>:<commit>`` (COMMIT_ANNOTATION); remoteEnv (JSON); the devcontainer.json's path and
# lifecycle commands (JSON: {"path": ..., "steps": [{"hook": ..., "commands": [...]}]}).
REMOTE_ENV_ANNOTATION = "envhub.dev/remote-env"
LIFECYCLE_ANNOTATION = "envhub.dev/lifecycle"
_COMMIT = re.compile(r"[0-9a-f]{40}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def namespace_annotations(target: EnvironmentTarget) -> dict[str, str]:
    """The Namespace's annotations for the workspace: the commit it was made from for the target's
    generation (a re-apply of that generation keeps it, even if the ref moved), its remoteEnv and its
    lifecycle commands."""
    workspace = target.workspace
    if workspace is None:
        return {}
    config = workspace.config
    annotations = {COMMIT_ANNOTATION: f"{target.generation}:{workspace.commit}"}
    if config.remote_env:
        annotations[REMOTE_ENV_ANNOTATION] = json.dumps(dict(config.remote_env), sort_keys=True)
    if config.lifecycle:
        steps = [
            {"hook": step.hook, "commands": [_command(command) for command in step.commands]}
            for step in config.lifecycle
        ]
        annotations[LIFECYCLE_ANNOTATION] = json.dumps({"path": config.path, "steps": steps}, sort_keys=True)
    return annotations


def _command(command: Command) -> dict[str, Any]:
    if command.shell is not None:
        return {"name": command.name, "shell": command.shell}
    return {"name": command.name, "argv": list(command.argv)}


def pinned_commit(annotations: Mapping[str, Any], generation: int) -> str | None:
    """The commit the workspace was made from for ``generation`` (:func:`namespace_annotations`)."""
    recorded, _, commit = str(annotations.get(COMMIT_ANNOTATION) or "").partition(":")
    return commit if recorded == str(generation) and _COMMIT.fullmatch(commit) else None


def read_remote_env(annotations: Mapping[str, Any]) -> dict[str, str]:
    """remoteEnv from the Namespace's annotations (what :func:`namespace_annotations` wrote)."""
    found = _json(annotations, REMOTE_ENV_ANNOTATION)
    if not isinstance(found, dict):
        return {}
    return {str(k): str(v) for k, v in found.items() if _NAME.fullmatch(str(k))}


def kept_workspace(annotations: Mapping[str, Any]) -> Workspace | None:
    """The workspace as the last apply left it, as far as a wake needs: its commit, remoteEnv and
    lifecycle commands (the rest of its devcontainer.json is in the objects applied). None when it
    has no lifecycle commands, or the annotations are not envhub's."""
    _generation, _, commit = str(annotations.get(COMMIT_ANNOTATION) or "").partition(":")
    found = _json(annotations, LIFECYCLE_ANNOTATION)
    if not _COMMIT.fullmatch(commit) or not isinstance(found, dict) or not isinstance(found.get("path"), str):
        return None
    steps = _steps(found.get("steps"))
    if not steps:
        return None
    config = Devcontainer(path=found["path"], remote_env=read_remote_env(annotations), lifecycle=steps)
    return Workspace(config=config, commit=commit)


def _steps(found: Any) -> tuple[LifecycleStep, ...]:
    """The recorded steps; empty when any of them is not as :func:`namespace_annotations` writes it."""
    if not isinstance(found, list):
        return ()
    steps: list[LifecycleStep] = []
    for step in found:
        if not isinstance(step, dict) or step.get("hook") not in HOOK_STEPS:
            return ()
        commands = [_read_command(command) for command in step.get("commands") or []]
        if not commands or None in commands:
            return ()
        steps.append(LifecycleStep(hook=str(step["hook"]), commands=tuple(c for c in commands if c)))
    return tuple(steps)


def _read_command(found: Any) -> Command | None:
    if not isinstance(found, dict) or not isinstance(found.get("name"), str):
        return None
    if isinstance(found.get("shell"), str):
        return Command(name=found["name"], shell=found["shell"])
    argv = found.get("argv")
    if isinstance(argv, list) and argv and all(isinstance(arg, str) for arg in argv):
        return Command(name=found["name"], argv=tuple(argv))
    return None


def _json(annotations: Mapping[str, Any], key: str) -> Any:
    try:
        return json.loads(str(annotations.get(key) or "null"))
    except ValueError:
        return None
