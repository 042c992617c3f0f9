"""Which environment a public URL points at, whether it can take traffic, and who may open it.

This lookup needs no principal: the gateway asks it before it knows who is
asking. It reveals the phase only to whoever the project lets in: for a
project whose URLs need sign-in (``url_access``) the gateway checks the
browser's pass (services/url_access.py) before it shows anything.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, col, select

from envhub.domain.naming import is_label
from envhub.domain.phases import Phase
from envhub.domain.public import port_host, port_host_parts
from envhub.domain.url_access import UrlAccess, parse_url_access
from envhub.models import Environment, Project, Team
from envhub.runtime.base import Endpoint, PortEndpoints, Runtime
from envhub.services import sleeping


@dataclass(frozen=True, slots=True)
class Resolution:
    found: bool
    phase: Phase | None = None
    message: str = ""
    endpoint: Endpoint | None = None
    label: str = ""
    environment_id: int | None = None
    url_access: UrlAccess = UrlAccess.public
    # Asleep, or on its way up from sleep: the gateway answers its "waking up" page.
    waking: bool = False
    # The forwarded port the host names (a devcontainer's), None for the environment's own URL.
    port: int | None = None


def valid_route(*, team: str, project: str, environment: str) -> bool:
    """Whether a host's labels could name an environment at all (checked before any query)."""
    return is_label(team) and is_label(project) and is_label(environment)


def resolve_public_host(
    *, session: Session, runtime: Runtime, team: str, project: str, environment: str, port: int | None = None
) -> Resolution:
    """The environment a local host names; with ``port``, one of its other forwarded ports."""
    if not valid_route(team=team, project=project, environment=environment):
        return Resolution(found=False, label=f"{project}/{environment}"[:200])
    row = session.exec(
        select(Environment, Project)
        .join(Project, col(Project.id) == Environment.project_id)
        .join(Team, col(Team.id) == Project.team_id)
        .where(
            Team.name == team,
            Project.name == project,
            Environment.name == environment,
            Environment.phase != Phase.deleted,
        )
    ).first()
    if row is None:
        return Resolution(found=False, label=f"{project}/{environment}")
    return _resolution(session, runtime, *row, port=port)


def resolve_url_host(*, session: Session, runtime: Runtime, host: str) -> Resolution:
    """The environment whose public URL is ``https://<host>/`` (Ingress and tunnel hosts), or one of
    its forwarded ports whose host is ``host`` (:func:`~envhub.domain.public.port_host`)."""
    found = select(Environment, Project).join(Project, col(Project.id) == Environment.project_id)
    row = session.exec(
        found.where(Environment.public_url == f"https://{host}/", Environment.phase != Phase.deleted)
    ).first()
    if row is not None:
        return _resolution(session, runtime, *row)
    parts = port_host_parts(host)
    if parts is not None:
        port, digest = parts
        domain = host.partition(".")[2]
        # The environment's own host ends with the same digest: a handful of candidates at most.
        candidates = session.exec(
            found.where(
                col(Environment.public_url).like(f"https://%-{digest}.{domain}/"),
                Environment.phase != Phase.deleted,
            )
        ).all()
        for environment, project in candidates:
            own = (environment.public_url or "").removeprefix("https://").rstrip("/")
            if port_host(own, port) == host:
                return _resolution(session, runtime, environment, project, port=port)
    return Resolution(found=False, label=host[:200])


def _resolution(
    session: Session, runtime: Runtime, environment: Environment, project: Project, *, port: int | None = None
) -> Resolution:
    assert environment.id is not None
    ready = environment.phase in (Phase.ready, Phase.updating)
    endpoint = None
    if ready and port is None:
        endpoint = runtime.endpoint(environment.id)
    elif ready and port is not None and isinstance(runtime, PortEndpoints):
        endpoint = runtime.port_endpoint(environment.id, port)
    return Resolution(
        found=True,
        phase=environment.phase,
        message=environment.message,
        endpoint=endpoint,
        label=f"{project.name}/{environment.name}" + (f" port {port}" if port is not None else ""),
        environment_id=environment.id,
        url_access=parse_url_access(project.url_access),
        waking=environment.phase is Phase.sleeping or sleeping.is_waking(session, environment),
        port=port,
    )
