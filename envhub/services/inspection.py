"""Looking inside an environment: its pods/processes and recent runtime events."""

from __future__ import annotations

from sqlmodel import Session

from envhub.domain.principals import Principal
from envhub.errors import EnvhubError
from envhub.runtime.base import Inspection, Runtime
from envhub.services.environments import get_environment


def inspect_environment(
    *, session: Session, actor: Principal, runtime: Runtime, environment_id: int
) -> Inspection:
    get_environment(session=session, actor=actor, environment_id=environment_id)
    try:
        return runtime.inspect(environment_id)
    except EnvhubError as exc:
        if exc.retryable:  # cluster unreachable: show nothing rather than fail the page
            return Inspection(unavailable=exc.message)
        raise
