"""Adapters are chosen once, by the wiring module, from settings (envhub/wiring.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from envhub import wiring
from envhub.config import override_settings
from envhub.errors import ConfigurationError
from envhub.integrations.backing.buckets import S3Buckets
from envhub.integrations.backing.embedded_buckets import EmbeddedBuckets, default_s3rver
from envhub.integrations.backing.redis_servers import EmbeddedRedis
from envhub.integrations.backing.redis_workloads import RedisWorkloads
from envhub.queue.changes import LocalChanges, RedisChanges
from envhub.queue.redis_queue import RedisJobQueue
from envhub.runtime import get_runtime
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
    assert local.redis_workloads is None
    assert local.label("redis") == "embedded"
    cluster = wiring.managed_backends(settings, local=False)
    assert cluster.redis_workloads == RedisWorkloads(
        image="registry.example.com/redis:7.2.7", storage_class="fast-ssd"
    )
    assert cluster.redis is None  # no server of envhub's: the Redis is placed in the namespace
    assert cluster.label("redis") == "workload"
    assert cluster.postgres is None  # no operator's server configured: refused when declared
    # Turning the embedded services off takes the local Redis away, not the cluster's.
    off = settings.model_copy(update={"services_embedded": False})
    assert wiring.managed_backends(off, local=True).redis is None
    assert wiring.managed_backends(off, local=True).redis_workloads is None
    assert isinstance(wiring.managed_backends(off, local=False).redis_workloads, RedisWorkloads)


class _Cluster:
    """A cluster runtime's discovery (the ``KindCatalog`` port), answering from a set of kinds."""

    def __init__(self, *kinds: str) -> None:
        self.kinds = set(kinds)

    def serves(self, api_version: str, kind: str) -> bool:
        return api_version == "postgresql.cnpg.io/v1" and kind in self.kinds


def test_cloudnative_pg_is_offered_on_a_cluster_runtime_and_backs_up_to_the_object_store(
    tmp_path: object,
) -> None:
    plain = build_settings(data_dir=tmp_path)
    assert wiring.managed_backends(plain, local=True).postgres_clusters is None  # no cluster to ask
    clusters = wiring.managed_backends(plain, local=False, kinds=_Cluster("Cluster")).postgres_clusters
    assert clusters is not None
    assert clusters.available()
    assert not clusters.backs_up
    off = build_settings(data_dir=tmp_path, services_cloudnative_pg=False)
    assert wiring.managed_backends(off, local=False, kinds=_Cluster("Cluster")).postgres_clusters is None

    stored = build_settings(data_dir=tmp_path, object_store_bucket="acme-envhub")
    backed = wiring.managed_backends(stored, local=False, kinds=_Cluster("Cluster")).postgres_clusters
    assert backed is not None
    assert backed.backs_up
    # Backups are scheduled with the operator's second kind: without it the operator is not taken.
    assert not backed.available()
    both = wiring.managed_backends(stored, local=False, kinds=_Cluster("Cluster", "ScheduledBackup"))
    assert both.postgres_clusters is not None
    assert both.postgres_clusters.available()
    bad = build_settings(
        data_dir=tmp_path,
        object_store_bucket="acme-envhub",
        services_cloudnative_pg_backup_retention="30 days",
    )
    with pytest.raises(ConfigurationError, match="BACKUP_"):
        wiring.managed_backends(bad, local=False, kinds=_Cluster("Cluster"))


def test_the_catalog_is_offered_on_a_cluster_runtime_and_a_bad_file_stops_envhub(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[2] / "deploy" / "catalog.example.yaml"
    settings = build_settings(data_dir=tmp_path, services_catalog=example)
    assert wiring.managed_backends(settings, local=True).catalog is None  # its entries run on a cluster
    cluster = wiring.managed_backends(settings, local=False)
    assert cluster.catalog is not None
    assert [entry.name for entry in cluster.catalog.catalog.entries] == ["rabbitmq"]
    assert cluster.label("catalog") == "catalog"
    assert wiring.managed_backends(build_settings(data_dir=tmp_path), local=False).catalog is None

    broken = tmp_path / "catalog.yaml"
    broken.write_text("entries: [{name: a}]")
    with pytest.raises(ConfigurationError) as refused:
        wiring.managed_backends(build_settings(data_dir=tmp_path, services_catalog=broken), local=False)
    assert "needs manifests or a chart" in refused.value.message
    with pytest.raises(ConfigurationError) as missing:
        wiring.managed_backends(
            build_settings(data_dir=tmp_path, services_catalog=tmp_path / "nope.yaml"), local=False
        )
    assert "cannot read" in missing.value.message


def test_buckets_are_embedded_for_the_local_runtime_unless_an_s3_store_is_configured(tmp_path: Path) -> None:
    plain = build_settings(data_dir=tmp_path)
    local = wiring.managed_backends(plain, local=True)
    assert isinstance(local.buckets, EmbeddedBuckets)
    assert local.label("bucket") == "embedded"
    assert local.buckets.folder == tmp_path / "services" / "buckets"
    assert local.buckets.s3rver == default_s3rver()
    assert wiring.managed_backends(plain, local=False).buckets is None  # a cluster has no embedded default
    off = build_settings(data_dir=tmp_path, services_embedded=False)
    assert wiring.managed_backends(off, local=True).buckets is None
    s3 = build_settings(data_dir=tmp_path, services_s3_bucket_prefix="acme", services_s3_url="http://s3.test")
    configured = wiring.managed_backends(s3, local=True)
    assert isinstance(configured.buckets, S3Buckets)
    assert configured.label("bucket") == "s3"


def test_an_image_builder_needs_its_namespace_and_registry() -> None:
    settings = build_settings(
        runtime="kubernetes", kube_image_builder="buildkit", kube_builder_namespace="builds"
    )
    with pytest.raises(ConfigurationError, match="ENVHUB_KUBE_BUILDER_REGISTRY"):
        get_runtime(settings)
