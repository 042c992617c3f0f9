"""``POST /api/v1/environments/{id}/exec``: run one command, no terminal, output streamed.

For ``envhub exec`` and agents. The answer is JSON lines
(``application/x-ndjson``): ``{"output": <base64 bytes>}`` as the command
writes (stdout and stderr merged, as the runtime's exec port gives them),
then one last ``{"exit_code", "timed_out", "truncated", "output_bytes"}``.
A command still running at ``timeout_seconds``, or past ``max_output_bytes``
of output, is ended (``exit_code`` is then null, or what it died with).
Authorization and the audit record happen before the first byte.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, BeforeValidator, Field, field_validator

from envhub.api.v1.models import NO_NUL, Caller, Id, Number, streamed
from envhub.domain.workloads import reject_bool
from envhub.models.db import session_scope
from envhub.runtime.base import ExecSession
from envhub.services import commands, ports

router = APIRouter(prefix="/api/v1")

MAX_OUTPUT = 100 * 1024 * 1024
# How long one read waits before looking at the clock again.
READ_SLICE = 2.0


class ExecIn(BaseModel):
    command: list[Annotated[str, Field(max_length=4096, pattern=NO_NUL)]] = Field(
        min_length=1, max_length=256
    )
    timeout_seconds: Annotated[float, BeforeValidator(reject_bool)] = Field(default=300, gt=0, le=3600)
    max_output_bytes: Number = Field(default=10 * 1024 * 1024, ge=1, le=MAX_OUTPUT)
    container: str | None = Field(default=None, pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")

    @field_validator("command")
    @classmethod
    def _no_nul(cls, argv: list[str]) -> list[str]:
        if any("\x00" in arg for arg in argv):
            raise ValueError("arguments cannot contain NUL characters")
        return argv


def _line(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, separators=(",", ":")) + "\n").encode()


def stream(process: ExecSession, *, timeout: float, cap: int) -> Iterator[bytes]:
    """The command's output as JSON lines, then how it ended; ends the process if it must."""
    deadline = time.monotonic() + timeout
    sent, code = 0, None
    timed_out = truncated = False
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            try:
                data = process.read(65536, timeout=min(left, READ_SLICE))
            except TimeoutError:
                continue
            if not data:
                break
            if len(data) > cap - sent:
                data, truncated = data[: cap - sent], True
            if data:
                sent += len(data)
                yield _line({"output": base64.b64encode(data).decode()})
            if truncated:
                break
        if not (timed_out or truncated):
            code = process.wait(max(0.1, deadline - time.monotonic()))
            timed_out = code is None
    finally:
        if code is None:
            process.close()
    if code is None:
        code = process.wait(2.0) if truncated else None
    yield _line({"exit_code": code, "timed_out": timed_out, "truncated": truncated, "output_bytes": sent})


@router.post(
    "/environments/{environment_id}/exec",
    response_class=StreamingResponse,
    responses=streamed(
        "application/x-ndjson",
        'JSON lines: {"output": <base64>} as the command writes, then '
        '{"exit_code", "timed_out", "truncated", "output_bytes"}.',
        404,
        409,
        502,
        503,
    ),
    tags=["environments"],
    summary="Run one command in an environment (no terminal), output streamed",
)
def run_command(environment_id: Id, body: ExecIn, actor: Caller) -> StreamingResponse:
    with session_scope() as session:
        process = commands.start_command(
            session=session,
            actor=actor,
            runtime=ports.runtime(),
            environment_id=environment_id,
            command=body.command,
            container=body.container,
        )
    return StreamingResponse(
        stream(process, timeout=body.timeout_seconds, cap=body.max_output_bytes),
        media_type="application/x-ndjson",
        headers={"Cache-Control": "no-store"},
    )
