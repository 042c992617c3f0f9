"""How each key of a devcontainer.json is read: validated, its variables filled, or listed as not honoured."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from envhub.domain.browser import FEATURE as BROWSER_FEATURE
from envhub.domain.devcontainer.model import (
    Build,
    Command,
    ForwardedPort,
    LifecycleStep,
    Unsupported,
    VolumeMount,
)
from envhub.domain.variables import forbidden
from envhub.errors import DevcontainerInvalid, LifecycleCommandFailed

_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_VOLUME_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_VARIABLE = re.compile(r"\$\{([^}]*)\}")
LIFECYCLE_HOOKS = ("postCreateCommand", "postStartCommand", "postAttachCommand")
# Features envhub honours, by id without its version tag: what each means here. A feature
# installs software into an image; these need nothing installed on the runtimes envhub has.
SUPPORTED_FEATURES: Mapping[str, str] = {
    "ghcr.io/devcontainers/features/git": "git is already on the PATH of every environment",
    BROWSER_FEATURE: "Chromium and Playwright to test the environment's own public URL, lent by envhub "
    "(unless its operator set ENVHUB_BROWSER=off; README, browser testing)",
}
# Keys that would weaken the environment's isolation or run on envhub's own machine.
_REFUSED: Mapping[str, str] = {
    "initializeCommand": "it runs on the host before the container exists; envhub never runs "
    "repository code on its own machine",
    "runArgs": "container runtime arguments could weaken the environment's isolation",
    "privileged": "privileged containers would escape the environment's isolation",
    "capAdd": "extra capabilities would weaken the environment's isolation",
    "securityOpt": "security options would weaken the environment's isolation",
    "init": "envhub runs its own init (the supervisor) in every environment",
    "appPort": "use forwardPorts: each forwarded port gets its own public URL",
    "dockerComposeFile": "Docker Compose configurations are not supported; use image with forwardPorts",
    "service": "Docker Compose configurations are not supported",
    "runServices": "Docker Compose configurations are not supported",
    "workspaceMount": "envhub mounts the workspace itself; use workspaceFolder",
    "hostRequirements": "envhub sizes environments by the project's quota",
    "onCreateCommand": "not run: envhub runs postCreateCommand, postStartCommand and postAttachCommand",
    "updateContentCommand": "not run: envhub runs postCreateCommand, postStartCommand and postAttachCommand",
    "waitFor": "envhub runs every lifecycle command before the environment is ready",
    "overrideCommand": "envhub always runs the project's command as the environment's app",
    "shutdownAction": "envhub stops environments itself",
    "userEnvProbe": "envhub sets the environment's variables itself",
    "updateRemoteUserUID": "envhub does not change user ids in an image",
    "containerUser": "the container's user comes from its image; use remoteUser",
    "otherPortsAttributes": "only the listed forwardPorts get public URLs",
}
# Keys that only steer an editor or the file itself: nothing to honour or refuse.
_IGNORED = frozenset({"$schema", "customizations"})


# Terminal escape sequences (CSI, OSC, ...) and other control characters: the output is shown in
# browsers and in people's terminals (the CLI), where a sequence could rewrite what they see.
_ESCAPES = re.compile(
    r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)?|[@-Z\\-_])|[\x00-\x08\x0b-\x1f\x7f]"
)


def printable(text: str) -> str:
    """``text`` without terminal escape sequences and control characters (tabs and newlines kept)."""
    return _ESCAPES.sub("", text)


def command_failed(
    hook: str, command: Command, code: int | None, tail: list[str], *, timeout: float
) -> LifecycleCommandFailed:
    """A failed lifecycle command's error, on either runtime (``code`` None: it ran past ``timeout``)."""
    why = f"exited with status {code}" if code is not None else f"ran past {timeout:.0f}s"
    label = printable(f" ({command.name})") if command.name else ""
    described = printable(command.describe())
    return LifecycleCommandFailed(
        f"{hook}{label} {why}: {described}",
        details={"hook": hook, "command": described, "exit_code": code, "log_tail": "\n".join(tail)},
    )


def invalid(path: str, why: str, reason: str, key: str = "") -> DevcontainerInvalid:
    where = f"{path}: {key}: " if key else f"{path}: "
    details = {"path": path, "reason": reason, **({"key": key} if key else {})}
    return DevcontainerInvalid(where + why, details=details)


