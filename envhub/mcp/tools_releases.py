"""Tools for deployment environments and their releases: see them side by side, configure
them, release a commit, read a release and its diff, approve, cancel, roll back, promote.

The same calls as REST's routes (``api/v1/releases.py``), answering with the
same view models (``services/release_views.py``); authorization, the audit
record and who may approve what happen in the services.
"""

from __future__ import annotations

from typing import Annotated, Any, TypedDict

from pydantic import Field

from envhub.domain.principals import Principal
from envhub.domain.releases import ReleaseTrigger
from envhub.mcp.schemas import EnvironmentId, Limit, Offset, ProjectId
from envhub.services import ports, release_views, releases
from envhub.services.release_views import DeploymentsView, ReleaseDetail, ReleaseRow
from envhub.services.units import read_only, unit_of_work

ReleaseId = Annotated[int, Field(ge=1, le=2**31 - 1, description="The release's id.")]


class ReleaseList(TypedDict):
    releases: list[ReleaseRow]
    total: int  # across all pages
    offset: int
    limit: int


class MadeReleases(TypedDict):
    releases: list[ReleaseRow]  # one per environment that takes releases from merges and CI


def get_deployments(actor: Principal, project_id: ProjectId) -> DeploymentsView:
    """A project's deployment environments side by side: what each runs, what waits there and
    why, its rules and what it declares, and how one artifact's renderings differ between them."""
    with read_only() as session:
        return release_views.deployments_view(session=session, actor=actor, project_id=project_id)


def configure_deployments(
    actor: Principal,
    project_id: ProjectId,
    settings: Annotated[
        dict[str, Any],
        Field(
            description="The whole settings document (it replaces the old one): source {kind: "
            "manifests|helm|image|command, ...}, branches, release_branches, release_on (push|api), "
            "environments [{name, overrides {values, replicas, hosts, env}, promotion {promote_from, "
            "approvals, approver_role, gates {soak_minutes, github_checks, health_url, window}, "
            "rollout_deadline_seconds, auto_rollback}}]."
        ),
    ],
) -> DeploymentsView:
    """Configure a project's deployment environments; the ones named that do not exist are created
    (with nothing running until a release lands). Environments left out are kept."""
    with unit_of_work() as session:
        releases.configure_deployments(session=session, actor=actor, project_id=project_id, settings=settings)
        return release_views.deployments_view(session=session, actor=actor, project_id=project_id)


def create_release(
    actor: Principal,
    project_id: ProjectId,
    commit: Annotated[str, Field(pattern=r"^[0-9a-fA-F]{40}$", description="The full commit SHA.")],
    ref: Annotated[str, Field(max_length=255, description="The branch it was merged to.")] = "",
    images: Annotated[
        dict[Annotated[str, Field(max_length=255)], Annotated[str, Field(max_length=80)]],
        Field(max_length=50, description="{image name: sha256:...} of the images built for the commit."),
    ] = {},  # noqa: B006 - the SDK copies defaults into each call's arguments model
) -> MadeReleases:
    """Release a commit: rendered once, it lands in the environments that take releases from merges
    and CI, then is promoted on as each becomes ready. The same commit and images again answer
    with the same releases."""
    with unit_of_work() as session:
        made = releases.create_release(
            session=session,
            actor=actor,
            queue=ports.queue(),
            project_id=project_id,
            commit=commit,
            ref=ref,
            images=dict(images),
            trigger=ReleaseTrigger.api,
        )
        return MadeReleases(releases=release_views.rows_of(session, made))


def list_releases(
    actor: Principal, environment_id: EnvironmentId, offset: Offset = 0, limit: Limit = 20
) -> ReleaseList:
    """A deployment environment's releases, newest first."""
    with read_only() as session:
        page = release_views.list_releases(
            session=session, actor=actor, environment_id=environment_id, offset=offset, limit=limit
        )
    return ReleaseList(releases=page.items, total=page.total, offset=page.offset, limit=page.limit)


def get_release(
    actor: Principal,
    release_id: ReleaseId,
    against: Annotated[
        int | None,
        Field(ge=1, le=2**31 - 1, description="Diff against this release (default: what runs there)."),
    ] = None,
) -> ReleaseDetail:
    """A release in full: its gates (passed or not, and why), approvals, workloads, rendered
    objects, the object-by-object diff against what the environment runs, and what you may do."""
    with read_only() as session:
        return release_views.release_detail(
            session=session, actor=actor, release_id=release_id, against=against
        )


def approve_release(
    actor: Principal,
    release_id: ReleaseId,
    comment: Annotated[str, Field(max_length=2000, description="Why, for the audit trail.")] = "",
) -> ReleaseDetail:
    """Approve a waiting release. Only a person can, with the environment's approver role, and not
    the one who triggered it."""
    with unit_of_work() as session:
        releases.approve_release(
            session=session, actor=actor, queue=ports.queue(), release_id=release_id, comment=comment
        )
        return release_views.release_detail(session=session, actor=actor, release_id=release_id)


def cancel_release(actor: Principal, release_id: ReleaseId) -> ReleaseDetail:
    """Cancel a release that is rendering or waiting."""
    with unit_of_work() as session:
        releases.cancel_release(session=session, actor=actor, release_id=release_id)
        return release_views.release_detail(session=session, actor=actor, release_id=release_id)


def rollback_release(actor: Principal, release_id: ReleaseId) -> ReleaseDetail:
    """Roll the release's environment back to its content: a new release, which lands at once.
    Answers with the new release."""
    with unit_of_work() as session:
        made = releases.rollback(session=session, actor=actor, queue=ports.queue(), release_id=release_id)
        return release_views.release_detail(session=session, actor=actor, release_id=made.id or 0)


def promote_release(
    actor: Principal,
    release_id: ReleaseId,
    to: Annotated[
        str,
        Field(
            min_length=1,
            max_length=63,
            pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$",
            description="The environment that takes releases from this one's, e.g. production.",
        ),
    ],
) -> ReleaseDetail:
    """Promote a ready release to the environment that takes releases from its own; it waits
    there for that environment's approvals and gates. Answers with the new release."""
    with unit_of_work() as session:
        made = releases.promote(
            session=session, actor=actor, queue=ports.queue(), release_id=release_id, to=to
        )
        return release_views.release_detail(session=session, actor=actor, release_id=made.id or 0)
