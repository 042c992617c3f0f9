"""What envhub takes from a devcontainer.json: plain, frozen types, storable as JSON (``summary``)."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any


@dataclass(frozen=True, slots=True)
class Unsupported:
    """A key of the configuration envhub does not honour, and why."""

    key: str
    reason: str


@dataclass(frozen=True, slots=True)
class Command:
    """One lifecycle command: a shell line (``shell``) or an argument vector run without a shell."""

    name: str  # "" for the string and array forms; the key in the object form
    shell: str | None = None
    argv: tuple[str, ...] = ()

    def argv_to_run(self) -> list[str]:
        return ["/bin/sh", "-c", self.shell] if self.shell is not None else list(self.argv)

    def describe(self) -> str:
        return self.shell if self.shell is not None else shlex.join(self.argv)


@dataclass(frozen=True, slots=True)
class LifecycleStep:
    """A lifecycle hook's commands; more than one (the object form) run in parallel."""

    hook: str  # postCreateCommand, postStartCommand or postAttachCommand
    commands: tuple[Command, ...]


@dataclass(frozen=True, slots=True)
class ForwardedPort:
    port: int
    label: str = ""
    protocol: str = "http"  # http | https, how envhub speaks to it
    on_auto_forward: str = ""


@dataclass(frozen=True, slots=True)
class VolumeMount:
    """A named volume mounted at ``target``; the only mounts envhub honours."""

    source: str
    target: str
    read_only: bool = False


@dataclass(frozen=True, slots=True)
class Build:
    dockerfile: str
    context: str = "."
    args: Mapping[str, str] = field(default_factory=dict)
    target: str = ""


@dataclass(frozen=True, slots=True)
class Devcontainer:
    """What envhub takes from one devcontainer.json."""

    path: str
    name: str = ""
    image: str = ""
    build: Build | None = None
    container_env: Mapping[str, str] = field(default_factory=dict)
    remote_env: Mapping[str, str] = field(default_factory=dict)
    ports: tuple[ForwardedPort, ...] = ()
    lifecycle: tuple[LifecycleStep, ...] = ()
    workspace_folder: str = ""
    remote_user: str = ""
    mounts: tuple[VolumeMount, ...] = ()
    features: tuple[str, ...] = ()  # ids of honoured features
    unsupported: tuple[Unsupported, ...] = ()
    # The forwarded port the runtime serves on the environment's public URL (set by the runtime).
    published_port: int | None = None
    # Every forwarded port is reachable on its own (a cluster Service port), whether or not one
    # is published on the environment's URL (set by the runtime).
    ports_relayed: bool = False

    @property
    def env(self) -> dict[str, str]:
        """containerEnv, then remoteEnv over it (both reach every process envhub starts)."""
        return {**self.container_env, **self.remote_env}

    def step(self, hook: str) -> LifecycleStep | None:
        return next((step for step in self.lifecycle if step.hook == hook), None)

    def refuse(self, key: str, reason: str) -> Devcontainer:
        """The same configuration with ``key`` listed as not honoured (a runtime's own limits)."""
        return replace(self, unsupported=(*self.unsupported, Unsupported(key, reason)))

    def summary(self) -> dict[str, Any]:
        """Plain data stored with the environment and shown on its page and in every face."""
        return {
            "path": self.path,
            "name": self.name,
            "image": self.image,
            "env": sorted(self.env),
            "ports": [asdict(port) for port in self.ports],
            "lifecycle": [
                {"hook": step.hook, "commands": [c.name or c.describe() for c in step.commands]}
                for step in self.lifecycle
            ],
            "workspace_folder": self.workspace_folder,
            "remote_user": self.remote_user,
            "features": list(self.features),
            "unsupported": [asdict(entry) for entry in self.unsupported],
            "published_port": self.published_port,
            "ports_relayed": self.ports_relayed,
        }


@dataclass(frozen=True, slots=True)
class Workspace:
    """A development environment's workspace on a cluster: its dev container, and the commit
    (40 hex digits) of the project's repository cloned into it."""

    config: Devcontainer
    commit: str