@dataclass
class Names:
    """The variables ``${...}`` may name, as the specification defines them for a container."""

    local: dict[str, str]
    base: dict[str, str]
    folder: str
    identity: str = ""  # what ${devcontainerId} names: one environment, stable across its deploys

    def substitute(self, value: str, *, key: str, container: bool) -> str:
        def one(match: re.Match[str]) -> str:
            kind, _, rest = match.group(1).partition(":")
            name, _, default = rest.partition(":")
            if kind == "localEnv" or (kind == "env" and not container):
                return self.local.get(name, default)
            if kind == "containerEnv" and container:
                return self.base.get(name, default)
            if kind in ("containerWorkspaceFolder", "localWorkspaceFolder") and not rest:
                return self.folder
            if kind == "devcontainerId" and not rest and self.identity:
                return self.identity
            if kind in ("containerWorkspaceFolderBasename", "localWorkspaceFolderBasename") and not rest:
                return posixpath.basename(self.folder)
            raise DevcontainerInvalid(
                f"{key}: ${{{match.group(1)}}} is not a variable envhub can fill here",
                hint="Use ${localEnv:NAME} (the project's variables), ${containerEnv:NAME} (in remoteEnv) "
                "or ${containerWorkspaceFolder}.",
                details={"reason": "bad_variable", "key": key},
            )

        return _VARIABLE.sub(one, value)


