"""View models for the identity pages: teams, tokens, sharing, secrets, audit.

Plain dicts of strings built from the use cases' results; a value a person
entered as a secret is never among them (secrets show name and date only,
tokens their hint), so it cannot reach the browser.
"""

from __future__ import annotations

from typing import TypedDict

from envhub.models import ApiToken, AuditEvent, Invite
from envhub.services.audit_chain import StoredCheck
from envhub.services.secrets import SecretInfo
from envhub.services.sharing import Access, SharedEnvironment
from envhub.services.teams import Member, TeamSummary
from envhub.ui import format as fmt


class TeamRow(TypedDict):
    id: str
    name: str
    display_name: str
    role: str
    members: str
    href: str


class MemberRow(TypedDict):
    user_id: str
    username: str
    name: str
    email: str
    role: str
    is_me: str


class InviteRow(TypedDict):
    id: str
    email: str
    role: str
    expires: str


class TokenRow(TypedDict):
    id: str
    name: str
    kind: str
    hint: str
    scopes: str
    environment: str
    created: str
    expires: str
    last_used: str
    last_used_stamp: str


class ShareRow(TypedDict):
    id: str
    grantee: str
    kind: str
    role: str
    expires: str
    active: str
    created_by: str


class MemberAccess(TypedDict):
    name: str
    role: str


class SharedRow(TypedDict):
    name: str
    project: str
    team: str
    role: str
    href: str
    expires: str


class SecretRow(TypedDict):
    id: str
    name: str
    updated: str


class AuditEventRow(TypedDict):
    seq: str
    time: str
    stamp: str
    actor: str
    principal_type: str
    action: str
    target: str
    outcome: str
    error_code: str
    source_ip: str


class ChainStatus(TypedDict):
    checked: bool
    ok: bool
    summary: str
    problems: list[str]
    when: str  # "full check 3 minutes ago by olivia", or "" when never checked


NO_CHAIN = ChainStatus(
    checked=False,
    ok=True,
    summary="The audit chain has not been checked yet.",
    problems=[],
    when="",
)


def team_row(summary: TeamSummary) -> TeamRow:
    team = summary.team
    return TeamRow(
        id=str(team.id),
        name=team.name,
        display_name=team.display_name or team.name,
        role=summary.role,
        members=str(summary.members),
        href=f"/teams/{team.id}",
    )


def member_row(member: Member, me: int | None) -> MemberRow:
    user = member.user
    return MemberRow(
        user_id=str(user.id),
        username=user.username,
        name=user.display_name or user.username,
        email=user.email,
        role=member.role,
        is_me="yes" if user.id == me else "",
    )


def invite_row(invite: Invite) -> InviteRow:
    return InviteRow(
        id=str(invite.id), email=invite.email, role=invite.role.value, expires=fmt.stamp(invite.expires_at)
    )


def token_row(token: ApiToken, environment: str = "") -> TokenRow:
    return TokenRow(
        id=str(token.id),
        name=token.name,
        kind=token.kind,
        hint=token.hint,
        scopes=", ".join(token.scopes),
        environment=environment,
        created=fmt.ago(token.created_at),
        expires=fmt.stamp(token.expires_at).removesuffix(" UTC")[:10],
        last_used=fmt.ago(token.last_used_at) or "never",
        last_used_stamp=fmt.stamp(token.last_used_at)
        + (f" from {token.last_used_ip}" if token.last_used_ip else ""),
    )


def share_rows(access: Access) -> list[ShareRow]:
    return [
        ShareRow(
            id=str(view.share.id),
            grantee=view.grantee,
            kind=view.kind,
            role=view.share.role.value,
            expires=fmt.stamp(view.share.expires_at) or "never",
            active="yes" if view.active else "",
            created_by=view.created_by,
        )
        for view in access.shares
    ]


def shared_row(item: SharedEnvironment) -> SharedRow:
    environment = item.environment
    return SharedRow(
        name=environment.name,
        project=item.project,
        team=item.team,
        role=item.role,
        href=f"/projects/{environment.project_id}/environments/{environment.id}",
        expires=fmt.stamp(item.expires_at) or "",
    )


def secret_row(info: SecretInfo) -> SecretRow:
    return SecretRow(id=str(info.id), name=info.name, updated=fmt.ago(info.updated_at))


def audit_event_row(event: AuditEvent) -> AuditEventRow:
    return AuditEventRow(
        seq=str(event.seq or ""),
        time=fmt.ago(event.time),
        stamp=fmt.stamp(event.time),
        actor=event.actor,
        principal_type=event.principal_type,
        action=event.action,
        target=event.target or event.target_type,
        outcome=event.outcome,
        error_code=event.error_code or "",
        source_ip=event.source_ip or "",
    )


def chain_status(stored: StoredCheck | None) -> ChainStatus:
    """The latest stored check's result, as the audit page shows it."""
    if stored is None:
        return NO_CHAIN
    row = stored.row
    return ChainStatus(
        checked=True,
        ok=row.ok and stored.sealed,
        summary=stored.summary(),
        problems=[f"{p['kind']}: {p['message']}" for p in row.problems[:20]] if stored.sealed else [],
        when=f"{row.mode} check {fmt.ago(row.finished_at)} by {row.checked_by}",
    )
