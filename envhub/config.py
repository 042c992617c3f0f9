"""Settings: the one place envhub reads its environment.

Every knob is an ``ENVHUB_*`` variable (or a line in ``.env``). Code reads them
through :func:`get_settings`, a cached getter that tests override with
:func:`override_settings`.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import os
import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, PrivateAttr, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from envhub.errors import ConfigurationError
from envhub.private_files import FILE_MODE, private_dir

PROJECT_ROOT = Path(__file__).resolve().parent.parent

_INSECURE_SECRETS = {"", "changeme", "change-me", "secret", "development-only-secret"}


class Mode(StrEnum):
    development = "development"
    production = "production"


class RuntimeKind(StrEnum):
    local = "local"
    kubernetes = "kubernetes"


class UrlProviderKind(StrEnum):
    local = "local"  # envhub's own gateway (``*.localhost``-style names)
    ingress = "ingress"  # an Ingress per environment on a wildcard domain (Kubernetes)
    cloudflare = "cloudflare"  # a Cloudflare Tunnel per cluster, a rule and a DNS record per environment


_DNS_NAME = re.compile(
    r"^(?=.{1,190}$)([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)+$"
)
_CLOUDFLARE_ID = re.compile(r"^[0-9a-f]{32}$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# S3's rules for a bucket name (no dotted-quad names, which S3 refuses too).
_BUCKET = re.compile(r"^(?!\d+\.\d+\.\d+\.\d+$)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_REGION = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_DNS_SUBDOMAIN = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class AuthMode(StrEnum):
    # No OpenID provider: one local user, loopback only, one-time login links.
    local = "local"
    oidc = "oidc"


_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")


def _csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def is_loopback_host(host: str) -> bool:
    host = host.strip("[]").lower()
    return host in ("localhost", "::1") or host.startswith("127.")


def _check_origin(name: str, value: str, example: str) -> None:
    """Stop start-up, naming ``name``, unless ``value`` is empty or an http(s) URL of host and port alone."""
    if not value:
        return
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query:
        raise ValueError(f"{name}: {value!r} is not an http(s) URL of a host and port alone (e.g. {example})")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ENVHUB_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    mode: Mode = Mode.development
    data_dir: Path = PROJECT_ROOT / "var"
    database_url: str = ""
    redis_url: str = Field(
        default="",
        description="Redis for the job queue; empty means envhub starts an embedded one.",
    )
    runtime: RuntimeKind = RuntimeKind.local
    base_url: str = "http://localhost:3000"
    secret_key: str = "development-only-secret"  # noqa: S105 - refused outside development
    queue_name: str = "envhub"
    reconcile_interval: Annotated[float, Field(gt=0)] = 5.0
    # A running JobRun whose heartbeat is older than this is taken as lost
    # (its worker died) and is re-driven by the reconciler.
    job_stale_after: Annotated[float, Field(gt=0)] = 30.0
    job_max_attempts: Annotated[int, Field(ge=1)] = 5
    # Ready environments on a watched runtime (Kubernetes) are re-applied this
    # often, restoring anything changed or deleted behind envhub's back.
    resync_interval: Annotated[float, Field(gt=0)] = 600.0
    # An environment's last activity is written at most this often per web process
    # (services/activity.py): idle sleep and TTLs are minutes and hours, so a minute is plenty.
    activity_write_interval: Annotated[float, Field(ge=0)] = 60.0
    # The reconciler looks for idle and expired development environments this often (not every
    # tick: idle times are minutes, and the check reads every candidate row).
    idle_check_interval: Annotated[float, Field(ge=0)] = 30.0
    # Estimated cost (domain/costs.py): the operator's price of one reserved CPU core for an hour
    # and of one reserved GiB of memory for an hour, in price_currency. Both 0 (the default):
    # no prices are set, and the dashboard shows hours, not a cost of 0.
    price_cpu_hour: Annotated[float, Field(ge=0)] = 0.0
    price_memory_gib_hour: Annotated[float, Field(ge=0)] = 0.0
    price_currency: Annotated[str, Field(min_length=1, max_length=10)] = "USD"
    # How long one provisioning attempt waits for the health check before it
    # gives up and lets the queue retry with backoff.
    health_timeout: Annotated[float, Field(gt=0)] = 60.0
    # How long each lifecycle command of a repository's devcontainer.json may run.
    lifecycle_timeout: Annotated[float, Field(gt=0)] = 600.0
    # Local runtime: "auto" (= "bwrap") is bubblewrap or nothing; "unshare" and
    # "none" are weaker sandboxes an operator may choose for trusted code.
    local_sandbox: str = "auto"
    # Browser testing inside environments (domain/browser.py): "off", "feature" (the
    # projects whose devcontainer.json lists envhub/playwright) or "all". Locally the
    # machine's Chromium (ENVHUB_BROWSER_CHROMIUM, else chromium on PATH) and envhub's
    # Playwright are lent read-only; on Kubernetes a sidecar runs ENVHUB_KUBE_BROWSER_IMAGE.
    browser: Literal["off", "feature", "all"] = "feature"
    browser_chromium: str = ""
    kube_browser_image: Annotated[str, Field(min_length=1)] = (
        "mcr.microsoft.com/playwright/python:v1.65.2-noble"
    )
    # Local runtime: how much of a background process's output is kept; past it
    # the oldest output is dropped (the output API says so, offsets keep their meaning).
    background_output_limit_mb: Annotated[float, Field(ge=1, le=4096)] = 16.0
    # Projects may name a local path or file:// repository (off: they read this
    # machine's disk, so only an operator turns them on).
    allow_local_repos: bool = False
    # A git config file of the operator's (proxy, CA bundle, URL rewrites) that
    # envhub's own git reads; no system or user git config is read.
    git_config: Path | None = None
    # The helm that renders deployment environments' charts (3.8 or newer): a
    # name looked up on PATH or an absolute path.
    helm_binary: Annotated[str, Field(min_length=1)] = "helm"
    # Host suffix of local public URLs: http://<env>.<project>.<team>.<suffix>:<port>
    local_url_domain: str = "localhost"
    # Who gives environments their public URLs: envhub's own gateway ("local"; on
    # Kubernetes through the API server's service proxy) or an Ingress per
    # environment ("ingress", Kubernetes only) at https://<env>-<project>-<digest>.<domain>.
    url_provider: UrlProviderKind = UrlProviderKind.local
    # The wildcard domain (*.<domain> resolves to the ingress controller).
    ingress_domain: str = ""
    # The IngressClass to use; empty: the cluster's default class.
    ingress_class: str = ""
    # TLS: a cert-manager ClusterIssuer (a certificate per host), or the name of a
    # wildcard certificate's Secret as the controller resolves it; neither: the
    # controller's default certificate (ingress-nginx --default-ssl-certificate).
    ingress_cluster_issuer: str = ""
    ingress_tls_secret: str = ""
    # The cloudflare provider (Kubernetes only): https://<env>-<project>-<digest>.<zone> through one
    # remotely-managed Cloudflare Tunnel per cluster. The token needs Account > Cloudflare Tunnel >
    # Edit, Zone > DNS > Edit and Zone > Zone > Read.
    cloudflare_api_token: SecretStr = SecretStr("")
    cloudflare_account_id: str = ""
    # The zone (its domain name, e.g. example.com) where each environment gets a proxied CNAME.
    cloudflare_zone: str = ""
    # The tunnel to adopt; empty: the account's tunnel named cloudflare_tunnel_name, created if missing.
    cloudflare_tunnel_id: str = ""
    cloudflare_tunnel_name: str = "envhub"
    # Cloudflare's API root; empty: the SDK's (https://api.cloudflare.com/client/v4).
    cloudflare_api_url: str = ""
    # How often the reconciler lists what the URL provider published outside the runtime (Cloudflare:
    # two API calls) and withdraws what belongs to no environment; 0: every reconciler pass.
    url_sweep_interval: Annotated[float, Field(ge=0)] = 60.0
    # Where the ingress controller or the tunnel's connector reaches envhub's gateway inside the
    # cluster (the chart sets it: http://<web Service>.<namespace>.svc:<port>). Environments of
    # projects whose URLs need envhub sign-in are routed there instead of straight to their Service.
    gateway_internal_url: str = ""
    page_size: Annotated[int, Field(ge=1, le=500)] = 20
    # Open pages reload on every change pushed through Redis pub/sub, and also
    # at least this often (seconds), in case a notification was lost; 0 turns
    # that periodic fallback off, so only pushed changes reach a page (the
    # browser tests run so: a broken push then shows). The environment page
    # re-reads the runtime's own state, which nothing announces, regardless.
    live_refresh_seconds: Annotated[float, Field(ge=0)] = 3.0
    # Kubernetes runtime: a kubeconfig (else KUBECONFIG, else in-cluster).
    kubeconfig: str | None = None
    kube_context: str | None = None
    # Namespaces of the public-URL provider's proxies, allowed to reach environments.
    kube_ingress_namespaces: str = "envhub-system"
    kube_ready_timeout: Annotated[float, Field(gt=0)] = 180.0
    # Pod Security admission level enforced on environment namespaces (v1.23+):
    # baseline (the floor) or restricted.
    kube_pod_security: Literal["baseline", "restricted"] = "baseline"
    # Egress no project's allowlist may open, on top of the cloud metadata
    # addresses, the API server, kube-system and envhub's own namespace (always).
    kube_egress_deny_cidrs: str = ""
    kube_egress_deny_namespaces: str = ""
    # Development environments' workspaces (a repository's devcontainer.json): the image whose git
    # clones the repository into the workspace (it needs git and /bin/sh), and the claims that hold
    # the workspace and each named volume of the file's mounts (storage class "": the cluster's default).
    kube_workspace_git_image: Annotated[str, Field(min_length=1)] = "alpine/git:2.47.2"
    kube_workspace_storage_class: str = ""
    kube_workspace_size: Annotated[str, Field(min_length=1)] = "10Gi"
    kube_workspace_volume_size: Annotated[str, Field(min_length=1)] = "1Gi"
    # An in-cluster image builder for devcontainer.json's build.dockerfile: "buildkit" runs rootless
    # BuildKit as one Job per build in kube_builder_namespace (the operator's, which must allow
    # unconfined seccomp and AppArmor), pushing to kube_builder_registry with the
    # kubernetes.io/dockerconfigjson Secret kube_builder_push_secret there; "none" refuses such files.
    kube_image_builder: Literal["none", "buildkit"] = "none"
    kube_builder_namespace: str = ""
    kube_builder_registry: str = ""
    kube_builder_image: Annotated[str, Field(min_length=1)] = "moby/buildkit:v0.18.2-rootless"
    kube_builder_push_secret: str = ""
    kube_builder_timeout: Annotated[float, Field(gt=0)] = 1800.0
    # envhub's own namespace in the cluster (the chart sets it); when empty and
    # running in a pod, the pod's own namespace.
    kube_own_namespace: str = ""
    # Git credentials in workspaces: git's helper in a workspace pod calls envhub at
    # ENVHUB_GATEWAY_INTERNAL_URL (the web's Service) with the pod's projected token, and a
    # NetworkPolicy lets the pod reach envhub's web pods (labelled so, "k=v,k=v"; empty: any pod of
    # envhub's namespace) on their port. Without that URL and a namespace, git gets none from envhub.
    kube_web_pod_labels: str = ""
    kube_web_pod_port: Annotated[int, Field(ge=1, le=65535)] = 3000
    # Browser terminals: how long a shell outlives its last socket (a reload or
    # a dropped network reattaches within it), how often sockets are pinged,
    # and how much of one session is recorded before the recording stops.
    terminal_grace: Annotated[float, Field(ge=0)] = 300.0
    terminal_ping_interval: Annotated[float, Field(gt=0)] = 20.0
    terminal_recording_limit_mb: Annotated[float, Field(gt=0)] = 100.0
    # How often open terminals re-check that their people may still be there
    # (sign-out, revocation, expiry, a share or team membership ending).
    terminal_access_check_interval: Annotated[float, Field(gt=0, le=60)] = 3.0
    # How the other web replicas reach this web process (http://<pod IP>:<port>):
    # a terminal socket landing on a replica that does not hold its session is
    # relayed there. Empty: ENVHUB_BASE_URL (one process, where it is the same).
    internal_url: str = ""

    # -- the object store (S3-compatible; off while the bucket is empty) ------
    # Finished terminal recordings go there (and leave the data folder), so any web
    # replica can replay them. Empty URL: AWS S3 itself; else any S3-compatible
    # endpoint (MinIO, Cloudflare R2, Ceph...), addressed by path.
    object_store_url: str = ""
    object_store_bucket: str = ""
    object_store_region: str = "us-east-1"
    # Both or neither; neither: boto3's default credential chain (AWS_* variables,
    # a web identity on EKS, an instance profile).
    object_store_access_key_id: str = ""
    object_store_secret_access_key: SecretStr = SecretStr("")

    # -- managed services (issue 13): databases, caches, buckets per environment --
    # PostgreSQL: an operator's server, as an account that may create databases and
    # roles ("postgresql://envhub:...@db.internal:5432/postgres"). Empty: on the local
    # runtime envhub starts its own server from the installed binaries (initdb).
    services_postgres_url: SecretStr = SecretStr("")
    # host:port of that server as environments reach it (empty: the URL's).
    services_postgres_address: str = ""
    # How many connections one environment's role may hold at once (the server's are shared).
    services_postgres_connection_limit: int = Field(default=20, ge=1, le=10000)
    # PostgreSQL, Redis and buckets (s3rver) run by envhub itself for local environments
    # (off: not offered).
    services_embedded: bool = True
    # Redis on Kubernetes: a Deployment of this pinned image in each environment's namespace
    # (an official-image layout: redis-server and a redis user of uid 999).
    services_redis_image: str = "docker.io/library/redis:7.2.7"
    # The StorageClass of a persistent Redis's volume; empty: the cluster's default class.
    services_redis_storage_class: str = ""
    # The operator's catalog of other services (a YAML file, see deploy/catalog.example.yaml);
    # empty: none. Its entries run on a cluster runtime.
    services_catalog: Path | None = None
    # Buckets: an S3-compatible endpoint that speaks IAM (AWS; empty URL: AWS itself), with
    # an account that may create buckets, users and their policies and keys.
    services_s3_url: str = ""
    services_s3_iam_url: str = ""
    services_s3_region: str = "us-east-1"
    services_s3_access_key_id: str = ""
    services_s3_secret_access_key: SecretStr = SecretStr("")
    # Put before every bucket's name (bucket names are global on AWS); empty: no S3 store
    # (buckets are then embedded on the local runtime, and refused on a cluster).
    services_s3_bucket_prefix: str = ""
    # The endpoint as environments reach it, when it differs from envhub's.
    services_s3_workload_url: str = ""
    # PostgreSQL on Kubernetes: when the cluster runs the CloudNativePG operator, each new
    # instance is a Cluster in the environment's namespace (off: the server above, always),
    # from this image repository (tagged by major version). With an object store
    # (ENVHUB_OBJECT_STORE_*) it is backed up there (base backups and WAL); deployment
    # environments on this schedule (six fields, seconds first), kept this long (30d, 4w, 6m).
    services_cloudnative_pg: bool = True
    services_cloudnative_pg_image: str = "ghcr.io/cloudnative-pg/postgresql"
    services_cloudnative_pg_backup_schedule: str = "0 0 3 * * *"
    services_cloudnative_pg_backup_retention: str = "30d"
    # Where the operator runs (comma-separated): a cluster's network policy lets it in from there.
    services_cloudnative_pg_namespaces: str = "cnpg-system"

    # -- operations ----------------------------------------------------------
    # /metrics of the web wants "Authorization: Bearer <token>" when this is set;
    # empty: anyone who reaches the web's port may read it (it names no one).
    metrics_token: SecretStr = SecretStr("")
    # A worker serves its metrics on this port and its reconciler process on the
    # next one (two processes, two registries: envhub/jobs/worker.py); 0: none.
    worker_metrics_port: Annotated[int, Field(ge=0, le=65534)] = 0
    worker_metrics_host: str = "127.0.0.1"
    # envhub's log lines: "text" (for people) or "json" (one object a line, for collectors).
    log_format: Literal["text", "json"] = "text"

    # -- sign-in (OpenID Connect); empty issuer means single-user local mode --
    oidc_issuer: str = ""
    oidc_client_id: str = ""
    oidc_client_secret: SecretStr = SecretStr("")
    oidc_scopes: str = "openid email profile"
    # Who may sign in: people whose verified email is in one of these domains,
    # or who carry one of these groups (claim ``oidc_groups_claim``).
    oidc_allowed_domains: str = ""
    oidc_allowed_groups: str = ""
    oidc_groups_claim: str = "groups"
    # Explicitly let anyone the provider knows sign in (no domain/group gate).
    oidc_allow_any_user: bool = False
    oidc_clock_leeway: Annotated[int, Field(ge=0, le=300)] = 30
    # A signed-in session re-checks the person with the provider (refresh
    # grant) this often, so someone removed there loses access here too.
    oidc_recheck_interval: Annotated[float, Field(gt=0)] = 300.0
    oidc_http_timeout: Annotated[float, Field(gt=0)] = 10.0

    # -- sessions and tokens ------------------------------------------------
    session_idle_timeout: Annotated[float, Field(gt=0)] = 8 * 3600.0
    session_max_age: Annotated[float, Field(gt=0)] = 7 * 24 * 3600.0
    login_link_ttl: Annotated[float, Field(gt=0, le=24 * 3600)] = 900.0
    token_max_days: Annotated[int, Field(ge=1, le=3650)] = 365
    first_team: str = "default"
    # Key for data encrypted at rest (base64 of 32 bytes); derived from the
    # secret key when empty. Old keys (comma-separated) still decrypt.
    encryption_key: SecretStr = SecretStr("")
    encryption_old_keys: SecretStr = SecretStr("")

    # -- GitHub ---------------------------------------------------------------
    # Pushes to a pull request within this many seconds make one deployment (of the last).
    github_debounce_seconds: Annotated[float, Field(ge=0, le=300)] = 3.0
    # How often the reconciler compares each repository's open pull requests with envhub's, so an
    # event GitHub never delivered (a close above all) is caught up: one API call per page of 100.
    github_resync_interval: Annotated[float, Field(ge=10)] = 300.0

    # -- abuse limits -------------------------------------------------------
    max_body_bytes: Annotated[int, Field(ge=1024)] = 1024 * 1024
    # GitHub's webhook payloads (a push of many commits is large; GitHub caps them at 25 MB).
    webhook_max_body_bytes: Annotated[int, Field(ge=1024)] = 10 * 1024 * 1024
    # "<requests>/<seconds>" per client.
    rate_limit_sign_in: str = "30/60"
    rate_limit_tokens: str = "60/60"
    # GitHub delivers from a handful of addresses: a burst of pull requests must fit.
    rate_limit_webhooks: str = "1200/60"
    # git in one environment asks for credentials per fetch or push (the local runtime's relay
    # comes from one address for all of them: envhub's own).
    rate_limit_git_credentials: str = "600/60"
    # Reverse proxies in front of envhub whose X-Forwarded-For is believed.
    trusted_proxy_hops: Annotated[int, Field(ge=0, le=5)] = 0
    # Extra Host names envhub answers to besides the base URL's.
    allowed_hosts: str = ""

    _generated_secret: bytes | None = PrivateAttr(default=None)

    @field_validator("kube_egress_deny_cidrs")
    @classmethod
    def _cidrs(cls, value: str) -> str:
        for cidr in _csv(value):
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError as exc:
                raise ValueError(f"{cidr!r} is not a CIDR block") from exc
        return value

    @field_validator("kube_web_pod_labels")
    @classmethod
    def _labels(cls, value: str) -> str:
        for pair in _csv(value):
            key, sep, label = pair.partition("=")
            if not sep or not key.strip() or not _LABEL_VALUE.fullmatch(label.strip()):
                raise ValueError(f"{pair!r} is not label=value")
        return value

    @field_validator("local_sandbox")
    @classmethod
    def _known_sandbox(cls, value: str) -> str:
        if value not in {"auto", "bwrap", "unshare", "none"}:
            raise ValueError("must be one of auto, bwrap, unshare, none")
        return value

    @field_validator("git_config", mode="before")
    @classmethod
    def _git_config(cls, value: object) -> object:
        if value in (None, ""):
            return None
        if not Path(str(value)).is_absolute():
            raise ValueError("must be an absolute path to a git config file")
        return value

    @field_validator(
        "rate_limit_sign_in", "rate_limit_tokens", "rate_limit_webhooks", "rate_limit_git_credentials"
    )
    @classmethod
    def _rate(cls, value: str) -> str:
        count, _, seconds = value.partition("/")
        if not (
            count.strip().isdigit() and seconds.strip().isdigit() and int(count) > 0 and int(seconds) > 0
        ):
            raise ValueError("must look like <requests>/<seconds>, e.g. 30/60")
        return value

    @field_validator("oidc_issuer")
    @classmethod
    def _issuer(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value:
            return value
        parts = urlsplit(value)
        # Tokens and client secrets cross this connection: https only, except
        # a provider on this very machine (tests, a local development OP).
        if parts.scheme != "https" and not (
            parts.scheme == "http" and is_loopback_host(parts.hostname or "")
        ):
            raise ValueError("must be an https:// URL (http:// only for a provider on loopback)")
        return value

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _defaults_and_secrets(self) -> Settings:
        self.data_dir = self.data_dir.expanduser().resolve()
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'envhub.db'}"
        if self.mode is Mode.production and self.secret_key in _INSECURE_SECRETS:
            raise ValueError(
                "ENVHUB_SECRET_KEY: refusing an insecure default outside development; "
                f"set it to a random value, e.g. {secrets.token_urlsafe(32)}"
            )
        self.internal_url = self.internal_url.strip().rstrip("/")
        _check_origin("ENVHUB_INTERNAL_URL", self.internal_url, "http://10.1.2.3:3000")
        self._check_url_provider()
        self._check_object_store()
        self._check_managed_services()
        if self.oidc_issuer:
            if not self.oidc_client_id:
                raise ValueError("ENVHUB_OIDC_CLIENT_ID: required when ENVHUB_OIDC_ISSUER is set")
            if not (self.oidc_allowed_domains or self.oidc_allowed_groups or self.oidc_allow_any_user):
                raise ValueError(
                    "ENVHUB_OIDC_ALLOWED_DOMAINS: set it (or ENVHUB_OIDC_ALLOWED_GROUPS) to say who may "
                    "sign in, or ENVHUB_OIDC_ALLOW_ANY_USER=true to let everyone the provider knows in"
                )
        return self

    def _check_url_provider(self) -> None:
        self.ingress_domain = self.ingress_domain.strip().lower().rstrip(".")
        if self.ingress_domain.startswith("*."):
            self.ingress_domain = self.ingress_domain[2:]
        if self.ingress_domain and not _DNS_NAME.fullmatch(self.ingress_domain):
            raise ValueError(
                f"ENVHUB_INGRESS_DOMAIN: {self.ingress_domain!r} is not a DNS name of at least two labels "
                "and at most 190 characters (environments' hosts add a label of up to 63)"
            )
        if self.ingress_class and not _DNS_SUBDOMAIN.fullmatch(self.ingress_class):
            raise ValueError(f"ENVHUB_INGRESS_CLASS: {self.ingress_class!r} is not a valid IngressClass name")
        for name, value in (
            ("ENVHUB_INGRESS_CLUSTER_ISSUER", self.ingress_cluster_issuer),
            ("ENVHUB_INGRESS_TLS_SECRET", self.ingress_tls_secret),
        ):
            if value and not _DNS_SUBDOMAIN.fullmatch(value):
                raise ValueError(f"{name}: {value!r} is not a valid Kubernetes object name")
        if self.ingress_cluster_issuer and self.ingress_tls_secret:
            raise ValueError(
                "ENVHUB_INGRESS_CLUSTER_ISSUER and ENVHUB_INGRESS_TLS_SECRET: choose one way to get "
                "certificates (cert-manager issues one per host; a wildcard Secret covers them all)"
            )
        self._check_cloudflare()
        self.gateway_internal_url = self.gateway_internal_url.strip().rstrip("/")
        _check_origin(
            "ENVHUB_GATEWAY_INTERNAL_URL", self.gateway_internal_url, "http://envhub-web.envhub.svc:80"
        )
        if self.url_provider is UrlProviderKind.ingress:
            if self.runtime is not RuntimeKind.kubernetes:
                raise ValueError("ENVHUB_URL_PROVIDER=ingress needs ENVHUB_RUNTIME=kubernetes")
            if not self.ingress_domain:
                raise ValueError(
                    "ENVHUB_INGRESS_DOMAIN: required with ENVHUB_URL_PROVIDER=ingress "
                    "(a domain whose wildcard *.<domain> points at your ingress controller)"
                )

    def _check_managed_services(self) -> None:
        url = self.services_postgres_url.get_secret_value().strip()
        if url and urlsplit(url).scheme not in ("postgresql", "postgres"):
            raise ValueError(
                "ENVHUB_SERVICES_POSTGRES_URL: must be a postgresql:// URL of an account that may create "
                "databases and roles, e.g. postgresql://envhub:secret@db.internal:5432/postgres"
            )
        self.services_postgres_address = self.services_postgres_address.strip()
        if self.services_postgres_address and not re.fullmatch(
            r"[A-Za-z0-9.\-\[\]:]+:\d{1,5}", self.services_postgres_address
        ):
            raise ValueError("ENVHUB_SERVICES_POSTGRES_ADDRESS: must be host:port, e.g. db.internal:5432")
        for name in ("services_s3_url", "services_s3_iam_url", "services_s3_workload_url"):
            value = str(getattr(self, name)).strip().rstrip("/")
            setattr(self, name, value)
            _check_origin(f"ENVHUB_{name.upper()}", value, "https://s3.eu-west-1.amazonaws.com")
        self.services_s3_bucket_prefix = self.services_s3_bucket_prefix.strip()
        secret = self.services_s3_secret_access_key.get_secret_value()
        if bool(self.services_s3_access_key_id.strip()) != bool(secret):
            raise ValueError(
                "ENVHUB_SERVICES_S3_ACCESS_KEY_ID and ENVHUB_SERVICES_S3_SECRET_ACCESS_KEY: set both, or "
                "neither to use the default AWS credential chain"
            )
        if not self.services_s3_bucket_prefix and (self.services_s3_url or self.services_s3_access_key_id):
            raise ValueError(
                "ENVHUB_SERVICES_S3_BUCKET_PREFIX: required with the other ENVHUB_SERVICES_S3_* settings "
                "(bucket names are global: e.g. acme-envhub)"
            )
        self.services_redis_image = self.services_redis_image.strip()
        if not re.fullmatch(r"[a-z0-9][a-z0-9._/:@-]*", self.services_redis_image):
            raise ValueError(
                "ENVHUB_SERVICES_REDIS_IMAGE: must be an image reference, pinned, e.g. "
                "docker.io/library/redis:7.2.7"
            )
        self.services_redis_storage_class = self.services_redis_storage_class.strip()
        if self.services_redis_storage_class and not re.fullmatch(
            r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?", self.services_redis_storage_class
        ):
            raise ValueError("ENVHUB_SERVICES_REDIS_STORAGE_CLASS: must be a StorageClass name, e.g. gp3")

    def _check_object_store(self) -> None:
        self.object_store_url = self.object_store_url.strip().rstrip("/")
        self.object_store_bucket = self.object_store_bucket.strip()
        self.object_store_region = self.object_store_region.strip()
        self.object_store_access_key_id = self.object_store_access_key_id.strip()
        secret = self.object_store_secret_access_key.get_secret_value()
        _check_origin(
            "ENVHUB_OBJECT_STORE_URL",
            self.object_store_url,
            "https://s3.eu-west-1.amazonaws.com or http://minio.storage:9000",
        )
        if self.object_store_bucket and not _BUCKET.fullmatch(self.object_store_bucket):
            raise ValueError(
                f"ENVHUB_OBJECT_STORE_BUCKET: {self.object_store_bucket!r} is not an S3 bucket name "
                "(3 to 63 lowercase letters, digits, dots and hyphens, starting and ending with a "
                "letter or digit)"
            )
        if not _REGION.fullmatch(self.object_store_region):
            raise ValueError(
                f"ENVHUB_OBJECT_STORE_REGION: {self.object_store_region!r} is not a region name "
                "(e.g. us-east-1, eu-west-3; auto for Cloudflare R2)"
            )
        if bool(self.object_store_access_key_id) != bool(secret):
            given, missing = (
                ("ACCESS_KEY_ID", "SECRET_ACCESS_KEY")
                if self.object_store_access_key_id
                else ("SECRET_ACCESS_KEY", "ACCESS_KEY_ID")
            )
            raise ValueError(
                f"ENVHUB_OBJECT_STORE_{missing}: required with ENVHUB_OBJECT_STORE_{given} (set both, "
                "or neither to use the default AWS credential chain)"
            )
        if not self.object_store_bucket and (
            self.object_store_url or self.object_store_access_key_id or secret
        ):
            raise ValueError(
                "ENVHUB_OBJECT_STORE_BUCKET: required when the object store is configured "
                "(ENVHUB_OBJECT_STORE_URL or its keys are set): name the bucket envhub may write to"
            )

    def _check_cloudflare(self) -> None:
        self.cloudflare_zone = self.cloudflare_zone.strip().lower().rstrip(".")
        self.cloudflare_account_id = self.cloudflare_account_id.strip().lower()
        self.cloudflare_tunnel_id = self.cloudflare_tunnel_id.strip().lower()
        self.cloudflare_api_url = self.cloudflare_api_url.strip().rstrip("/")
        if self.cloudflare_zone and not _DNS_NAME.fullmatch(self.cloudflare_zone):
            raise ValueError(
                f"ENVHUB_CLOUDFLARE_ZONE: {self.cloudflare_zone!r} is not a DNS name of at least two labels "
                "and at most 190 characters (environments' hosts add a label of up to 63)"
            )
        if self.cloudflare_account_id and not _CLOUDFLARE_ID.fullmatch(self.cloudflare_account_id):
            raise ValueError(
                f"ENVHUB_CLOUDFLARE_ACCOUNT_ID: {self.cloudflare_account_id!r} is not a Cloudflare "
                "account id (32 hexadecimal characters, on the dashboard's overview page)"
            )
        if self.cloudflare_tunnel_id and not _UUID.fullmatch(self.cloudflare_tunnel_id):
            raise ValueError(
                f"ENVHUB_CLOUDFLARE_TUNNEL_ID: {self.cloudflare_tunnel_id!r} is not a tunnel id (a UUID)"
            )
        if not self.cloudflare_tunnel_name.strip():
            raise ValueError("ENVHUB_CLOUDFLARE_TUNNEL_NAME: must not be empty")
        if self.cloudflare_api_url:
            parts = urlsplit(self.cloudflare_api_url)
            if parts.scheme != "https" and not (
                parts.scheme == "http" and is_loopback_host(parts.hostname or "")
            ):
                raise ValueError(
                    "ENVHUB_CLOUDFLARE_API_URL: must be an https:// URL (http:// only on loopback)"
                )
        if self.url_provider is not UrlProviderKind.cloudflare:
            return
        if self.runtime is not RuntimeKind.kubernetes:
            raise ValueError(
                "ENVHUB_URL_PROVIDER=cloudflare needs ENVHUB_RUNTIME=kubernetes "
                "(the tunnel's connector runs in the cluster and routes to environments' Services)"
            )
        for name, value in (
            ("ENVHUB_CLOUDFLARE_API_TOKEN", self.cloudflare_api_token.get_secret_value()),
            ("ENVHUB_CLOUDFLARE_ACCOUNT_ID", self.cloudflare_account_id),
            ("ENVHUB_CLOUDFLARE_ZONE", self.cloudflare_zone),
        ):
            if not value:
                raise ValueError(f"{name}: required with ENVHUB_URL_PROVIDER=cloudflare")

    @property
    def auth_mode(self) -> AuthMode:
        return AuthMode.oidc if self.oidc_issuer else AuthMode.local

    @property
    def allowed_domains(self) -> tuple[str, ...]:
        return tuple(domain.lower().lstrip("@") for domain in _csv(self.oidc_allowed_domains))

    @property
    def allowed_groups(self) -> tuple[str, ...]:
        return _csv(self.oidc_allowed_groups)

    @property
    def extra_hosts(self) -> tuple[str, ...]:
        return tuple(host.lower() for host in _csv(self.allowed_hosts))

    @property
    def secure_cookies(self) -> bool:
        return self.base_url.startswith("https://")

    @property
    def base_origin(self) -> str:
        parts = urlsplit(self.base_url)
        return f"{parts.scheme}://{parts.netloc}".lower()

    def rate_limit(self, name: str) -> tuple[int, int]:
        """(requests, seconds) of the named limit: sign_in, tokens, webhooks, git_credentials."""
        count, _, seconds = str(getattr(self, f"rate_limit_{name}")).partition("/")
        return int(count), int(seconds)

    def derived_key(self, purpose: str) -> bytes:
        """A 32-byte key for one purpose (sessions, audit chain, ...), derived
        from the secret so that one leaked derived key reveals no other."""
        return hmac.new(self.secret_material(), f"envhub:{purpose}".encode(), hashlib.sha256).digest()

    def secret_material(self) -> bytes:
        """The key material everything signed or encrypted derives from.

        ENVHUB_SECRET_KEY when it is set to a real value. In development with
        the default, a random key is generated once into the data folder: a
        published default would let anyone forge sessions or read secrets.
        """
        if self.secret_key not in _INSECURE_SECRETS:
            return self.secret_key.encode()
        if self._generated_secret is None:
            self._generated_secret = _data_dir_secret(self.data_dir / "secret.key")
        return self._generated_secret

    @property
    def ingress_namespaces(self) -> tuple[str, ...]:
        return tuple(part.strip() for part in self.kube_ingress_namespaces.split(",") if part.strip())

    @property
    def cloudnative_pg_namespaces(self) -> tuple[str, ...]:
        return _csv(self.services_cloudnative_pg_namespaces)

    @property
    def object_store_ports(self) -> tuple[int, ...]:
        """The ports a CloudNativePG cluster's pods send backups to: the object store URL's, or https's."""
        if not self.object_store_url:
            return (443,)
        parts = urlsplit(self.object_store_url)
        return (parts.port or (80 if parts.scheme == "http" else 443),)

    @property
    def egress_deny_cidrs(self) -> tuple[str, ...]:
        return _csv(self.kube_egress_deny_cidrs)

    @property
    def egress_deny_namespaces(self) -> tuple[str, ...]:
        return _csv(self.kube_egress_deny_namespaces)

    @property
    def web_pod_labels(self) -> dict[str, str]:
        return {
            k.strip(): v.strip()
            for k, _, v in (pair.partition("=") for pair in _csv(self.kube_web_pod_labels))
        }

    @property
    def envs_dir(self) -> Path:
        return self.data_dir / "envs"

    @property
    def internal_address(self) -> str:
        """Where other web replicas reach this process (ENVHUB_INTERNAL_URL, else the base URL)."""
        return self.internal_url or self.base_origin

    @property
    def object_store_configured(self) -> bool:
        return bool(self.object_store_bucket)

    @property
    def base_port(self) -> int:
        parts = urlsplit(self.base_url)
        return parts.port or (443 if parts.scheme == "https" else 80)


