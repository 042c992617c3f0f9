"""Single-user local mode: loopback only, one-time login links, sign-in still required."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from envhub.config import Settings, check_bind
from envhub.errors import ConfigurationError
from envhub.launcher import login_link, main
from envhub.models import LoginLink
from envhub.models.base import utcnow
from tests.conftest import build_settings, scrub_envhub_environment
from tests.support.db import audit_events


def test_a_login_link_signs_in_once(local: Settings, envhub_http: str, db: Engine) -> None:
    link = login_link(local)
    assert link.startswith(f"{local.base_url}/auth/local/ehl_")
    with httpx.Client(timeout=10) as browser:
        assert browser.get(f"{envhub_http}/api/v1/me").status_code == 401  # local mode still needs sign-in
        response = browser.get(link)
        assert response.status_code == 303
        assert response.headers["location"] == "/"
        assert "httponly" in response.headers["set-cookie"].lower()
        assert browser.get(f"{envhub_http}/api/v1/me").json()["name"] == "local"
    with httpx.Client(timeout=10) as other:
        again = other.get(link, headers={"Accept": "application/json"})
        assert again.status_code == 400
        assert again.json()["code"] == "login_link_invalid"
    token = link.rsplit("/", 1)[1]
    with Session(db) as session:
        stored = session.exec(select(LoginLink)).one()
        assert token not in repr(stored.model_dump())  # only its digest is kept
        assert stored.used_at is not None
    assert [e.outcome for e in audit_events(db, "auth.sign_in")] == ["success", "failure"]


def test_an_expired_login_link_is_refused(local: Settings, envhub_http: str, db: Engine) -> None:
    link = login_link(local)
    with Session(db) as session:
        session.exec(update(LoginLink).values(expires_at=utcnow() - timedelta(seconds=1)))  # type: ignore[call-overload]
        session.commit()
    response = httpx.get(link, headers={"Accept": "text/html"})
    assert response.status_code == 400
    assert 'id="error-code">login_link_invalid<' in response.text


@pytest.mark.parametrize("token", ["ehl_made-up", "not-a-link", "ehp_" + "x" * 43, "%00"])
def test_made_up_login_links_are_refused(local: Settings, envhub_http: str, token: str) -> None:
    response = httpx.get(f"{envhub_http}/auth/local/{token}", headers={"Accept": "application/json"})
    assert response.status_code == 400
    assert response.json()["code"] == "login_link_invalid"


def test_login_links_do_not_exist_with_openid_connect(oidc: Settings, envhub_http: str) -> None:
    with pytest.raises(ConfigurationError, match="single-user mode"):
        login_link(oidc)


def test_binding_beyond_loopback_needs_sign_in_and_https(tmp_path: Path) -> None:
    local = build_settings(data_dir=tmp_path)
    check_bind("127.0.0.1", local)
    check_bind("localhost", local)
    with pytest.raises(ConfigurationError) as caught:
        check_bind("0.0.0.0", local)
    assert "no OpenID Connect sign-in is configured" in caught.value.message
    assert "ENVHUB_OIDC_ISSUER" in caught.value.hint
    with_oidc = {
        "oidc_issuer": "https://id.example.com",
        "oidc_client_id": "envhub",
        "oidc_allowed_domains": "example.com",
    }
    plain = build_settings(data_dir=tmp_path, base_url="http://envhub.example.com", **with_oidc)
    with pytest.raises(ConfigurationError, match="unencrypted"):
        check_bind("0.0.0.0", plain)
    check_bind(
        "0.0.0.0", build_settings(data_dir=tmp_path, base_url="https://envhub.example.com", **with_oidc)
    )


def test_run_refuses_a_public_address_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    scrub_envhub_environment(monkeypatch)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ENVHUB_DATA_DIR", str(tmp_path / "data"))
    assert main(["run", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "refusing to listen on 0.0.0.0: no OpenID Connect sign-in is configured" in err
    assert "Bind to 127.0.0.1, or configure sign-in" in err


@pytest.mark.parametrize(
    ("values", "variable"),
    [
        (
            {"oidc_issuer": "http://id.example.com", "oidc_client_id": "x", "oidc_allowed_domains": "a.b"},
            "ENVHUB_OIDC_ISSUER",
        ),
        ({"oidc_issuer": "https://id.example.com", "oidc_allowed_domains": "a.b"}, "ENVHUB_OIDC_CLIENT_ID"),
        ({"oidc_issuer": "https://id.example.com", "oidc_client_id": "x"}, "ENVHUB_OIDC_ALLOWED_DOMAINS"),
        ({"rate_limit_sign_in": "lots"}, "ENVHUB_RATE_LIMIT_SIGN_IN"),
    ],
)
def test_bad_sign_in_settings_name_their_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, values: dict[str, str], variable: str
) -> None:
    from envhub.config import load_settings

    scrub_envhub_environment(monkeypatch)
    monkeypatch.chdir(tmp_path)
    for key, value in values.items():
        monkeypatch.setenv(f"ENVHUB_{key.upper()}", value)
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert variable in caught.value.message


def test_the_development_secret_is_generated_once_per_data_folder(tmp_path: Path) -> None:
    first = build_settings(data_dir=tmp_path).secret_material()
    assert first == build_settings(data_dir=tmp_path).secret_material()
    assert first != build_settings(data_dir=tmp_path / "other").secret_material()
    assert first != b"development-only-secret"
    assert (tmp_path / "secret.key").stat().st_mode & 0o077 == 0
