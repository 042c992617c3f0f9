"""The ports the use cases are given, as installed by the wiring module.

``envhub/wiring.py`` (at the entry-point layer) chooses an adapter for each
port from settings and installs them here once per process; interfaces (the
dashboard, the API, jobs) read them through these functions and pass them into
the use cases as arguments. Nothing in ``services/`` picks an adapter, so tests
can install others.
"""

from __future__ import annotations

from typing import Protocol

from envhub.errors import ConfigurationError
from envhub.integrations.backing.base import Backends
from envhub.integrations.object_store import ObjectStore
from envhub.queue.base import ChangeNotifier, JobQueue, TerminalRegistry
from envhub.runtime.base import Runtime
from envhub.urls.base import UrlProvider


class Adapters(Protocol):
    """What the wiring module installs: one adapter per port, built on first use."""

    def runtime(self) -> Runtime: ...

    def url_provider(self) -> UrlProvider: ...

    def queue(self) -> JobQueue:
        """Raises ``ConfigurationError`` when no queue is configured."""

    def changes(self) -> ChangeNotifier: ...

    def terminals(self) -> TerminalRegistry: ...

    def object_store(self) -> ObjectStore | None:
        """The operator's S3-compatible bucket; None when none is configured (files stay on local disk)."""

    def backup_store(self) -> ObjectStore:
        """Where database backups go: the object store when configured, else a folder of the data folder."""

    def backing(self) -> Backends:
        """The backends of managed services (PostgreSQL, Redis, buckets); a kind without one is None."""

    def reset(self) -> None:
        """Forget built adapters (settings changed, or a process forked)."""


_installed: Adapters | None = None


def install(adapters: Adapters) -> None:
    global _installed
    _installed = adapters


def installed() -> Adapters:
    if _installed is None:
        raise ConfigurationError(
            "envhub's adapters are not wired in this process",
            hint="Start envhub through an entry point (envhub.launcher, the Reflex app), "
            "or call envhub.wiring.install() first.",
        )
    return _installed


def runtime() -> Runtime:
    return installed().runtime()


def url_provider() -> UrlProvider:
    return installed().url_provider()


def queue() -> JobQueue:
    return installed().queue()


def changes() -> ChangeNotifier:
    return installed().changes()


def terminals() -> TerminalRegistry:
    return installed().terminals()


def object_store() -> ObjectStore | None:
    return installed().object_store()


def backing() -> Backends:
    return installed().backing()


def backup_store() -> ObjectStore:
    return installed().backup_store()


def reset() -> None:
    if _installed is not None:
        _installed.reset()
