"""GitHub through PyGithub: the one module that imports ``github``.

A :class:`GithubClient` is built from plain values (the API root, an App
installation or a token, the repository) and offers what envhub does on a
repository: check it, list its open pull requests, keep one comment per pull
request, report Deployments, and hand out a short-lived token for git.

App installation tokens are minted once per (API root, App, installation) for
the whole process and reused until shortly before they expire, however many
clients are built: :data:`TOKENS` holds them, and a lock per installation makes
concurrent clients wait for one mint instead of minting their own.

Errors become envhub's (``errors.py``: ``github_unauthorized``,
``github_not_found``, ``github_rate_limited`` with ``retry_after``...), raised
``from`` PyGithub's. Rate limits: a client built with ``max_wait=0`` (a web
request) never sleeps, it fails at once with ``github_rate_limited``; a job's
client (``max_wait`` > 0) retries 5xx and honours ``Retry-After`` and
``X-RateLimit-Reset`` for up to ``max_wait`` seconds per wait, then fails the same way.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar

import requests
from github import Auth, Github, GithubException, GithubIntegration, GithubRetry
from github.CheckRun import CheckRun
from github.Commit import Commit
from github.GithubException import (
    BadCredentialsException,
    RateLimitExceededExceedsMaxWait,
    RateLimitExceededException,
    UnknownObjectException,
)
from github.GithubObject import NotSet
from github.IssueComment import IssueComment
from github.Requester import Requester

from envhub.errors import (
    GithubError,
    GithubForbidden,
    GithubNotFound,
    GithubRateLimited,
    GithubRejected,
    GithubUnauthorized,
    GithubUnavailable,
)

DEFAULT_API_URL = "https://api.github.com"
AuthKind = Literal["app", "token"]
# A cached installation token is replaced this long before GitHub's expiry, so a
# request (or a git fetch given the token) never starts with one about to lapse.
REFRESH_MARGIN = timedelta(minutes=5)
# The permissions of the token envhub's own git fetches with: read the repository, nothing else.
GIT_PERMISSIONS = {"contents": "read"}
Permissions = dict[str, str]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class GithubAccess:
    """How to reach GitHub: the API root and one way to authenticate (plain values, never logged)."""

    api_url: str
    auth: AuthKind
    secret: str = field(repr=False)  # the App's private key (PEM) or the token
    app_id: int | None = None
    installation_id: int | None = None


@dataclass(frozen=True, slots=True)
class RepositoryInfo:
    full_name: str
    default_branch: str
    private: bool
    html_url: str
    permissions: dict[str, bool] | None  # what the credentials may do, when GitHub says


@dataclass(frozen=True, slots=True)
class PullRequestInfo:
    number: int
    head_sha: str
    head_ref: str
    draft: bool
    labels: list[str]
    state: str
    title: str
    author: str
    html_url: str


@dataclass(frozen=True, slots=True)
class InstallationToken:
    token: str = field(repr=False)
    expires_at: datetime | None  # None: a token the project gave (GitHub does not say)


# -- installation tokens, one per installation per process -------------------------


class TokenCache:
    """Installation tokens by (API root, App id, installation id, scope), reused until near expiry."""

    def __init__(self) -> None:
        self._tokens: dict[tuple[Any, ...], InstallationToken] = {}
        self._locks: dict[tuple[Any, ...], threading.Lock] = {}
        self._guard = threading.Lock()
        self.minted = 0  # how many tokens this process asked GitHub for (tests and metrics read it)

    def get(self, key: tuple[Any, ...], mint: Callable[[], InstallationToken]) -> InstallationToken:
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            cached = self._tokens.get(key)
            if cached is not None and not _expiring(cached):
                return cached
            fresh = mint()
            self.minted += 1
            self._tokens[key] = fresh
            return fresh

    def forget(self, key_prefix: tuple[Any, ...] | None = None) -> None:
        """Drop cached tokens (all, or those whose key starts with ``key_prefix``): a refused one, tests."""
        with self._guard:
            for key in list(self._tokens):
                if key_prefix is None or key[: len(key_prefix)] == key_prefix:
                    del self._tokens[key]


def _expiring(token: InstallationToken) -> bool:
    return token.expires_at is not None and token.expires_at - REFRESH_MARGIN <= datetime.now(UTC)


TOKENS = TokenCache()


class _InstallationAuth(Auth.Auth):
    """``Authorization: token <installation token>``, read from :data:`TOKENS` at every request."""

    def __init__(self, current: Callable[[], str]) -> None:
        self._current = current

    @property
    def token_type(self) -> str:
        return "token"

    @property
    def token(self) -> str:
        return self._current()

    @property
    def _masked_token(self) -> str:
        return "token (installation token removed)"


# -- retries ----------------------------------------------------------------------


class _BoundedRetry(GithubRetry):
    """GithubRetry that never sleeps longer than ``max_rate_limit_wait``, Retry-After included."""

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: Any = None,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        if response is not None and response.status in (403, 429):
            wait = _retry_after(response.headers)
            if wait is not None and self.max_rate_limit_wait is not None and wait > self.max_rate_limit_wait:
                said = {"message": f"rate limited for {wait:.0f} s, longer than this call may wait"}
                raise RateLimitExceededExceedsMaxWait(
                    response.status, said, dict(response.headers), wait=wait
                )
        return super().increment(method, url, response, *args, **kwargs)


def _retry_after(headers: Any) -> float | None:
    """Seconds GitHub asks to wait: ``Retry-After``, else until ``X-RateLimit-Reset`` when none remain."""
    lower = {str(k).lower(): str(v) for k, v in dict(headers or {}).items()}
    if lower.get("retry-after", "").strip().isdigit():
        return float(lower["retry-after"])
    if lower.get("x-ratelimit-remaining") == "0" and lower.get("x-ratelimit-reset", "").isdigit():
        return max(0.0, int(lower["x-ratelimit-reset"]) - time.time())
    return None


def _retry(max_wait: float) -> GithubRetry | None:
    if max_wait <= 0:
        return None  # a web request: no retry, no sleep; the error says when to come back
    return _BoundedRetry(
        total=4,
        backoff_factor=0.5,
        backoff_max=max_wait,
        secondary_rate_wait=min(60.0, max_wait),
        max_rate_limit_wait=max_wait,
        raise_on_status=False,  # after the last try, PyGithub sees GitHub's answer (and its headers)
    )


# -- errors -----------------------------------------------------------------------


def _message(exc: GithubException) -> str:
    data = exc.data if isinstance(exc.data, dict) else {}
    text = str(data.get("message") or exc.message or "").strip()
    return text[:300] or f"HTTP {exc.status}"


def translate(exc: Exception, doing: str) -> GithubError:
    """envhub's error for what PyGithub (or the network under it) raised while ``doing``."""
    if isinstance(exc, GithubError):
        return exc
    if isinstance(exc, GithubException):
        status, headers = exc.status, exc.headers or {}
        said = _message(exc)
        details: dict[str, Any] = {"github_status": status}
        request_id = {str(k).lower(): v for k, v in dict(headers).items()}.get("x-github-request-id")
        if request_id:
            details["github_request_id"] = str(request_id)
        wait = _retry_after(headers)
        if isinstance(exc, RateLimitExceededExceedsMaxWait) and wait is None:
            wait = exc.wait
        limited = isinstance(exc, RateLimitExceededException) or status == 429
        if limited or (status == 403 and wait is not None):
            seconds = max(1, math.ceil(wait if wait is not None else 60))
            return GithubRateLimited(
                f"GitHub rate-limited {doing}: {said}", details={**details, "retry_after": seconds}
            )
        if isinstance(exc, BadCredentialsException) or status == 401:
            return GithubUnauthorized(
                f"GitHub refused the credentials while {doing}: {said}", details=details
            )
        if status == 403:
            return GithubForbidden(f"GitHub did not allow {doing}: {said}", details=details)
        if isinstance(exc, UnknownObjectException) or status == 404:
            return GithubNotFound(f"GitHub found nothing while {doing}: {said}", details=details)
        if status is not None and status >= 500:
            return GithubUnavailable(f"GitHub failed while {doing}: {said}", details=details)
        if status in (400, 409, 410, 422):
            return GithubRejected(f"GitHub refused {doing}: {said}", details=details)
        return GithubError(f"GitHub answered {status} while {doing}: {said}", details=details)
    if isinstance(exc, requests.RequestException):
        return GithubUnavailable(f"GitHub did not answer while {doing}: {type(exc).__name__}")
    raise exc


