"""GitHub: a project's connection to its repository, the webhook deliveries received,
and the pull requests envhub follows.

Credentials (an App's private key, a token, the webhook secret) are AES-GCM
envelopes (``services/crypto.py``), like every secret envhub keeps.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from envhub.models.base import JSONType, UTCDateTime, utcnow


class GithubConnection(SQLModel, table=True):
    """How one project reaches its repository, and how its pull requests become environments."""

    __tablename__ = "github_connection"

    id: int | None = Field(default=None, primary_key=True)
    project_id: int = Field(foreign_key="project.id", unique=True, ondelete="CASCADE")
    # "owner/name", as GitHub spells it in payloads (compared case-insensitively).
    repository: str = Field(max_length=200, index=True)
    # The REST API root: https://api.github.com, or GitHub Enterprise's https://<host>/api/v3.
    api_url: str = Field(default="https://api.github.com", max_length=500)
    # "app" (app_id + installation_id + sealed private key) or "token" (a sealed token).
    auth: str = Field(max_length=10)
    app_id: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    installation_id: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    credential: str = Field(sa_column=Column(Text, nullable=False))
    webhook_secret: str = Field(sa_column=Column(Text, nullable=False))
    # Pull-request policy.
    pull_requests: bool = Field(default=True)  # pull requests get environments
    drafts: bool = Field(default=False)  # draft pull requests too
    opt_in_label: str | None = Field(default=None, max_length=100)  # when set, only PRs with it
    opt_out_label: str = Field(default="envhub:skip", max_length=100)  # never PRs with it
    # Branch environments on push (fnmatch patterns; none by default).
    push_branches: list[str] = Field(default_factory=list, sa_column=Column(JSONType, nullable=False))
    # A check run ("envhub preview") on each pull request's commit: App connections only
    # (GitHub lets no token make one).
    check_runs: bool = Field(default=True)
    # What the last call to GitHub said: verified_at on success, last_error otherwise.
    verified_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    last_error: str = Field(default="", max_length=2000)
    # When the reconciler last compared GitHub's open pull requests with envhub's (lost events).
    pulls_checked_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    created_by_id: int | None = Field(default=None, foreign_key="user_account.id", ondelete="SET NULL")
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))


class WebhookDelivery(SQLModel, table=True):
    """One delivery from GitHub, recorded before any work so that a redelivery does nothing twice."""

    __tablename__ = "webhook_delivery"

    id: int | None = Field(default=None, primary_key=True)
    # X-GitHub-Delivery: unique per delivery (a redelivery from GitHub's UI reuses it).
    delivery_id: str = Field(max_length=100, unique=True)
    # sha256 of the signed body: the same payload replayed under another delivery id is no new event.
    body_digest: str = Field(max_length=64, unique=True)
    event: str = Field(max_length=50)
    action: str = Field(default="", max_length=50)
    repository: str = Field(default="", max_length=200)
    # The connections whose secret signed it (a repository may feed several projects).
    connection_ids: list[int] = Field(default_factory=list, sa_column=Column(JSONType, nullable=False))
    # The part of the payload the job needs (never the whole body: it may be large).
    summary: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))
    # "queued", "done", "ignored" or "failed" (message says why).
    state: str = Field(default="queued", max_length=20, index=True)
    message: str = Field(default="", max_length=2000)
    received_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False, index=True)
    )
    processed_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))


class PullRequest(SQLModel, table=True):
    """A pull request envhub follows: what GitHub last said about it and what envhub made of it."""

    __tablename__ = "pull_request"
    __table_args__ = (
        UniqueConstraint("project_id", "number", name="uq_pull_request_project_number"),
        Index("ix_pull_request_open", "project_id", "state"),
    )

    id: int | None = Field(default=None, primary_key=True)
    project_id: int = Field(foreign_key="project.id", ondelete="CASCADE")
    number: int
    title: str = Field(default="", max_length=500)
    author: str = Field(default="", max_length=100)
    html_url: str = Field(default="", max_length=2000)
    head_ref: str = Field(default="", max_length=255)
    # The newest head commit GitHub told us about; the environment converges to it.
    head_sha: str = Field(default="", max_length=64)
    # "open" or "closed" (merged is closed with merged=True).
    state: str = Field(default="open", max_length=10)
    merged: bool = Field(default=False)
    draft: bool = Field(default=False)
    labels: list[str] = Field(default_factory=list, sa_column=Column(JSONType, nullable=False))
    # Looked up after every deployment job (which pull request shows this environment?).
    environment_id: int | None = Field(
        default=None, foreign_key="environment.id", ondelete="SET NULL", index=True
    )
    # Why there is no environment (a draft, a label), shown on the page and in the comment.
    skipped: str = Field(default="", max_length=500)
    # The one comment envhub keeps current, and the GitHub Deployment of the environment.
    comment_id: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    comment_body_digest: str = Field(default="", max_length=64)  # edits only when the text changes
    deployment_id: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    deployment_sha: str = Field(default="", max_length=64)  # the commit that Deployment is of
    deployment_state: str = Field(default="", max_length=20)  # the last status posted to it
    # The check run of the commit the environment runs (App connections): made once per commit,
    # updated only when its state (in_progress, or the conclusion) changes.
    check_run_id: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    check_run_sha: str = Field(default="", max_length=64)
    check_run_state: str = Field(default="", max_length=20)
    # GitHub has not been told the latest yet: the sync job clears it, the reconciler re-drives it.
    sync_due: bool = Field(default=False, index=True)
    synced_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    # The last event's time: an older delivery never undoes a newer one.
    event_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