def check_bind(host: str, settings: Settings) -> None:
    """Refuse to listen where envhub's sign-in would not protect it."""
    if is_loopback_host(host):
        return
    if settings.auth_mode is AuthMode.local:
        raise ConfigurationError(
            f"refusing to listen on {host}: no OpenID Connect sign-in is configured, and single-user "
            "mode signs in with one-time links meant for this machine only",
            hint="Bind to 127.0.0.1, or configure sign-in (ENVHUB_OIDC_ISSUER, ENVHUB_OIDC_CLIENT_ID, "
            "ENVHUB_OIDC_CLIENT_SECRET, ENVHUB_OIDC_ALLOWED_DOMAINS) to serve other machines.",
        )
    if not settings.base_url.startswith("https://"):
        raise ConfigurationError(
            f"refusing to listen on {host} with ENVHUB_BASE_URL={settings.base_url}: session cookies "
            "and tokens would cross the network unencrypted",
            hint="Serve envhub over https (e.g. behind a TLS proxy); set ENVHUB_BASE_URL to that URL.",
        )


def _data_dir_secret(path: Path) -> bytes:
    """Read the generated key, creating it (mode 0600) the first time; safe across processes."""
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
    except FileExistsError:
        pass
    else:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
    for _ in range(50):  # another process may be writing it this very moment
        value = path.read_text().strip()
        if value:
            return value.encode()
        time.sleep(0.02)
    raise ConfigurationError(f"{path} is empty; delete it and start again")


