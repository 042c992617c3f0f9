"""REST API v1: every operation of the dashboard, for programs (the CLI, agents, scripts).

One router per area; each route is a thin translation onto a use case in
``services/`` (which authorizes and audits). Errors are one body everywhere
(``api/errors.py``), lists page by cursor, creates take an ``Idempotency-Key``,
and long operations answer ``202`` with a URL to wait on. The document is
served at ``/api/v1/openapi.json``.
"""

from __future__ import annotations

from fastapi import APIRouter

from envhub.api.v1 import (
    account,
    audit,
    backing,
    commands,
    costs,
    credentials,
    environments,
    files,
    github,
    logs,
    processes,
    projects,
    releases,
    secrets,
    sharing,
    teams,
    usage,
)

router = APIRouter()
for area in (
    account,
    projects,
    github,
    environments,
    logs,
    usage,
    costs,
    backing,
    releases,
    commands,
    files,
    processes,
    credentials,
    secrets,
    teams,
    sharing,
    audit,
):
    router.include_router(area.router)

__all__ = ["router"]
