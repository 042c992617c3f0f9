"""Release jobs: render an artifact for every deployment environment, then move its releases on."""

from __future__ import annotations

import functools
import logging

from envhub.errors import EnvhubError
from envhub.integrations import rendering
from envhub.jobs.observed import observed
from envhub.models.db import session_scope
from envhub.runtime.base import Runtime
from envhub.services import ports, releases

log = logging.getLogger(__name__)


def _kube_version(runtime: Runtime) -> str:
    """The cluster's version, for helm and the schemas; the oldest shipped schemas without a cluster."""
    ask = getattr(runtime, "server_version", None)
    return str(ask()) if callable(ask) else rendering.DEFAULT_KUBE_VERSION


def warm() -> None:
    """Before a worker's first job: the cluster's version asked (the runtime keeps it) and rendering
    warmed for it. A cluster that does not answer now is only logged: the render job asks again."""
    try:
        kube_version = _kube_version(ports.runtime())
    except EnvhubError as exc:
        log.warning("could not read the cluster's version yet: %s", exc.message)
        kube_version = rendering.DEFAULT_KUBE_VERSION
    rendering.warm(kube_version)


@observed
def render_artifact(artifact_id: int) -> str:
    renderer = functools.partial(rendering.render, kube_version=_kube_version(ports.runtime()))
    with session_scope() as session:
        return releases.render_artifact(
            session=session, queue=ports.queue(), artifact_id=artifact_id, renderer=renderer
        )
