"""Names that end up in URLs, hostnames and Kubernetes objects.

Project and environment names are DNS-1123 labels so they can be used as-is in
``<env>.<project>.<team>.localhost`` hosts and namespace names.
"""

from __future__ import annotations

import hashlib
import re
import secrets

from envhub.errors import InvalidName

DNS_LABEL_MAX = 63
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

_ADJECTIVES = (
    "amber", "brisk", "calm", "clever", "coral", "crisp", "daring", "eager", "fresh",
    "gentle", "golden", "happy", "jolly", "keen", "lively", "lucky", "mellow", "misty",
    "nimble", "proud", "quick", "quiet", "rapid", "sunny", "swift", "tidy", "vivid", "witty",
)  # fmt: skip
_NOUNS = (
    "badger", "beacon", "breeze", "cedar", "comet", "delta", "ember", "falcon", "fjord",
    "glade", "harbor", "heron", "island", "lagoon", "maple", "meadow", "otter", "pebble",
    "pine", "quartz", "raven", "river", "summit", "thistle", "tulip", "willow", "zephyr",
)  # fmt: skip


def validate_label(value: str, *, field: str = "name") -> str:
    """Return ``value`` if it is a DNS-1123 label, else raise :class:`InvalidName`."""
    if not value:
        raise InvalidName(f"{field} must not be empty", details={"field": field})
    if len(value) > DNS_LABEL_MAX:
        raise InvalidName(
            f"{field} {value!r} is {len(value)} characters long; the maximum is {DNS_LABEL_MAX}",
            details={"field": field, "value": value},
        )
    if not _DNS_LABEL.fullmatch(value):
        reason = (
            "must be lower-case"
            if value.lower() != value
            else ("may contain only letters, digits and '-', and must start and end with a letter or digit")
        )
        raise InvalidName(f"{field} {value!r} {reason}", details={"field": field, "value": value})
    return value


def is_label(value: str) -> bool:
    """Whether ``value`` is a DNS-1123 label, as every team, project and environment name is."""
    return 0 < len(value) <= DNS_LABEL_MAX and _DNS_LABEL.fullmatch(value) is not None


def suggest_label(text: str) -> str:
    """Turn free text ("My Shop!") into a valid label ("my-shop")."""
    label = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return label[:DNS_LABEL_MAX].rstrip("-") or "x"


def generate_environment_name(taken: set[str], *, prefix: str = "dev") -> str:
    """A friendly unused name such as ``dev-swift-otter``."""
    for _ in range(50):
        name = f"{prefix}-{secrets.choice(_ADJECTIVES)}-{secrets.choice(_NOUNS)}"
        if name not in taken:
            return name
    return f"{prefix}-{secrets.token_hex(4)}"


def scoped_name(*parts: str, limit: int = DNS_LABEL_MAX) -> str:
    """Join labels with '-' and stay within ``limit``, keeping names collision-free.

    When the joined name is too long it is cut and a short hash of the full name
    is appended, so two different inputs never map to the same result.
    """
    full = "-".join(parts)
    if len(full) <= limit:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:8]
    return f"{full[: limit - len(digest) - 1].rstrip('-')}-{digest}"


def local_host(*, environment: str, project: str, team: str, domain: str) -> str:
    """Host name of an environment's local public URL."""
    return f"{environment}.{project}.{team}.{domain}"
