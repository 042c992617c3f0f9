"""Text people type, turned into what the use cases take.

The dashboard's forms, the CLI's flags and the REST API's text fields all carry
the same small formats, so each is parsed here, once: ``KEY=VALUE`` lines,
one-entry-per-line lists, the container services YAML, and a share's expiry
date. Errors are :class:`ValidationFailed` naming the field in ``details``.
"""

from __future__ import annotations

import shlex
from datetime import UTC, date, datetime, time
from typing import Any

import yaml

from envhub.errors import ValidationFailed


def _invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(message, details={field: message})


def parse_env_lines(text: str, *, field: str = "env") -> dict[str, str]:
    """``KEY=VALUE`` lines (blank lines and ``#`` comments ignored) into a dict.

    The value is everything after the first ``=``, kept as typed (spaces too);
    a later line for the same key wins.
    """
    env: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise _invalid(field, f"line {number}: expected KEY=VALUE")
        env[key.strip()] = value
    return env


def parse_lines(text: str) -> list[str]:
    """One entry per line; blank lines and ``#`` comments ignored."""
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def _text(value: Any) -> Any:
    """YAML reads ``DEBUG: 1`` or ``--port 8080`` as numbers; a container wants strings."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | date):  # datetime is a date too
        return str(value)
    return value


def parse_services(text: str, *, field: str = "services") -> list[dict[str, Any]]:
    """The container services YAML (a list of mappings) as plain data; blank means none.

    Environment values and command words become strings, a command written as
    one line is split like a shell would; the result is what
    ``create_project(workloads={"services": ...})`` validates.
    """
    if not text.strip():
        return []
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "cannot be parsed"
        raise _invalid(field, f"not valid YAML{where}: {problem}") from exc
    if isinstance(data, dict) and set(data) == {"services"}:
        data = data["services"]  # a pasted "services:" block
    if data is None:
        return []
    if not isinstance(data, list):
        raise _invalid(field, "expected a list of services, each starting with '- name: …'")
    services = []
    for number, item in enumerate(data, start=1):
        if not isinstance(item, dict):
            raise _invalid(field, f"service {number} is not a mapping (name: …, image: …)")
        service = dict(item)
        if isinstance(service.get("env"), dict):
            service["env"] = {str(key): _text(value) for key, value in service["env"].items()}
        for key in ("command", "args"):
            if isinstance(service.get(key), list):
                service[key] = [_text(value) for value in service[key]]
            elif isinstance(service.get(key), str):
                try:  # "python -m shop.worker" reads as a command line
                    service[key] = shlex.split(service[key])
                except ValueError as exc:
                    raise _invalid(field, f"service {number}, {key}: {exc}") from exc
        services.append(service)
    return services


def optional_moment(text: str) -> datetime | None:
    """A date or time typed into a filter (ISO 8601, UTC unless it says); None when empty or unreadable.

    Filters are forgiving: a half-typed date filters nothing rather than failing.
    """
    if not text.strip():
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def share_expiry(value: str | date | datetime | None) -> datetime | None:
    """When a share lapses: a bare date means the end of that day (UTC); empty means never.

    A time with a zone is taken as given; ``share_environment`` refuses one in the past.
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime.combine(value, time(23, 59, 59), tzinfo=UTC)
    text = value.strip()
    try:
        if len(text) == 10:
            return share_expiry(date.fromisoformat(text))
        return share_expiry(datetime.fromisoformat(text))
    except ValueError as exc:
        raise ValidationFailed(
            "the expiry is not a date (YYYY-MM-DD) or a time (ISO 8601)", details={"field": "expires_at"}
        ) from exc
