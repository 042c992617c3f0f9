"""The error tree: stable codes, hints, and the dict every interface sends."""

from __future__ import annotations

import pytest

from envhub import errors


def test_to_dict() -> None:
    error = errors.NotFound("environment 7 was not found", details={"environment_id": 7})
    assert error.to_dict() == {
        "code": "not_found",
        "message": "environment 7 was not found",
        "hint": errors.NotFound.default_hint,
        "details": {"environment_id": 7},
    }
    assert str(error) == "environment 7 was not found"


def test_explicit_hint_wins_and_details_default_to_empty() -> None:
    error = errors.Conflict("taken", hint="Pick another.")
    assert error.to_dict()["hint"] == "Pick another."
    assert error.to_dict()["details"] == {}


@pytest.mark.parametrize(
    ("cls", "code", "parent"),
    [
        (errors.ConfigurationError, "configuration_invalid", errors.EnvhubError),
        (errors.ValidationFailed, "validation_failed", errors.EnvhubError),
        (errors.InvalidName, "invalid_name", errors.ValidationFailed),
        (errors.NotFound, "not_found", errors.EnvhubError),
        (errors.Conflict, "conflict", errors.EnvhubError),
        (errors.PermissionDenied, "forbidden", errors.EnvhubError),
        (errors.InvalidTransition, "invalid_transition", errors.EnvhubError),
        (errors.RuntimeFailure, "runtime_error", errors.EnvhubError),
        (errors.NotReady, "not_ready", errors.RuntimeFailure),
        (errors.ProcessExited, "process_exited", errors.RuntimeFailure),
        (errors.WorkspaceFailed, "workspace_failed", errors.RuntimeFailure),
        (errors.QuotaExceeded, "quota_exceeded", errors.RuntimeFailure),
    ],
)
def test_tree_and_codes(cls: type[errors.EnvhubError], code: str, parent: type[Exception]) -> None:
    error = cls("boom")
    assert error.code == code
    assert isinstance(error, parent)
    assert error.hint, "every error tells the person what to do next"
    assert error.to_dict()["code"] == code


def test_not_yet_is_retryable_and_real_failures_are_not() -> None:
    assert errors.NotReady("starting").retryable
    for cls in (errors.ProcessExited, errors.WorkspaceFailed, errors.QuotaExceeded, errors.NotFound):
        assert not cls("boom").retryable, cls


def test_codes_are_unique() -> None:
    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.EnvhubError)]
    codes = [c.code for c in classes]
    assert len(codes) == len(set(codes))