class Reader:
    """Takes keys out of the parsed object one by one; what is left at the end is listed."""

    def __init__(self, path: str, data: dict[str, Any]) -> None:
        self.path = path
        self.data = dict(data)
        self.unsupported: list[Unsupported] = []

    def _refuse(self, key: str, reason: str) -> None:
        """List ``key`` as not honoured; a key is the repository's text, shown in browsers and terminals."""
        self.unsupported.append(Unsupported(printable(key)[:300], reason))

    def _take(self, key: str) -> Any:
        return self.data.pop(key, None)

    def _fail(self, key: str, why: str) -> DevcontainerInvalid:
        return invalid(self.path, why, "bad_value", key)

    def string(self, key: str) -> str:
        value = self._take(key)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise self._fail(key, "must be a string")
        return value.strip()

    def user(self, key: str) -> str:
        value = self.string(key)
        if value and not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}|[0-9]{1,10}", value):
            raise self._fail(key, f"{value!r} is not a user name")
        return value

    def env(self, key: str, names: Names, *, container: bool) -> dict[str, str]:
        value = self._take(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self._fail(key, "must be an object of NAME: value")
        env: dict[str, str] = {}
        for name, raw in value.items():
            if not isinstance(name, str) or not _ENV_KEY.fullmatch(name):
                raise self._fail(key, f"{name!r} is not a valid environment variable name")
            if raw is None and container:  # remoteEnv: null unsets a variable
                continue
            if not isinstance(raw, str):
                raise self._fail(f"{key}.{name}", "must be a string")
            if forbidden(name):
                self._refuse(f"{key}.{name}", "this variable steers program loading; envhub never sets it")
                continue
            env[name] = names.substitute(raw, key=f"{key}.{name}", container=container)
        return env

    def build(self) -> Build | None:
        value = self.data.get("build")
        if value is None:
            self.data.pop("build", None)
            return None
        self.data.pop("build")
        if not isinstance(value, dict):
            raise self._fail("build", "must be an object")
        dockerfile = value.get("dockerfile") or value.get("dockerFile")
        if not isinstance(dockerfile, str) or not dockerfile:
            raise self._fail("build.dockerfile", "must name the Dockerfile")
        context = value.get("context", ".")
        args = value.get("args", {})
        if not isinstance(context, str) or not isinstance(args, dict):
            raise self._fail("build", "context must be a path and args an object")
        if not all(isinstance(v, str) for v in args.values()):
            raise self._fail("build.args", "every argument must be a string")
        target = value.get("target", "")
        return Build(dockerfile=dockerfile, context=context, args=dict(args), target=str(target or ""))

    def ports(self) -> tuple[ForwardedPort, ...]:
        forwarded = self._take("forwardPorts") or []
        attributes = self._take("portsAttributes") or {}
        if not isinstance(forwarded, list):
            raise self._fail("forwardPorts", "must be a list of port numbers")
        if not isinstance(attributes, dict):
            raise self._fail("portsAttributes", "must be an object keyed by port")
        ports: list[ForwardedPort] = []
        for entry in forwarded:
            port = _port_number(entry)
            if port is None:
                # "service:port" names a port of another Compose service: envhub has none.
                self._refuse(f"forwardPorts.{entry}", "only ports of the environment itself are forwarded")
                continue
            if any(p.port == port for p in ports):
                continue
            ports.append(self._port(port, attributes.get(str(port)) or {}))
        listed = {str(p.port) for p in ports}
        for key in attributes:
            if key not in listed:
                self._refuse(
                    f"portsAttributes.{key}",
                    "attributes of a port that is not in forwardPorts (ranges and patterns are not "
                    "forwarded)",
                )
        return tuple(ports)

    def _port(self, port: int, attributes: Any) -> ForwardedPort:
        key = f"portsAttributes.{port}"
        if not isinstance(attributes, dict):
            raise self._fail(key, "must be an object")
        label = attributes.get("label", "")
        protocol = attributes.get("protocol", "http")
        auto = attributes.get("onAutoForward", "")
        if not isinstance(label, str) or not isinstance(auto, str):
            raise self._fail(key, "label and onAutoForward must be strings")
        if protocol not in ("http", "https"):
            raise self._fail(f"{key}.protocol", "must be http or https")
        for extra in sorted(set(attributes) - {"label", "protocol", "onAutoForward"}):
            self._refuse(f"{key}.{extra}", "not used by envhub's public URLs")
        return ForwardedPort(
            port=port, label=printable(label.strip())[:100], protocol=protocol, on_auto_forward=auto
        )

    def lifecycle(self, hook: str, names: Names) -> LifecycleStep | None:
        value = self._take(hook)
        if value is None or value == "" or value == [] or value == {}:
            return None
        if isinstance(value, dict):
            commands = tuple(self._command(f"{hook}.{name}", name, raw, names) for name, raw in value.items())
        else:
            commands = (self._command(hook, "", value, names),)
        return LifecycleStep(hook=hook, commands=commands)

    def _command(self, key: str, name: str, value: Any, names: Names) -> Command:
        if isinstance(value, str) and value.strip():
            return Command(name=name, shell=names.substitute(value, key=key, container=True))
        if isinstance(value, list) and value and all(isinstance(a, str) for a in value):
            argv = tuple(names.substitute(a, key=key, container=True) for a in value)
            return Command(name=name, argv=argv)
        raise self._fail(key, "must be a command line, a list of arguments, or an object of named commands")

    def mounts(self, names: Names) -> tuple[VolumeMount, ...]:
        value = self._take("mounts") or []
        if not isinstance(value, list):
            raise self._fail("mounts", "must be a list")
        mounts: list[VolumeMount] = []
        for index, entry in enumerate(value):
            fields = _mount_fields(entry)
            if fields is None:
                raise self._fail(f"mounts[{index}]", "must be 'source=...,target=...,type=...' or an object")
            kind = fields.get("type", "volume" if "source" in fields else "")
            key = f"mounts[{index}]"
            if kind != "volume":
                self._refuse(
                    key,
                    f"{kind or 'this'} mounts are refused: only named volumes are mounted "
                    "(a bind mount would expose the host's files)",
                )
                continue
            source = names.substitute(fields.get("source", ""), key=key, container=False)
            target = names.substitute(fields.get("target", ""), key=key, container=False)
            if not _VOLUME_NAME.fullmatch(source):
                self._refuse(key, f"volume name {source!r} is not a plain name")
                continue
            if not target.startswith("/") or posixpath.normpath(target) != target or target == "/":
                raise self._fail(key, "target must be an absolute, normalised path")
            flag = fields.get("readonly", fields.get("ro"))
            read_only = flag is not None and flag not in ("false", "0")
            mounts.append(VolumeMount(source=source, target=target, read_only=read_only))
        return tuple(mounts)

    def features(self) -> tuple[str, ...]:
        value = self._take("features") or {}
        if not isinstance(value, dict):
            raise self._fail("features", "must be an object keyed by feature id")
        honoured: list[str] = []
        for feature, options in value.items():
            bare = _feature_id(feature)
            if bare in SUPPORTED_FEATURES and options in ({}, True, "latest", "os-provided"):
                honoured.append(feature)
                continue
            reason = (
                "envhub honours only the documented features (" + ", ".join(SUPPORTED_FEATURES) + ")"
                if bare not in SUPPORTED_FEATURES
                else "options other than the defaults are not supported"
            )
            self._refuse(f"features.{feature}", reason)
        return tuple(honoured)

    def leftovers(self) -> None:
        for key in list(self.data):
            if key in _IGNORED:
                continue
            reason = _REFUSED.get(key) or "not a devcontainer.json property envhub knows"
            self._refuse(str(key), reason)


def _port_number(entry: Any) -> int | None:
    if isinstance(entry, bool):
        return None
    if isinstance(entry, int) and 1 <= entry <= 65535:
        return entry
    if isinstance(entry, str) and entry.isdigit() and 1 <= int(entry) <= 65535:
        return int(entry)
    return None


def _feature_id(feature: str) -> str:
    """A feature reference without its version (``ghcr.io/x/y:1`` -> ``ghcr.io/x/y``)."""
    name, _, tag = feature.rpartition(":")
    return name if name and "/" not in tag else feature


def _mount_fields(entry: Any) -> dict[str, str] | None:
    if isinstance(entry, dict):
        if not all(isinstance(v, (str, bool)) for v in entry.values()):
            return None
        return {str(k).lower(): ("true" if v is True else str(v)) for k, v in entry.items() if v is not False}
    if not isinstance(entry, str) or not entry.strip():
        return None
    fields: dict[str, str] = {}
    for part in entry.split(","):
        key, _, value = part.strip().partition("=")
        key = {"src": "source", "dst": "target", "destination": "target"}.get(key.lower(), key.lower())
        fields[key] = value
    return fields
