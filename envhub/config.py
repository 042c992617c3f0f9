"""Settings: the one place envhub reads its environment.

Every knob is an ``ENVHUB_*`` variable (or a line in ``.env``). Code reads them
through :func:`get_settings`, a cached getter that tests override with
:func:`override_settings`.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from envhub.errors import ConfigurationError

PROJECT_ROOT = Path(__file__).resolve().parent.parent

_INSECURE_SECRETS = {"", "changeme", "change-me", "secret", "development-only-secret"}


class Mode(StrEnum):
    development = "development"
    production = "production"


class RuntimeKind(StrEnum):
    local = "local"
    kubernetes = "kubernetes"


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
    # How long one provisioning attempt waits for the health check before it
    # gives up and lets the queue retry with backoff.
    health_timeout: Annotated[float, Field(gt=0)] = 60.0
    # Local runtime: sandbox "auto" picks bubblewrap, then unshare, then a plain
    # process group.
    local_sandbox: str = "auto"
    # Host suffix of local public URLs: http://<env>.<project>.<team>.<suffix>:<port>
    local_url_domain: str = "localhost"
    page_size: Annotated[int, Field(ge=1, le=500)] = 20
    # Kubernetes runtime: a kubeconfig (else KUBECONFIG, else in-cluster).
    kubeconfig: str | None = None
    kube_context: str | None = None
    # Namespaces of the public-URL provider's proxies, allowed to reach environments.
    kube_ingress_namespaces: str = "envhub-system"
    kube_ready_timeout: Annotated[float, Field(gt=0)] = 180.0
    # Browser terminals: how long a shell outlives its last socket (a reload or
    # a dropped network reattaches within it), how often sockets are pinged,
    # and how much of one session is recorded before the recording stops.
    terminal_grace: Annotated[float, Field(ge=0)] = 300.0
    terminal_ping_interval: Annotated[float, Field(gt=0)] = 20.0
    terminal_recording_limit_mb: Annotated[float, Field(gt=0)] = 100.0

    @field_validator("local_sandbox")
    @classmethod
    def _known_sandbox(cls, value: str) -> str:
        if value not in {"auto", "bwrap", "unshare", "none"}:
            raise ValueError("must be one of auto, bwrap, unshare, none")
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
        return self

    @property
    def ingress_namespaces(self) -> tuple[str, ...]:
        return tuple(part.strip() for part in self.kube_ingress_namespaces.split(",") if part.strip())

    @property
    def envs_dir(self) -> Path:
        return self.data_dir / "envs"

    @property
    def recordings_dir(self) -> Path:
        return self.data_dir / "recordings"

    @property
    def base_port(self) -> int:
        parts = urlsplit(self.base_url)
        return parts.port or (443 if parts.scheme == "https" else 80)


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
