"""Release jobs: render an artifact for every deployment environment, then move its releases on."""

from __future__ import annotations

from envhub.integrations import rendering
from envhub.models.db import session_scope
from envhub.services import ports, releases


def render_artifact(artifact_id: int) -> str:
    with session_scope() as session:
        return releases.render_artifact(
            session=session, queue=ports.queue(), artifact_id=artifact_id, renderer=rendering.render
        )