# -- the client -------------------------------------------------------------------


class GithubClient:
    """One repository, through one set of credentials.

    ``max_wait`` is how long a call may sleep on a rate limit or a failing GitHub:
    0 for a web request (fail at once with the code), a minute or so for a job.
    """

    def __init__(
        self,
        access: GithubAccess,
        repository: str,
        *,
        max_wait: float = 0,
        timeout: int = 10,
        user_agent: str = "envhub",
    ) -> None:
        self.access = access
        self.repository = repository
        self._retry = _retry(max_wait)
        self._options: dict[str, Any] = {
            "base_url": access.api_url.rstrip("/"),
            "timeout": timeout,
            "user_agent": user_agent,
            "retry": self._retry,
            "seconds_between_requests": None,
            "seconds_between_writes": None,
        }
        if access.auth == "app":
            if not access.app_id or not access.installation_id:
                raise GithubUnauthorized("an App connection needs its App id and installation id")
            auth: Auth.Auth = _InstallationAuth(lambda: self._installation(None).token)
        else:
            auth = Auth.Token(access.secret)
        self._github = Github(auth=auth, lazy=True, per_page=100, **self._options)

    # -- tokens --

    def _key(self, permissions: Permissions | None) -> tuple[Any, ...]:
        """The cache key of the installation's token (``permissions`` None), or of one scoped to
        this repository with ``permissions``."""
        scope = (
            (self.repository.lower(), tuple(sorted(permissions.items()))) if permissions is not None else ()
        )
        return (self.access.api_url.rstrip("/"), self.access.app_id, self.access.installation_id, *scope)

    def _installation(self, permissions: Permissions | None) -> InstallationToken:
        return TOKENS.get(self._key(permissions), lambda: self._mint(permissions))

    def _mint(self, permissions: Permissions | None) -> InstallationToken:
        assert self.access.app_id is not None
        assert self.access.installation_id is not None
        try:
            app = Auth.AppAuth(self.access.app_id, self.access.secret)
            integration = GithubIntegration(auth=app, **self._options)
            if permissions is None:
                grant = integration.get_access_token(self.access.installation_id)
                return InstallationToken(grant.token, grant.expires_at)
            # Scoped to the one repository, with the permissions asked for and no more.
            requester: Requester = integration._GithubIntegration__requester  # type: ignore[attr-defined]
            _headers, body = requester.requestJsonAndCheck(
                "POST",
                f"/app/installations/{self.access.installation_id}/access_tokens",
                headers={"Authorization": f"Bearer {app.create_jwt()}"},
                input={"repositories": [self.repository.split("/", 1)[1]], "permissions": permissions},
            )
            expires = datetime.fromisoformat(str(body["expires_at"]).replace("Z", "+00:00"))
            return InstallationToken(str(body["token"]), expires)
        except (ValueError, TypeError) as exc:  # a private key PyJWT cannot use
            raise GithubUnauthorized(
                "the App's private key cannot sign a token", hint="Paste the App's PEM private key again."
            ) from exc
        except (GithubException, requests.RequestException) as exc:
            raise translate(exc, "minting an installation token") from exc

    def installation_token(self) -> InstallationToken:
        """A token for git over https: an App's is read-only and for this repository only, valid about
        an hour (reused until near its expiry); a token connection's is the token itself."""
        if self.access.auth == "token":
            return InstallationToken(self.access.secret, None)
        return self._installation(GIT_PERMISSIONS)

    def repository_token(self, permissions: Permissions) -> InstallationToken:
        """An App installation token for this repository only, with ``permissions`` (e.g. contents
        and pull requests write, for git inside an environment), valid about an hour; reused until
        near its expiry. Only an App connection has one (a token connection's token is long-lived)."""
        if self.access.auth != "app":
            raise GithubUnauthorized("only a GitHub App connection mints repository tokens")
        return self._installation(dict(permissions))

    # -- calls --

    def _call(self, doing: str, work: Callable[[], T]) -> T:
        try:
            return work()
        except GithubError:
            raise
        except (GithubException, requests.RequestException) as exc:
            error = translate(exc, doing)
            if isinstance(error, GithubUnauthorized) and self.access.auth == "app":
                TOKENS.forget(self._key(None)[:3])  # revoked early: mint anew next time
            raise error from exc

    def _repo(self) -> Any:
        return self._github.get_repo(self.repository, lazy=True)

    def repository_info(self) -> RepositoryInfo:
        """``GET /repos/{owner}/{repo}``: proves the credentials reach the repository."""

        def work() -> RepositoryInfo:
            repo = self._github.get_repo(self.repository, lazy=False)
            raw = repo.raw_data
            permissions = raw.get("permissions")
            return RepositoryInfo(
                full_name=str(raw.get("full_name") or self.repository),
                default_branch=str(raw.get("default_branch") or ""),
                private=bool(raw.get("private")),
                html_url=str(raw.get("html_url") or ""),
                permissions={str(k): bool(v) for k, v in permissions.items()}
                if isinstance(permissions, dict)
                else None,
            )

        return self._call(f"reading {self.repository}", work)

    def open_pull_requests(self) -> list[PullRequestInfo]:
        """Every open pull request (all pages), oldest first."""

        def work() -> list[PullRequestInfo]:
            pulls = self._repo().get_pulls(state="open", sort="created", direction="asc")
            return [_pull(pull) for pull in _pages(pulls)]

        return self._call(f"listing the pull requests of {self.repository}", work)

    def create_comment(self, number: int, body: str) -> int:
        """``POST /repos/{o}/{r}/issues/{number}/comments``; the new comment's id."""

        def work() -> int:
            comment = self._repo().get_issue(number).create_comment(body)
            return int(comment.id)

        return self._call(f"commenting on pull request #{number}", work)

    def edit_comment(self, comment_id: int, body: str) -> None:
        """``PATCH /repos/{o}/{r}/issues/comments/{id}``."""

        def work() -> None:
            repo = self._repo()
            url = f"{repo.url}/issues/comments/{comment_id}"
            IssueComment(repo.requester, url=url).edit(body)

        self._call(f"editing comment {comment_id}", work)

    def find_comment(self, number: int, marker: str) -> int | None:
        """The id of the first comment on the pull request whose body holds ``marker`` (a hidden
        ``<!-- ... -->`` envhub writes), so a lost comment id is found again instead of duplicated."""

        def work() -> int | None:
            for comment in _pages(self._repo().get_issue(number).get_comments()):
                if marker in (comment.body or ""):
                    return int(comment.id)
            return None

        return self._call(f"reading the comments of pull request #{number}", work)

    def create_deployment(
        self, ref: str, environment: str, *, transient: bool = True, description: str = ""
    ) -> int:
        """``POST /repos/{o}/{r}/deployments`` for ``ref`` (no merge, no required checks); its id."""

        def work() -> int:
            deployment = self._repo().create_deployment(
                ref=ref,
                task="deploy",
                auto_merge=False,
                required_contexts=[],
                environment=environment,
                description=description[:140],
                transient_environment=transient,
                production_environment=False,
            )
            return int(deployment.id)

        return self._call(f"creating a deployment of {ref}", work)

    def create_deployment_status(
        self,
        deployment_id: int,
        state: str,
        *,
        environment_url: str = "",
        description: str = "",
        log_url: str = "",
    ) -> int:
        """``POST /repos/{o}/{r}/deployments/{id}/statuses`` (in_progress, success, failure, inactive...).

        ``log_url`` goes out as ``log_url`` (GitHub's name) through PyGithub's ``target_url``."""

        def work() -> int:
            deployment = self._repo().get_deployment(deployment_id)
            status = deployment.create_status(
                state,
                target_url=log_url or NotSet,
                description=description[:140],
                environment_url=environment_url or NotSet,
                auto_inactive=True,
            )
            return int(status.id)

        return self._call(f"reporting deployment {deployment_id} {state}", work)

    def commit_checks(self, sha: str) -> tuple[str, str]:
        """The commit's checks on GitHub, in one word and one sentence.

        ``success`` when every status and check run has finished well,
        ``pending`` while any runs, ``failure`` when any failed; GitHub's
        combined status and the check runs are both asked (two requests).
        """

        def work() -> tuple[str, str]:
            repo = self._repo()
            commit = Commit(repo.requester, url=f"{repo.url}/commits/{sha}")
            combined = commit.get_combined_status()
            failed: list[str] = []
            waiting: list[str] = []
            passed = 0
            for status in combined.statuses:
                if status.state in ("failure", "error"):
                    failed.append(status.context)
                elif status.state == "pending":
                    waiting.append(status.context)
                else:
                    passed += 1
            for run in _pages(commit.get_check_runs()):
                if run.status != "completed":
                    waiting.append(run.name)
                elif run.conclusion in ("success", "neutral", "skipped"):
                    passed += 1
                else:
                    failed.append(run.name)
            if failed:
                return "failure", f"failing on GitHub: {', '.join(sorted(failed)[:5])}"
            if waiting:
                return "pending", f"still running on GitHub: {', '.join(sorted(waiting)[:5])}"
            if not passed:
                return "pending", "GitHub has no checks for this commit yet"
            return "success", f"{passed} check(s) green on GitHub"

        return self._call(f"reading the checks of {sha[:12]}", work)

    def create_check_run(
        self,
        head_sha: str,
        name: str,
        *,
        status: str,
        conclusion: str = "",
        title: str,
        summary: str,
        details_url: str = "",
    ) -> int:
        """``POST /repos/{o}/{r}/check-runs`` on ``head_sha``; its id. GitHub lets only an App make
        one (a token is refused with 403): callers ask for it on App connections only."""

        def work() -> int:
            run = self._repo().create_check_run(
                name=name,
                head_sha=head_sha,
                details_url=details_url or NotSet,
                status=status,
                conclusion=conclusion or NotSet,
                output=_output(title, summary),
            )
            return int(run.id)

        return self._call(f"creating a check run on {head_sha[:12]}", work)

    def update_check_run(
        self,
        check_run_id: int,
        *,
        status: str,
        conclusion: str = "",
        title: str,
        summary: str,
        details_url: str = "",
    ) -> None:
        """``PATCH /repos/{o}/{r}/check-runs/{id}`` (one request: the run is not read first)."""

        def work() -> None:
            repo = self._repo()
            run = CheckRun(repo.requester, url=f"{repo.url}/check-runs/{check_run_id}")
            run.edit(
                status=status,
                conclusion=conclusion or NotSet,
                details_url=details_url or NotSet,
                output=_output(title, summary),
            )

        self._call(f"updating check run {check_run_id}", work)

    def rate_limit(self) -> dict[str, int]:
        """``GET /rate_limit``: the core limit's remaining calls and reset time (does not count)."""

        def work() -> dict[str, int]:
            core = self._github.get_rate_limit().resources.core
            return {"limit": core.limit, "remaining": core.remaining, "reset": int(core.reset.timestamp())}

        return self._call("reading the rate limit", work)

    def close(self) -> None:
        self._github.close()


def _output(title: str, summary: str) -> dict[str, str | list[dict[str, str | int]]]:
    # GitHub's limits: a summary of at most 65,535 characters; the title is shown on one line.
    return {"title": title[:255], "summary": summary[:65_535]}


def _pages(items: Any) -> Iterator[Any]:
    yield from items


def _pull(pull: Any) -> PullRequestInfo:
    # Attributes a list item carries already: reading them makes no further request.
    return PullRequestInfo(
        number=int(pull.number),
        head_sha=str(pull.head.sha or ""),
        head_ref=str(pull.head.ref or ""),
        draft=bool(pull.draft),
        labels=[str(label.name) for label in pull.labels or []],
        state=str(pull.state or "open"),
        title=str(pull.title or ""),
        author=str(pull.user.login if pull.user else ""),
        html_url=str(pull.html_url or ""),
    )
