"""Tool schemas from the services' view models.

The services describe what they return as ``TypedDict`` view models, the
same ones the dashboard and REST show. The SDK derives a tool's
``outputSchema`` (and checks its ``structuredContent``) with pydantic, which
on Python < 3.12 does not accept ``typing.TypedDict``: :func:`output_model`
rebuilds a view model as a pydantic model with the same fields, so the
schema an agent sees is the view model itself, said once.
"""

from __future__ import annotations

import functools
import types
from typing import Annotated, Any, Union, get_args, get_origin, get_type_hints, is_typeddict

from pydantic import BaseModel, ConfigDict, Field, create_model

# Ids are 32-bit database keys.
EnvironmentId = Annotated[int, Field(ge=1, le=2**31 - 1, description="The environment's id.")]
ProjectId = Annotated[int, Field(ge=1, le=2**31 - 1, description="The project's id.")]
TeamId = Annotated[int, Field(ge=1, le=2**31 - 1, description="The team's id.")]
UserId = Annotated[int, Field(ge=1, le=2**31 - 1, description="A person's user id (from get_team).")]
Offset = Annotated[int, Field(ge=0, le=10**9, description="How many results to skip.")]
Limit = Annotated[int, Field(ge=1, le=100, description="How many results at most.")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _convert(annotation: Any) -> Any:
    if is_typeddict(annotation):
        return output_model(annotation)
    origin = get_origin(annotation)
    if origin is None:
        return annotation
    args = tuple(_convert(arg) for arg in get_args(annotation))
    if origin in (Union, types.UnionType):
        return Union[args]  # noqa: UP007 - a runtime tuple of arms
    if origin is list:
        return list[args[0]]  # type: ignore[valid-type]
    if origin is dict:
        return dict[args[0], args[1]]  # type: ignore[valid-type]
    return annotation


@functools.cache
def output_model(view: type) -> type[BaseModel]:
    """The pydantic model with the fields of the ``TypedDict`` ``view`` (nested ones too)."""
    fields: dict[str, Any] = {name: (_convert(hint), ...) for name, hint in get_type_hints(view).items()}
    model: type[BaseModel] = create_model(view.__name__, __base__=_Strict, __doc__=view.__doc__, **fields)
    return model


Cursor = Annotated[
    str, Field(max_length=500, description="next_cursor of the previous page; '' for the first.")
]
