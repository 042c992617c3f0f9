"""The text formats every face accepts, parsed once (services/inputs.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from envhub.errors import ValidationFailed
from envhub.services.inputs import (
    optional_moment,
    parse_env_lines,
    parse_lines,
    parse_services,
    share_expiry,
)


def test_env_lines_keep_values_as_typed_and_skip_comments() -> None:
    text = "# settings\nA=1\n\n  B = two words \nURL=http://x/?a=b\nA=again\n"
    assert parse_env_lines(text) == {"A": "again", "B": " two words", "URL": "http://x/?a=b"}


@pytest.mark.parametrize("line", ["JUSTAKEY", "=value", "  =x"])
def test_env_lines_name_the_bad_line(line: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_env_lines(f"OK=1\n{line}", field="env")
    assert caught.value.details == {"env": "line 2: expected KEY=VALUE"}


def test_lines_drop_blanks_and_comments() -> None:
    assert parse_lines(" 10.0.0.0/8 \n\n# office\nkube-dns\n") == ["10.0.0.0/8", "kube-dns"]


def test_services_yaml_becomes_strings_where_containers_want_strings() -> None:
    text = """
services:
  - name: web
    image: shop:1
    env: {DEBUG: 1, RATIO: 0.5, ENABLED: true, DAY: 2026-01-02}
    command: python -m shop --port 8080
    args: [--workers, 2]
"""
    [web] = parse_services(text)
    assert web["env"] == {"DEBUG": "1", "RATIO": "0.5", "ENABLED": "true", "DAY": "2026-01-02"}
    assert web["command"] == ["python", "-m", "shop", "--port", "8080"]
    assert web["args"] == ["--workers", "2"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- name: web\n  image: [", "not valid YAML (line"),
        ("name: web", "expected a list of services"),
        ("- web", "service 1 is not a mapping"),
        ('- name: web\n  command: "python \'unclosed"', "service 1, command:"),
    ],
)
def test_services_errors_say_where(text: str, message: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_services(text)
    assert caught.value.message.startswith(message), caught.value.message
    assert set(caught.value.details) == {"services"}


def test_blank_services_mean_none() -> None:
    assert parse_services("  \n") == []
    assert parse_services("# nothing yet\n") == []


def test_a_share_lapses_at_the_end_of_the_named_day_utc() -> None:
    end = datetime(2026, 12, 24, 23, 59, 59, tzinfo=UTC)
    assert share_expiry("2026-12-24") == end
    assert share_expiry(date(2026, 12, 24)) == end
    assert share_expiry("") is None
    assert share_expiry(None) is None


def test_a_share_expiry_with_a_time_is_taken_as_given() -> None:
    assert share_expiry("2026-12-24T10:00:00+02:00") == datetime(2026, 12, 24, 8, 0, tzinfo=UTC)
    assert share_expiry("2026-12-24T10:00:00") == datetime(2026, 12, 24, 10, 0, tzinfo=UTC)


def test_a_share_expiry_that_is_no_date_is_refused_on_its_field() -> None:
    with pytest.raises(ValidationFailed) as caught:
        share_expiry("next tuesday")
    assert caught.value.details == {"field": "expires_at"}


def test_filter_moments_are_forgiving() -> None:
    assert optional_moment("2026-01-02") == datetime(2026, 1, 2, tzinfo=UTC)
    assert optional_moment("2026-01-0") is None
    assert optional_moment("  ") is None
