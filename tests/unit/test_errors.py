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
        (errors.SourceFetchFailed, "source_fetch_failed", errors.RuntimeFailure),
        (errors.CommitInvalid, "commit_invalid", errors.ValidationFailed),
        (errors.SourcePathInvalid, "source_path_invalid", errors.ValidationFailed),
        (errors.ChartRefInvalid, "chart_ref_invalid", errors.ValidationFailed),
        (errors.ChartRenderFailed, "chart_render_failed", errors.ValidationFailed),
        (errors.HelmUnavailable, "helm_unavailable", errors.ConfigurationError),
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


def _all_error_classes() -> list[type[errors.EnvhubError]]:
    found, todo = [], [errors.EnvhubError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def test_every_error_class_has_a_registry_entry() -> None:
    for cls in _all_error_classes():
        info = errors.REGISTRY[cls.code]
        assert (info.status, info.hint, info.retryable) == (cls.status, cls.default_hint, cls.retryable), cls
        assert 400 <= info.status < 600, cls
        assert info.hint, f"{cls.__name__} tells the person what to do next"
    assert errors.error_info("no_such_code") == errors.REGISTRY["internal_error"]


def test_the_registry_keeps_the_statuses_clients_rely_on() -> None:
    expected = {
        "unauthenticated": 401, "forbidden": 403, "not_found": 404, "conflict": 409,
        "invalid_transition": 409, "validation_failed": 422, "rate_limited": 429,
        "not_ready": 503, "cluster_unreachable": 503, "runtime_error": 502, "internal_error": 500,
    }  # fmt: skip
    assert {code: errors.REGISTRY[code].status for code in expected} == expected


def test_advice_is_for_stored_codes() -> None:
    assert "$PORT" in errors.advice_for("process_exited")
    assert errors.advice_for("") == ""
    assert errors.advice_for("cluster_rejected").startswith("Read the message")
