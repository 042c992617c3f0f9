"""domain/logs.py: the time bounds, the runtime's line times and the searches every face shares."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from envhub.domain import logs as rules
from envhub.errors import ValidationFailed

NOW = datetime(2026, 12, 7, 17, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", NOW - timedelta(seconds=90)),
        ("15m", NOW - timedelta(minutes=15)),
        ("2h", NOW - timedelta(hours=2)),
        ("1d", NOW - timedelta(days=1)),
        ("2026-12-07T16:30:00Z", datetime(2026, 12, 7, 16, 30, tzinfo=UTC)),
        ("2026-12-07T17:30:00+01:00", datetime(2026, 12, 7, 16, 30, tzinfo=UTC)),
        ("2026-12-07", datetime(2026, 12, 7, tzinfo=UTC)),
    ],
)
def test_a_bound_is_a_moment_or_a_span_back_from_now(text: str, expected: datetime) -> None:
    assert rules.parse_time_bound(text, now=NOW, field="since") == expected


@pytest.mark.parametrize("text", ["yesterday", "15 minutes", "-5m", "12:00", ""])
def test_anything_else_is_refused_naming_the_field(text: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        rules.parse_time_bound(text, now=NOW, field="until")
    assert "until" in caught.value.details


def test_a_kubelet_line_is_split_into_its_time_and_text() -> None:
    moment, text = rules.split_stamp("2026-12-07T16:59:58.123456789Z GET /health 200")
    assert moment == datetime(2026, 12, 7, 16, 59, 58, 123456, tzinfo=UTC)
    assert text == "GET /health 200"
    assert rules.split_stamp("2026 was a year") == (None, "2026 was a year")
    assert rules.split_stamp("no time here") == (None, "no time here")


def test_a_substring_search_with_or_without_case() -> None:
    exact = rules.matcher("Error", is_regex=False, ignore_case=False)
    assert exact("an Error here")
    assert not exact("an error here")
    folded = rules.matcher("Error", is_regex=False, ignore_case=True)
    assert folded("an ERROR here")
    # Not an expression: its characters are taken as they are.
    literal = rules.matcher("a.c(", is_regex=False, ignore_case=False)
    assert literal("xa.c(y")
    assert not literal("abc(")


def test_a_regular_expression_search() -> None:
    test = rules.matcher(r"status=5\d\d", is_regex=True, ignore_case=False)
    assert test("GET / status=503")
    assert not test("GET / status=200")
    with pytest.raises(ValidationFailed, match="not a regular expression"):
        rules.matcher("(unclosed", is_regex=True, ignore_case=False)
    with pytest.raises(ValidationFailed, match="at most"):
        rules.matcher("x" * (rules.MAX_SEARCH + 1), is_regex=False, ignore_case=False)


def test_a_catastrophic_expression_fails_instead_of_holding_the_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(rules, "SEARCH_BUDGET", 0.2)
    test = rules.matcher(r"(a|aa)+$", is_regex=True, ignore_case=False)
    with pytest.raises(ValidationFailed, match="took more than"):
        test("a" * 40 + "!")
