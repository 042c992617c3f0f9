"""Releases in face tests (tests/cli, tests/mcp): the settings document, and rendering.

The render job (``envhub/jobs/releases.py``) imports ``integrations/rendering.py``,
which needs modules the rendering branch brings (helm, sources, schemas).
Until that lands, a worker cannot import the job on this branch: :func:`render`
then renders the command source here, through the same service call the job
makes. Once the job imports, the workers render and this only waits for them.
"""

from __future__ import annotations

import importlib

from envhub.domain.releases import ArtifactStatus, render_command_source
from envhub.models import Artifact, Release
from envhub.models.db import session_scope
from envhub.services import ports, releases
from tests.support.waiting import wait_for

# Staging takes merges; production takes what staging ran, once an admin (not its author) approves.
SETTINGS = {
    "source": {"kind": "command"},
    "branches": ["main"],
    "environments": [
        {"name": "staging", "overrides": {"env": {"STAGE": "staging"}}},
        {
            "name": "production",
            "overrides": {"env": {"STAGE": "production"}},
            "promotion": {"promote_from": "staging", "approvals": 1, "approver_role": "admin"},
        },
    ],
}
COMMAND = "echo $STAGE $GREETING; exec python3 -m http.server $PORT"


def _job_imports() -> bool:
    try:
        importlib.import_module("envhub.jobs.releases")
    except ImportError:
        return False
    return True


def render(release_id: int) -> None:
    """Make sure the artifact of release ``release_id`` is rendered (see the module's docstring)."""
    with session_scope() as session:
        release = session.get(Release, release_id)
        assert release is not None
        artifact_id = release.artifact_id
    if not _job_imports():
        with session_scope() as session:
            releases.render_artifact(
                session=session, queue=ports.queue(), artifact_id=artifact_id, renderer=render_command_source
            )

    def rendered() -> bool:
        with session_scope() as session:
            artifact = session.get(Artifact, artifact_id)
            return artifact is not None and artifact.status is ArtifactStatus.rendered

    wait_for(rendered, timeout=120, what=f"the artifact of release {release_id} to be rendered")
