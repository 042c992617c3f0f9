"""Turning Kubernetes client failures into envhub errors.

``ApiException`` and urllib3's connection errors never leave ``runtime/``:
every call to the cluster goes through :func:`translate` (or the
:func:`kube_call` retry wrapper), which maps them to errors with stable codes
and messages a person can act on. Transient failures are retried with backoff.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, TypeVar

from kubernetes.client.exceptions import ApiException
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential
from urllib3.exceptions import HTTPError as Urllib3Error

from envhub.errors import (
    ClusterConflict,
    ClusterForbidden,
    ClusterRejected,
    ClusterUnauthorized,
    ClusterUnreachable,
    EnvhubError,
    NotFound,
    QuotaExceeded,
    RuntimeFailure,
)

T = TypeVar("T")
# (connect, read) seconds for ordinary reads; watches and log streams set their own.
READ_TIMEOUT = (5.0, 30.0)

_QUOTA = re.compile(
    r"exceeded quota: (?P<quota>[^,]+), requested: (?P<requested>.+?), used: (?P<used>.+?), "
    r"limited: (?P<limited>.+)$"
)


def quota_error(message: str, *, action: str) -> EnvhubError:
    """A quota refusal with its numbers: what was requested, used and allowed."""
    quota = _QUOTA.search(message)
    if quota is None:
        return QuotaExceeded(f"{action}: {message}")
    return QuotaExceeded(
        f"{action}: over the environment's quota {quota['quota']} "
        f"(requested {quota['requested']}, used {quota['used']}, limit {quota['limited']})",
        details={key: quota[key].strip() for key in ("quota", "requested", "used", "limited")},
    )


def _reason(exc: ApiException) -> tuple[str, dict[str, Any]]:
    try:
        body = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        body = {}
    if not isinstance(body, dict):
        body = {}
    return str(body.get("message") or exc.reason or ""), body


def translate(exc: BaseException, *, action: str) -> EnvhubError:
    """The envhub error for a failed cluster call; ``action`` says what envhub was doing."""
    if isinstance(exc, EnvhubError):
        return exc
    if isinstance(exc, ApiException):
        message, body = _reason(exc)
        status = exc.status or 0
        if status == 401:
            return ClusterUnauthorized(f"{action}: the cluster refused envhub's credentials")
        if status == 403:
            if _QUOTA.search(message):
                return quota_error(message, action=action)
            return ClusterForbidden(f"{action}: {message}", details={"status": 403})
        if status == 404:
            return NotFound(f"{action}: {message or 'not found'}")
        if status == 409:
            return ClusterConflict(f"{action}: {message}")
        if status == 422 or status == 400:
            causes = [
                f"{cause.get('field', '')}: {cause.get('message', '')}".strip(": ")
                for cause in (body.get("details") or {}).get("causes", [])
            ]
            return ClusterRejected(f"{action}: {message}", details={"causes": causes})
        if status == 429 or status >= 500 or status == 0:
            return ClusterUnreachable(f"{action}: the cluster answered {status} {exc.reason or ''}".strip())
        return RuntimeFailure(f"{action}: {status} {message}")
    if isinstance(exc, Urllib3Error | OSError | TimeoutError):
        return ClusterUnreachable(f"{action}: cannot reach the cluster ({type(exc).__name__}: {exc})")
    return RuntimeFailure(f"{action}: {type(exc).__name__}: {exc}")


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, EnvhubError) and exc.retryable


def kube_call(action: str, function: Callable[..., T], *args: Any, attempts: int = 4, **kwargs: Any) -> T:
    """Call the cluster, translating errors and retrying transient ones with backoff."""

    @retry(
        retry=retry_if_exception(_retryable),
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=0.2, max=3.0),
        reraise=True,
    )
    def attempt() -> T:
        try:
            return function(*args, **kwargs)
        except EnvhubError:
            raise  # translated by a nested call already: keep the vendor exception as its cause
        except Exception as exc:
            raise translate(exc, action=action) from exc

    return attempt()


def kube_json(action: str, function: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Like :func:`kube_call` for reads, returning the JSON body as a dict.

    Skips the client's model deserialisation: cheaper, and plain dicts are what
    the rest of the adapter (and ``readiness``) works with.
    """
    kwargs.setdefault("_request_timeout", READ_TIMEOUT)
    response = kube_call(action, function, *args, _preload_content=False, **kwargs)
    try:
        data = json.loads(response.data)
    except (TypeError, ValueError) as exc:
        raise RuntimeFailure(f"{action}: the cluster sent a body that is not JSON") from exc
    finally:
        response.release_conn()
    if not isinstance(data, dict):
        raise RuntimeFailure(f"{action}: unexpected answer from the cluster")
    return data
