"""A repository's dev container configuration (devcontainer.json), read into what envhub honours.

Pure: the caller hands in a function that reads a file of the checked-out
commit (envhub reads its own copy of the repository, never the workspace the
environment writes). The result is typed and plain (storable as JSON), and
says what was *not* honoured: every key envhub does not apply is listed in
``unsupported`` with the reason, so nothing is silently ignored.

Written from the public specification of the format (containers.dev,
"devcontainer.json reference"); JSON with comments is parsed with ``json5``,
a superset of it.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import replace

import json5

from envhub.domain.devcontainer.model import (
    Build,
    Command,
    Devcontainer,
    ForwardedPort,
    LifecycleStep,
    Unsupported,
    VolumeMount,
    Workspace,
)
from envhub.domain.devcontainer.reading import (
    LIFECYCLE_HOOKS,
    SUPPORTED_FEATURES,
    Names,
    Reader,
    command_failed,
    invalid,
    printable,
)
from envhub.domain.public import PUBLIC_URL_VARIABLE
from envhub.errors import DevcontainerInvalid

__all__ = [
    "DEFAULT_PATHS",
    "HOOK_STEPS",
    "LIFECYCLE_HOOKS",
    "MAX_BYTES",
    "RESERVED_VARIABLES",
    "SUPPORTED_FEATURES",
    "Build",
    "Command",
    "Devcontainer",
    "ForwardedPort",
    "LifecycleStep",
    "Unsupported",
    "VolumeMount",
    "Workspace",
    "candidate_paths",
    "check_name",
    "command_failed",
    "find",
    "parse",
    "printable",
    "without_reserved",
]

# The provisioning step of each lifecycle hook a runtime runs (domain/progress.py titles them).
HOOK_STEPS = {
    "postCreateCommand": "post_create",
    "postStartCommand": "post_start",
    "postAttachCommand": "post_attach",
}
# Where a configuration is looked for, in this order, when the project names none.
DEFAULT_PATHS = (".devcontainer/devcontainer.json", ".devcontainer.json")
MAX_BYTES = 256 * 1024
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
# Variables envhub sets in every process itself: a repository's configuration does not change them.
RESERVED_VARIABLES = frozenset(
    {"PORT", "HOME", "LANG", "TERM", "ENVHUB_ENVIRONMENT", "ENVHUB_PROJECT", PUBLIC_URL_VARIABLE}
)


def check_name(name: str) -> str:
    """A named configuration (``.devcontainer/<name>/devcontainer.json``): one plain folder name."""
    if not _NAME.fullmatch(name) or ".." in name:
        raise DevcontainerInvalid(
            f"{name!r} is not a dev container configuration name",
            hint="Name a folder under .devcontainer/ (letters, digits, '.', '_' and '-').",
            details={"reason": "bad_name", "name": name},
        )
    return name


def candidate_paths(name: str | None) -> tuple[str, ...]:
    if name:
        return (f".devcontainer/{check_name(name)}/devcontainer.json",)
    return DEFAULT_PATHS


def find(read: Callable[[str], str | None], *, name: str | None = None) -> tuple[str, str] | None:
    """The first configuration file ``read`` finds, as (path, text); None when there is none.

    ``read`` returns a file's text at the checked-out commit, or None when the
    commit has no such file. A configuration the project named must exist.
    """
    for path in candidate_paths(name):
        text = read(path)
        if text is not None:
            if len(text.encode()) > MAX_BYTES:
                raise invalid(path, f"the file is larger than {MAX_BYTES // 1024} KiB", "too_large")
            return path, text
    if name:
        raise DevcontainerInvalid(
            f"the project's dev container configuration {name!r} is not in the repository",
            hint=f"Add .devcontainer/{name}/devcontainer.json, or clear the project's "
            "devcontainer setting to use .devcontainer/devcontainer.json.",
            details={"reason": "missing", "path": candidate_paths(name)[0]},
        )
    return None


def parse(
    text: str,
    *,
    path: str,
    local_env: Mapping[str, str] | None = None,
    base_env: Mapping[str, str] | None = None,
    builder: bool = False,
    folder: str | None = None,
    identity: str = "",
) -> Devcontainer:
    """Read one configuration; raises :class:`DevcontainerInvalid` naming the file and key.

    ``local_env`` is what ``${localEnv:NAME}`` reads: the project's own variables,
    never envhub's process environment (envhub is nobody's local machine).
    ``base_env`` is what the environment's processes start with (PATH, HOME), read
    by ``${containerEnv:NAME}``. ``builder``: an image builder is configured, so
    ``build.dockerfile`` is honoured. ``folder``: where the runtime mounts the
    workspace when it cannot honour ``workspaceFolder`` (``${containerWorkspaceFolder}``
    then names the real place). ``identity`` is what ``${devcontainerId}`` names
    (without it, the variable is refused).
    """
    try:
        data = json5.loads(text)
    except ValueError as exc:
        raise invalid(path, f"not valid JSON with comments ({exc})", "syntax") from None
    if not isinstance(data, dict):
        raise invalid(path, "the file must hold one JSON object", "not_object")
    reader = Reader(path, data)
    workspace = reader.string("workspaceFolder")
    if workspace and (not workspace.startswith("/") or posixpath.normpath(workspace) != workspace):
        raise invalid(path, "must be an absolute, normalised path", "bad_value", "workspaceFolder")
    folder = folder or workspace or "/workspace"
    names = Names(local=dict(local_env or {}), base=dict(base_env or {}), folder=folder, identity=identity)
    container_env = reader.env("containerEnv", names, container=False)
    names.base.update(container_env)
    remote_env = reader.env("remoteEnv", names, container=True)
    image = reader.string("image")
    build = reader.build()
    if build is not None and not builder:
        reader.unsupported.append(
            Unsupported(
                "build",
                "building an image needs an in-cluster image builder, and this envhub has none configured"
                + (f"; the image {printable(image)} is used instead" if image else ""),
            )
        )
    result = Devcontainer(
        path=path,
        name=reader.string("name"),
        image=names.substitute(image, key="image", container=False),
        build=build if builder else None,
        container_env=container_env,
        remote_env=remote_env,
        ports=reader.ports(),
        lifecycle=tuple(step for hook in LIFECYCLE_HOOKS if (step := reader.lifecycle(hook, names))),
        workspace_folder=workspace,
        remote_user=reader.user("remoteUser"),
        mounts=reader.mounts(names),
        features=reader.features(),
    )
    reader.leftovers()
    return replace(result, unsupported=tuple(reader.unsupported))


def without_reserved(config: Devcontainer) -> Devcontainer:
    """``config`` without the variables envhub sets itself (:data:`RESERVED_VARIABLES`), each listed."""
    for where, env in (("containerEnv", config.container_env), ("remoteEnv", config.remote_env)):
        for name in sorted(set(env) & RESERVED_VARIABLES):
            config = config.refuse(f"{where}.{name}", "envhub sets this variable itself")
    return replace(
        config,
        container_env={k: v for k, v in config.container_env.items() if k not in RESERVED_VARIABLES},
        remote_env={k: v for k, v in config.remote_env.items() if k not in RESERVED_VARIABLES},
    )
