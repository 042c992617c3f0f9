"""``/api/v1/environments/{id}/logs``: an environment's output, searched, cut to a time range,
followed, of a crashed container's previous instance, or downloaded as a text file."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response, StreamingResponse

from envhub.api.v1.models import NO_NUL, Caller, Id, answers, model_of
from envhub.domain.logs import MAX_SEARCH
from envhub.services import environment_requests, logs, ports
from envhub.services.logs import LogFilter, LogPage
from envhub.services.units import read_only

router = APIRouter(prefix="/api/v1", tags=["environments"])

LogPageModel = model_of(LogPage)

Container = Annotated[
    str | None,
    Query(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", description="One service's container."),
]
_BOUND = (
    "An RFC 3339 time (2026-12-07T17:00:00Z) or a span back from now (90s, 15m, 2h, 1d). "
    "Uses the time the runtime recorded for each line (the local runtime's, to the second)."
)


def log_filter(
    previous: Annotated[
        bool, Query(description="The container's instance before its last restart (a crash's output).")
    ] = False,
    search: Annotated[
        str, Query(max_length=MAX_SEARCH, pattern=NO_NUL, description="Only lines containing this.")
    ] = "",
    regex: Annotated[bool, Query(description="`search` is a regular expression.")] = False,
    ignore_case: bool = False,
    since: Annotated[str, Query(max_length=40, description="Lines printed from then on. " + _BOUND)] = "",
    until: Annotated[str, Query(max_length=40, description="Lines printed until then. " + _BOUND)] = "",
    timestamps: Annotated[bool, Query(description="Start each line with the time it was printed.")] = False,
) -> LogFilter:
    return LogFilter(
        previous=previous,
        search=search,
        regex=regex,
        ignore_case=ignore_case,
        since=since,
        until=until,
        timestamps=timestamps,
    )


Chosen = Annotated[LogFilter, Depends(log_filter)]


def _ndjson(lines: Iterator[str]) -> Iterator[bytes]:
    for line in lines:
        yield (json.dumps({"line": line}, ensure_ascii=False) + "\n").encode()


@router.get(
    "/environments/{environment_id}/logs",
    response_model=LogPageModel,
    responses={
        **answers(400, 404, 409, 422, 502, 503),
        200: {
            "description": "The last lines that pass the filters, as JSON; with follow=true, JSON lines "
            '({"line": ...}) as they are printed, until `seconds` have passed.',
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/LogPage"}},
                "application/x-ndjson": {"schema": {"type": "string"}},
            },
        },
    },
    summary="An environment's output, searched or cut to a time range; follow=true streams new lines",
)
def environment_logs(
    environment_id: Id,
    actor: Caller,
    chosen: Chosen,
    tail: Annotated[int, Query(ge=0, le=logs.MAX_TAIL)] = 200,
    container: Container = None,
    follow: bool = False,
    seconds: Annotated[
        float, Query(gt=0, le=environment_requests.MAX_FOLLOW, description="How long to follow.")
    ] = 60,
) -> Any:
    if not follow:
        with read_only() as session:
            page = logs.environment_logs(
                session=session,
                actor=actor,
                runtime=ports.runtime(),
                environment_id=environment_id,
                tail=tail,
                container=container,
                chosen=chosen,
            )
        return page if tail else {**page, "lines": []}
    with read_only() as session:
        followed = environment_requests.follow_logs(
            session=session,
            actor=actor,
            runtime=ports.runtime(),
            environment_id=environment_id,
            tail=tail,
            container=container,
            seconds=seconds,
            chosen=chosen,
        )
    return StreamingResponse(
        _ndjson(followed), media_type="application/x-ndjson", headers={"Cache-Control": "no-store"}
    )


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")


def download_name(page: LogPage, *, now: datetime) -> str:
    """``<environment>[-<container>][-previous]-<UTC time>.log``, safe in any file system."""
    parts = [_safe(page["environment"]) or "environment"]
    if page["container"]:
        parts.append(_safe(page["container"]))
    if page["previous"]:
        parts.append("previous")
    parts.append(now.strftime("%Y%m%dT%H%M%SZ"))
    return "-".join(parts) + ".log"


@router.get(
    "/environments/{environment_id}/logs/download",
    response_class=Response,
    responses={
        **answers(400, 404, 409, 422, 502, 503),
        200: {
            "description": "The lines as a text file.",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
    },
    summary="An environment's output as a text file (the same filters as /logs)",
)
def download_logs(
    environment_id: Id,
    actor: Caller,
    chosen: Chosen,
    tail: Annotated[int, Query(ge=1, le=logs.MAX_SCAN, description="Lines from the end.")] = logs.MAX_SCAN,
    container: Container = None,
) -> Response:
    with read_only() as session:
        page = logs.environment_logs(
            session=session,
            actor=actor,
            runtime=ports.runtime(),
            environment_id=environment_id,
            tail=tail,
            container=container,
            chosen=chosen,
            scan=logs.MAX_SCAN,
        )
    name = download_name(page, now=datetime.now(UTC))
    return Response(
        "".join(line + "\n" for line in page["lines"]),
        media_type="text/plain; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )
