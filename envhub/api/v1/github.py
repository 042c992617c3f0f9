"""``/api/v1/projects/{id}/github``: a project's GitHub repository connection.

PUT connects (GitHub checks the credentials first; the webhook secret comes
back in this answer only), GET shows it (never a credential or secret), PATCH
changes the pull-request policy (and check runs), POST ``.../webhook-secret`` rotates the
secret, DELETE disconnects. Thin translations onto ``services/github.py``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from envhub.api.v1.models import Caller, Id, Number, Text, answers, model_of
from envhub.services import github
from envhub.services.github import (
    GithubConnected,
    GithubConnectionView,
    GithubDisconnected,
    GithubWebhookSecret,
)
from envhub.services.units import read_only, unit_of_work

router = APIRouter(prefix="/api/v1", tags=["github"])

BigId = Annotated[Number, Field(ge=1, le=2**63 - 1)]
Label = Annotated[Text, Field(max_length=50)]


class GithubConnectIn(BaseModel):
    """How envhub reaches the repository: a GitHub App installation, or a token."""

    model_config = ConfigDict(extra="forbid")

    repository: Text = Field(max_length=200, description="owner/name")
    auth: Literal["app", "token"]
    api_url: Text = Field(
        default="https://api.github.com",
        max_length=500,
        description="GitHub Enterprise: https://<host>/api/v3",
    )
    app_id: BigId | None = None
    installation_id: BigId | None = None
    private_key: Text = Field(default="", max_length=20_000, description="The App's PEM key; write-only.")
    token: Text = Field(default="", max_length=1000, description="Write-only.")


class GithubPolicyIn(BaseModel):
    """Which pull requests and pushes get environments; only the fields sent change."""

    model_config = ConfigDict(extra="forbid")

    pull_requests: bool | None = None
    drafts: bool | None = None
    opt_in_label: Label | None = Field(default=None, description="'' clears it.")
    opt_out_label: Label | None = Field(default=None, description="'' for none.")
    push_branches: list[Annotated[Text, Field(min_length=1, max_length=255)]] | None = Field(
        default=None, max_length=20
    )
    check_runs: bool | None = Field(
        default=None, description="A check run on each pull request's commit (App connections only)."
    )


@router.put(
    "/projects/{project_id}/github",
    response_model=model_of(GithubConnected),
    responses=answers(404, 502, 503),
    summary="Connect the project to its GitHub repository (the webhook secret is shown this once)",
)
def connect_github(project_id: Id, body: GithubConnectIn, actor: Caller) -> GithubConnected:
    with unit_of_work() as session:
        return github.connect_github(
            session=session,
            actor=actor,
            project_id=project_id,
            repository=body.repository,
            auth=body.auth,
            api_url=body.api_url,
            app_id=body.app_id,
            installation_id=body.installation_id,
            private_key=body.private_key,
            token=body.token,
        )


@router.get(
    "/projects/{project_id}/github",
    response_model=model_of(GithubConnectionView),
    responses=answers(404),
    summary="The project's GitHub connection (never its credential or webhook secret)",
)
def get_github(project_id: Id, actor: Caller) -> GithubConnectionView:
    with read_only() as session:
        return github.github_connection(session=session, actor=actor, project_id=project_id)


@router.patch(
    "/projects/{project_id}/github",
    response_model=model_of(GithubConnectionView),
    responses=answers(404),
    summary="Change which pull requests and pushes get environments, and check runs",
)
def update_github(project_id: Id, body: GithubPolicyIn, actor: Caller) -> GithubConnectionView:
    changes = {key: value for key, value in body.model_dump(exclude_unset=True).items() if value is not None}
    with unit_of_work() as session:
        return github.update_github_policy(
            session=session, actor=actor, project_id=project_id, changes=changes
        )


@router.post(
    "/projects/{project_id}/github/webhook-secret",
    response_model=model_of(GithubWebhookSecret),
    responses=answers(404),
    summary="Rotate the webhook secret (the new one is shown this once)",
)
def rotate_webhook_secret(project_id: Id, actor: Caller) -> GithubWebhookSecret:
    with unit_of_work() as session:
        return github.rotate_webhook_secret(session=session, actor=actor, project_id=project_id)


@router.delete(
    "/projects/{project_id}/github",
    response_model=model_of(GithubDisconnected),
    responses=answers(404),
    summary="Disconnect the project from its repository",
)
def disconnect_github(project_id: Id, actor: Caller) -> GithubDisconnected:
    with unit_of_work() as session:
        return github.disconnect_github(session=session, actor=actor, project_id=project_id)
