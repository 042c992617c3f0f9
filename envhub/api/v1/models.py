"""What REST API v1 sends and accepts, shared by its routers, so the OpenAPI document says it all.

Every error is one body, :class:`ErrorBody` (``{code, message, hint, details}``,
codes from the registry in ``envhub/errors.py``). :func:`answers` declares,
for a route, each status it can return besides its success: the ones every
authenticated route can return (a bad request, no or a refused sign-in, a too
large body, rate limits, an unexpected error) and the route's own.
"""

from __future__ import annotations

import functools
import types
from typing import (
    Annotated,
    Any,
    Generic,
    TypeVar,
    Union,
    get_args,
    get_origin,
    get_type_hints,
    is_typeddict,
)

from fastapi import Depends, Path, Query
from pydantic import BaseModel, BeforeValidator, Field, create_model

from envhub.api.auth import require_principal
from envhub.domain.principals import Principal
from envhub.domain.workloads import reject_bool
from envhub.services.environment_views import EnvironmentDetail

T = TypeVar("T")

Caller = Annotated[Principal, Depends(require_principal)]
# Database ids are 32-bit: a larger number is a bad request, not a database error.
Id = Annotated[int, Path(ge=1, le=2**31 - 1)]
# Text that reaches the database: PostgreSQL stores no NUL character, so the
# document says so and a NUL is a 422, never a database error.
NO_NUL = r"^[^\x00]*$"
Text = Annotated[str, Field(pattern=NO_NUL)]
# An environment variable's name (domain/specs.py); some are still refused (LD_*, PORT...).
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
# A JSON number that is not true or false (pydantic would read those as 1 and 0).
Number = Annotated[int, BeforeValidator(reject_bool)]
# A DNS-1123 label: every team, project and environment name (domain/naming.py).
LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
Label = Annotated[str, Field(min_length=1, max_length=63, pattern=LABEL_PATTERN)]
Limit = Annotated[int, Query(ge=1, le=200, description="Items per page (at most 200).")]
Cursor = Annotated[
    str | None,
    Query(max_length=500, description="The next_cursor of the previous page; leave out for the first."),
]


@functools.cache
def model_of(view: type) -> type[BaseModel]:
    """The pydantic model of a service view model (a TypedDict), for the OpenAPI document.

    The view models are defined once, in ``services/``, as plain TypedDicts;
    pydantic (on Python 3.11) cannot use ``typing.TypedDict`` directly, so each
    becomes a model of the same name and fields here, nested ones too.
    """

    def convert(hint: Any) -> Any:
        if isinstance(hint, type) and is_typeddict(hint):
            return model_of(hint)
        if get_origin(hint) is list:
            return list[convert(get_args(hint)[0])]  # type: ignore[misc]
        if get_origin(hint) in (Union, types.UnionType):  # ``Row | None``
            return Union[tuple(convert(arm) for arm in get_args(hint))]  # noqa: UP007 - a runtime tuple
        return hint

    fields: dict[str, Any] = {name: (convert(hint), ...) for name, hint in get_type_hints(view).items()}
    doc = (view.__doc__ or "").strip()
    return create_model(view.__name__, __doc__=doc or None, **fields)


class ErrorBody(BaseModel):
    """Every error envhub answers with: a stable code, what happened, and what to do."""

    code: str = Field(description="Stable machine code from envhub's error registry, e.g. not_found.")
    message: str
    hint: str = Field(description="The next step; may be empty.")
    details: dict[str, Any] = Field(default_factory=dict)


_MEANING = {
    400: "Bad request (an unknown host name, or a request envhub cannot read).",
    401: "Not signed in: send 'Authorization: Bearer <token>'.",
    403: "Signed in, but not allowed (role, token scope, CSRF or origin).",
    404: "Not found, or not visible to the caller.",
    409: "Conflicts with the current state (a name taken, an operation under way).",
    413: "The request body is too large.",
    422: "The request is not valid (the code and details say which field).",
    429: "Too many requests; see Retry-After.",
    500: "Unexpected error inside envhub.",
    502: "The runtime failed.",
    503: "Not ready yet, or a component is unreachable; try again.",
}
# What any authenticated route under /api/v1 can answer besides its own outcomes.
COMMON = (400, 401, 403, 413, 422, 429, 500)


def answers(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route: its own error statuses plus :data:`COMMON`, all :class:`ErrorBody`."""
    declared: dict[int | str, dict[str, Any]] = {}
    for status in sorted({*COMMON, *statuses}):
        declared[status] = {"model": ErrorBody, "description": _MEANING.get(status, "Error.")}
    return declared


def streamed(media_type: str, description: str, *statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route whose success is a stream of ``media_type`` (or JSON)."""
    declared = answers(*statuses)
    declared[200] = {
        "description": description,
        "content": {media_type: {"schema": {"type": "string"}}},
    }
    return declared


class CursorPage(BaseModel, Generic[T]):
    """One page of a list. Pass ``next_cursor`` back as ``cursor`` for the next; null on the last page."""

    items: list[T]
    next_cursor: str | None


class Accepted(BaseModel):
    """A change was recorded and a job carries it out: follow ``wait_url`` (or ``status_url``)."""

    environment: model_of(EnvironmentDetail)  # type: ignore[valid-type]
    job_id: int | None = Field(description="The job run that carries the change out.")
    status_url: str
    wait_url: str = Field(description="GET it to wait (up to 30 s per call) for the environment to settle.")
    replayed: bool = Field(
        description="True when answered from an earlier request with the same Idempotency-Key."
    )
