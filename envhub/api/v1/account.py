"""``/api/v1``: who am I, personal access tokens and agent tokens.

Each route is a thin call into a use case with the caller from ``api/auth.py``;
authorization and auditing happen in the use case. A token is shown once,
in the answer that creates it; lists show its hint only.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from envhub.api.v1.models import Caller, Id, Number, Text, answers
from envhub.domain.principals import Scope
from envhub.models import ApiToken
from envhub.services import credentials, tokens
from envhub.services.sessions import csrf_token
from envhub.services.units import read_only, unit_of_work

router = APIRouter(prefix="/api/v1", tags=["account"])


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Text = Field(min_length=1, max_length=100)
    scopes: list[Scope] = Field(min_length=1, max_length=10)
    expires_in_days: Number = Field(ge=1, le=3650)


class AgentTokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Text = Field(min_length=1, max_length=100)
    scopes: list[Scope] = Field(default=[Scope.read, Scope.write, Scope.shell], min_length=1, max_length=10)
    expires_in_days: Number = Field(default=7, ge=1, le=3650)


class Me(BaseModel):
    name: str
    type: str
    user_id: int | None
    scopes: list[str] | None
    environment_id: int | None
    token_id: int | None = Field(
        description="The token this request came with (the CLI revokes it on logout)."
    )
    kubernetes_groups: list[str]
    csrf_token: str | None = Field(description="For cookie-authenticated scripts on envhub's own pages.")


class Token(BaseModel):
    id: int
    name: str
    kind: str
    hint: str
    scopes: list[str]
    environment_id: int | None
    created_at: str
    expires_at: str
    last_used_at: str | None
    revoked_at: str | None


class NewToken(Token):
    token: str = Field(description="The secret; shown only in this answer.")


def token_view(row: ApiToken) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "kind": row.kind,
        "hint": row.hint,
        "scopes": row.scopes,
        "environment_id": row.environment_id,
        "created_at": row.created_at.isoformat(),
        "expires_at": row.expires_at.isoformat(),
        "last_used_at": row.last_used_at.isoformat() if row.last_used_at else None,
        "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
    }


@router.get("/me", response_model=Me, responses=answers(), summary="Who the request is made as")
def me(request: Request, actor: Caller) -> dict[str, Any]:
    caller = request.state.caller
    with unit_of_work() as session:
        groups = credentials.kubernetes_groups(session=session, actor=actor) if actor.is_person else []
    return {
        "name": actor.name,
        "type": actor.type.value,
        "user_id": actor.user_id,
        "scopes": sorted(s.value for s in actor.scopes) if actor.scopes is not None else None,
        "environment_id": actor.environment_id,
        "token_id": actor.token_id,
        "kubernetes_groups": groups,
        "csrf_token": csrf_token(caller.session_hash) if caller.session_hash else None,
    }


@router.get("/tokens", response_model=list[Token], responses=answers(), summary="Your live tokens")
def list_tokens(actor: Caller) -> list[dict[str, Any]]:
    with read_only() as session:
        return [token_view(row) for row in tokens.list_tokens(session=session, actor=actor)]


@router.post(
    "/tokens",
    status_code=201,
    response_model=NewToken,
    responses=answers(),
    summary="Create a personal access token (from a signed-in session)",
)
def create_token(body: TokenIn, actor: Caller) -> dict[str, Any]:
    with unit_of_work() as session:
        new = tokens.create_personal_token(
            session=session,
            actor=actor,
            name=body.name,
            scopes=[scope.value for scope in body.scopes],
            expires_in_days=body.expires_in_days,
            via="api",
        )
        return {**token_view(new.row), "token": new.token}


@router.delete(
    "/tokens/{token_id}", response_model=Token, responses=answers(404), summary="Revoke one of your tokens"
)
def revoke_token(token_id: Id, actor: Caller) -> dict[str, Any]:
    with unit_of_work() as session:
        return token_view(tokens.revoke_token(session=session, actor=actor, token_id=token_id))


@router.post(
    "/environments/{environment_id}/agent-tokens",
    status_code=201,
    response_model=NewToken,
    responses=answers(404),
    summary="Create an agent token confined to one environment",
)
def create_agent_token(environment_id: Id, body: AgentTokenIn, actor: Caller) -> dict[str, Any]:
    with unit_of_work() as session:
        new = tokens.create_agent_token(
            session=session,
            actor=actor,
            environment_id=environment_id,
            name=body.name,
            scopes=[scope.value for scope in body.scopes],
            expires_in_days=body.expires_in_days,
        )
        return {**token_view(new.row), "token": new.token}
