"""Signing in and out: OpenID Connect, and one-time login links in local mode.

OpenID Connect: :func:`begin_oidc` returns the provider URL and a sealed
(AES-GCM) login cookie holding the attempt's state, nonce, PKCE verifier and
where to go afterwards; :func:`finish_oidc` checks the provider's answer
against it, decides whether the person may sign in (allowed domains or
groups, verified email), provisions them, accepts their invitations, and
starts a fresh session. Local mode: :func:`issue_login_link` makes a
single-use link (printed by ``make run``); :func:`use_login_link` redeems it.
Every outcome, success or refusal, is audited.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

from sqlmodel import Session, col, select, update

from envhub.config import AuthMode, Settings, get_settings
from envhub.domain import credentials
from envhub.domain.credentials import SecretKind
from envhub.domain.principals import SYSTEM, Principal
from envhub.errors import EnvhubError, LoginLinkInvalid, OidcStateMismatch, SecretUnreadable, SignInNotAllowed
from envhub.integrations.oidc import Identity, OidcClient, ProviderConfig
from envhub.models import LoginLink, User, WebSession
from envhub.models.base import utcnow
from envhub.services import sessions
from envhub.services.common import audit
from envhub.services.crypto import cipher
from envhub.services.identity import (
    bootstrap_first_team,
    ensure_local_principal,
    principal_of,
    provision_user,
)
from envhub.services.teams import accept_invites

LOGIN_COOKIE_SECONDS = 600
CALLBACK_PATH = "/auth/callback"


def oidc_client(settings: Settings | None = None) -> OidcClient:
    settings = settings or get_settings()
    return OidcClient(
        ProviderConfig(
            issuer=settings.oidc_issuer,
            client_id=settings.oidc_client_id,
            client_secret=settings.oidc_client_secret.get_secret_value(),
            redirect_uri=settings.base_url + CALLBACK_PATH,
            scopes=settings.oidc_scopes,
            groups_claim=settings.oidc_groups_claim,
            leeway=settings.oidc_clock_leeway,
            timeout=settings.oidc_http_timeout,
        )
    )


ENVIRONMENT_ACCESS_PREFIX = "/auth/environment/"


def safe_next(value: str | None) -> str:
    """Only paths on envhub itself: never an open redirect to another site."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    parts = urlsplit(value)
    # /auth/* starts sign-in flows of its own; only the hand-over of sign-in to
    # an environment's host (/auth/environment/<id>) is somewhere to come back to.
    if (
        parts.scheme
        or parts.netloc
        or (parts.path.startswith("/auth/") and not parts.path.startswith(ENVIRONMENT_ACCESS_PREFIX))
    ):
        return "/"
    return value[:2000]


@dataclass(frozen=True, slots=True)
class Started:
    redirect_to: str
    login_cookie: str  # sealed; HttpOnly cookie for LOGIN_COOKIE_SECONDS


def begin_oidc(*, next_path: str | None) -> Started:
    request = oidc_client().begin()
    payload = {
        "state": request.state,
        "nonce": request.nonce,
        "verifier": request.code_verifier,
        "next": safe_next(next_path),
        "exp": int(time.time()) + LOGIN_COOKIE_SECONDS,
    }
    return Started(request.url, cipher().seal(json.dumps(payload), purpose="oidc-login"))


def _login_attempt(sealed: str | None) -> dict[str, str]:
    if not sealed:
        raise OidcStateMismatch("no sign-in was started in this browser (or it took longer than 10 minutes)")
    try:
        payload = json.loads(cipher().open(sealed, purpose="oidc-login"))
    except (SecretUnreadable, ValueError) as exc:
        raise OidcStateMismatch("this browser's sign-in attempt could not be read") from exc
    if not isinstance(payload, dict) or int(payload.get("exp", 0)) < time.time():
        raise OidcStateMismatch("this browser's sign-in attempt has expired")
    return {key: str(value) for key, value in payload.items()}


@dataclass(frozen=True, slots=True)
class SignedIn:
    session_token: str
    user: User
    next_path: str


def _admit(identity: Identity, settings: Settings) -> None:
    domain = identity.email.rsplit("@", 1)[1] if "@" in identity.email else ""
    by_domain = identity.email_verified and domain in settings.allowed_domains
    by_group = bool(set(identity.groups) & set(settings.allowed_groups))
    if settings.oidc_allow_any_user or by_domain or by_group:
        return
    why = (
        "its email address is not verified"
        if identity.email and not identity.email_verified
        else (f"{domain or 'this account'} is not an allowed domain and the account is in no allowed group")
    )
    raise SignInNotAllowed(f"{identity.email or identity.subject} may not sign in to envhub: {why}")


def finish_oidc(
    session: Session,
    *,
    params: dict[str, str],
    login_cookie: str | None,
    replaces: str | None,
    source_ip: str | None,
    user_agent: str | None,
) -> SignedIn:
    settings = get_settings()
    anonymous = Principal(name="anonymous").with_origin(source_ip, user_agent)
    try:
        attempt = _login_attempt(login_cookie)
        tokens = oidc_client(settings).finish(
            params=params,
            expected_state=attempt["state"],
            nonce=attempt["nonce"],
            code_verifier=attempt["verifier"],
        )
        assert tokens.identity is not None
        identity = tokens.identity
        who = Principal(name=identity.email or identity.subject).with_origin(source_ip, user_agent)
        try:
            _admit(identity, settings)
        except SignInNotAllowed as exc:
            _record_failure(session, who, exc)
            raise
    except SignInNotAllowed:
        raise
    except EnvhubError as exc:
        _record_failure(session, anonymous, exc)
        raise
    user, created = provision_user(session, identity)
    actor = principal_of(user).with_origin(source_ip, user_agent)
    bootstrap_first_team(session, user)
    joined = accept_invites(session, user, actor=actor)
    started = sessions.start_session(
        session,
        user=user,
        method="oidc",
        source_ip=source_ip,
        user_agent=user_agent,
        replaces=replaces,
        refresh_token=tokens.refresh_token,
        id_token=tokens.id_token,
    )
    audit(
        session,
        actor,
        "auth.sign_in",
        target_type="user",
        target_id=user.id,
        target=user.username,
        team_id=None,
        details={"method": "oidc", "new_user": created, "joined": [t.name for t in joined]},
    )
    session.commit()
    return SignedIn(session_token=started.token, user=user, next_path=attempt["next"])


