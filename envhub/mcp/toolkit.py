"""Turning a typed function of the caller and its arguments into an MCP tool.

A tool here is a plain function ``fn(actor, *, arguments...) -> ViewModel``
that calls the services. :func:`add_tool` gives the SDK what it needs around
it: the caller (the principal the endpoint authenticated, from the request
the SDK hands each tool), the output schema (the view model, through
``schemas.output_model``), and envhub's errors as tool error results
(``isError``) whose text is the same ``{code, message, hint, details}`` body
REST answers with, so an agent reads the code and the next step. Arguments
the input schema refuses are answered so too (:class:`ToolServer`).
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Callable
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.types import CallToolResult, InputRequiredResult, TextContent, ToolAnnotations
from pydantic import ValidationError

from envhub.domain.principals import Principal
from envhub.errors import EnvhubError, Unauthenticated, invalid_request
from envhub.mcp.schemas import output_model
from envhub.services import activity

log = logging.getLogger(__name__)

# Tools on an environment that are no sign of someone using it.
_NOT_ACTIVITY = frozenset({"sleep_environment"})
# Where the endpoint leaves the authenticated principal in the request's ASGI scope.
PRINCIPAL_KEY = "envhub.principal"


def error_body(exc: EnvhubError) -> dict[str, Any]:
    return {"code": exc.code, "message": exc.message, "hint": exc.hint, "details": exc.details}


def error_result(exc: EnvhubError) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=json.dumps(error_body(exc)))], is_error=True)


class ToolServer(MCPServer[Any]):
    """The SDK's server, but arguments outside a tool's input schema (a value not in an
    enum, a number out of range) come back as ``validation_failed`` naming each field,
    like REST's 422, instead of the SDK's plain text."""

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            if isinstance(exc, UnexpectedToolError) or not isinstance(exc.__cause__, ValidationError):
                raise
            return error_result(invalid_request(exc.__cause__.errors(include_input=False)))


def principal_of(ctx: Context) -> Principal:
    """The caller the endpoint authenticated for this request."""
    request = ctx.request_context.request
    state = getattr(request, "scope", {}).get("state") or {}
    principal = state.get(PRINCIPAL_KEY)
    if not isinstance(principal, Principal):  # the endpoint refuses such requests before any tool runs
        raise Unauthenticated("this request carries no valid token")
    return principal


def add_tool(
    server: MCPServer[Any],
    fn: Callable[..., Any],
    *,
    title: str,
    read_only: bool = False,
    destructive: bool = False,
    idempotent: bool = False,
) -> None:
    """Register ``fn(actor, **arguments)`` as the tool ``fn.__name__``, described by its docstring."""
    signature = inspect.signature(fn, eval_str=True)
    first, *arguments = signature.parameters.values()
    if first.name != "actor":
        raise TypeError(f"{fn.__name__}: a tool's first parameter is the acting principal, 'actor'")
    output = output_model(signature.return_annotation)
    parameters = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in arguments]
    context = inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=Context)

    notes_activity = "environment_id" in signature.parameters and fn.__name__ not in _NOT_ACTIVITY

    def call(ctx: Context, **values: Any) -> Any:
        try:
            result = fn(principal_of(ctx), **values)
            # An agent at work on it: it stays awake (services/activity.py). Optional where a tool
            # defaults to another environment (restore_backup: the backup's own).
            named = values.get("environment_id")
            if notes_activity and named is not None:
                activity.note(int(named))
            return result
        except EnvhubError as exc:
            return error_result(exc)
        except Exception:
            log.exception("MCP tool %s failed unexpectedly", fn.__name__)
            return error_result(EnvhubError("envhub hit an unexpected error"))

    call.__name__ = fn.__name__
    call.__qualname__ = fn.__qualname__
    call.__doc__ = inspect.getdoc(fn)
    call.__signature__ = inspect.Signature([*parameters, context], return_annotation=output)  # type: ignore[attr-defined]
    call.__annotations__ = {p.name: p.annotation for p in parameters} | {"ctx": Context, "return": output}
    server.add_tool(
        call,
        name=fn.__name__,
        title=title,
        annotations=ToolAnnotations(
            title=title,
            read_only_hint=read_only,
            destructive_hint=destructive,
            idempotent_hint=idempotent,
            open_world_hint=False,
        ),
        structured_output=True,
    )
