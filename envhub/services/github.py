"""A project's GitHub repository: connect it, show it, change its pull-request policy, disconnect it.

Connecting proves the credentials work (one call to GitHub, no waiting on a
rate limit: a web request fails at once with ``github_rate_limited``) before
anything is stored. The App's private key or the token, and the webhook
secret, are sealed like every secret (``services/crypto.py``), bound to the
project; no view model carries them, no audit record names them. The webhook
secret is shown once, when it is made (connect, rotate).

:func:`client_for` and :func:`webhook_secrets` are for the webhook endpoint and
the jobs (no principal: they act for the connection itself).
"""

from __future__ import annotations

import re
import secrets as random
from collections.abc import Mapping
from typing import Any, Literal, TypedDict
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import func
from sqlmodel import Session, col, select

from envhub.config import get_settings, is_loopback_host
from envhub.domain import humanize as fmt
from envhub.domain.policy import Action
from envhub.domain.principals import Principal
from envhub.errors import GithubConnectionInvalid, GithubNotConnected, NotFound
from envhub.integrations.github import DEFAULT_API_URL, GithubAccess, GithubClient
from envhub.models import GithubConnection, Project
from envhub.models.base import utcnow
from envhub.services.common import AuditTarget, audited, authorize
from envhub.services.crypto import cipher

WEBHOOK_PATH = "/webhooks/github"
EVENTS = ("pull_request", "push")
AuthKind = Literal["app", "token"]

_OWNER = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$")
_NAME = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
_LABEL_MAX = 50  # GitHub's own limit on a label's name
_PATTERN = re.compile(r"^[^\s\x00-\x1f\x7f]{1,255}$")
_MAX_PATTERNS = 20
_POLICY = ("pull_requests", "drafts", "opt_in_label", "opt_out_label", "push_branches", "check_runs")


class GithubConnectionView(TypedDict):
    """A project's repository connection: never its credential or webhook secret."""

    project_id: int
    repository: str
    repository_url: str
    api_url: str
    auth: str  # "app" (a GitHub App installation) or "token"
    app_id: int | None
    installation_id: int | None
    pull_requests: bool  # pull requests get environments
    drafts: bool  # draft pull requests too
    opt_in_label: str  # when set, only pull requests with this label
    opt_out_label: str  # never pull requests with this label ("" for none)
    push_branches: list[str]  # branch patterns whose pushes get a branch environment
    check_runs: bool  # a check run on each pull request's commit (App connections only)
    webhook_url: str  # where GitHub sends events (Payload URL, content type application/json)
    events: list[str]  # the events to subscribe the webhook to
    verified: str  # when GitHub last accepted the credentials, e.g. "3 minutes ago"
    verified_at: str  # ISO 8601, "" when never
    last_error: str  # what GitHub said the last time a call failed ("" when the last call worked)
    updated_at: str


class GithubConnected(TypedDict):
    """The answer to connect: the connection, and the webhook secret, shown this once."""

    connection: GithubConnectionView
    webhook_secret: str  # "" when an existing connection kept its secret (same repository)
    webhook_url: str
    events: list[str]
    default_branch: str
    private: bool


class GithubWebhookSecret(TypedDict):
    """A new webhook secret, shown this once: paste it into the repository's webhook settings."""

    webhook_secret: str
    webhook_url: str
    events: list[str]


class GithubDisconnected(TypedDict):
    project_id: int
    disconnected: bool


# -- sealing -----------------------------------------------------------------------


def _purpose(project_id: int, what: str) -> str:
    return f"github:project:{project_id}:{what}"


def _seal(project_id: int, what: str, plain: str) -> str:
    return cipher().seal(plain, purpose=_purpose(project_id, what))


def _open(connection: GithubConnection, what: str) -> str:
    return cipher().open(getattr(connection, what), purpose=_purpose(connection.project_id, what))


# -- validation (before anything calls GitHub) --------------------------------------


def _invalid(message: str, field: str, **details: Any) -> GithubConnectionInvalid:
    return GithubConnectionInvalid(message, details={"field": field, **details})


