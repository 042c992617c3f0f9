"""Sign-in in front of public URLs: the passes of ``domain/url_access.py``, issued and checked.

``grant`` runs on envhub's own host, for a person signed in there: it checks
that they may see the environment, records it in the audit log, and returns
where to send the browser (the environment's host, with a ticket). The
gateway then ``admit``s the ticket (a cookie pass in exchange) and, on every
later request, asks ``still_admitted`` whether the session behind the pass
lives and the person may still see the environment.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import urlencode

from sqlmodel import Session

from envhub.config import get_settings
from envhub.domain.phases import Phase
from envhub.domain.policy import Action
from envhub.domain.principals import Principal
from envhub.domain.url_access import (
    ACCESS_PATH,
    TICKET_SECONDS,
    PassKind,
    UrlAccess,
    UrlPass,
    opened,
    safe_next,
    seal,
)
from envhub.errors import InvalidTransition, NotFound
from envhub.models import Environment, Project
from envhub.services.access import authorize_environment, environment_grants
from envhub.services.authentication import principal_for_session
from envhub.services.common import AuditTarget, audited

_KEY_PURPOSE = "url-access"


@dataclass(frozen=True, slots=True)
class Admission:
    cookie: str  # the cookie pass's value
    max_age: int  # seconds
    next_path: str


def _key() -> bytes:
    return get_settings().derived_key(_KEY_PURPOSE)


def grant(
    *,
    session: Session,
    actor: Principal,
    session_hash: str,
    environment_id: int,
    next_path: str | None,
    port: int | None = None,
) -> str:
    """Where to send a signed-in person who asked for the environment's URL: its host (or the host of
    its forwarded ``port``), with a ticket.

    Raises NotFound when the environment does not exist or is not theirs to
    see, and InvalidTransition when it has no URL (yet, or any more), or the
    port none of its own.
    """
    target = AuditTarget("environment", id=environment_id)
    with audited(session, actor, "environment.url_access", target):
        environment = session.get(Environment, environment_id)
        if environment is None or environment.phase is Phase.deleted:
            raise NotFound(
                f"environment {environment_id} was not found", details={"environment_id": environment_id}
            )
        project = authorize_environment(
            session, actor, environment, Action.environment_read, what=f"environment {environment_id}"
        )
        target.name, target.team_id = f"{project.name}/{environment.name}", project.team_id
        if not environment.public_url:
            raise InvalidTransition(
                f"{project.name}/{environment.name} has no public URL yet",
                hint="Open it again once it is ready.",
                details={"phase": environment.phase.value},
            )
        url = environment.public_url if port is None else _port_url(environment, port)
        if not url:
            raise InvalidTransition(
                f"port {port} of {project.name}/{environment.name} has no URL of its own",
                hint="Its devcontainer.json forwards the ports that have one; they are listed on its page.",
                details={"port": port},
            )
        ticket = seal(
            _key(),
            UrlPass(
                kind=PassKind.ticket,
                environment_id=environment_id,
                session_hash=session_hash,
                expires=int(time.time()) + TICKET_SECONDS,
            ),
        )
        target.details = {"url": url}
        query = urlencode({"ticket": ticket, "next": safe_next(next_path)})
        return f"{url.rstrip('/')}{ACCESS_PATH}?{query}"


def _port_url(environment: Environment, port: int) -> str:
    """The URL a forwarded port got when the environment was last published ("" for none)."""
    summary = environment.devcontainer if isinstance(environment.devcontainer, dict) else {}
    for entry in summary.get("ports") or []:
        if isinstance(entry, dict) and entry.get("port") == port:
            return str(entry.get("url") or "")
    return ""


def admit(
    *, session: Session, environment_id: int, ticket: str | None, next_path: str | None
) -> Admission | None:
    """A cookie pass for a genuine, unexpired ticket whose session still may see the environment."""
    presented = opened(_key(), ticket, kind=PassKind.ticket, environment_id=environment_id, now=time.time())
    if presented is None or not still_admitted(session=session, issued=presented):
        return None
    lifetime = int(get_settings().session_max_age)
    cookie = seal(
        _key(),
        UrlPass(
            kind=PassKind.cookie,
            environment_id=environment_id,
            session_hash=presented.session_hash,
            expires=int(time.time()) + lifetime,
        ),
    )
    return Admission(cookie=cookie, max_age=lifetime, next_path=safe_next(next_path))


def cookie_pass(value: str | None, *, environment_id: int) -> UrlPass | None:
    """The cookie pass in ``value`` when genuine, for this environment and unexpired (no database)."""
    return opened(_key(), value, kind=PassKind.cookie, environment_id=environment_id, now=time.time())


def still_admitted(*, session: Session, issued: UrlPass) -> bool:
    """Whether the session behind the pass lives and its person may still see the environment."""
    principal = principal_for_session(session, issued.session_hash, touch=False)
    environment = session.get(Environment, issued.environment_id)
    if principal is None or environment is None or environment.phase is Phase.deleted:
        return False
    project = session.get(Project, environment.project_id)
    if project is None:
        return False
    if project.url_access != UrlAccess.sign_in.value:
        return True
    return Action.environment_read in environment_grants(session, principal, environment, project.team_id)
