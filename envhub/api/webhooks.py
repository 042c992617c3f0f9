"""``POST /webhooks/github``: GitHub's deliveries, verified and recorded, the work left to a job.

The route reads the raw body (the guard bounds it: ``webhook_max_body_bytes``)
and answers at once: 202 when a job will act on it, 200 when envhub ignores
the event or has seen the delivery before, 401 when no connected project's
secret signed it, 400 when it lacks what GitHub always sends. Errors have
envhub's one body, ``{code, message, hint}``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from envhub.services import ports
from envhub.services.units import unit_of_work
from envhub.services.webhooks import Received, receive_github_delivery

router = APIRouter()


@router.post("/webhooks/github", include_in_schema=False)
async def github_webhook(request: Request) -> JSONResponse:
    body = await request.body()
    headers = request.headers

    def receive() -> Received:
        with unit_of_work() as session:
            return receive_github_delivery(
                session=session,
                queue=ports.queue(),
                event=headers.get("x-github-event"),
                delivery_id=headers.get("x-github-delivery"),
                signature=headers.get("x-hub-signature-256"),
                body=body,
            )

    received = await run_in_threadpool(receive)
    answer: dict[str, Any] = received.to_dict()
    return JSONResponse(answer, status_code=202 if received.status == "queued" else 200)