def _record_failure(session: Session, actor: Principal, exc: EnvhubError) -> None:
    session.rollback()
    audit(
        session,
        actor,
        "auth.sign_in",
        target_type="user",
        target_id=None,
        target=actor.name,
        team_id=None,
        outcome="failure",
        error_code=exc.code,
        details={"message": exc.message},
    )
    session.commit()


def recheck_session(session: Session, row: WebSession, user: User) -> None:
    """Refresh with the provider; raises when the person may no longer be here. Caller commits."""
    settings = get_settings()
    sealer = cipher()
    refresh = sealer.open(row.oidc_refresh_token or "", purpose=f"session:{row.id}:refresh")
    tokens = oidc_client(settings).refresh(refresh, subject=user.oidc_subject or "")
    if tokens.identity is not None:
        _admit(tokens.identity, settings)
    if tokens.refresh_token:  # providers rotate refresh tokens: keep the new one
        row.oidc_refresh_token = sealer.seal(tokens.refresh_token, purpose=f"session:{row.id}:refresh")
    if tokens.id_token:
        row.oidc_id_token = sealer.seal(tokens.id_token, purpose=f"session:{row.id}:id_token")
    row.recheck_at = utcnow() + timedelta(seconds=settings.oidc_recheck_interval)
    session.add(row)


# -- local mode -------------------------------------------------------------------


def issue_login_link(session: Session) -> str:
    """A single-use sign-in URL for the local user (printed by the launcher)."""
    settings = get_settings()
    principal = ensure_local_principal(session)
    assert principal.user_id is not None
    issued = credentials.issue(SecretKind.login_link)
    session.add(
        LoginLink(
            token_hash=issued.digest,
            user_id=principal.user_id,
            expires_at=utcnow() + timedelta(seconds=settings.login_link_ttl),
        )
    )
    audit(
        session,
        SYSTEM,
        "auth.login_link",
        target_type="user",
        target_id=principal.user_id,
        target=principal.name,
        team_id=None,
        details={"expires_in": int(settings.login_link_ttl)},
    )
    session.commit()
    return f"{settings.base_url}/auth/local/{issued.plain}"


def use_login_link(
    session: Session, *, token: str, replaces: str | None, source_ip: str | None, user_agent: str | None
) -> SignedIn:
    anonymous = Principal(name="anonymous").with_origin(source_ip, user_agent)
    now = utcnow()
    try:
        if (
            get_settings().auth_mode is not AuthMode.local
            or credentials.kind_of(token) is not SecretKind.login_link
        ):
            raise LoginLinkInvalid("this login link is not valid")
        # One statement marks it used only if unused and unexpired: two clicks race, one wins.
        claimed = session.exec(
            update(LoginLink)
            .where(
                col(LoginLink.token_hash) == credentials.digest(token),
                col(LoginLink.used_at).is_(None),
                col(LoginLink.expires_at) > now,
            )
            .values(used_at=now)
        )
        if claimed.rowcount != 1:
            raise LoginLinkInvalid("this login link was already used, has expired, or never existed")
    except LoginLinkInvalid as exc:
        _record_failure(session, anonymous, exc)
        raise
    link = session.exec(select(LoginLink).where(LoginLink.token_hash == credentials.digest(token))).one()
    user = session.get(User, link.user_id)
    assert user is not None
    user.last_sign_in_at = now
    session.add(user)
    started = sessions.start_session(
        session, user=user, method="local", source_ip=source_ip, user_agent=user_agent, replaces=replaces
    )
    actor = principal_of(user).with_origin(source_ip, user_agent)
    audit(
        session,
        actor,
        "auth.sign_in",
        target_type="user",
        target_id=user.id,
        target=user.username,
        team_id=None,
        details={"method": "login_link"},
    )
    session.commit()
    return SignedIn(session_token=started.token, user=user, next_path="/")


# -- signing out ------------------------------------------------------------------


def sign_out(session: Session, *, token: str | None, source_ip: str | None, user_agent: str | None) -> str:
    """End the browser's session; returns where to send it (the provider's logout, or sign-in)."""
    settings = get_settings()
    after = f"{settings.base_url}/sign-in?signed_out=1"
    row = sessions.revoke(session, token=token) if token else None
    if row is None:
        session.commit()
        return after
    user = session.get(User, row.user_id)
    if user is not None:
        actor = principal_of(user).with_origin(source_ip, user_agent)
        audit(
            session,
            actor,
            "auth.sign_out",
            target_type="user",
            target_id=user.id,
            target=user.username,
            team_id=None,
            details={"method": row.method},
        )
    session.commit()
    if row.method != "oidc" or settings.auth_mode is not AuthMode.oidc:
        return after
    try:
        logout = oidc_client(settings).end_session_url(
            id_token_hint=sessions.sealed_id_token(row), post_logout_redirect_uri=after
        )
    except EnvhubError:
        return after  # the provider is unreachable: the envhub session is over all the same
    return logout or after
