"""Every face reports an error with the status and hint of the registry in errors.py."""

from __future__ import annotations

import pytest

from envhub import errors
from envhub.api import errors as api_errors
from envhub.api.terminal import routes as terminal_routes
from envhub.api.terminal.protocol import CloseCode
from tests.unit.test_errors import _all_error_classes


@pytest.mark.parametrize("cls", _all_error_classes(), ids=lambda cls: cls.code)
def test_rest_terminal_and_registry_agree(cls: type[errors.EnvhubError]) -> None:
    error = cls("boom")
    info = errors.REGISTRY[cls.code]
    assert api_errors.status_of(error) == info.status
    assert api_errors.body_of(error)["hint"] == info.hint
    close = terminal_routes._close_code(error)
    if info.status >= 500:
        assert close is CloseCode.unavailable
    else:
        assert 4400 <= close < 4500


def test_not_ready_is_unavailable_everywhere() -> None:
    error = errors.NotReady("starting")
    # The terminal REST routes raise it to the app's handler (api/errors.py), like every route.
    assert api_errors.status_of(error) == 503
    assert terminal_routes._close_code(error) is CloseCode.unavailable
