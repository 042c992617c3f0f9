"""Reading what an environment's processes print (authorized like any read)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from sqlmodel import Session

from envhub.domain.principals import Principal
from envhub.runtime.base import Runtime
from envhub.services.environments import get_environment

MAX_TAIL = 5000


def environment_logs(
    *,
    session: Session,
    actor: Principal,
    runtime: Runtime,
    environment_id: int,
    tail: int = 200,
    container: str | None = None,
) -> list[str]:
    """The last ``tail`` lines of output (of one service's container when given)."""
    get_environment(session=session, actor=actor, environment_id=environment_id)
    tail = max(1, min(tail, MAX_TAIL))
    return list(itertools.islice(runtime.logs(environment_id, tail=tail, container=container), tail))


def follow_environment_logs(
    *,
    session: Session,
    actor: Principal,
    runtime: Runtime,
    environment_id: int,
    tail: int = 50,
    container: str | None = None,
    since_seconds: int | None = None,
    until: float | None = None,
) -> Iterator[str]:
    """The last ``tail`` lines, then new lines as they are printed (blocking iterator).

    ``until`` (a ``time.monotonic()`` moment) ends it then, even while nothing is printed.
    """
    get_environment(session=session, actor=actor, environment_id=environment_id)
    return runtime.logs(
        environment_id,
        follow=True,
        tail=max(0, min(tail, MAX_TAIL)),
        container=container,
        since_seconds=since_seconds,
        until=until,
    )
