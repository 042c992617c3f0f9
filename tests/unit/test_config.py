"""Settings: defaults, ENVHUB_* variables, .env files and refused secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from envhub.config import (
    Mode,
    RuntimeKind,
    Settings,
    get_settings,
    load_settings,
    override_settings,
    reset_settings,
)
from envhub.errors import ConfigurationError
from tests.conftest import scrub_envhub_environment


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No ENVHUB_* variables and a working directory without a .env file."""
    scrub_envhub_environment(monkeypatch)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ENVHUB_DATA_DIR", str(tmp_path / "data"))
    return tmp_path


def test_defaults(clean_env: Path) -> None:
    settings = load_settings()
    assert settings.mode is Mode.development
    assert settings.runtime is RuntimeKind.local
    assert settings.data_dir == (clean_env / "data").resolve()
    assert settings.database_url == f"sqlite:///{settings.data_dir / 'envhub.db'}"
    assert settings.redis_url == ""
    assert settings.base_url == "http://localhost:3000"
    assert settings.base_port == 3000
    assert settings.envs_dir == settings.data_dir / "envs"
    assert settings.page_size == 20
    assert settings.local_sandbox == "auto"
    assert settings.helm_binary == "helm"


def test_variables_are_read(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVHUB_PAGE_SIZE", "50")
    monkeypatch.setenv("ENVHUB_BASE_URL", "https://envhub.example.com/")
    monkeypatch.setenv("ENVHUB_DATABASE_URL", "postgresql+psycopg://u@db/envhub")
    settings = load_settings()
    assert settings.page_size == 50
    assert settings.base_url == "https://envhub.example.com"  # trailing slash dropped
    assert settings.base_port == 443
    assert settings.database_url == "postgresql+psycopg://u@db/envhub"
    monkeypatch.setenv("ENVHUB_HELM_BINARY", "/opt/helm/bin/helm")
    assert load_settings().helm_binary == "/opt/helm/bin/helm"
    monkeypatch.setenv("ENVHUB_SERVICES_REDIS_IMAGE", " registry.example.com/redis@sha256:" + "0" * 64)
    monkeypatch.setenv("ENVHUB_SERVICES_REDIS_STORAGE_CLASS", "fast-ssd")
    loaded = load_settings()
    assert loaded.services_redis_image == "registry.example.com/redis@sha256:" + "0" * 64
    assert loaded.services_redis_storage_class == "fast-ssd"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ENVHUB_PAGE_SIZE", "abc"),
        ("ENVHUB_PAGE_SIZE", "0"),
        ("ENVHUB_PAGE_SIZE", "501"),
        ("ENVHUB_RECONCILE_INTERVAL", "0"),
        ("ENVHUB_HEALTH_TIMEOUT", "-1"),
        ("ENVHUB_JOB_MAX_ATTEMPTS", "0"),
        ("ENVHUB_MODE", "staging"),
        ("ENVHUB_RUNTIME", "docker"),
        ("ENVHUB_LOCAL_SANDBOX", "chroot"),
        ("ENVHUB_BASE_URL", "localhost:3000"),
        ("ENVHUB_HELM_BINARY", ""),
        ("ENVHUB_SERVICES_REDIS_IMAGE", ""),
        ("ENVHUB_SERVICES_REDIS_IMAGE", "redis 7"),
        ("ENVHUB_SERVICES_REDIS_STORAGE_CLASS", "Fast_SSD"),
    ],
)
def test_an_invalid_value_names_its_variable(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert caught.value.code == "configuration_invalid"
    assert caught.value.message.startswith(f"{variable}: ")
    assert "ENVHUB_" in caught.value.hint


def test_several_invalid_values_are_all_named(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVHUB_PAGE_SIZE", "abc")
    monkeypatch.setenv("ENVHUB_LOCAL_SANDBOX", "chroot")
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert "ENVHUB_PAGE_SIZE" in caught.value.message
    assert "ENVHUB_LOCAL_SANDBOX" in caught.value.message


@pytest.mark.parametrize("secret", [None, "changeme", "secret", ""])
def test_production_refuses_default_secrets(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, secret: str | None
) -> None:
    monkeypatch.setenv("ENVHUB_MODE", "production")
    if secret is not None:
        monkeypatch.setenv("ENVHUB_SECRET_KEY", secret)
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert caught.value.message.startswith("ENVHUB_SECRET_KEY: refusing an insecure default")


def test_production_accepts_a_real_secret(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVHUB_MODE", "production")
    monkeypatch.setenv("ENVHUB_SECRET_KEY", "k3y-" + "x" * 40)
    assert load_settings().mode is Mode.production


def test_development_allows_the_default_secret(clean_env: Path) -> None:
    assert load_settings().secret_key == "development-only-secret"


def test_dotenv_file_is_read_and_variables_win(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (clean_env / ".env").write_text(
        "ENVHUB_PAGE_SIZE=42\nENVHUB_QUEUE_NAME=from-dotenv\nUNRELATED=1\n", encoding="utf-8"
    )
    settings = load_settings()
    assert settings.page_size == 42
    assert settings.queue_name == "from-dotenv"
    monkeypatch.setenv("ENVHUB_PAGE_SIZE", "7")
    assert load_settings().page_size == 7


def test_invalid_value_in_dotenv_is_named(clean_env: Path) -> None:
    (clean_env / ".env").write_text("ENVHUB_HEALTH_TIMEOUT=soon\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="ENVHUB_HEALTH_TIMEOUT"):
        load_settings()


def test_get_settings_is_cached_until_reset_and_can_be_overridden(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reset_settings()
    try:
        monkeypatch.setenv("ENVHUB_PAGE_SIZE", "11")
        assert get_settings().page_size == 11
        monkeypatch.setenv("ENVHUB_PAGE_SIZE", "12")
        assert get_settings().page_size == 11
        reset_settings()
        assert get_settings().page_size == 12
        replacement = Settings(_env_file=None, page_size=99)  # type: ignore[call-arg]
        with override_settings(replacement):
            assert get_settings() is replacement
            with override_settings(Settings(_env_file=None, page_size=98)):  # type: ignore[call-arg]
                assert get_settings().page_size == 98
            assert get_settings() is replacement
        assert get_settings().page_size == 12
    finally:
        reset_settings()


def test_the_internal_address_is_the_base_url_unless_given(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENVHUB_BASE_URL", "http://localhost:3000/")
    assert load_settings().internal_address == "http://localhost:3000"
    monkeypatch.setenv("ENVHUB_INTERNAL_URL", " http://10.1.2.3:3000/ ")
    assert load_settings().internal_address == "http://10.1.2.3:3000"
    for bad in ("10.1.2.3:3000", "http://10.1.2.3:3000/ws", "ftp://10.1.2.3", "http://?x=1"):
        monkeypatch.setenv("ENVHUB_INTERNAL_URL", bad)
        with pytest.raises(ConfigurationError, match="ENVHUB_INTERNAL_URL"):
            load_settings()


def test_the_object_store_is_off_until_a_bucket_is_named(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings()
    assert not settings.object_store_configured
    assert settings.object_store_region == "us-east-1"
    monkeypatch.setenv("ENVHUB_OBJECT_STORE_URL", " http://minio.storage:9000/ ")
    monkeypatch.setenv("ENVHUB_OBJECT_STORE_BUCKET", "envhub-recordings")
    monkeypatch.setenv("ENVHUB_OBJECT_STORE_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("ENVHUB_OBJECT_STORE_SECRET_ACCESS_KEY", "s3cret")
    settings = load_settings()
    assert settings.object_store_configured
    assert settings.object_store_url == "http://minio.storage:9000"
    assert "s3cret" not in repr(settings)


@pytest.mark.parametrize(
    ("variables", "named", "says"),
    [
        # Partly configured: an endpoint or keys without a bucket, one key without the other.
        ({"URL": "http://127.0.0.1:9000"}, "ENVHUB_OBJECT_STORE_BUCKET", "required"),
        (
            {"ACCESS_KEY_ID": "AKIA", "SECRET_ACCESS_KEY": "s3cret-value"},
            "ENVHUB_OBJECT_STORE_BUCKET",
            "required",
        ),
        ({"BUCKET": "b-1", "ACCESS_KEY_ID": "AKIA"}, "ENVHUB_OBJECT_STORE_SECRET_ACCESS_KEY", "required"),
        (
            {"BUCKET": "b-1", "SECRET_ACCESS_KEY": "s3cret-value"},
            "ENVHUB_OBJECT_STORE_ACCESS_KEY_ID",
            "required",
        ),
        # Bad values.
        ({"BUCKET": "Envhub_Recordings"}, "ENVHUB_OBJECT_STORE_BUCKET", "not an S3 bucket name"),
        ({"BUCKET": "ab"}, "ENVHUB_OBJECT_STORE_BUCKET", "not an S3 bucket name"),
        ({"BUCKET": "10.0.0.1"}, "ENVHUB_OBJECT_STORE_BUCKET", "not an S3 bucket name"),
        ({"BUCKET": "b-1", "URL": "minio:9000"}, "ENVHUB_OBJECT_STORE_URL", "not an http(s) URL"),
        ({"BUCKET": "b-1", "URL": "http://minio:9000/b-1"}, "ENVHUB_OBJECT_STORE_URL", "not an http(s) URL"),
        ({"BUCKET": "b-1", "REGION": "EU West"}, "ENVHUB_OBJECT_STORE_REGION", "not a region name"),
    ],
)
def test_a_partial_or_bad_object_store_is_refused_naming_the_variable(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], named: str, says: str
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(f"ENVHUB_OBJECT_STORE_{name}", value)
    with pytest.raises(ConfigurationError) as refused:
        load_settings()
    assert refused.value.code == "configuration_invalid"
    assert refused.value.message.startswith(f"{named}: ")
    assert says in refused.value.message
    assert "s3cret-value" not in str(refused.value)