def redact_url(url: str) -> str:
    """``url`` with its credentials replaced by ``***``, for every log line and message."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, tail = rest.partition("/")
    if "@" in authority:
        authority = "***@" + authority.rsplit("@", 1)[1]
    tail = re.sub(r"(?i)([?&]password=)[^&#]*", r"\1***", tail)
    return f"{scheme}://{authority}{slash}{tail}"


def load_settings() -> Settings:
    """Build settings, turning pydantic's error into one naming the variable."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = ".".join(str(p) for p in error["loc"])
            name = f"ENVHUB_{field.upper()}" if field else "settings"
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(message if message.startswith("ENVHUB_") else f"{name}: {message}")
        raise ConfigurationError("; ".join(problems)) from exc


_override: Settings | None = None


@functools.cache
def _cached_settings() -> Settings:
    return load_settings()


def get_settings() -> Settings:
    return _override if _override is not None else _cached_settings()


def reset_settings() -> None:
    """Forget cached settings so the next read sees the current environment."""
    _cached_settings.cache_clear()


@contextmanager
def override_settings(settings: Settings) -> Iterator[Settings]:
    """Make :func:`get_settings` return ``settings`` inside the block (tests)."""
    global _override
    previous, _override = _override, settings
    try:
        yield settings
    finally:
        _override = previous