def check_repository(value: str) -> str:
    owner, slash, name = value.strip().partition("/")
    name = name.removesuffix(".git")
    if not slash or not _OWNER.match(owner) or not _NAME.match(name) or name in (".", ".."):
        raise _invalid(
            "the repository is owner/name, as in github.com/owner/name", "repository"
        )  # never repeats the value: it may be a URL with a token in it
    return f"{owner}/{name}"


def check_api_url(value: str) -> str:
    text = (value or DEFAULT_API_URL).strip()
    try:
        parts = urlsplit(text)
        host = parts.hostname or ""
        _ = parts.port
    except ValueError as exc:
        raise _invalid("the API URL is not a URL", "api_url") from exc
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise _invalid(
            "credentials are not allowed in the API URL",
            "api_url",
            reason="credentials",
        )
    secure = parts.scheme == "https" or (parts.scheme == "http" and is_loopback_host(host))
    if not secure or not host or parts.query or parts.fragment:
        raise _invalid(
            "the API URL is https://api.github.com or, for GitHub Enterprise, https://<host>/api/v3",
            "api_url",
        )
    if host.lower() == "github.com":
        raise _invalid("github.com's API is at https://api.github.com", "api_url")
    if len(text) > 500:
        raise _invalid("the API URL is longer than 500 characters", "api_url")
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def _check_id(value: int | None, field: str) -> int:
    if value is None or isinstance(value, bool) or not 1 <= int(value) <= 2**63 - 1:
        raise _invalid(f"{field.replace('_', ' ')} is a positive number", field)
    return int(value)


