"""Tools for a project's GitHub repository: connect, show, change the pull-request policy,
rotate the webhook secret, disconnect (credentials go in, never come back out)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from envhub.domain.principals import Principal
from envhub.mcp.schemas import ProjectId
from envhub.services import github
from envhub.services.github import (
    GithubConnected,
    GithubConnectionView,
    GithubDisconnected,
    GithubWebhookSecret,
)
from envhub.services.units import read_only, unit_of_work

BigId = Annotated[int, Field(ge=1, le=2**63 - 1)]
Label = Annotated[str, Field(max_length=50)]


def connect_github(
    actor: Principal,
    project_id: ProjectId,
    repository: Annotated[str, Field(max_length=200, description="owner/name")],
    auth: Literal["app", "token"],
    api_url: Annotated[
        str, Field(max_length=500, description="GitHub Enterprise: https://<host>/api/v3")
    ] = "https://api.github.com",
    app_id: BigId | None = None,
    installation_id: BigId | None = None,
    private_key: Annotated[str, Field(max_length=20_000, description="The App's PEM private key.")] = "",
    token: Annotated[str, Field(max_length=1000)] = "",
) -> GithubConnected:
    """Connect a project to its GitHub repository, as an App installation (app_id, installation_id,
    private_key) or with a token; GitHub checks them first. The webhook secret is in this answer only."""
    with unit_of_work() as session:
        return github.connect_github(
            session=session,
            actor=actor,
            project_id=project_id,
            repository=repository,
            auth=auth,
            api_url=api_url,
            app_id=app_id,
            installation_id=installation_id,
            private_key=private_key,
            token=token,
        )


def get_github(actor: Principal, project_id: ProjectId) -> GithubConnectionView:
    """A project's GitHub connection and pull-request policy (never its credential or webhook secret)."""
    with read_only() as session:
        return github.github_connection(session=session, actor=actor, project_id=project_id)


def update_github(
    actor: Principal,
    project_id: ProjectId,
    pull_requests: bool | None = None,
    drafts: bool | None = None,
    opt_in_label: Annotated[str | None, Field(max_length=50, description="'' clears it.")] = None,
    opt_out_label: Annotated[str | None, Field(max_length=50, description="'' for none.")] = None,
    push_branches: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=255)]] | None,
        Field(max_length=20, description="Branch patterns whose pushes get environments ([] for none)."),
    ] = None,
    check_runs: Annotated[
        bool | None,
        Field(description="A check run on each pull request's commit (App connections only)."),
    ] = None,
) -> GithubConnectionView:
    """Change which pull requests and pushes get environments, and whether an App connection
    reports a check run on each pull request's commit (arguments left out stay)."""
    given = {
        "pull_requests": pull_requests,
        "drafts": drafts,
        "opt_in_label": opt_in_label,
        "opt_out_label": opt_out_label,
        "push_branches": push_branches,
        "check_runs": check_runs,
    }
    with unit_of_work() as session:
        return github.update_github_policy(
            session=session,
            actor=actor,
            project_id=project_id,
            changes={key: value for key, value in given.items() if value is not None},
        )


def rotate_github_webhook_secret(actor: Principal, project_id: ProjectId) -> GithubWebhookSecret:
    """A new webhook secret for the project's repository, shown this once."""
    with unit_of_work() as session:
        return github.rotate_webhook_secret(session=session, actor=actor, project_id=project_id)


def disconnect_github(actor: Principal, project_id: ProjectId) -> GithubDisconnected:
    """Disconnect a project from its GitHub repository (its credentials are forgotten)."""
    with unit_of_work() as session:
        return github.disconnect_github(session=session, actor=actor, project_id=project_id)
