"""domain/redaction.py: which variable values a person looking inside an environment may see."""

from __future__ import annotations

import pytest

from envhub.domain.redaction import MASK, shown_value


@pytest.mark.parametrize(
    "name",
    ["API_TOKEN", "GITHUB_TOKEN", "DB_PASSWORD", "PGPASSWORD", "SECRET_KEY_BASE", "AWS_SECRET_ACCESS_KEY",
     "STRIPE_API_KEY", "KEY", "PRIVATE_KEY", "OAUTH_CLIENT_SECRET", "SESSION_COOKIE", "SENTRY_DSN",
     "AZURE_CONNECTION_STRING", "basic_auth"],
)  # fmt: skip
def test_a_secret_looking_name_hides_its_value(name: str) -> None:
    assert shown_value(name, "plain-value") == (MASK, True)


@pytest.mark.parametrize(
    ("name", "value"),
    [("MODE", "debug"), ("PORT", "8080"), ("LOG_LEVEL", "info"), ("KEYBOARD_LAYOUT", "us"), ("MONKEY", "x")],
)
def test_an_ordinary_variable_is_shown_as_configured(name: str, value: str) -> None:
    assert shown_value(name, value) == (value, False)


def test_a_urls_password_is_hidden_and_the_rest_kept() -> None:
    assert shown_value("DATABASE_URL", "postgres://app:hunter2@db:5432/app") == (
        f"postgres://app:{MASK}@db:5432/app",
        True,
    )
    assert shown_value("REDIS_URL", "redis://:s3cret@cache:6379/0") == (f"redis://:{MASK}@cache:6379/0", True)
    assert shown_value("HOMEPAGE", "https://example.com/a:b@c") == ("https://example.com/a:b@c", False)


@pytest.mark.parametrize(
    "value",
    [
        "ghp_" + "a" * 36,
        "xoxb-1234567890-abcdef",
        "AKIAABCDEFGHIJKLMNOP",
        "sk-" + "A1" * 12,
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.sig",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIE",
    ],
)
def test_a_well_known_token_is_hidden_whatever_its_name(value: str) -> None:
    assert shown_value("SOMETHING", value) == (MASK, True)


def test_a_value_from_a_secret_is_never_shown() -> None:
    assert shown_value("MODE", "", from_secret=True) == (MASK, True)
    assert shown_value("EMPTY", "") == ("", False)
