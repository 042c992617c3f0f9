"""Git credentials inside an environment: who may ask, for which host, and how git is told.

An environment's processes never hold a long-lived secret. git inside asks a
credential helper envhub ships (``credential.<origin>.helper``, set through
``GIT_CONFIG_COUNT``/``GIT_CONFIG_KEY_n``/``GIT_CONFIG_VALUE_n``, so no file in
the workspace holds it); the helper asks envhub, which answers with a GitHub
App installation token for the project's one repository, valid about an hour.

envhub knows which environment asks from an *environment identity*:
``ehe_<environment id>.<expiry>.<signature>``, an HMAC under a key of that
environment's own (derived from envhub's secret, the environment's id and its
team/project/name: deleting the environment, or rotating envhub's secret,
revokes it). The identity is minted per request, outside the sandbox (the local
runtime's supervisor holds the key, in memory), and lives a minute.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlsplit

IDENTITY_PREFIX = "ehe_"
IDENTITY_KEY_PURPOSE = "environment-identity"  # Settings.derived_key's purpose
IDENTITY_TTL = 60  # seconds an identity is good for: minted for one request
_CLOCK_SKEW = 30
# What the token handed to git may do: push branches (contents) and open pull requests.
PUSH_PERMISSIONS = {"contents": "write", "pull_requests": "write"}
# The username GitHub expects beside an installation token over https.
USERNAME = "x-access-token"
# Where the local sandbox finds the helper (bound read-only from envhub's copy).
HELPER_PATH = "/etc/envhub/git-credential-envhub"


ENDPOINT = "/api/v1/environment-identity/git-credentials"


def environment_key(secret: bytes, environment_id: int, team: str, project: str, name: str) -> bytes:
    """The key that signs one environment's identities."""
    message = f"{environment_id}:{team}/{project}/{name}".encode()
    return hmac.new(secret, message, hashlib.sha256).digest()


def sign(key: bytes, environment_id: int, expires: int) -> str:
    return hmac.new(key, f"{environment_id}.{expires}".encode(), hashlib.sha256).hexdigest()


def mint_identity(key: bytes, environment_id: int, now: float, ttl: int = IDENTITY_TTL) -> str:
    expires = int(now) + ttl
    return f"{IDENTITY_PREFIX}{environment_id}.{expires}.{sign(key, environment_id, expires)}"


def claimed_environment(identity: str) -> int | None:
    """The environment an identity claims to be (not yet verified), or None when it is malformed."""
    if not identity.startswith(IDENTITY_PREFIX):
        return None
    parts = identity.removeprefix(IDENTITY_PREFIX).split(".")
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit() or len(parts[2]) != 64:
        return None
    return int(parts[0])


def verify_identity(key: bytes, identity: str, now: float) -> bool:
    """Whether ``identity`` was signed with ``key`` and has not expired (nor lives implausibly long)."""
    environment_id = claimed_environment(identity)
    if environment_id is None:
        return False
    _id, expires, signature = identity.removeprefix(IDENTITY_PREFIX).split(".")
    if not now - _CLOCK_SKEW <= int(expires) <= now + IDENTITY_TTL + _CLOCK_SKEW:
        return False
    return hmac.compare_digest(signature, sign(key, environment_id, int(expires)))


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of a repository's URL, lower-case: what git's credential
    configuration is keyed by."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def same_origin(protocol: str, host: str, origin: str) -> bool:
    """Whether git's request (``protocol``, ``host`` as git sends them) is for ``origin``."""
    return f"{protocol}://{host}".lower() == origin.lower()


def git_config_variables(origin: str, helper: str) -> dict[str, str]:
    """Variables that make git (2.31+) ask ``helper`` for ``origin``'s credentials, and only then.

    The first entry empties the list of helpers for that origin, so a helper
    configured elsewhere (a credential store in the workspace) is not asked.
    """
    key = f"credential.{origin}.helper"
    return {
        "GIT_CONFIG_COUNT": "2",
        "GIT_CONFIG_KEY_0": key,
        "GIT_CONFIG_VALUE_0": "",
        "GIT_CONFIG_KEY_1": key,
        "GIT_CONFIG_VALUE_1": helper,
    }
