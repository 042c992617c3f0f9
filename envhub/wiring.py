"""Which adapter serves each port, decided once, from settings.

Every entry point (the Reflex app, the launcher's commands, the worker) calls
:func:`install` before it serves anything; below it, code reads the ports
through ``envhub.services.ports`` and never names an adapter.

* runtime: ``ENVHUB_RUNTIME`` (the local sandbox, or Kubernetes);
* public URLs: ``ENVHUB_URL_PROVIDER``: envhub's own gateway on
  ``*.localhost``-style names (on Kubernetes through the API server's service
  proxy), an Ingress per environment on a wildcard domain, or a Cloudflare
  Tunnel (a rule and a DNS record per environment, the tunnel's configuration
  changed under a Redis lock shared by the workers);
* job queue: RQ on ``ENVHUB_REDIS_URL`` (none without it: enqueuing fails with
  a configuration error and the reconciler has nothing to re-drive through);
* change notifications: Redis pub/sub when there is a Redis, else this
  process's memory (one process, no workers to hear from);
* which web replica holds each terminal session: Redis when there is one,
  else this process's memory (then it is the only replica);
* the object store: the S3-compatible bucket of ``ENVHUB_OBJECT_STORE_*``
  (boto3), or none (files stay in the data folder);
* managed services: PostgreSQL on the operator's server
  (``ENVHUB_SERVICES_POSTGRES_URL``), else, for the local runtime, envhub's own
  server in the data folder; Redis as a ``redis-server`` per local environment,
  or on Kubernetes as a workload in the environment's namespace
  (``ENVHUB_SERVICES_REDIS_IMAGE``); buckets on an S3 endpoint with IAM
  (``ENVHUB_SERVICES_S3_*``), else, for the local runtime, an s3rver per
  local environment; on a cluster with the CloudNativePG operator, new
  PostgreSQL instances are Clusters in the environment's namespace, backed up
  to the object store; other services from the operator's catalog
  (``ENVHUB_SERVICES_CATALOG``) on a cluster. A kind with no backend is
  refused, with that hint, when an environment needs it.
"""

from __future__ import annotations

import functools
import shutil
from urllib.parse import urlsplit

from envhub.config import Settings, UrlProviderKind, get_settings
from envhub.domain.backing import CATALOG
from envhub.domain.kube.cloudnative_pg import BackupStore
from envhub.domain.public import gateway_address
from envhub.errors import ConfigurationError
from envhub.integrations.backing.base import (
    CATALOG_BACKEND,
    WORKLOAD_BACKEND,
    Backends,
    BucketStore,
    CacheServers,
    DatabaseServer,
)
from envhub.integrations.backing.buckets import S3Buckets
from envhub.integrations.backing.catalog import CatalogServices, load_catalog
from envhub.integrations.backing.cloudnative_pg import CloudNativePostgres
from envhub.integrations.backing.embedded_buckets import EmbeddedBuckets, default_s3rver
from envhub.integrations.backing.embedded_postgres import EmbeddedPostgres
from envhub.integrations.backing.postgres import PostgresServer
from envhub.integrations.backing.redis_servers import EmbeddedRedis
from envhub.integrations.backing.redis_workloads import RedisWorkloads
from envhub.integrations.cloudflare import CloudflareAccess, shared_client
from envhub.integrations.folder_store import FolderObjectStore
from envhub.integrations.helm import Helm
from envhub.integrations.object_store import ObjectStore
from envhub.integrations.s3 import S3Access, S3ObjectStore
from envhub.queue.base import ChangeNotifier, TerminalRegistry
from envhub.queue.changes import LocalChanges, RedisChanges
from envhub.queue.embedded import redis_binary
from envhub.queue.locks import RedisLocks
from envhub.queue.redis_queue import RedisJobQueue
from envhub.queue.terminals import LocalTerminalRegistry, RedisTerminalRegistry
from envhub.runtime import get_runtime
from envhub.runtime.base import KindCatalog, Runtime
from envhub.services import ports
from envhub.urls.base import UrlProvider
from envhub.urls.cloudflare import CloudflareUrls
from envhub.urls.ingress import IngressUrls
from envhub.urls.local import LocalUrls


