"""Environment specs: parsing raw input and merging project defaults."""

from __future__ import annotations

from typing import Any

import pytest

from envhub.domain.specs import (
    DEFAULT_COMMAND,
    EnvironmentSpec,
    EnvironmentTarget,
    ServiceSocket,
    check_service_sockets,
    merge_spec,
    parse_spec,
)
from envhub.errors import ValidationFailed


def test_defaults() -> None:
    spec = parse_spec({})
    assert spec == EnvironmentSpec(command=DEFAULT_COMMAND, env={}, repo_url=None, ref=None, health_path="/")


def test_values_are_normalised() -> None:
    spec = parse_spec({"command": "  npm start  ", "repo_url": " https://x.test/r.git ", "ref": ""})
    assert spec.command == "npm start"
    assert spec.repo_url == "https://x.test/r.git"
    assert spec.ref is None


@pytest.mark.parametrize(
    "repo", ["https://github.com/a/b.git", "git@github.com:a/b.git", "ssh://h/r", "file:///srv/r", "/srv/r"]
)
def test_accepted_repositories(repo: str) -> None:
    assert parse_spec({"repo_url": repo}).repo_url == repo


@pytest.mark.parametrize(
    ("data", "field", "fragment"),
    [
        ({"command": "   "}, "command", "blank"),
        ({"command": ""}, "command", "at least 1"),
        ({"command": "x" * 4001}, "command", "at most 4000"),
        ({"env": {"1BAD": "x"}}, "env", "not a valid environment variable name"),
        ({"env": {"PORT": "80"}}, "env", "set by envhub"),
        ({"env": {"ENVHUB_PROJECT": "x"}}, "env", "set by envhub"),
        ({"ref": "../etc"}, "ref", "not a valid git ref"),
        ({"ref": "-x"}, "ref", "not a valid git ref"),
        ({"ref": "a b"}, "ref", "not a valid git ref"),
        ({"ref": "main\n"}, "ref", "not a valid git ref"),
        ({"env": {"KEY\n": "x"}}, "env", "not a valid environment variable name"),
        ({"health_path": "healthz"}, "health_path", "must start with '/'"),
        ({"surprise": 1}, "surprise", "Extra inputs"),
    ],
)
def test_invalid_specs_name_the_field(data: dict[str, Any], field: str, fragment: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_spec(data)
    error = caught.value
    assert error.code == "validation_failed"
    assert field in error.details
    assert fragment in error.details[field]
    assert error.message.startswith("invalid environment spec: ")
    assert field in error.message


def test_several_problems_are_all_reported() -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_spec({"health_path": "x", "ref": "..", "env": {"PORT": "1"}})
    assert set(caught.value.details) == {"health_path", "ref", "env"}


def test_specs_are_frozen() -> None:
    spec = parse_spec({})
    with pytest.raises(Exception):
        spec.command = "other"  # type: ignore[misc]


def test_merge_applies_non_empty_overrides_and_merges_env() -> None:
    base = parse_spec({"command": "serve", "env": {"A": "1", "B": "2"}, "repo_url": "/srv/r", "ref": "main"})
    merged = merge_spec(
        base, {"env": {"B": "3", "C": "4"}, "ref": "feature/x", "command": "", "repo_url": None}
    )
    assert merged.env == {"A": "1", "B": "3", "C": "4"}
    assert merged.ref == "feature/x"
    assert merged.command == "serve"  # empty overrides keep the default
    assert merged.repo_url == "/srv/r"
    assert base.env == {"A": "1", "B": "2"}  # the base is not changed


def test_merge_validates_the_result() -> None:
    base = parse_spec({})
    with pytest.raises(ValidationFailed) as caught:
        merge_spec(base, {"health_path": "nope"})
    assert "health_path" in caught.value.details
    with pytest.raises(ValidationFailed) as caught:
        merge_spec(base, {"env": {"PORT": "1"}})
    assert "env" in caught.value.details
    with pytest.raises(ValidationFailed):
        merge_spec(base, {"unknown": "x"})


def test_target_labels_identify_the_environment() -> None:
    target = EnvironmentTarget(
        id=7, name="dev", project="shop", team="acme", generation=2, spec=parse_spec({})
    )
    assert target.labels == {
        "app.kubernetes.io/managed-by": "envhub",
        "envhub.dev/environment": "7",
        "envhub.dev/project": "shop",
        "envhub.dev/team": "acme",
    }


def test_services_with_their_own_ports_and_sockets_are_accepted() -> None:
    check_service_sockets(
        [
            ServiceSocket("db", 5432, "/srv/envhub/run/pg/.s.PGSQL.5432"),
            ServiceSocket("cache", 6379, "/r/c.sock"),
        ],
        app_port=8000,
    )
    check_service_sockets([])


@pytest.mark.parametrize(
    ("services", "app_port", "problems"),
    [
        (
            [ServiceSocket("db", 8000, "/r/db.sock")],
            8000,
            {"services.db": "port 8000 is the app's own $PORT; the service needs another port"},
        ),
        (
            [ServiceSocket("db", 5432, "/r/a.sock"), ServiceSocket("cache", 5432, "/r/b.sock")],
            None,
            {"services.cache": "port 5432 is already service db's"},
        ),
        (
            [ServiceSocket("db", 5432, "/r/a.sock"), ServiceSocket("db", 5433, "/r/b.sock")],
            None,
            {"services.db": "each service needs a name of its own"},
        ),
        ([ServiceSocket("db", 0, "/r/a.sock")], None, {"services.db": "port 0 is not a TCP port (1-65535)"}),
        (
            [ServiceSocket("db", 70000, "/r/a.sock")],
            None,
            {"services.db": "port 70000 is not a TCP port (1-65535)"},
        ),
        (
            [ServiceSocket("db", 5432, "run/db.sock")],
            None,
            {"services.db": "the socket must be an absolute, normalised path"},
        ),
        (
            [ServiceSocket("db", 5432, "/r/../etc/db.sock")],
            None,
            {"services.db": "the socket must be an absolute, normalised path"},
        ),
        (
            [ServiceSocket("db", 5432, "/" + "x" * 107)],
            None,
            {"services.db": "the socket path is longer than a UNIX socket address allows (107 bytes)"},
        ),
    ],
)
def test_services_that_cannot_be_relayed_are_refused(
    services: list[ServiceSocket], app_port: int | None, problems: dict[str, str]
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        check_service_sockets(services, app_port=app_port)
    assert caught.value.details == problems
    assert caught.value.message.startswith("these services cannot be relayed into the environment: ")
