"""envhub's error tree.

Every error a person or a program can see is an :class:`EnvhubError` with a
stable machine ``code`` that the dashboard, REST API, MCP server and CLI all map
the same way, a message saying what happened, and a ``hint`` saying what to do.
Every class of the tree is defined here, so :data:`REGISTRY` (code -> HTTP
status, hint, advice) at the bottom is complete: the faces read it and nothing else.

    EnvhubError
    ├── ConfigurationError        configuration_invalid
    │   ├── DataDirUnsafe         data_dir_unsafe
    │   └── HelmUnavailable       helm_unavailable
    ├── ValidationFailed          validation_failed
    │   ├── InvalidName           invalid_name
    │   ├── RepoUrlRefused        repo_url_refused
    │   ├── ScopeNotAllowed       scope_not_allowed
    │   ├── EnvNameForbidden      env_name_forbidden
    │   ├── ManifestInvalid       manifest_invalid
    │   ├── ManifestRejected      manifest_rejected
    │   ├── CommitInvalid         commit_invalid
    │   ├── SourcePathInvalid     source_path_invalid
    │   ├── ChartRefInvalid       chart_ref_invalid
    │   ├── ChartRenderFailed     chart_render_failed
    │   ├── DevcontainerInvalid   devcontainer_invalid
    │   ├── DevcontainerBuildUnavailable  devcontainer_build_unavailable
    │   ├── WorkspacePathInvalid  workspace_path_invalid
    │   ├── GithubConnectionInvalid  github_connection_invalid
    │   ├── EgressDenied          egress_denied
    │   └── WebhookMalformed      webhook_malformed (400)
    ├── NotFound                  not_found
    │   └── GithubNotConnected    github_not_connected
    ├── Conflict                  conflict
    ├── PermissionDenied          forbidden
    │   ├── CsrfRejected          csrf_failed
    │   ├── OriginRejected        origin_not_allowed
    │   └── GitHostRefused        git_host_refused
    ├── Unauthenticated           unauthenticated
    │   └── WebhookSignatureInvalid  webhook_signature_invalid
    ├── SignInFailed              sign_in_failed
    │   ├── SignInNotAllowed      sign_in_not_allowed
    │   ├── LoginLinkInvalid      login_link_invalid
    │   ├── OidcStateMismatch     oidc_state_mismatch
    │   ├── OidcNonceMismatch     oidc_nonce_mismatch
    │   ├── OidcTokenExpired      oidc_token_expired
    │   ├── OidcTokenInvalid      oidc_token_invalid
    │   └── OidcProviderError     oidc_provider_error
    │       └── OidcProviderUnreachable  oidc_provider_unreachable (retryable)
    ├── RateLimited               rate_limited
    │   └── GithubRateLimited     github_rate_limited (retryable; details.retry_after)
    ├── PayloadTooLarge           payload_too_large
    ├── HostNotAllowed            host_not_allowed
    ├── Unsupported               not_supported
    │   └── GithubAppRequired     github_app_required
    ├── SecretUnreadable          secret_unreadable
    ├── InvalidTransition         invalid_transition
    │   └── EnvironmentWaking     environment_waking (503, retryable)
    ├── GithubError               github_error
    │   ├── GithubUnauthorized    github_unauthorized
    │   ├── GithubForbidden       github_forbidden
    │   ├── GithubNotFound        github_not_found
    │   ├── GithubRejected        github_rejected
    │   ├── GithubUnavailable     github_unavailable (retryable)
    │   └── GithubRateLimited     (also a RateLimited)
    ├── CloudflareError           cloudflare_error
    │   ├── CloudflareUnauthorized  cloudflare_unauthorized
    │   ├── CloudflareRejected    cloudflare_rejected
    │   ├── CloudflareHostTaken   cloudflare_host_taken
    │   ├── CloudflareUnavailable cloudflare_unavailable (retryable)
    │   └── CloudflareRateLimited cloudflare_rate_limited (retryable; also a RateLimited)
    ├── ObjectStoreError          object_store_error
    │   └── ObjectStoreUnavailable  object_store_unavailable (retryable)
    ├── BackingServiceError       backing_service_error
    │   ├── BackingServiceUnavailable  backing_service_unavailable (retryable)
    │   └── BackupCorrupt         backup_corrupt
    └── RuntimeFailure            runtime_error
        ├── NotReady              not_ready (retryable: "not yet")
        ├── RolloutFailed         rollout_failed (details.workloads)
        ├── ProcessExited         process_exited
        ├── WorkspaceFailed       workspace_failed
        ├── LifecycleCommandFailed  lifecycle_command_failed
        ├── ImageBuildFailed      image_build_failed
        ├── SourceFetchFailed     source_fetch_failed
        ├── SandboxUnavailable    sandbox_unavailable
        ├── QuotaExceeded         quota_exceeded
        ├── ClusterUnreachable    cluster_unreachable (retryable)
        ├── ClusterUnauthorized   cluster_unauthorized
        ├── ClusterForbidden      cluster_forbidden
        ├── ClusterConflict       cluster_conflict (retryable)
        └── ClusterRejected       cluster_rejected
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar


class EnvhubError(Exception):
    code: ClassVar[str] = "internal_error"
    # The HTTP status every face reports the error with (REST, terminal routes, MCP).
    status: ClassVar[int] = 500
    default_hint: ClassVar[str] = "Try again; if it persists, check envhub's logs."
    # What to do when an environment or a job ended with this code: only the
    # code and the message survive on those rows, so the page says the rest.
    advice: ClassVar[str] = (
        "Something unexpected happened inside envhub. Check the worker log (var/logs/worker.log) and retry."
    )
    retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, hint: str = "", details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint or self.default_hint
        self.details = details or {}

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "hint": self.hint,
            "details": self.details,
        }


class ConfigurationError(EnvhubError):
    code = "configuration_invalid"
    advice = "envhub itself is misconfigured. Fix the named ENVHUB_* setting and restart envhub."
    default_hint = "Fix the named ENVHUB_* variable (environment or .env) and start again."


class DataDirUnsafe(ConfigurationError):
    code = "data_dir_unsafe"
    default_hint = "Point ENVHUB_DATA_DIR at a folder owned by the user envhub runs as."


class HelmUnavailable(ConfigurationError):
    """The ``helm`` binary envhub renders charts with is missing, broken or too old."""

    code = "helm_unavailable"
    default_hint = (
        "Install helm 3.8 or newer on the machines running envhub's worker and point "
        "ENVHUB_HELM_BINARY at it (default: helm on PATH)."
    )
    advice = (
        "envhub could not run helm to render the chart. An operator installs helm 3.8 or newer "
        "(ENVHUB_HELM_BINARY names it), then the deployment is retried."
    )


class ValidationFailed(EnvhubError):
    code = "validation_failed"
    advice = "The environment's spec is invalid. Fix the project's defaults and redeploy."
    status = 422
    default_hint = "Correct the highlighted field and try again."


def invalid_request(errors: Iterable[Mapping[str, Any]]) -> ValidationFailed:
    """A request refused by its schema (pydantic's ``errors()``), as REST and MCP both report it:
    ``details.problems`` names each field (its ``loc`` without ``body``/``query``/``path``)."""
    problems = [
        {
            "field": ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")),
            "problem": str(err.get("msg", "")),
        }
        for err in errors
    ][:20]
    return ValidationFailed(
        "the request is not valid: " + "; ".join(f"{p['field']}: {p['problem']}" for p in problems)[:500],
        details={"problems": problems},
    )


class InvalidName(ValidationFailed):
    code = "invalid_name"
    default_hint = "Use 1-63 lower-case letters, digits and '-', starting and ending with a letter or digit."


class RepoUrlRefused(ValidationFailed):
    """A repository URL envhub will not fetch; ``details["reason"]`` says why."""

    code = "repo_url_refused"
    default_hint = "Use an https://, ssh:// or git@host:path URL, without credentials in it."


class ScopeNotAllowed(ValidationFailed):
    code = "scope_not_allowed"
    default_hint = "Agent tokens carry read, write and shell; delete or share the environment yourself."


class EnvNameForbidden(ValidationFailed):
    """An environment variable name that steers program loading or shell start-up."""

    code = "env_name_forbidden"
    advice = (
        "A variable of the environment (or a project secret) has a name that steers "
        "how programs load or how shells start (LD_*, GCONV_PATH, BASH_ENV...). Remove it and redeploy."
    )
    default_hint = (
        "Remove the variable named in details.name; LD_*, GCONV_PATH, BASH_ENV and the like "
        "cannot be set for environments."
    )


class ManifestInvalid(ValidationFailed):
    """A user-supplied manifest that is not YAML, not an object, or misses fields."""

    code = "manifest_invalid"
    default_hint = "Fix the named document (apiVersion, kind and metadata.name are required) and redeploy."


class ManifestRejected(ValidationFailed):
    """A well-formed manifest that would break the environment's isolation."""

    code = "manifest_rejected"
    default_hint = (
        "envhub runs every environment in its own namespace with fixed isolation; "
        "remove or change the named object and redeploy."
    )


class EgressDenied(ValidationFailed):
    """An egress allowlist entry naming what the platform denies."""

    code = "egress_denied"
    default_hint = (
        "The platform never lets environments reach the cloud metadata service, the API server, "
        "kube-system or envhub itself; remove the named egress entry."
    )


class CommitInvalid(ValidationFailed):
    """A deployment names its commit by something else than a full commit id."""

    code = "commit_invalid"
    default_hint = (
        "Name the commit by its full 40-character id (git rev-parse HEAD), not a branch, a tag or a short id."
    )


class SourcePathInvalid(ValidationFailed):
    """A manifests or chart path that is not a readable place inside the repository;
    ``details["path"]`` names it and ``details["reason"]`` says why (``escapes``,
    ``missing``, ``empty``, ``too_large``, ``not_text``)."""

    code = "source_path_invalid"
    default_hint = (
        "Point the path at a file or folder inside the repository at that commit: relative, without "
        "'..' or symlinks leading out, holding at most 5 MiB of .yaml, .yml or .json files."
    )
    advice = (
        "The deployment's manifests or chart path does not name a usable place in the repository "
        "at that commit. Fix the path (or push the files) and deploy again."
    )


class ChartRefInvalid(ValidationFailed):
    """A Helm chart reference envhub will not render; ``details["field"]`` names the part."""

    code = "chart_ref_invalid"
    default_hint = (
        "Name a chart by an exact version (1.2.3, no ranges) and an http(s):// chart repository or an "
        "oci:// reference without credentials in it, or by a chart folder inside the repository."
    )


class ChartRenderFailed(ValidationFailed):
    """helm refused the chart: not found, a bad values file, a template error; the message
    quotes helm's own error."""

    code = "chart_render_failed"
    default_hint = (
        "helm could not render the chart; its error is quoted in the message. Fix the chart, its "
        "version or the values it names and deploy again (`helm template` shows the same error)."
    )
    advice = (
        "helm could not render the chart with the environment's values; the message quotes helm's "
        "error. Fix the chart or the values and deploy again."
    )


class DevcontainerInvalid(ValidationFailed):
    """The repository's devcontainer.json cannot be read; ``details`` name the ``path``, the ``key``
    when one is at fault, and the ``reason`` (``syntax``, ``not_object``, ``bad_value``,
    ``bad_variable``, ``too_large``, ``missing``, ``bad_name``)."""

    code = "devcontainer_invalid"
    default_hint = (
        "Fix the named key of the repository's devcontainer.json (JSON with comments) and push; "
        "the README's 'Dev containers' section lists what envhub reads."
    )
    advice = (
        "The repository's dev container configuration could not be used; the message names the file "
        "and the key. Fix it, push, and redeploy."
    )


class DevcontainerBuildUnavailable(ValidationFailed):
    """The repository's devcontainer.json builds its image (``build.dockerfile``) and names no
    ``image``, and this envhub has no in-cluster image builder; ``details`` name the ``path``."""

    code = "devcontainer_build_unavailable"
    default_hint = (
        'Name a prebuilt image in devcontainer.json ("image": "ghcr.io/devcontainers/..."), '
        "or ask the operator to configure an in-cluster image builder."
    )
    advice = (
        "The dev container builds its image from a Dockerfile, and this envhub cannot build images. "
        "Push a prebuilt image and name it in devcontainer.json's image, then redeploy."
    )


class WorkspacePathInvalid(ValidationFailed):
    """A path a file operation cannot act on; ``details["reason"]`` says why (``escapes``,
    ``is_directory``, ``not_directory``, ``not_regular``, ``invalid``)."""

    code = "workspace_path_invalid"
    default_hint = (
        "Name a path inside the environment's workspace: relative to it (or absolute inside it), "
        "without '..' or symlinks leading out; read, write and delete act on files, list on folders."
    )


class NotFound(EnvhubError):
    code = "not_found"
    status = 404
    default_hint = "Check the name or id; it may have been deleted."


class Conflict(EnvhubError):
    code = "conflict"
    status = 409
    default_hint = "Pick another name, or open the existing one."


class PermissionDenied(EnvhubError):
    code = "forbidden"
    status = 403
    default_hint = "Ask an owner or admin of the team for access."


class CsrfRejected(PermissionDenied):
    code = "csrf_failed"
    default_hint = "Reload the page and try again; API clients send a bearer token instead of cookies."


class OriginRejected(PermissionDenied):
    code = "origin_not_allowed"
    default_hint = "Open envhub at its own address (ENVHUB_BASE_URL)."


class Unauthenticated(EnvhubError):
    code = "unauthenticated"
    status = 401
    default_hint = "Sign in again, or send a valid token as 'Authorization: Bearer <token>'."


class SignInFailed(EnvhubError):
    code = "sign_in_failed"
    status = 400
    default_hint = "Start signing in again from envhub's sign-in page."


class SignInNotAllowed(SignInFailed):
    code = "sign_in_not_allowed"
    status = 403
    default_hint = "Sign in with an account envhub's administrators allow (domain or group)."


class LoginLinkInvalid(SignInFailed):
    code = "login_link_invalid"
    default_hint = (
        "Login links work once and expire; run `python -m envhub.launcher login-link` for a new one."
    )


class OidcStateMismatch(SignInFailed):
    code = "oidc_state_mismatch"


class OidcNonceMismatch(SignInFailed):
    code = "oidc_nonce_mismatch"


class OidcTokenExpired(SignInFailed):
    code = "oidc_token_expired"
    default_hint = "Sign in again; if it keeps happening, check the clocks of envhub and the provider."


class OidcTokenInvalid(SignInFailed):
    code = "oidc_token_invalid"


class OidcProviderError(SignInFailed):
    code = "oidc_provider_error"
    status = 502
    default_hint = "The OpenID provider refused or did not answer; try again, then check ENVHUB_OIDC_*."


class OidcProviderUnreachable(OidcProviderError):
    code = "oidc_provider_unreachable"
    status = 503
    retryable = True


class RateLimited(EnvhubError):
    code = "rate_limited"
    status = 429
    default_hint = "Too many requests from this client; wait and try again."


class PayloadTooLarge(EnvhubError):
    code = "payload_too_large"
    status = 413
    default_hint = "Send a smaller request body."


class HostNotAllowed(EnvhubError):
    code = "host_not_allowed"
    status = 400
    default_hint = "Use envhub's own address (ENVHUB_BASE_URL), or add the name to ENVHUB_ALLOWED_HOSTS."


class Unsupported(EnvhubError):
    code = "not_supported"
    # The request is well formed; this envhub's runtime is what stands in the way (not a 4xx of form).
    status = 409
    default_hint = "This runtime does not offer that; see the documentation of ENVHUB_RUNTIME."


class SecretUnreadable(EnvhubError):
    code = "secret_unreadable"
    default_hint = (
        "It was encrypted with another key: restore ENVHUB_ENCRYPTION_KEY "
        "(or list it in ENVHUB_ENCRYPTION_OLD_KEYS)."
    )


class InvalidTransition(EnvhubError):
    code = "invalid_transition"
    status = 409
    default_hint = "Wait for the current operation to finish, then try again."


class EnvironmentWaking(InvalidTransition):
    """The environment was asleep: the request woke it, and it is starting from its workspace."""

    code = "environment_waking"
    status = 503
    default_hint = "It is waking up from sleep; send the request again in a few seconds."
    retryable = True


class RuntimeFailure(EnvhubError):
    code = "runtime_error"
    advice = "The runtime reported an unexpected problem. Read the logs, then redeploy."
    status = 502
    default_hint = "Check the environment's logs, then redeploy."


class NotReady(RuntimeFailure):
    """The world has not caught up yet; the same call will succeed later."""

    code = "not_ready"
    advice = (
        "The app did not answer its health check in time. envhub retries by itself; if it "
        "keeps failing, check that the command listens on $PORT and the health path returns < 500."
    )
    status = 503
    default_hint = "envhub retries by itself; nothing to do unless it keeps failing."
    retryable = True


class RolloutFailed(RuntimeFailure):
    """Workloads of a release did not roll out by its deadline, or a Job failed.

    ``details["workloads"]`` lists each one: ``{"workload": "StatefulSet/db",
    "reason": "CrashLoopBackOff", "message": "..."}``.
    """

    code = "rollout_failed"
    advice = (
        "A workload of the release did not roll out in time, or a Job it runs failed. The message "
        "names each one and why (crash loop, image pull, unschedulable); fix it and deploy again."
    )
    default_hint = "Read the named workloads' logs and events, fix the cause and deploy again."


class ProcessExited(RuntimeFailure):
    code = "process_exited"
    advice = (
        "The command stopped before it answered on $PORT. Read the logs below, fix "
        "the project's command (it must serve HTTP on $PORT) and redeploy."
    )
    default_hint = "The environment's command stopped; read its logs, fix it and redeploy."


class WorkspaceFailed(RuntimeFailure):
    code = "workspace_failed"
    advice = (
        "The workspace could not be prepared. Check the project's repository URL and git ref, then redeploy."
    )
    default_hint = "Check the project's repository URL and ref, then redeploy."


class LifecycleCommandFailed(RuntimeFailure):
    """A devcontainer lifecycle command (postCreateCommand, ...) exited with an error or ran too long;
    ``details`` hold the ``hook``, the ``command``, the ``exit_code`` and the ``log_tail``."""

    code = "lifecycle_command_failed"
    default_hint = "Read the step's output, fix the command in devcontainer.json, push and redeploy."
    advice = (
        "A lifecycle command of the repository's devcontainer.json failed; its step shows the last lines "
        "of its output. Fix the command (or what it needs), push and redeploy."
    )


class ImageBuildFailed(RuntimeFailure):
    """The in-cluster image builder could not build a dev container's image; ``details`` name the
    build ``job``, its ``namespace`` and the ``image``."""

    code = "image_build_failed"
    default_hint = (
        "Read the build Job's logs (kubectl logs job/<job> in the builder namespace), fix the Dockerfile, "
        "push and redeploy."
    )
    advice = (
        "The dev container's image could not be built from its Dockerfile. Read the build's logs, fix the "
        "Dockerfile or its context, push and redeploy."
    )


class SourceFetchFailed(RuntimeFailure):
    """git could not fetch the deployment's commit from the project's repository."""

    code = "source_fetch_failed"
    default_hint = (
        "Check the repository URL, that the commit was pushed, and that the project's GIT_TOKEN "
        "secret may read the repository."
    )
    advice = (
        "envhub could not fetch the commit to deploy. Check the project's repository URL and "
        "credentials and that the commit is pushed, then deploy again."
    )


class SandboxUnavailable(RuntimeFailure):
    """No sandbox strong enough for untrusted code works on this machine."""

    code = "sandbox_unavailable"
    advice = (
        "This machine cannot isolate environments: bubblewrap is missing or does not "
        "work. An operator installs it (apt-get install bubblewrap) and enables user namespaces; for "
        "trusted code only, ENVHUB_LOCAL_SANDBOX=unshare or none."
    )
    default_hint = (
        "Install bubblewrap (apt-get install bubblewrap) and check that user namespaces are "
        "enabled; for trusted code only, an operator may set ENVHUB_LOCAL_SANDBOX=unshare or none."
    )


class QuotaExceeded(RuntimeFailure):
    code = "quota_exceeded"
    advice = "The environment hit a resource limit. Free resources or ask for a larger quota, then redeploy."
    default_hint = "Free resources in the environment or ask for a larger quota."


class ClusterUnreachable(RuntimeFailure):
    """The cluster did not answer; environments keep their last known state."""

    code = "cluster_unreachable"
    status = 503
    default_hint = "envhub keeps retrying; check the cluster's API server and envhub's network path to it."
    retryable = True


class ClusterUnauthorized(RuntimeFailure):
    code = "cluster_unauthorized"
    default_hint = "envhub's cluster credentials were refused; renew its kubeconfig or service account token."


class ClusterForbidden(RuntimeFailure):
    code = "cluster_forbidden"
    default_hint = "Grant envhub's service account the RBAC permission named in the message."


class ClusterConflict(RuntimeFailure):
    code = "cluster_conflict"
    default_hint = "Another writer changed the object at the same time; envhub retries by itself."
    retryable = True


class ClusterRejected(RuntimeFailure):
    code = "cluster_rejected"
    default_hint = (
        "The cluster refused an object as invalid; fix the field named in the message and redeploy."
    )


class GithubConnectionInvalid(ValidationFailed):
    """A GitHub connection setting envhub refuses before calling GitHub; ``details["field"]`` names it."""

    code = "github_connection_invalid"
    default_hint = (
        "Fix the named field: the repository is owner/name, the API URL is https:// (GitHub Enterprise: "
        "https://<host>/api/v3) without credentials in it, an App needs its id, installation id and "
        "PEM private key, a token must not be empty."
    )


class GithubNotConnected(NotFound):
    code = "github_not_connected"
    default_hint = "Connect the project to its repository first (`envhub projects github connect`)."


class GitHostRefused(PermissionDenied):
    """The git credential helper asked for a host other than the project's repository's."""

    code = "git_host_refused"
    default_hint = (
        "envhub hands out credentials for the project's own repository only; "
        "use that repository's https URL as the remote."
    )


class GithubAppRequired(Unsupported):
    code = "github_app_required"
    default_hint = (
        "Git credentials inside environments are GitHub App installation tokens: connect the project "
        "with a GitHub App (auth 'app') to push from its environments."
    )


class GithubError(EnvhubError):
    """GitHub answered with an error, or did not answer; adapters raise a subclass ``from`` PyGithub's."""

    code = "github_error"
    status = 502
    default_hint = "GitHub refused the request; the message says why."
    advice = "GitHub refused a request envhub made for this project; the message says why."


class GithubUnauthorized(GithubError):
    # Not 401: that status means envhub's own sign-in failed, and clients act on it.
    code = "github_unauthorized"
    status = 422
    default_hint = (
        "GitHub refused the credentials: check the App id, installation id and private key "
        "(or that the token has not expired), then connect again."
    )
    advice = "GitHub refused the project's credentials. Reconnect the repository with valid ones."


class GithubForbidden(GithubError):
    code = "github_forbidden"
    status = 422
    default_hint = (
        "The credentials reach GitHub but may not do this: give the App (or token) read access to "
        "contents and metadata and write access to pull requests, issues and deployments."
    )
    advice = "GitHub refused a permission envhub needs. Grant the App or token the permissions listed."


class GithubNotFound(GithubError):
    code = "github_not_found"
    status = 422
    default_hint = (
        "Check the repository's owner/name and the installation id; GitHub also answers 'not found' "
        "for a private repository the credentials cannot see."
    )
    advice = "GitHub no longer finds the repository, installation or object. Check the project's connection."


class GithubRejected(GithubError):
    code = "github_rejected"
    status = 422
    default_hint = "GitHub refused the request as invalid; the message names the field."


class GithubUnavailable(GithubError):
    code = "github_unavailable"
    status = 503
    default_hint = "GitHub did not answer or had an error; envhub retries its jobs, try again shortly."
    advice = "GitHub was unreachable or failing; envhub retries by itself."
    retryable = True


class GithubRateLimited(GithubError, RateLimited):
    """GitHub's primary or secondary rate limit; ``details["retry_after"]`` is in seconds."""

    code = "github_rate_limited"
    status = 429
    default_hint = "GitHub's rate limit for these credentials is spent; try again after retry_after seconds."
    advice = "GitHub rate-limited envhub; the work is retried after the limit resets."
    retryable = True


class CloudflareError(EnvhubError):
    """Cloudflare answered with an error, or did not answer; integrations/cloudflare.py raises a
    subclass ``from`` the SDK's."""

    code = "cloudflare_error"
    status = 502
    default_hint = "Cloudflare refused the request; the message says why."
    advice = (
        "Cloudflare refused a request envhub made for the environment's public URL; the message says why."
    )


class CloudflareUnauthorized(CloudflareError):
    # Not 401: that status means envhub's own sign-in failed, and clients act on it.
    code = "cloudflare_unauthorized"
    status = 502
    default_hint = (
        "Cloudflare refused ENVHUB_CLOUDFLARE_API_TOKEN: check it has not expired and that it grants "
        "Account > Cloudflare Tunnel > Edit, Zone > DNS > Edit and Zone > Zone > Read on the zone."
    )
    advice = (
        "Cloudflare refused envhub's API token (ENVHUB_CLOUDFLARE_API_TOKEN). An operator fixes the "
        "token or its permissions; then redeploy."
    )


class CloudflareRejected(CloudflareError):
    code = "cloudflare_rejected"
    status = 502
    default_hint = (
        "Cloudflare refused the request as invalid (an unknown account, zone or tunnel, or a bad "
        "value); the message quotes Cloudflare's error."
    )
    advice = (
        "Cloudflare refused a change envhub asked for; the message quotes why. "
        "An operator checks the settings."
    )


class CloudflareHostTaken(CloudflareError):
    """A DNS record envhub did not make already holds the environment's host name."""

    code = "cloudflare_host_taken"
    status = 409
    default_hint = (
        "Remove or rename the DNS record that holds this name in the zone (envhub never touches "
        "records it did not make), then redeploy."
    )
    advice = (
        "Another DNS record already holds this environment's host name. "
        "Remove it in Cloudflare, then redeploy."
    )


class CloudflareUnavailable(CloudflareError):
    code = "cloudflare_unavailable"
    status = 503
    default_hint = "Cloudflare did not answer or had an error; envhub retries its jobs, try again shortly."
    advice = "Cloudflare was unreachable or failing; envhub retries by itself."
    retryable = True


class CloudflareRateLimited(CloudflareError, RateLimited):
    """Cloudflare's API rate limit; ``details["retry_after"]`` is in seconds when Cloudflare said."""

    code = "cloudflare_rate_limited"
    status = 429
    default_hint = "Cloudflare's API rate limit for the token is spent; envhub retries after it resets."
    advice = "Cloudflare rate-limited envhub; the work is retried after the limit resets."
    retryable = True


class ObjectStoreError(EnvhubError):
    """The S3-compatible object store refused a request (a missing bucket, a key without the
    permission); integrations/s3.py raises it ``from`` botocore's error."""

    code = "object_store_error"
    status = 502
    default_hint = (
        "Check ENVHUB_OBJECT_STORE_BUCKET exists and that the key pair may read, write and list "
        "objects in it; the message quotes the object store's answer."
    )


class ObjectStoreUnavailable(ObjectStoreError):
    code = "object_store_unavailable"
    status = 503
    default_hint = (
        "The object store did not answer or had an error (ENVHUB_OBJECT_STORE_URL); envhub keeps "
        "what it could not upload and tries again, try again shortly."
    )
    retryable = True


class BackingServiceError(EnvhubError):
    """A backend of the managed services (PostgreSQL, Redis, an S3-compatible store) refused an
    operation; the adapters in integrations/backing raise it ``from`` the vendor's error."""

    code = "backing_service_error"
    status = 502
    default_hint = (
        "The message quotes the backend's answer. Check the account envhub uses on that server may "
        "create databases and roles (PostgreSQL), users and policies (S3), then retry."
    )
    advice = "A managed service could not be provisioned; read the message, fix the backend, and redeploy."


class BackingServiceUnavailable(BackingServiceError):
    code = "backing_service_unavailable"
    status = 503
    default_hint = (
        "A managed service's backend did not answer or could not start; envhub retries, and the "
        "environment's page names the service."
    )
    advice = "A managed service's backend is not answering; envhub retries on its own."
    retryable = True


class BackupCorrupt(BackingServiceError):
    """A stored backup does not match the size or SHA-256 recorded when it was taken."""

    code = "backup_corrupt"
    status = 409
    default_hint = (
        "The object store holds something else than the backup envhub took; restore another backup, "
        "and check who else writes to the backups prefix of the object store."
    )
    advice = "A backup's stored copy does not match its checksum; restore another one."


class IdempotencyKeyReused(Conflict):
    """An ``Idempotency-Key`` sent again with another request than the first time."""

    code = "idempotency_key_reused"
    default_hint = (
        "An Idempotency-Key names one request: send the same body to the same URL to replay it, "
        "or use a new key for a new request."
    )


class WebhookMalformed(ValidationFailed):
    """A webhook delivery without the headers or payload fields GitHub always sends."""

    code = "webhook_malformed"
    status = 400
    default_hint = (
        "Deliveries come from GitHub with X-GitHub-Event, X-GitHub-Delivery and a JSON body; "
        "check the webhook's content type is application/json."
    )


class WebhookSignatureInvalid(Unauthenticated):
    """No connected project's webhook secret signed the delivery."""

    code = "webhook_signature_invalid"
    default_hint = (
        "Set the webhook's secret to the one envhub showed when the repository was connected "
        "(rotate it in the project's GitHub settings if it was lost)."
    )


class InvalidCursor(ValidationFailed):
    code = "invalid_cursor"
    default_hint = (
        "Pass back the next_cursor of the previous page unchanged, or leave cursor out to start over."
    )


# -- the registry every face reads -------------------------------------------

_GENERIC_ADVICE = "Read the message and the logs, then redeploy or delete the environment."


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """What a code means to a client: its HTTP status, the next step, and whether to retry."""

    code: str
    status: int
    hint: str
    advice: str
    retryable: bool


def _classes(root: type[EnvhubError] = EnvhubError) -> list[type[EnvhubError]]:
    found = [root]
    for sub in root.__subclasses__():
        found.extend(_classes(sub))
    return found


def _info(cls: type[EnvhubError]) -> ErrorInfo:
    # Advice is written for one code; a subclass does not inherit its parent's.
    advice = str(cls.__dict__.get("advice", _GENERIC_ADVICE))
    return ErrorInfo(cls.code, cls.status, cls.default_hint, advice, cls.retryable)


REGISTRY: dict[str, ErrorInfo] = {cls.code: _info(cls) for cls in _classes()}


def error_info(code: str | None) -> ErrorInfo:
    """The registry entry of ``code``; an unknown or empty code reads as ``internal_error``."""
    return REGISTRY.get(code or "", REGISTRY[EnvhubError.code])


def advice_for(code: str | None) -> str:
    """The next step for an environment or job that ended with ``code`` ("" for none)."""
    if not code:
        return ""
    info = REGISTRY.get(code)
    return info.advice if info is not None else _GENERIC_ADVICE
