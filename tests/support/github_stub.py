"""A loopback GitHub REST API for tests: a real HTTP server the real PyGithub talks to via ``base_url``.

It answers the paths envhub uses with the shapes and headers GitHub documents
(``X-RateLimit-*``, ``X-GitHub-Request-Id``, ``Link`` pagination), checks
credentials as GitHub does (an App's JWT must be RS256-signed by the App's key
with ``iss`` = the App id; installation tokens expire and reach only their
installation's repositories; a token must be one it issued), and records every
call (method, path, auth kind, status) so tests count GitHub API calls.

State is plain data: repositories, pull requests, comments, deployments and
check runs in dicts, changed through methods (:meth:`GithubStub.open_pull`, :meth:`push`,
:meth:`close_pull`...) so webhook tests can drive pull requests on it.
:meth:`GithubStub.fail` makes the next matching calls answer 401, 404, 403
(secondary or primary rate limit), 429 or 5xx as GitHub does.

With ``prefix="/api/v3"`` it stands for GitHub Enterprise Server.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support import git_http
from tests.support.servers import serve_asgi

DOCS = "https://docs.github.com/rest"
SECONDARY = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. "
    "If you reach out to GitHub Support for help, please include the request ID {rid}."
)


def generate_private_key() -> str:
    """A fresh RSA key (PEM, PKCS#1 as GitHub hands out App keys); never committed anywhere."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _user(login: str, uid: int) -> dict[str, Any]:
    return {"login": login, "id": uid, "node_id": f"U_{uid}", "type": "User", "site_admin": False}


@dataclass
class Call:
    method: str
    path: str  # without the prefix
    auth: str  # none, jwt (an App), installation, token, invalid
    status: int = 0


@dataclass
class Failure:
    status: int
    times: int
    method: str | None
    path: str | None  # a prefix of the path (without the API prefix)
    retry_after: int | None
    kind: str  # "secondary", "primary" or "" (plain status)


@dataclass
class Repo:
    owner: str
    name: str
    id: int
    private: bool = False
    default_branch: str = "main"
    pulls: dict[int, dict[str, Any]] = field(default_factory=dict)
    comments: dict[int, dict[str, Any]] = field(default_factory=dict)  # by comment id
    deployments: dict[int, dict[str, Any]] = field(default_factory=dict)
    statuses: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # by deployment id
    check_runs: dict[int, dict[str, Any]] = field(default_factory=dict)  # by check run id
    commit_statuses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # by commit sha

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


@dataclass
class Grant:
    installation_id: int | None  # None: a personal token
    expires_at: datetime | None
    repositories: set[str] | None  # lower-case full names; None: all of the installation's / any
    permissions: dict[str, str] | None = None  # what an installation token was asked with (None: all)


class GithubStub:
    def __init__(self, prefix: str = "", host: str = "127.0.0.1") -> None:
        self.prefix = prefix
        self.host = host
        self.port = 0
        # Where git's smart HTTP serves bare repositories from (git_http.py); None: no git.
        self.git_root: Path | None = None
        self.repos: dict[str, Repo] = {}
        self.apps: dict[int, str] = {}  # app id -> public key PEM
        self.private_keys: dict[int, str] = {}  # app id -> the private key envhub is given
        self.installations: dict[int, tuple[int, set[str]]] = {}  # id -> (app id, repos)
        self.grants: dict[str, Grant] = {}
        self.calls: list[Call] = []
        self.failures: list[Failure] = []
        self.token_lifetime = timedelta(hours=1)
        self.rate_limit = 5000
        self.used: dict[str, int] = {}
        self._ids = itertools.count(1000)
        self._lock = threading.RLock()

    # -- addresses --

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        return self.origin + self.prefix

    # -- data --

    def reset(self) -> None:
        with self._lock:
            self.repos.clear()
            self.apps.clear()
            self.private_keys.clear()
            self.installations.clear()
            self.grants.clear()
            self.calls.clear()
            self.failures.clear()
            self.used.clear()
            self.token_lifetime = timedelta(hours=1)
            self.git_root = None

    def add_repo(self, full_name: str, *, private: bool = False, default_branch: str = "main") -> Repo:
        owner, name = full_name.split("/", 1)
        repo = Repo(owner, name, next(self._ids), private=private, default_branch=default_branch)
        self.repos[full_name.lower()] = repo
        return repo

    def add_app(self, app_id: int) -> str:
        """Register an App; returns its private key (PEM) for envhub to be given."""
        private = generate_private_key()
        self.private_keys[app_id] = private
        key = serialization.load_pem_private_key(private.encode(), password=None)
        self.apps[app_id] = (
            key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )
        return private

    def install(self, app_id: int, installation_id: int, *repositories: str) -> None:
        self.installations[installation_id] = (app_id, {r.lower() for r in repositories})

    def add_token(self, *repositories: str) -> str:
        """A personal (or fine-grained) token reaching ``repositories`` (all when none is named)."""
        token = "ghp_" + secrets.token_urlsafe(27)
        self.grants[token] = Grant(None, None, {r.lower() for r in repositories} or None)
        return token

    def open_pull(
        self,
        full_name: str,
        *,
        head_ref: str = "feature",
        head_sha: str | None = None,
        draft: bool = False,
        labels: tuple[str, ...] = (),
        title: str = "A change",
        author: str = "octocat",
        number: int | None = None,
    ) -> dict[str, Any]:
        repo = self.repos[full_name.lower()]
        with self._lock:
            taken = set(repo.pulls) | {c["_number"] for c in repo.comments.values()}
            number = number or max(taken, default=0) + 1
            now = _iso(_now())
            base = self.api_url + f"/repos/{repo.full_name}"
            pull = {
                "url": f"{base}/pulls/{number}",
                "id": next(self._ids),
                "node_id": f"PR_{number}",
                "html_url": f"{self.origin}/{repo.full_name}/pull/{number}",
                "issue_url": f"{base}/issues/{number}",
                "number": number,
                "state": "open",
                "locked": False,
                "title": title,
                "user": _user(author, 1),
                "body": "",
                "labels": [],
                "draft": draft,
                "merged": False,
                "head": {
                    "label": f"{repo.owner}:{head_ref}",
                    "ref": head_ref,
                    "sha": head_sha or secrets.token_hex(20),
                    "user": _user(repo.owner, 2),
                    "repo": self._repo_json(repo),
                },
                "base": {
                    "label": f"{repo.owner}:{repo.default_branch}",
                    "ref": repo.default_branch,
                    "sha": secrets.token_hex(20),
                    "user": _user(repo.owner, 2),
                    "repo": self._repo_json(repo),
                },
                "created_at": now,
                "updated_at": now,
                "closed_at": None,
                "merged_at": None,
            }
            repo.pulls[number] = pull
            self.label(full_name, number, *labels)
            return pull

    def push(self, full_name: str, number: int, sha: str | None = None) -> str:
        pull = self.repos[full_name.lower()].pulls[number]
        pull["head"]["sha"] = sha or secrets.token_hex(20)
        pull["updated_at"] = _iso(_now())
        return str(pull["head"]["sha"])

    def label(self, full_name: str, number: int, *labels: str) -> None:
        pull = self.repos[full_name.lower()].pulls[number]
        for name in labels:
            pull["labels"].append({"id": next(self._ids), "name": name, "color": "ededed", "default": False})

    def close_pull(self, full_name: str, number: int, *, merged: bool = False) -> None:
        pull = self.repos[full_name.lower()].pulls[number]
        now = _iso(_now())
        pull.update(state="closed", closed_at=now, updated_at=now, merged=merged)
        pull["merged_at"] = now if merged else None

    def check_runs_on(self, full_name: str, sha: str | None = None) -> list[dict[str, Any]]:
        """The check runs made in the repository (on commit ``sha``), oldest first."""
        runs = self.repos[full_name.lower()].check_runs.values()
        return [run for run in runs if sha is None or run["head_sha"] == sha]

    def set_status(self, full_name: str, sha: str, context: str, state: str) -> None:
        """A commit status CI set (success, failure, error, pending); the latest per context counts."""
        statuses = self.repos[full_name.lower()].commit_statuses.setdefault(sha, [])
        statuses[:] = [s for s in statuses if s["context"] != context]
        statuses.append({"id": next(self._ids), "context": context, "state": state, "description": ""})

    def add_check_run(self, full_name: str, sha: str, name: str, status: str, conclusion: str | None) -> None:
        """A check run another app (CI) made on ``sha``."""
        run_id = next(self._ids)
        self.repos[full_name.lower()].check_runs[run_id] = {
            "id": run_id, "head_sha": sha, "name": name, "status": status, "conclusion": conclusion,
            "app": {"id": 2, "slug": "ci", "name": "CI"}, "pull_requests": [],
        }  # fmt: skip

    def comments_on(self, full_name: str, number: int) -> list[dict[str, Any]]:
        repo = self.repos[full_name.lower()]
        return [c for c in repo.comments.values() if c["_number"] == number]

    # -- failures and counting --

    def fail(
        self,
        status: int,
        *,
        times: int = 1,
        method: str | None = None,
        path: str | None = None,
        retry_after: int | None = None,
        kind: str = "",
    ) -> None:
        """Answer the next ``times`` matching calls with ``status`` (``kind``: "secondary" or "primary"
        for a 403/429 rate limit as GitHub words and heads it)."""
        self.failures.append(Failure(status, times, method, path, retry_after, kind))

    def count(self, method: str | None = None, path: str | None = None, auth: str | None = None) -> int:
        return sum(
            1
            for c in self.calls
            if (method is None or c.method == method)
            and (path is None or c.path.startswith(path))
            and (auth is None or c.auth == auth)
            and c.path != "/rate_limit"
        )

    # -- the HTTP side --

    def _repo_json(self, repo: Repo, permissions: bool = False) -> dict[str, Any]:
        base = self.api_url + f"/repos/{repo.full_name}"
        data: dict[str, Any] = {
            "id": repo.id,
            "node_id": f"R_{repo.id}",
            "name": repo.name,
            "full_name": repo.full_name,
            "private": repo.private,
            "owner": _user(repo.owner, 2),
            "html_url": f"{self.origin}/{repo.full_name}",
            "url": base,
            "default_branch": repo.default_branch,
            "visibility": "private" if repo.private else "public",
        }
        if permissions:
            data["permissions"] = {
                "admin": False,
                "maintain": False,
                "push": True,
                "triage": True,
                "pull": True,
            }
        return data

    def _headers(self, identity: str) -> dict[str, str]:
        used = self.used.get(identity, 0)
        return {
            "X-RateLimit-Limit": str(self.rate_limit),
            "X-RateLimit-Remaining": str(max(0, self.rate_limit - used)),
            "X-RateLimit-Reset": str(int(time.time()) + 3600),
            "X-RateLimit-Used": str(used),
            "X-RateLimit-Resource": "core",
            "X-GitHub-Request-Id": uuid.uuid4().hex[:20].upper(),
            "X-GitHub-Api-Version-Selected": "2022-11-28",
        }

    def _answer(self, status: int, body: Any, identity: str, extra: dict[str, str] | None = None) -> Response:
        headers = {**self._headers(identity), **(extra or {})}
        if status == 204:
            return Response(status_code=204, headers=headers)
        return JSONResponse(body, status_code=status, headers=headers, media_type="application/json")

    def _error(
        self, status: int, message: str, identity: str, extra: dict[str, str] | None = None
    ) -> Response:
        body = {"message": message, "documentation_url": DOCS, "status": str(status)}
        return self._answer(status, body, identity, extra)

    def _identify(self, request: Request) -> tuple[str, Grant | None, int | None]:
        """(auth kind, the grant of a token, the App id of a valid JWT)."""
        header = request.headers.get("authorization", "")
        scheme, _, credential = header.partition(" ")
        if not credential:
            return "none", None, None
        if scheme.lower() == "bearer" and credential.count(".") == 2:
            return self._app_of(credential)
        grant = self.grants.get(credential)
        if grant is None or (grant.expires_at is not None and grant.expires_at <= _now()):
            return "invalid", None, None
        return ("installation" if grant.installation_id is not None else "token"), grant, None

    def _app_of(self, token: str) -> tuple[str, Grant | None, int | None]:
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
            app_id = int(claims["iss"])
            jwt.decode(
                token,
                self.apps[app_id],
                algorithms=["RS256"],
                options={"require": ["iat", "exp", "iss"]},
                leeway=60,
            )
        except (jwt.PyJWTError, KeyError, ValueError, TypeError):
            return "invalid", None, None
        if int(claims["exp"]) - int(claims["iat"]) > 11 * 60:  # GitHub: at most 10 minutes
            return "invalid", None, None
        return "jwt", None, app_id

    def _failure(self, method: str, path: str) -> Failure | None:
        with self._lock:
            for failure in self.failures:
                if failure.times <= 0:
                    continue
                if failure.method not in (None, method) or (
                    failure.path and not path.startswith(failure.path)
                ):
                    continue
                failure.times -= 1
                return failure
        return None

    def _forced(self, failure: Failure, identity: str) -> Response:
        extra: dict[str, str] = {}
        if failure.retry_after is not None:
            extra["Retry-After"] = str(failure.retry_after)
        if failure.kind == "primary":
            extra["X-RateLimit-Remaining"] = "0"
            extra["X-RateLimit-Reset"] = str(int(time.time()) + (failure.retry_after or 60))
            return self._error(failure.status, "API rate limit exceeded for installation.", identity, extra)
        if failure.kind == "secondary" or failure.status == 429:
            return self._error(failure.status, SECONDARY.format(rid="0000:STUB"), identity, extra)
        messages = {401: "Bad credentials", 403: "Resource not accessible by integration", 404: "Not Found"}
        return self._error(failure.status, messages.get(failure.status, "Server Error"), identity, extra)

    def serve_git(self, root: Path, full_name: str) -> Path:
        """Serve ``full_name`` (a repository of the stub) over git's smart HTTP, from a new bare
        repository under ``root``; returns its path."""
        self.git_root = root
        return git_http.init_bare(root, full_name)

    def _git_access(self, full_name: str, token: str, pushing: bool) -> int | None:
        grant = self.grants.get(token)
        if grant is None or (grant.expires_at is not None and grant.expires_at <= _now()):
            return 401
        repo = self.repos.get(full_name.lower())
        if repo is None or not self._reaches(grant, repo):
            return 404
        if pushing and grant.permissions is not None and grant.permissions.get("contents") != "write":
            return 403
        return None

    async def _dispatch(self, request: Request) -> Response:
        if self.git_root is not None and git_http.is_git(request.url.path):
            call = Call(request.method, request.url.path, "git")
            self.calls.append(call)
            answer = await git_http.serve(request, self.git_root, self._git_access)
            call.status = answer.status_code
            return answer
        path = request.url.path.removeprefix(self.prefix) or "/"
        method = request.method
        kind, grant, app_id = self._identify(request)
        identity = request.headers.get("authorization", "anonymous")[-12:]
        call = Call(method, path, kind)
        self.calls.append(call)
        self.used[identity] = self.used.get(identity, 0) + (path != "/rate_limit")
        forced = self._failure(method, path)
        if forced is not None:
            response = self._forced(forced, identity)
        else:
            body = await request.json() if method in ("POST", "PATCH") and await request.body() else {}
            response = self._route(request, method, path, kind, grant, app_id, body, identity)
        call.status = response.status_code
        return response

    def _route(
        self,
        request: Request,
        method: str,
        path: str,
        kind: str,
        grant: Grant | None,
        app_id: int | None,
        body: dict[str, Any],
        identity: str,
    ) -> Response:
        parts = [p for p in path.split("/") if p]
        if parts == ["rate_limit"]:
            return self._rate_limit(identity)
        if kind in ("none", "invalid"):
            return self._error(401, "Bad credentials", identity)
        if parts[:2] == ["app", "installations"] and len(parts) == 4 and parts[3] == "access_tokens":
            if method != "POST":
                return self._error(404, "Not Found", identity)
            return self._mint(int(parts[2]) if parts[2].isdigit() else -1, app_id, body, identity)
        if kind == "jwt":  # an App's JWT reaches /app endpoints only
            return self._error(403, "Resource not accessible by integration", identity)
        if len(parts) < 3 or parts[0] != "repos":
            return self._error(404, "Not Found", identity)
        repo = self.repos.get(f"{parts[1]}/{parts[2]}".lower())
        if repo is None or not self._reaches(grant, repo):
            return self._error(404, "Not Found", identity)
        rest = parts[3:]
        if rest[:1] == ["check-runs"]:
            if kind != "installation":  # GitHub: only an App makes or changes check runs
                return self._error(403, "You must authenticate via a GitHub App.", identity)
            return self._check_run_route(method, repo, rest[1:], body, identity)
        return self._repo_route(request, method, repo, rest, body, identity)

    def _reaches(self, grant: Grant | None, repo: Repo) -> bool:
        if grant is None:
            return False
        name = repo.full_name.lower()
        if grant.installation_id is not None:
            installed = self.installations.get(grant.installation_id)
            if installed is None or name not in installed[1]:
                return False
        return grant.repositories is None or name in grant.repositories

    def _mint(
        self, installation_id: int, app_id: int | None, body: dict[str, Any], identity: str
    ) -> Response:
        if app_id is None:
            return self._error(
                401, "A JSON web token could not be decoded", identity
            )  # GitHub's wording for a bad or missing JWT here
        installed = self.installations.get(installation_id)
        if installed is None or installed[0] != app_id:
            return self._error(404, "Not Found", identity)
        names = body.get("repositories")
        scope: set[str] | None = None
        if names:
            owner_repos = {r.split("/", 1)[1]: r for r in installed[1]}
            missing = [n for n in names if n.lower() not in owner_repos]
            if missing:
                return self._error(422, "There is at least one repository that does not exist or is not "
                                   "accessible to the parent installation.", identity)  # fmt: skip
            scope = {owner_repos[n.lower()] for n in names}
        token = "ghs_" + secrets.token_urlsafe(27)
        expires = _now() + self.token_lifetime
        self.grants[token] = Grant(installation_id, expires, scope, body.get("permissions") or None)
        permissions = body.get("permissions") or {"contents": "read", "metadata": "read",
                                                   "pull_requests": "write", "issues": "write",
                                                   "deployments": "write", "checks": "write"}  # fmt: skip
        answer: dict[str, Any] = {
            "token": token,
            "expires_at": _iso(expires),
            "permissions": permissions,
            "repository_selection": "selected",
        }
        if scope is not None:
            answer["repositories"] = [
                self._repo_json(self.repos[r]) for r in sorted(scope) if r in self.repos
            ]
        return self._answer(201, answer, identity)

    def _rate_limit(self, identity: str) -> Response:
        used = self.used.get(identity, 0)
        core = {
            "limit": self.rate_limit,
            "used": used,
            "remaining": max(0, self.rate_limit - used),
            "reset": int(time.time()) + 3600,
        }
        return self._answer(200, {"resources": {"core": core}, "rate": core}, identity)

    def _page(self, request: Request, items: list[Any], identity: str) -> Response:
        per_page = min(100, int(request.query_params.get("per_page", "30") or 30))
        page = max(1, int(request.query_params.get("page", "1") or 1))
        chunk = items[(page - 1) * per_page : page * per_page]
        extra = {}
        last = max(1, -(-len(items) // per_page))
        if page < last:
            query = dict(request.query_params) | {"page": str(page + 1), "per_page": str(per_page)}
            url = request.url.replace_query_params(**query)
            last_url = request.url.replace_query_params(**(query | {"page": str(last)}))
            extra["Link"] = f'<{url}>; rel="next", <{last_url}>; rel="last"'
        return self._answer(200, chunk, identity, extra)

    def _repo_route(
        self, request: Request, method: str, repo: Repo, rest: list[str], body: dict[str, Any], identity: str
    ) -> Response:
        base = self.api_url + f"/repos/{repo.full_name}"
        if not rest and method == "GET":
            return self._answer(200, self._repo_json(repo, permissions=True), identity)
        if rest == ["pulls"] and method == "GET":
            state = request.query_params.get("state", "open")
            pulls = sorted(repo.pulls.values(), key=lambda p: p["number"])
            chosen = [p for p in pulls if state == "all" or p["state"] == state]
            return self._page(request, chosen, identity)
        if len(rest) == 2 and rest[0] == "pulls" and rest[1].isdigit() and method == "GET":
            pull = repo.pulls.get(int(rest[1]))
            return self._answer(200, pull, identity) if pull else self._error(404, "Not Found", identity)
        if len(rest) == 3 and rest[0] == "issues" and rest[2] == "comments" and rest[1].isdigit():
            number = int(rest[1])
            if number not in repo.pulls:
                return self._error(404, "Not Found", identity)
            if method == "GET":
                return self._page(request, self.comments_on(repo.full_name, number), identity)
            if method == "POST":
                if not isinstance(body.get("body"), str) or not body["body"]:
                    return self._error(422, "Validation Failed", identity)
                comment_id = next(self._ids)
                now = _iso(_now())
                comment = {
                    "id": comment_id,
                    "node_id": f"IC_{comment_id}",
                    "url": f"{base}/issues/comments/{comment_id}",
                    "html_url": f"{self.origin}/{repo.full_name}/pull/{number}#issuecomment-{comment_id}",
                    "issue_url": f"{base}/issues/{number}",
                    "body": body["body"],
                    "user": _user("envhub[bot]", 3),
                    "author_association": "NONE",
                    "created_at": now,
                    "updated_at": now,
                    "_number": number,
                }
                repo.comments[comment_id] = comment
                return self._answer(201, self._public(comment), identity)
        if len(rest) == 3 and rest[:2] == ["issues", "comments"] and rest[2].isdigit():
            comment = repo.comments.get(int(rest[2]))
            if comment is None:
                return self._error(404, "Not Found", identity)
            if method == "PATCH":
                if not isinstance(body.get("body"), str):
                    return self._error(422, "Validation Failed", identity)
                comment.update(body=body["body"], updated_at=_iso(_now()))
            if method in ("GET", "PATCH"):
                return self._answer(200, self._public(comment), identity)
        if len(rest) == 3 and rest[0] == "commits" and rest[2] == "status" and method == "GET":
            # docs.github.com/rest/commits/statuses#get-the-combined-status-for-a-specific-reference
            statuses = repo.commit_statuses.get(rest[1], [])
            states = {s["state"] for s in statuses}
            combined = "success"
            if states & {"failure", "error"}:
                combined = "failure"
            elif "pending" in states or not statuses:
                combined = "pending"
            return self._answer(
                200,
                {"state": combined, "sha": rest[1], "total_count": len(statuses), "statuses": statuses,
                 "commit_url": f"{base}/commits/{rest[1]}", "url": f"{base}/commits/{rest[1]}/status"},
                identity,
            )  # fmt: skip
        if len(rest) == 3 and rest[0] == "commits" and rest[2] == "check-runs" and method == "GET":
            runs = self.check_runs_on(repo.full_name, rest[1])
            answer = self._page(request, runs, identity)
            chunk = json.loads(bytes(answer.body))
            return self._answer(
                200, {"total_count": len(runs), "check_runs": chunk}, identity,
                {k: v for k, v in answer.headers.items() if k.lower() == "link"},
            )  # fmt: skip
        if rest == ["deployments"] and method == "POST":
            return self._deploy(repo, body, identity)
        if len(rest) >= 2 and rest[0] == "deployments" and rest[1].isdigit():
            deployment = repo.deployments.get(int(rest[1]))
            if deployment is None:
                return self._error(404, "Not Found", identity)
            if len(rest) == 2 and method == "GET":
                return self._answer(200, deployment, identity)
            if rest[2:] == ["statuses"] and method == "GET":
                return self._page(request, list(reversed(repo.statuses[deployment["id"]])), identity)
            if rest[2:] == ["statuses"] and method == "POST":
                return self._status(repo, deployment, body, identity)
        return self._error(404, "Not Found", identity)

    def _check_run_route(
        self, method: str, repo: Repo, rest: list[str], body: dict[str, Any], identity: str
    ) -> Response:
        """``POST /repos/{o}/{r}/check-runs`` and ``PATCH /repos/{o}/{r}/check-runs/{id}``, as documented
        (docs.github.com/rest/checks/runs): a conclusion completes the run; completed needs one."""
        if not rest and method == "POST":
            name, sha = body.get("name"), body.get("head_sha")
            if not isinstance(name, str) or not name or not isinstance(sha, str) or not sha:
                return self._error(422, "Validation Failed", identity)
            run_id = next(self._ids)
            base = self.api_url + f"/repos/{repo.full_name}"
            run: dict[str, Any] = {
                "id": run_id,
                "node_id": f"CR_{run_id}",
                "head_sha": sha,
                "external_id": "",
                "url": f"{base}/check-runs/{run_id}",
                "html_url": f"{self.origin}/{repo.full_name}/runs/{run_id}",
                "details_url": None,
                "status": "queued",
                "conclusion": None,
                "started_at": _iso(_now()),
                "completed_at": None,
                "output": {
                    "title": None,
                    "summary": None,
                    "text": None,
                    "annotations_count": 0,
                    "annotations_url": f"{base}/check-runs/{run_id}/annotations",
                },
                "name": name,
                "check_suite": {"id": next(self._ids)},
                "app": {"id": 1, "slug": "envhub", "name": "envhub"},
                "pull_requests": [],
            }
            problem = self._change_run(run, body)
            if problem:
                return self._error(422, problem, identity)
            repo.check_runs[run_id] = run
            return self._answer(201, run, identity)
        if len(rest) == 1 and rest[0].isdigit() and method in ("GET", "PATCH"):
            found = repo.check_runs.get(int(rest[0]))
            if found is None:
                return self._error(404, "Not Found", identity)
            if method == "PATCH":
                changed = {**found, "output": dict(found["output"])}
                problem = self._change_run(changed, body)
                if problem:
                    return self._error(422, problem, identity)
                found.update(changed)
            return self._answer(200, found, identity)
        return self._error(404, "Not Found", identity)

    @staticmethod
    def _change_run(run: dict[str, Any], body: dict[str, Any]) -> str:
        """Apply a create or update body to ``run``; what GitHub would refuse ("" when nothing)."""
        conclusions = {"action_required", "cancelled", "failure", "neutral", "success", "skipped",
                       "stale", "timed_out"}  # fmt: skip
        status, conclusion = body.get("status"), body.get("conclusion")
        if status is not None and status not in ("queued", "in_progress", "completed"):
            return "Validation Failed: status"
        if conclusion is not None and conclusion not in conclusions:
            return "Validation Failed: conclusion"
        if conclusion is not None:
            status = "completed"  # GitHub: providing a conclusion sets the status to completed
        if status == "completed" and conclusion is None and run["conclusion"] is None:
            return "Validation Failed: a completed check run needs a conclusion"
        output = body.get("output")
        if output is not None:
            if not isinstance(output, dict) or not output.get("title") or not output.get("summary"):
                return "Validation Failed: output needs a title and a summary"
            if len(str(output["summary"])) > 65_535:
                return "Validation Failed: the summary is longer than 65535 characters"
            run["output"].update(title=output["title"], summary=output["summary"], text=output.get("text"))
        if status is not None:
            run["status"] = status
        if conclusion is not None:
            run["conclusion"] = conclusion
        if run["status"] == "completed" and run["completed_at"] is None:
            run["completed_at"] = _iso(_now())
        for key in ("name", "details_url", "external_id"):
            if body.get(key) is not None:
                run[key] = body[key]
        return ""

    @staticmethod
    def _public(comment: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in comment.items() if not k.startswith("_")}

    def _deploy(self, repo: Repo, body: dict[str, Any], identity: str) -> Response:
        if not isinstance(body.get("ref"), str) or not body["ref"]:
            return self._error(422, "Validation Failed", identity)
        deployment_id = next(self._ids)
        now = _iso(_now())
        base = self.api_url + f"/repos/{repo.full_name}"
        ref = body["ref"]
        sha = next(
            (p["head"]["sha"] for p in repo.pulls.values() if ref in (p["head"]["ref"], p["head"]["sha"])),
            ref,
        )
        environment = body.get("environment") or "production"
        deployment = {
            "url": f"{base}/deployments/{deployment_id}",
            "id": deployment_id,
            "node_id": f"DE_{deployment_id}",
            "sha": sha,
            "ref": ref,
            "task": body.get("task", "deploy"),
            "payload": body.get("payload") or {},
            "original_environment": environment,
            "environment": environment,
            "description": body.get("description"),
            "creator": _user("envhub[bot]", 3),
            "created_at": now,
            "updated_at": now,
            "statuses_url": f"{base}/deployments/{deployment_id}/statuses",
            "repository_url": base,
            "transient_environment": bool(body.get("transient_environment", False)),
            "production_environment": bool(body.get("production_environment", environment == "production")),
        }
        repo.deployments[deployment_id] = deployment
        repo.statuses[deployment_id] = []
        return self._answer(201, deployment, identity)

    def _status(
        self, repo: Repo, deployment: dict[str, Any], body: dict[str, Any], identity: str
    ) -> Response:
        states = {"error", "failure", "inactive", "in_progress", "queued", "pending", "success"}
        if body.get("state") not in states:
            return self._error(422, "Validation Failed", identity)
        status_id = next(self._ids)
        now = _iso(_now())
        target = body.get("log_url") or body.get("target_url") or ""
        status = {
            "url": f"{deployment['url']}/statuses/{status_id}",
            "id": status_id,
            "node_id": f"DES_{status_id}",
            "state": body["state"],
            "creator": _user("envhub[bot]", 3),
            "description": body.get("description") or "",
            "environment": body.get("environment") or deployment["environment"],
            "target_url": target,
            "log_url": target,
            "environment_url": body.get("environment_url") or "",
            "created_at": now,
            "updated_at": now,
            "deployment_url": deployment["url"],
            "repository_url": deployment["repository_url"],
        }
        if body.get("auto_inactive", True) and body["state"] == "success":
            for other_id, other in repo.deployments.items():
                history = repo.statuses[other_id]
                same = other["environment"] == deployment["environment"] and other_id != deployment["id"]
                if same and history and history[-1]["state"] == "success":
                    history.append({**history[-1], "state": "inactive", "id": next(self._ids)})
        repo.statuses[deployment["id"]].append(status)
        return self._answer(201, status, identity)

    def app(self) -> Starlette:
        methods = ["GET", "POST", "PATCH", "PUT", "DELETE"]
        return Starlette(routes=[Route("/{path:path}", self._dispatch, methods=methods)])


@contextlib.contextmanager
def github_stub(prefix: str = "", host: str = "127.0.0.1") -> Iterator[GithubStub]:
    """A stub serving on a free port of ``host`` (loopback unless a test needs it reached from a sandbox)."""
    stub = GithubStub(prefix, host)
    with serve_asgi(stub.app(), address=host) as port:
        stub.port = port
        yield stub


_shared: GithubStub | None = None
_shared_cm: Any = None


def shared_stub() -> GithubStub:
    """One stub for the whole test process (started on first use), for module-scoped worlds."""
    global _shared, _shared_cm
    if _shared is None:
        _shared_cm = github_stub()
        _shared = _shared_cm.__enter__()
    return _shared