def managed_backends(settings: Settings, *, local: bool, kinds: KindCatalog | None = None) -> Backends:
    """The backend of each managed service the settings give (see the module docstring).

    ``kinds`` is a cluster runtime's discovery: with it, PostgreSQL instances
    become CloudNativePG clusters wherever that operator is installed.
    """
    services = settings.data_dir / "services"
    embedded = settings.services_embedded and local
    postgres: DatabaseServer | None = None
    labels: dict[str, str] = {}
    admin_url = settings.services_postgres_url.get_secret_value()
    if admin_url:
        address = settings.services_postgres_address or _url_address(admin_url, 5432)
        host, _, port = address.rpartition(":")
        postgres = PostgresServer(
            admin_url, host=host, port=int(port), connection_limit=settings.services_postgres_connection_limit
        )
        labels["postgres"] = "server"
    elif embedded:
        # As root it runs as `postgres`, which must pass through the data folder to its own.
        postgres = EmbeddedPostgres(
            services / "postgres",
            pass_through=settings.data_dir,
            connection_limit=settings.services_postgres_connection_limit,
        )
        labels["postgres"] = "embedded"
    redis: CacheServers | None = None
    workloads: RedisWorkloads | None = None
    if embedded:
        redis, labels["redis"] = EmbeddedRedis(services / "redis", binary=redis_binary()), "embedded"
    elif not local:
        workloads = RedisWorkloads(
            image=settings.services_redis_image, storage_class=settings.services_redis_storage_class
        )
        labels["redis"] = WORKLOAD_BACKEND
    buckets: BucketStore | None = None
    if settings.services_s3_bucket_prefix:
        try:
            buckets = S3Buckets(
                endpoint_url=settings.services_s3_url,
                iam_endpoint_url=settings.services_s3_iam_url,
                region=settings.services_s3_region,
                access_key_id=settings.services_s3_access_key_id,
                secret_access_key=settings.services_s3_secret_access_key.get_secret_value(),
                bucket_prefix=settings.services_s3_bucket_prefix,
                workload_endpoint_url=settings.services_s3_workload_url,
            )
        except ValueError as exc:
            raise ConfigurationError(f"ENVHUB_SERVICES_S3_BUCKET_PREFIX: {exc}") from None
        labels["bucket"] = "s3"
    elif embedded:
        buckets = EmbeddedBuckets(services / "buckets", node=shutil.which("node"), s3rver=default_s3rver())
        labels["bucket"] = "embedded"
    clusters = None
    if kinds is not None and settings.services_cloudnative_pg:
        clusters = CloudNativePostgres(
            kinds, image=settings.services_cloudnative_pg_image, store=_backup_store(settings)
        )
    catalog = None
    if settings.services_catalog is not None and not local:
        catalog = CatalogServices(
            load_catalog(settings.services_catalog),
            helm=Helm(settings.helm_binary),
            kube_version=lambda: None if kinds is None else _cluster_version(),
        )
        labels[CATALOG] = CATALOG_BACKEND
    return Backends(
        postgres=postgres,
        redis=redis,
        buckets=buckets,
        postgres_clusters=clusters,
        redis_workloads=workloads,
        catalog=catalog,
        labels=labels,
    )


def _cluster_version() -> str | None:
    """The cluster's version for helm (the runtime knows it once asked); None lets helm choose."""
    ask = getattr(ports.runtime(), "server_version", None)
    return str(ask()) if callable(ask) else None


def _backup_store(settings: Settings) -> BackupStore | None:
    """Where CloudNativePG clusters put their backups: the object store, when there is one."""
    if not settings.object_store_configured:
        return None
    try:
        return BackupStore(
            bucket=settings.object_store_bucket,
            endpoint_url=settings.object_store_url,
            region=settings.object_store_region,
            access_key_id=settings.object_store_access_key_id,
            secret_access_key=settings.object_store_secret_access_key.get_secret_value(),
            schedule=settings.services_cloudnative_pg_backup_schedule,
            retention=settings.services_cloudnative_pg_backup_retention,
        )
    except ValueError as exc:
        raise ConfigurationError(f"ENVHUB_SERVICES_CLOUDNATIVE_PG_BACKUP_*: {exc}") from None


