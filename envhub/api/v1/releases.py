"""``/api/v1``: deployment environments and their releases.

GET/PUT ``/projects/{id}/deployments`` show and configure a project's
deployment environments; POST ``/projects/{id}/releases`` is the CI call (a
commit and image digests; a token with the ``deploy`` scope is enough);
releases are listed per environment, read in full with their object diff, and
approved, cancelled, rolled back or promoted. Thin translations onto
``services/releases.py`` and ``services/release_views.py``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from envhub.api.v1.models import Caller, Id, Label, Limit, Text, answers, model_of
from envhub.domain.releases import ReleaseTrigger
from envhub.services import ports, release_views, releases
from envhub.services.release_views import DeploymentsView, ReleaseDetail, ReleaseRow
from envhub.services.units import read_only, unit_of_work

router = APIRouter(prefix="/api/v1", tags=["releases"])

Sha = Annotated[str, Field(pattern=r"^[0-9a-fA-F]{40}$", description="The full commit SHA.")]


class DeploymentsIn(BaseModel):
    """The whole settings document (see the README's deployment section); it replaces the old one."""

    model_config = ConfigDict(extra="forbid")

    settings: dict[str, Any] = Field(
        description="source, branches, release_branches, release_on, environments"
    )


class ReleaseIn(BaseModel):
    """What CI built: the commit, and the digests of the images it pushed."""

    model_config = ConfigDict(extra="forbid")

    commit: Sha
    ref: Annotated[Text, Field(max_length=255)] = ""
    images: dict[Annotated[Text, Field(max_length=255)], Annotated[Text, Field(max_length=80)]] = Field(
        default_factory=dict, max_length=50, description="{image name: sha256:...}"
    )


class ApproveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: Annotated[Text, Field(max_length=2000)] = ""


class PromoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: Label


RowModel = model_of(ReleaseRow)


class ReleasePage(BaseModel):
    items: list[RowModel]  # type: ignore[valid-type]
    total: int
    offset: int
    limit: int


class Released(BaseModel):
    releases: list[RowModel]  # type: ignore[valid-type]


@router.get(
    "/projects/{project_id}/deployments",
    response_model=model_of(DeploymentsView),
    responses=answers(404),
    summary="A project's deployment environments: what each runs, what waits, how they differ",
)
def deployments(project_id: Id, actor: Caller) -> DeploymentsView:
    with read_only() as session:
        return release_views.deployments_view(session=session, actor=actor, project_id=project_id)


@router.put(
    "/projects/{project_id}/deployments",
    response_model=model_of(DeploymentsView),
    responses=answers(404, 409),
    summary="Configure deployment environments (creates the ones that do not exist yet)",
)
def configure(project_id: Id, body: DeploymentsIn, actor: Caller) -> DeploymentsView:
    with unit_of_work() as session:
        releases.configure_deployments(
            session=session, actor=actor, project_id=project_id, settings=body.settings
        )
        return release_views.deployments_view(session=session, actor=actor, project_id=project_id)


@router.post(
    "/projects/{project_id}/releases",
    status_code=202,
    response_model=Released,
    responses=answers(404, 409),
    summary="Release a commit (CI): renders it once, then lands it in the environments that take merges",
)
def create_release(project_id: Id, body: ReleaseIn, actor: Caller) -> dict[str, Any]:
    with unit_of_work() as session:
        made = releases.create_release(
            session=session,
            actor=actor,
            queue=ports.queue(),
            project_id=project_id,
            commit=body.commit,
            ref=body.ref,
            images=dict(body.images),
            trigger=ReleaseTrigger.api,
        )
        return {"releases": release_views.rows_of(session, made)}


@router.get(
    "/environments/{environment_id}/releases",
    response_model=ReleasePage,
    responses=answers(404),
    summary="An environment's releases, newest first",
)
def list_releases(
    environment_id: Id,
    actor: Caller,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
    limit: Limit = 20,
) -> dict[str, Any]:
    with read_only() as session:
        page = release_views.list_releases(
            session=session, actor=actor, environment_id=environment_id, offset=offset, limit=limit
        )
    return {"items": page.items, "total": page.total, "offset": page.offset, "limit": page.limit}


@router.get(
    "/releases/{release_id}",
    response_model=model_of(ReleaseDetail),
    responses=answers(404),
    summary="A release in full: gates, approvals, workloads, objects, and the diff against what runs",
)
def release(
    release_id: Id,
    actor: Caller,
    against: Annotated[int | None, Query(ge=1, description="Diff against this release instead.")] = None,
) -> ReleaseDetail:
    with read_only() as session:
        return release_views.release_detail(
            session=session, actor=actor, release_id=release_id, against=against
        )


@router.post(
    "/releases/{release_id}/approve",
    response_model=model_of(ReleaseDetail),
    responses=answers(404, 409),
    summary="Approve a waiting release (not one you triggered)",
)
def approve(release_id: Id, body: ApproveIn, actor: Caller) -> ReleaseDetail:
    with unit_of_work() as session:
        releases.approve_release(
            session=session, actor=actor, queue=ports.queue(), release_id=release_id, comment=body.comment
        )
        return release_views.release_detail(session=session, actor=actor, release_id=release_id)


@router.post(
    "/releases/{release_id}/cancel",
    response_model=model_of(ReleaseDetail),
    responses=answers(404, 409),
    summary="Cancel a release that renders or waits",
)
def cancel(release_id: Id, actor: Caller) -> ReleaseDetail:
    with unit_of_work() as session:
        releases.cancel_release(session=session, actor=actor, release_id=release_id)
        return release_views.release_detail(session=session, actor=actor, release_id=release_id)


@router.post(
    "/releases/{release_id}/rollback",
    status_code=202,
    response_model=model_of(ReleaseDetail),
    responses=answers(404, 409),
    summary="Roll the environment back to this release's content (a new release)",
)
def rollback(release_id: Id, actor: Caller) -> ReleaseDetail:
    with unit_of_work() as session:
        made = releases.rollback(session=session, actor=actor, queue=ports.queue(), release_id=release_id)
        return release_views.release_detail(session=session, actor=actor, release_id=made.id or 0)


@router.post(
    "/releases/{release_id}/promote",
    status_code=202,
    response_model=model_of(ReleaseDetail),
    responses=answers(404, 409),
    summary="Promote a ready release to the environment that takes releases from its own",
)
def promote(release_id: Id, body: PromoteIn, actor: Caller) -> ReleaseDetail:
    with unit_of_work() as session:
        made = releases.promote(
            session=session, actor=actor, queue=ports.queue(), release_id=release_id, to=body.to
        )
        return release_views.release_detail(session=session, actor=actor, release_id=made.id or 0)
