"""The OpenAPI document declares, for every operation, its errors as the one error body."""

from __future__ import annotations

from typing import Any

import pytest

from envhub.api.app import create_api, serving
from envhub.config import Settings
from tests.support.loops import run_in_fresh_loop


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    openapi: dict[str, Any] = create_api().openapi()
    return openapi


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        if path.startswith("/api/v1/")
        for method, operation in item.items()
    ]


def test_it_is_served_where_the_issue_says(document: dict[str, Any]) -> None:
    assert create_api().openapi_url == "/api/v1/openapi.json"
    assert len(operations(document)) >= 40


def test_every_operation_declares_its_errors_as_the_error_body(document: dict[str, Any]) -> None:
    for method, path, operation in operations(document):
        responses = operation["responses"]
        for status in ("400", "401", "403", "413", "422", "429", "500"):
            assert status in responses, (method, path, status)
        for status, response in responses.items():
            if int(status) >= 400:
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (method, path, status)
        if "{" in path:
            assert "404" in responses, (method, path)
    error = document["components"]["schemas"]["ErrorBody"]
    assert set(error["required"]) == {"code", "message", "hint"}


def test_every_success_names_its_content_type(document: dict[str, Any]) -> None:
    for method, path, operation in operations(document):
        successes = {s: r for s, r in operation["responses"].items() if s.startswith("2")}
        assert len(successes) == 1, (method, path, successes)
        [(status, response)] = successes.items()
        if status == "204":
            assert "content" not in response, (method, path)
        else:
            assert response["content"], (method, path)
    streams = {
        (m, p): set(o["responses"]["200"]["content"])
        for m, p, o in operations(document)
        if p.endswith(("/logs", "/exec", "/export"))
    }
    assert streams == {
        ("GET", "/api/v1/environments/{environment_id}/logs"): {"application/json", "application/x-ndjson"},
        ("POST", "/api/v1/environments/{environment_id}/exec"): {"application/x-ndjson"},
        ("GET", "/api/v1/audit/export"): {"application/x-ndjson"},
    }


def test_the_app_is_prepared_while_it_starts(settings: Settings) -> None:
    """The lifespan builds what FastAPI would otherwise build on the first request (the routes'
    models, the document with them), so that request does not wait about half a second."""
    api = create_api()
    unbuilt = api.openapi_schema

    async def start_and_stop() -> None:
        async with serving(api):
            pass

    run_in_fresh_loop(start_and_stop(), timeout=60)
    built = api.openapi_schema
    assert unbuilt is None
    assert built is not None
    assert built["info"]["title"] == "envhub"