def _url_address(url: str, default_port: int) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or default_port}"


class SettingsAdapters:
    """Adapters built from the current settings on first use, cached until :meth:`reset`."""

    @functools.cache  # noqa: B019
    def backing(self) -> Backends:
        runtime = self.runtime()
        kinds = runtime if isinstance(runtime, KindCatalog) else None
        return managed_backends(get_settings(), local=runtime.name == "local", kinds=kinds)

    @functools.cache  # noqa: B019 - one instance per process; reset() clears it
    def runtime(self) -> Runtime:
        return get_runtime()

    @functools.cache  # noqa: B019
    def url_provider(self) -> UrlProvider:
        settings = get_settings()
        gateway = gateway_address(settings.gateway_internal_url) if settings.gateway_internal_url else None
        if settings.url_provider is UrlProviderKind.ingress:
            return IngressUrls(
                domain=settings.ingress_domain,
                class_name=settings.ingress_class,
                cluster_issuer=settings.ingress_cluster_issuer,
                tls_secret=settings.ingress_tls_secret,
                gateway=gateway,
            )
        if settings.url_provider is UrlProviderKind.cloudflare:
            access = CloudflareAccess(
                api_token=settings.cloudflare_api_token.get_secret_value(),
                account_id=settings.cloudflare_account_id,
                zone=settings.cloudflare_zone,
                tunnel_id=settings.cloudflare_tunnel_id,
                tunnel_name=settings.cloudflare_tunnel_name,
                base_url=settings.cloudflare_api_url or None,
            )
            # Without Redis there is one process (no workers): its own lock serialises it.
            lock = RedisLocks(settings.redis_url) if settings.redis_url else None
            return CloudflareUrls(
                api=shared_client(access), zone=settings.cloudflare_zone, lock=lock, gateway=gateway
            )
        return LocalUrls(base_url=settings.base_url, domain=settings.local_url_domain)

    def queue(self) -> RedisJobQueue:
        settings = get_settings()
        if not settings.redis_url:
            raise ConfigurationError(
                "ENVHUB_REDIS_URL is not set", hint="Start envhub with `make run`, or point it at a Redis."
            )
        return RedisJobQueue(settings.redis_url, name=settings.queue_name)

    @functools.cache  # noqa: B019
    def changes(self) -> ChangeNotifier:
        url = get_settings().redis_url
        return RedisChanges(url) if url else LocalChanges()

    @functools.cache  # noqa: B019
    def terminals(self) -> TerminalRegistry:
        url = get_settings().redis_url
        return RedisTerminalRegistry(url) if url else LocalTerminalRegistry()

    @functools.cache  # noqa: B019
    def object_store(self) -> ObjectStore | None:
        settings = get_settings()
        if not settings.object_store_configured:
            return None
        return S3ObjectStore(
            S3Access(
                bucket=settings.object_store_bucket,
                endpoint_url=settings.object_store_url,
                region=settings.object_store_region,
                access_key_id=settings.object_store_access_key_id,
                secret_access_key=settings.object_store_secret_access_key.get_secret_value(),
            )
        )

    @functools.cache  # noqa: B019
    def backup_store(self) -> ObjectStore:
        return self.object_store() or FolderObjectStore(get_settings().data_dir / "backups")

    def reset(self) -> None:
        for method in (
            self.backup_store,
            self.runtime,
            self.url_provider,
            self.changes,
            self.terminals,
            self.object_store,
            self.backing,
        ):
            method.cache_clear()


_adapters = SettingsAdapters()


def install() -> SettingsAdapters:
    """Install the adapters the settings choose (idempotent); returns them."""
    ports.install(_adapters)
    return _adapters
