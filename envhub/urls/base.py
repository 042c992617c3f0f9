"""The public-URL port: give an environment a URL people can open.

``publish`` is idempotent and returns the URL; ``unpublish`` of an unknown
environment returns quietly.
"""

from __future__ import annotations

from typing import Protocol

from envhub.domain.specs import EnvironmentTarget


class UrlProvider(Protocol):
    name: str

    def publish(self, target: EnvironmentTarget) -> str:
        """Make the environment reachable; return its public URL."""

    def unpublish(self, target: EnvironmentTarget) -> None:
        """Stop routing to the environment. Quiet when nothing is published."""