def check_private_key(value: str) -> str:
    text = (value or "").strip()
    if not text:
        raise _invalid("an App connection needs the App's private key (PEM)", "private_key")
    try:
        key = serialization.load_pem_private_key(text.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise _invalid(
            "the private key is not an unencrypted PEM private key (-----BEGIN RSA PRIVATE KEY-----)",
            "private_key",
        ) from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise _invalid("a GitHub App's private key is an RSA key", "private_key")
    return text + "\n"


def check_token(value: str) -> str:
    text = (value or "").strip()
    if not text:
        raise _invalid("a token connection needs the token", "token")
    if len(text) > 1000 or any(ch.isspace() or ord(ch) < 32 for ch in text):
        raise _invalid("the token is one line without spaces, as GitHub shows it", "token")
    return text


def _check_label(value: Any, field: str) -> str:
    text = str(value or "").strip()
    if len(text) > _LABEL_MAX or any(ord(ch) < 32 for ch in text):
        raise _invalid(f"a label is at most {_LABEL_MAX} characters on one line", field)
    return text


def _check_policy(changes: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(changes) - set(_POLICY)
    if unknown:
        raise _invalid(f"cannot change {', '.join(sorted(unknown))}", sorted(unknown)[0])
    checked: dict[str, Any] = {}
    for key in ("pull_requests", "drafts", "check_runs"):
        if key in changes:
            if not isinstance(changes[key], bool):
                raise _invalid(f"{key} is true or false", key)
            checked[key] = changes[key]
    if "opt_in_label" in changes:
        checked["opt_in_label"] = _check_label(changes["opt_in_label"], "opt_in_label") or None
    if "opt_out_label" in changes:
        checked["opt_out_label"] = _check_label(changes["opt_out_label"], "opt_out_label")
    if "push_branches" in changes:
        patterns = changes["push_branches"] or []
        if not isinstance(patterns, list) or len(patterns) > _MAX_PATTERNS:
            raise _invalid(f"push branches are a list of at most {_MAX_PATTERNS} patterns", "push_branches")
        cleaned = []
        for pattern in patterns:
            text = str(pattern).strip()
            if not _PATTERN.match(text):
                raise _invalid(
                    "a branch pattern is 1-255 characters without spaces (e.g. main, release/*)",
                    "push_branches",
                )
            if text not in cleaned:
                cleaned.append(text)
        checked["push_branches"] = cleaned
    label_in, label_out = checked.get("opt_in_label"), checked.get("opt_out_label")
    if label_in and label_out and label_in == label_out:
        raise _invalid("the opt-in and opt-out labels must differ", "opt_out_label")
    return checked


# -- views -------------------------------------------------------------------------


def webhook_url() -> str:
    return get_settings().base_url.rstrip("/") + WEBHOOK_PATH


def repository_url(api_url: str, repository: str) -> str:
    """The repository's page: github.com for api.github.com, the Enterprise host otherwise."""
    parts = urlsplit(api_url)
    host = "github.com" if parts.netloc == "api.github.com" else parts.netloc
    return f"{parts.scheme}://{host}/{repository}"


def connection_view(connection: GithubConnection) -> GithubConnectionView:
    return GithubConnectionView(
        project_id=connection.project_id,
        repository=connection.repository,
        repository_url=repository_url(connection.api_url, connection.repository),
        api_url=connection.api_url,
        auth=connection.auth,
        app_id=connection.app_id,
        installation_id=connection.installation_id,
        pull_requests=connection.pull_requests,
        drafts=connection.drafts,
        opt_in_label=connection.opt_in_label or "",
        opt_out_label=connection.opt_out_label,
        push_branches=list(connection.push_branches),
        check_runs=connection.check_runs,
        webhook_url=webhook_url(),
        events=list(EVENTS),
        verified=fmt.ago(connection.verified_at) if connection.verified_at else "never",
        verified_at=connection.verified_at.isoformat() if connection.verified_at else "",
        last_error=connection.last_error,
        updated_at=connection.updated_at.isoformat(),
    )


# -- the use cases -----------------------------------------------------------------


def _project(
    session: Session, actor: Principal, project_id: int, action: Action, target: AuditTarget
) -> Project:
    project = session.get(Project, project_id)
    if project is None:
        raise NotFound(f"project {project_id} was not found", details={"project_id": project_id})
    target.name, target.team_id = project.name, project.team_id
    authorize(session, actor, project.team_id, action, what=f"project {project_id}")
    return project


def _connection(session: Session, project_id: int) -> GithubConnection | None:
    return session.exec(select(GithubConnection).where(GithubConnection.project_id == project_id)).first()


def _required(session: Session, project: Project) -> GithubConnection:
    connection = _connection(session, project.id or 0)
    if connection is None:
        raise GithubNotConnected(f"project {project.name!r} is not connected to a GitHub repository")
    return connection


def connect_github(
    *,
    session: Session,
    actor: Principal,
    project_id: int,
    repository: str,
    auth: str,
    api_url: str = DEFAULT_API_URL,
    app_id: int | None = None,
    installation_id: int | None = None,
    private_key: str = "",
    token: str = "",
) -> GithubConnected:
    """Connect (or reconnect) a project to its repository, after GitHub accepts the credentials.

    A new connection, or one moved to another repository, gets a new webhook
    secret, returned here once; reconnecting the same repository (new
    credentials, say) keeps the secret the repository's webhook already uses.
    """
    target = AuditTarget("project", id=project_id)
    with audited(session, actor, "github.connect", target):
        _project(session, actor, project_id, Action.secret_write, target)
        name = check_repository(repository)
        root = check_api_url(api_url)
        if auth == "app":
            app, installation = _check_id(app_id, "app_id"), _check_id(installation_id, "installation_id")
            access = GithubAccess(root, "app", check_private_key(private_key), app, installation)
        elif auth == "token":
            access = GithubAccess(root, "token", check_token(token))
        else:
            raise _invalid("auth is 'app' (a GitHub App installation) or 'token'", "auth")
        target.details = {"repository": name, "api_url": root, "auth": auth,
                          "app_id": access.app_id, "installation_id": access.installation_id}  # fmt: skip
        client = GithubClient(access, name, max_wait=0)
        try:
            info = client.repository_info()
        finally:
            client.close()
        connection = _connection(session, project_id)
        fresh_secret = connection is None or connection.repository.lower() != info.full_name.lower()
        secret = random.token_urlsafe(32) if fresh_secret else ""
        if connection is None:
            connection = GithubConnection(
                project_id=project_id, repository="", auth=auth, credential="", webhook_secret="",
                created_by_id=actor.user_id,
            )  # fmt: skip
        connection.repository = info.full_name
        connection.api_url = root
        connection.auth = auth
        connection.app_id, connection.installation_id = access.app_id, access.installation_id
        connection.credential = _seal(project_id, "credential", access.secret)
        if secret:
            connection.webhook_secret = _seal(project_id, "webhook_secret", secret)
        connection.verified_at, connection.last_error = utcnow(), ""
        connection.updated_at = utcnow()
        session.add(connection)
        session.flush()
        target.details |= {"repository": info.full_name, "new_webhook_secret": bool(secret)}
        view = connection_view(connection)
    return GithubConnected(
        connection=view,
        webhook_secret=secret,
        webhook_url=view["webhook_url"],
        events=list(EVENTS),
        default_branch=info.default_branch,
        private=info.private,
    )


def github_connection(*, session: Session, actor: Principal, project_id: int) -> GithubConnectionView:
    """The project's connection (``github_not_connected`` when it has none)."""
    project = _project(session, actor, project_id, Action.project_read, AuditTarget("project"))
    return connection_view(_required(session, project))


def update_github_policy(
    *, session: Session, actor: Principal, project_id: int, changes: Mapping[str, Any]
) -> GithubConnectionView:
    """Change which pull requests and pushes get environments, and whether App connections
    report check runs; fields left out stay."""
    target = AuditTarget("project", id=project_id)
    with audited(session, actor, "github.update", target):
        project = _project(session, actor, project_id, Action.project_update, target)
        connection = _required(session, project)
        checked = _check_policy(changes)
        opt_in = checked.get("opt_in_label", connection.opt_in_label)
        opt_out = checked.get("opt_out_label", connection.opt_out_label)
        if opt_in and opt_in == opt_out:
            raise _invalid("the opt-in and opt-out labels must differ", "opt_in_label")
        changed = {k: v for k, v in checked.items() if getattr(connection, k) != v}
        for key, value in changed.items():
            setattr(connection, key, value)
        connection.updated_at = utcnow()
        session.add(connection)
        target.details = {"changed": changed}
        view = connection_view(connection)
    return view


def rotate_webhook_secret(*, session: Session, actor: Principal, project_id: int) -> GithubWebhookSecret:
    """A new webhook secret, shown once; deliveries signed with the old one are refused from now on."""
    target = AuditTarget("project", id=project_id)
    with audited(session, actor, "github.rotate_webhook_secret", target):
        project = _project(session, actor, project_id, Action.secret_write, target)
        connection = _required(session, project)
        secret = random.token_urlsafe(32)
        connection.webhook_secret = _seal(project_id, "webhook_secret", secret)
        connection.updated_at = utcnow()
        session.add(connection)
        target.details = {"repository": connection.repository}
    return GithubWebhookSecret(webhook_secret=secret, webhook_url=webhook_url(), events=list(EVENTS))


def disconnect_github(*, session: Session, actor: Principal, project_id: int) -> GithubDisconnected:
    """Forget the repository and its credentials; its webhook deliveries are refused from now on."""
    target = AuditTarget("project", id=project_id)
    with audited(session, actor, "github.disconnect", target):
        project = _project(session, actor, project_id, Action.project_update, target)
        connection = _required(session, project)
        target.details = {"repository": connection.repository}
        session.delete(connection)
    return GithubDisconnected(project_id=project_id, disconnected=True)


# -- for the webhook endpoint and the jobs (no principal) ---------------------------


def access_of(connection: GithubConnection) -> GithubAccess:
    return GithubAccess(
        connection.api_url,
        "app" if connection.auth == "app" else "token",
        _open(connection, "credential"),
        connection.app_id,
        connection.installation_id,
    )


def client_for(connection: GithubConnection, *, max_wait: float = 60.0) -> GithubClient:
    """A client for the connection's repository; jobs may wait ``max_wait`` seconds on a rate limit."""
    return GithubClient(access_of(connection), connection.repository, max_wait=max_wait)


def webhook_secret(connection: GithubConnection) -> str:
    """The connection's webhook secret (raises ``SecretUnreadable`` when the key to it is gone)."""
    return _open(connection, "webhook_secret")


def webhook_secrets(session: Session, repository: str) -> list[tuple[int, str]]:
    """(connection id, webhook secret) of every connection of ``repository`` (case-insensitive)."""
    rows = session.exec(
        select(GithubConnection).where(func.lower(col(GithubConnection.repository)) == repository.lower())
    )
    return [(row.id or 0, _open(row, "webhook_secret")) for row in rows]
