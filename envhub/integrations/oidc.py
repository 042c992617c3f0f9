"""Sign-in with an OpenID provider, through authlib.

Authorization code flow with PKCE (S256), a ``state`` and a ``nonce`` per
attempt, discovery from the issuer URL (the document's ``issuer`` must equal
the configured one), and ID token validation: signature against the provider's
JWKS with an asymmetric algorithm it advertises, ``iss``, ``aud``, ``azp``,
``exp``/``iat`` (with a small clock leeway), ``nonce`` and ``at_hash``. Refresh
and RP-initiated logout are here too. Every failure becomes an envhub error
with its own code; provider responses are never logged whole, since they
carry tokens.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import requests
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.requests_client import OAuth2Session
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import (
    ExpiredTokenError,
    InvalidClaimError,
    InvalidKeyIdError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import KeySet

from envhub.errors import (
    OidcNonceMismatch,
    OidcProviderError,
    OidcProviderUnreachable,
    OidcStateMismatch,
    OidcTokenExpired,
    OidcTokenInvalid,
    SignInFailed,
)

_DISCOVERY_TTL = 3600.0
# "none" and the HMAC family are never accepted: the former is unsigned, the
# latter would make the client secret a signing key.
_ASYMMETRIC = {
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
    "Ed25519",
}


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    issuer: str
    client_id: str
    client_secret: str
    redirect_uri: str
    scopes: str = "openid email profile"
    groups_claim: str = "groups"
    leeway: int = 30
    timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class LoginRequest:
    url: str
    state: str
    nonce: str
    code_verifier: str


@dataclass(frozen=True, slots=True)
class Identity:
    issuer: str
    subject: str
    email: str
    email_verified: bool
    name: str
    preferred_username: str
    groups: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Tokens:
    access_token: str
    refresh_token: str | None
    id_token: str | None
    expires_in: int | None
    identity: Identity | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class _Cache:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.metadata: dict[str, tuple[float, dict[str, Any]]] = {}
        self.jwks: dict[str, dict[str, Any]] = {}


_cache = _Cache()


def forget_provider_cache() -> None:
    """Drop discovery documents and keys (tests start providers on new ports)."""
    with _cache.lock:
        _cache.metadata.clear()
        _cache.jwks.clear()


class OidcClient:
    def __init__(self, config: ProviderConfig) -> None:
        self.config = config

    # -- provider documents ---------------------------------------------------

    def _get_json(self, url: str) -> dict[str, Any]:
        try:
            response = requests.get(url, timeout=self.config.timeout, allow_redirects=False)
            response.raise_for_status()
            data = response.json()
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise OidcProviderUnreachable(f"the OpenID provider did not answer {url}") from exc
        except (requests.RequestException, ValueError) as exc:
            raise OidcProviderError(
                f"the OpenID provider did not answer {url}: {type(exc).__name__}"
            ) from exc
        if not isinstance(data, dict):
            raise OidcProviderError(f"the OpenID provider sent something unexpected from {url}")
        return data

    def metadata(self) -> dict[str, Any]:
        issuer = self.config.issuer
        with _cache.lock:
            cached = _cache.metadata.get(issuer)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        document = self._get_json(f"{issuer}/.well-known/openid-configuration")
        if document.get("issuer") != issuer:  # OpenID Connect Discovery 1.0, section 4.3
            raise OidcProviderError(
                f"the discovery document names issuer {document.get('issuer')!r}, not {issuer!r}",
                hint="Set ENVHUB_OIDC_ISSUER to exactly the provider's issuer URL.",
            )
        for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(document.get(name), str):
                raise OidcProviderError(f"the provider's discovery document has no {name}")
        with _cache.lock:
            _cache.metadata[issuer] = (time.monotonic() + _DISCOVERY_TTL, document)
        return document

    def _key_set(self, *, refresh: bool = False) -> KeySet:
        with _cache.lock:
            keys = None if refresh else _cache.jwks.get(self.config.issuer)
        if keys is None:
            keys = self._get_json(self.metadata()["jwks_uri"])
            with _cache.lock:
                _cache.jwks[self.config.issuer] = keys
        try:
            return KeySet.import_key_set(keys)  # type: ignore[arg-type]
        except (JoseError, ValueError, TypeError) as exc:
            raise OidcProviderError("the provider's signing keys (JWKS) could not be read") from exc

    def _algorithms(self) -> list[str]:
        offered = self.metadata().get("id_token_signing_alg_values_supported") or ["RS256"]
        return [alg for alg in offered if alg in _ASYMMETRIC] or ["RS256"]

    def _session(self, **kwargs: Any) -> OAuth2Session:
        secret = self.config.client_secret or None
        session = OAuth2Session(
            client_id=self.config.client_id,
            client_secret=secret,
            token_endpoint_auth_method="client_secret_basic" if secret else "none",
            code_challenge_method="S256",
            **kwargs,
        )
        session.max_redirects = 0
        return session

    # -- sign-in --------------------------------------------------------------

    def begin(self) -> LoginRequest:
        state, nonce, verifier = (
            secrets.token_urlsafe(32),
            secrets.token_urlsafe(32),
            secrets.token_urlsafe(48),
        )
        with self._session(scope=self.config.scopes, redirect_uri=self.config.redirect_uri) as client:
            url, _ = client.create_authorization_url(
                self.metadata()["authorization_endpoint"], state=state, code_verifier=verifier, nonce=nonce
            )
        return LoginRequest(url=url, state=state, nonce=nonce, code_verifier=verifier)

    def finish(
        self, *, params: Mapping[str, str], expected_state: str, nonce: str, code_verifier: str
    ) -> Tokens:
        """Check the provider's redirect back, redeem the code, validate the ID token."""
        state = params.get("state", "")
        if not expected_state or not hmac.compare_digest(state.encode(), expected_state.encode()):
            raise OidcStateMismatch("the sign-in response does not belong to this browser's sign-in attempt")
        if params.get("error"):
            reason = str(params.get("error_description") or params["error"])[:200]
            raise SignInFailed(f"the OpenID provider refused the sign-in: {reason}")
        # RFC 9207: a provider that names itself in the response must be ours (mix-up attacks).
        if "iss" in params and params["iss"] != self.config.issuer:
            raise OidcTokenInvalid("the sign-in response came from another provider")
        code = params.get("code", "")
        if not code:
            raise SignInFailed("the sign-in response carries no authorization code")
        with self._session(redirect_uri=self.config.redirect_uri) as client:
            try:
                token = client.fetch_token(
                    self.metadata()["token_endpoint"],
                    grant_type="authorization_code",
                    code=code,
                    code_verifier=code_verifier,
                    timeout=self.config.timeout,
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise OidcProviderUnreachable("the OpenID provider did not answer the token request") from exc
            except (AuthlibBaseError, requests.RequestException, ValueError) as exc:
                raise OidcProviderError(
                    f"the provider did not accept the authorization code: {_reason(exc)}"
                ) from exc
        if not token.get("id_token"):
            raise OidcTokenInvalid("the provider returned no ID token (is 'openid' in ENVHUB_OIDC_SCOPES?)")
        identity = self.validate_id_token(
            str(token["id_token"]), nonce=nonce, access_token=token.get("access_token")
        )
        return _tokens(token, identity)

    def validate_id_token(
        self, id_token: str, *, nonce: str | None, access_token: str | None = None, subject: str | None = None
    ) -> Identity:
        try:
            decoded = jwt.decode(id_token, self._key_set(), algorithms=self._algorithms())
        except InvalidKeyIdError:  # the provider rotated its keys: fetch them once more
            decoded = self._decode_after_refresh(id_token)
        except JoseError as exc:
            raise OidcTokenInvalid(f"the ID token's signature is not valid: {exc.error}") from exc
        options = {
            "iss": {"essential": True, "value": self.config.issuer},
            "aud": {"essential": True, "value": self.config.client_id},
            "exp": {"essential": True},
        }
        params: dict[str, Any] = {"client_id": self.config.client_id}
        if nonce is not None:
            params["nonce"] = nonce
        if access_token:
            params["access_token"] = access_token
        claims = CodeIDToken(decoded.claims, decoded.header, options, params)
        try:
            claims.validate(leeway=self.config.leeway)
        except ExpiredTokenError as exc:
            raise OidcTokenExpired("the ID token has expired") from exc
        except (InvalidClaimError, MissingClaimError) as exc:
            if exc.claim == "nonce":
                raise OidcNonceMismatch("the ID token's nonce does not match this sign-in attempt") from exc
            raise OidcTokenInvalid(f"the ID token's '{exc.claim}' claim is not valid") from exc
        except JoseError as exc:
            raise OidcTokenInvalid(f"the ID token is not valid: {exc.error}") from exc
        identity = self._identity(dict(claims))
        if subject is not None and identity.subject != subject:
            raise OidcTokenInvalid("the provider returned an ID token for someone else")
        return identity

    def _decode_after_refresh(self, id_token: str) -> Any:
        try:
            return jwt.decode(id_token, self._key_set(refresh=True), algorithms=self._algorithms())
        except JoseError as exc:
            raise OidcTokenInvalid(f"the ID token's signature is not valid: {exc.error}") from exc

    def _identity(self, claims: dict[str, Any]) -> Identity:
        groups = claims.get(self.config.groups_claim) or []
        if isinstance(groups, str):
            groups = [part.strip() for part in groups.split(",")]
        verified = claims.get("email_verified")
        return Identity(
            issuer=str(claims["iss"]),
            subject=str(claims["sub"]),
            email=str(claims.get("email") or "").strip().lower(),
            email_verified=verified is True or verified == "true",
            name=str(claims.get("name") or ""),
            preferred_username=str(claims.get("preferred_username") or ""),
            groups=tuple(str(group) for group in groups if isinstance(group, str | int) and str(group)),
        )

    # -- keeping a session honest ----------------------------------------------

    def refresh(self, refresh_token: str, *, subject: str) -> Tokens:
        """Redeem a refresh token; the provider refuses it once the person is gone."""
        with self._session() as client:
            try:
                token = client.refresh_token(
                    self.metadata()["token_endpoint"],
                    refresh_token=refresh_token,
                    timeout=self.config.timeout,
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise OidcProviderUnreachable(
                    "the OpenID provider did not answer the refresh request"
                ) from exc
            except (AuthlibBaseError, requests.RequestException, ValueError) as exc:
                raise OidcProviderError(
                    f"the provider refused to refresh the session: {_reason(exc)}"
                ) from exc
        identity = None
        if token.get("id_token"):
            identity = self.validate_id_token(
                str(token["id_token"]), nonce=None, access_token=token.get("access_token"), subject=subject
            )
        return _tokens(token, identity)

    def end_session_url(self, *, id_token_hint: str | None, post_logout_redirect_uri: str) -> str | None:
        endpoint = self.metadata().get("end_session_endpoint")
        if not isinstance(endpoint, str):
            return None
        query = {"client_id": self.config.client_id, "post_logout_redirect_uri": post_logout_redirect_uri}
        if id_token_hint:
            query["id_token_hint"] = id_token_hint
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{urlencode(query)}"


def _reason(exc: Exception) -> str:
    # authlib's errors carry the provider's error code; never the token body.
    error = getattr(exc, "error", None)
    return str(error) if error else type(exc).__name__


def _tokens(token: Mapping[str, Any], identity: Identity | None) -> Tokens:
    expires_in = token.get("expires_in")
    return Tokens(
        access_token=str(token.get("access_token") or ""),
        refresh_token=str(token["refresh_token"]) if token.get("refresh_token") else None,
        id_token=str(token["id_token"]) if token.get("id_token") else None,
        expires_in=int(expires_in) if isinstance(expires_in, int | float) else None,
        identity=identity,
    )
