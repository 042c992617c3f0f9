"""View models of teams, tokens, sharing, secrets and the audit log, for every face.

Plain JSON-ready dicts built from the use cases' results; a value a person
entered as a secret is never among them (secrets show name and date only,
tokens their hint), so no face can show it. The builders take rows and stay
inside ``services/``; the functions under "what the faces call" take the
caller and run the use cases.
"""

from __future__ import annotations

from typing import TypedDict

from sqlmodel import Session

from envhub.domain import humanize as fmt
from envhub.domain.policy import Action, principal_allows, role_allows
from envhub.domain.principals import Principal
from envhub.models import ApiToken, AuditEvent, Environment, Invite
from envhub.services import audit_log, environments, secrets, sharing, teams, tokens
from envhub.services.access import team_role
from envhub.services.audit_chain import StoredCheck
from envhub.services.audit_log import AuditFilter
from envhub.services.environment_views import EnvironmentPermissions, permissions
from envhub.services.pages import PageInfo, page_info
from envhub.services.secrets import SecretInfo
from envhub.services.sharing import Access, SharedEnvironment
from envhub.services.teams import Member, TeamSummary


class TeamRow(TypedDict):
    id: str
    name: str
    display_name: str
    role: str
    members: str
    href: str
    can_create_projects: bool


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
    id: int
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
    id: int
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


def team_row(summary: TeamSummary, *, token_allows_create: bool = True) -> TeamRow:
    team = summary.team
    return TeamRow(
        id=str(team.id),
        name=team.name,
        display_name=team.display_name or team.name,
        role=summary.role,
        members=str(summary.members),
        href=f"/teams/{team.id}",
        can_create_projects=token_allows_create and role_allows(summary.role, Action.project_create),
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
        id=environment.id or 0,
        name=environment.name,
        project=item.project,
        team=item.team,
        role=item.role,
        href=f"/projects/{environment.project_id}/environments/{environment.id}",
        expires=fmt.stamp(item.expires_at) or "",
    )


def shared_rows(*, session: Session, actor: Principal) -> list[SharedRow]:
    """The environments of other teams shared with the caller (the projects list shows them beside)."""
    return [shared_row(item) for item in sharing.list_shared_environments(session=session, actor=actor)]


def secret_row(info: SecretInfo) -> SecretRow:
    return SecretRow(id=str(info.id), name=info.name, updated=fmt.ago(info.updated_at))


def audit_event_row(event: AuditEvent) -> AuditEventRow:
    return AuditEventRow(
        id=event.id or 0,
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


class TeamOverview(TypedDict):
    id: int
    name: str
    display_name: str
    my_role: str  # "" for someone who sees the team without being in it
    can_manage: bool
    can_own: bool
    members: list[MemberRow]
    invites: list[InviteRow]  # open invitations, for those who manage the team


class AccessOverview(TypedDict):
    team: str
    members: list[MemberAccess]
    shares: list[ShareRow]
    permissions: EnvironmentPermissions


class AuditPage(TypedDict):
    rows: list[AuditEventRow]
    page: PageInfo


# -- what the faces call -----------------------------------------------------


def team_rows(*, session: Session, actor: Principal) -> list[TeamRow]:
    may_create = principal_allows(actor, Action.project_create)  # a token's scopes
    return [
        team_row(item, token_allows_create=may_create)
        for item in teams.list_my_teams(session=session, actor=actor)
    ]


def team_overview(*, session: Session, actor: Principal, team_id: int) -> TeamOverview:
    team = teams.get_team(session=session, actor=actor, team_id=team_id)
    members = teams.list_members(session=session, actor=actor, team_id=team_id)
    role = team_role(session, actor, team_id) or ""
    # What the person's role allows, and what the credential in hand (a token's scopes) carries.
    can_manage = role_allows(role, Action.team_manage) and principal_allows(actor, Action.team_manage)
    can_own = role_allows(role, Action.team_own) and principal_allows(actor, Action.team_own)
    invites = teams.list_invites(session=session, actor=actor, team_id=team_id) if can_manage else []
    return TeamOverview(
        id=team_id,
        name=team.name,
        display_name=team.display_name or team.name,
        my_role=role,
        can_manage=can_manage,
        can_own=can_own,
        members=[member_row(member, actor.user_id) for member in members],
        invites=[invite_row(invite) for invite in invites],
    )


def token_rows(*, session: Session, actor: Principal) -> list[TokenRow]:
    """The caller's own tokens (personal and agent), newest first, with their environment's name."""
    rows = []
    for row in tokens.list_tokens(session=session, actor=actor):
        environment = session.get(Environment, row.environment_id) if row.environment_id else None
        rows.append(token_row(row, environment.name if environment else ""))
    return rows


def access_overview(*, session: Session, actor: Principal, environment_id: int) -> AccessOverview:
    """Who can reach the environment (its team, its shares) and what the caller may change there."""
    access = sharing.list_access(session=session, actor=actor, environment_id=environment_id)
    environment, _project, allowed = environments.environment_context(
        session=session, actor=actor, environment_id=environment_id
    )
    return AccessOverview(
        team=access.team,
        members=[MemberAccess(name=name, role=role) for name, role in access.team_members],
        shares=share_rows(access),
        permissions=permissions(environment, allowed),
    )


def secret_rows(*, session: Session, actor: Principal, project_id: int) -> list[SecretRow]:
    return [
        secret_row(info) for info in secrets.list_secrets(session=session, actor=actor, project_id=project_id)
    ]


def audit_page(
    *, session: Session, actor: Principal, filters: AuditFilter, offset: int = 0, limit: int = 25
) -> AuditPage:
    """The audit events the caller may read, newest first, filtered."""
    page = audit_log.search_events(session=session, actor=actor, filters=filters, offset=offset, limit=limit)
    return AuditPage(rows=[audit_event_row(event) for event in page.items], page=page_info(page))


def chain_overview(*, session: Session, actor: Principal) -> ChainStatus:
    """The last stored check of the audit chain (none runs here)."""
    return chain_status(audit_log.last_check(session=session, actor=actor))
