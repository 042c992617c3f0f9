"""Adapters are chosen once, by the wiring module, from settings (envhub/wiring.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from envhub import wiring
from envhub.config import override_settings
from envhub.errors import ConfigurationError
from envhub.queue.changes import LocalChanges, RedisChanges
from envhub.queue.redis_queue import RedisJobQueue
from envhub.services import ports
from tests.conftest import build_settings


@pytest.fixture
def rewired() -> Iterator[None]:
    yield
    wiring.install()
    ports.reset()


def test_without_wiring_the_ports_say_so(rewired: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ports, "_installed", None)
    with pytest.raises(ConfigurationError) as caught:
        ports.runtime()
    assert "wiring" in caught.value.hint


def test_changes_go_through_redis_when_there_is_one(rewired: None, tmp_path: object) -> None:
    adapters = wiring.install()
    with override_settings(build_settings(data_dir=tmp_path, redis_url="redis://127.0.0.1:6379/15")):
        ports.reset()
        assert isinstance(ports.changes(), RedisChanges)
        assert isinstance(ports.queue(), RedisJobQueue)
        assert ports.installed() is adapters
    with override_settings(build_settings(data_dir=tmp_path, redis_url="")):
        ports.reset()
        assert isinstance(ports.changes(), LocalChanges)
        with pytest.raises(ConfigurationError):
            ports.queue()
