"""Adapters are chosen once, by the wiring module, from settings (envhub/wiring.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from envhub import wiring
from envhub.config import override_settings
from envhub.errors import ConfigurationError
from envhub.integrations.backing.base import WorkloadCaches
from envhub.integrations.backing.redis_servers import EmbeddedRedis
from envhub.integrations.backing.redis_workloads import RedisWorkloads
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


def test_redis_is_a_server_per_local_environment_and_a_workload_on_kubernetes(tmp_path: Path) -> None:
    settings = build_settings(
        data_dir=tmp_path,
        services_redis_image="registry.example.com/redis:7.2.7",
        services_redis_storage_class="fast-ssd",
    )
    local = wiring.managed_backends(settings, local=True)
    assert isinstance(local.redis, EmbeddedRedis)
    assert local.label("redis") == "embedded"
    cluster = wiring.managed_backends(settings, local=False)
    assert cluster.redis == RedisWorkloads(image="registry.example.com/redis:7.2.7", storage_class="fast-ssd")
    assert isinstance(cluster.redis, WorkloadCaches)
    assert cluster.label("redis") == "workload"
    assert cluster.postgres is None  # no operator's server configured: refused when declared
    # Turning the embedded services off takes the local Redis away, not the cluster's.
    off = settings.model_copy(update={"services_embedded": False})
    assert wiring.managed_backends(off, local=True).redis is None
    assert isinstance(wiring.managed_backends(off, local=False).redis, RedisWorkloads)
