"""How a local environment's git gets credentials: the relay's instructions and git's variables.

Only in a network of the environment's own (bubblewrap): there the relay's
port is reachable from inside alone. The supervisor holds the environment's
key; the sandbox gets git's configuration (``domain/git_credentials.py``) and
nothing secret.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from envhub.domain.git_credentials import ENDPOINT, HELPER_PATH, environment_key, git_config_variables
from envhub.domain.specs import EnvironmentTarget

# Below 1024: the sandbox, without capabilities, cannot bind it (and the relay binds it first).
RELAY_PORT = 1023


@dataclass(frozen=True, slots=True)
class GitAccess:
    """Where the relay reaches envhub (outside the sandbox), and the secret keys derive from."""

    envhub_url: str
    secret: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class GitSetup:
    relay: dict[str, Any] | None = field(default=None, repr=False)  # the supervisor's instructions
    variables: dict[str, str] = field(default_factory=dict)  # git's configuration, for every process


def setup(access: GitAccess | None, target: EnvironmentTarget, *, own_network: bool) -> GitSetup:
    if access is None or not target.git_origin or not own_network:
        return GitSetup()
    key = environment_key(access.secret, target.id, target.team, target.project, target.name)
    relay = {
        "port": RELAY_PORT,
        "url": access.envhub_url.rstrip("/") + ENDPOINT,
        "key": key.hex(),
        "environment": target.id,
    }
    return GitSetup(relay, git_config_variables(target.git_origin, f"{HELPER_PATH} {RELAY_PORT}"))
