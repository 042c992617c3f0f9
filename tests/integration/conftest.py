"""Fixtures of the integration tests that run managed services on the embedded default."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from envhub.config import Settings, override_settings
from envhub.integrations.backing.embedded_buckets import EmbeddedBuckets
from envhub.runtime.local import LocalRuntime
from envhub.services import ports
from tests.support.runtime import kill_environments


@pytest.fixture
def short_settings(settings: Settings) -> Iterator[Settings]:
    """The test's settings with a data folder short enough for UNIX socket paths (107 bytes)."""
    folder = Path(tempfile.mkdtemp(prefix="eh-", dir="/tmp"))
    folder.chmod(0o700)
    shorter = settings.model_copy(update={"data_dir": folder})
    ports.reset()
    try:
        with override_settings(shorter):
            yield shorter
            backends = ports.backing()
            runtime = ports.runtime()
            assert isinstance(runtime, LocalRuntime)
            kill_environments(runtime)
            if backends.redis is not None:
                backends.redis.stop_all()  # type: ignore[attr-defined]
            if isinstance(backends.buckets, EmbeddedBuckets):
                backends.buckets.stop_all()
            if backends.postgres is not None:
                backends.postgres.stop()  # type: ignore[attr-defined]
    finally:
        ports.reset()
        shutil.rmtree(folder, ignore_errors=True)
