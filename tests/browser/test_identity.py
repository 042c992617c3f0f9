"""Sign-in, teams, tokens, sharing, secrets, audit and the device page in a real browser,
against envhub started as ``make run`` does (single-user mode, the printed link).

Every page is also checked for Content-Security-Policy violations: the strict
policy (no inline script without its hash, no eval) must not break the dashboard.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect
from sqlmodel import Session, create_engine, select
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from envhub.models import AuditChainCheck, Membership, Team, User
from tests.browser.conftest import Envhub, SocketFrames
from tests.browser.test_dashboard import create_environment, create_project

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]

SECRET_VALUE = "hunter2-" + secrets.token_hex(8)


@pytest.fixture
def watched(page: Page) -> Iterator[Page]:
    """The signed-in page, failing the test on any CSP violation or page error."""
    problems: list[str] = []

    def console(message: ConsoleMessage) -> None:
        # Reflex logs a refused eval at "log" level: look at every level.
        if "Content Security Policy" in message.text or "EvalError" in message.text:
            problems.append(message.text)

    page.on("console", console)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    yield page
    assert problems == [], problems


def add_people(envhub: Envhub, team: str, people: dict[str, str]) -> None:
    """People who signed in elsewhere (single-user mode has only one): straight into its database."""
    engine = create_engine(f"sqlite:///{envhub.data_dir / 'envhub.db'}")
    with Session(engine) as session:
        team_id = session.exec(select(Team.id).where(Team.name == team)).one()
        for username, role in people.items():
            user = User(username=username, email=f"{username}@acme.example", display_name=username.title())
            session.add(user)
            session.flush()
            session.add(Membership(team_id=team_id, user_id=user.id or 0, role=role))
        session.commit()
    engine.dispose()


def test_anonymous_visitors_are_sent_to_sign_in(anonymous_page: Page, envhub_server: Envhub) -> None:
    anonymous_page.goto("/teams")
    anonymous_page.wait_for_url(re.compile(r".*/sign-in\?next=/teams"))
    expect(anonymous_page.locator("#local-sign-in")).to_contain_text("one-time sign-in link")
    response = httpx.get(f"{envhub_server.base_url}/api/v1/me")
    assert response.status_code == 401
    # A link signs this browser in once, then leads to the dashboard.
    anonymous_page.goto(envhub_server.login_link())
    anonymous_page.wait_for_url(f"{envhub_server.base_url}/")
    expect(anonymous_page.locator("#signed-in-user")).to_have_text("local")


def test_pages_carry_security_headers(envhub_server: Envhub) -> None:
    page = httpx.get(f"{envhub_server.base_url}/sign-in", headers={"Accept": "text/html"})
    policy = page.headers["content-security-policy"]
    assert "'unsafe-inline'" not in policy.split("script-src", 1)[1].split(";", 1)[0]
    assert "frame-ancestors 'none'" in policy
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"


def test_other_sites_cannot_use_the_session(
    page: Page, envhub_server: Envhub, signed_in: dict[str, object]
) -> None:
    cookies = {c["name"]: c["value"] for c in signed_in["cookies"]}  # type: ignore[attr-defined, index]
    read = httpx.get(
        f"{envhub_server.base_url}/api/v1/me", cookies=cookies, headers={"Origin": "http://evil.example"}
    )
    assert read.status_code == 200
    assert read.headers.get("access-control-allow-origin") != "http://evil.example"  # CORS grants it nothing
    port = envhub_server.base_url.rsplit(":", 1)[1]
    with pytest.raises(InvalidStatus) as refused:  # the dashboard's own socket, from another origin
        ws_connect(
            f"ws://localhost:{port}/_event/?EIO=4&transport=websocket",
            additional_headers={
                "Origin": "http://evil.example",
                "Cookie": f"envhub_session={cookies['envhub_session']}",
            },
            open_timeout=10,
        )
    assert refused.value.response.status_code == 403


def test_teams_invitations_and_roles(watched: Page, envhub_server: Envhub) -> None:
    page = watched
    name = f"platform-{secrets.token_hex(2)}"
    page.goto("/teams")
    page.locator("#new-team").click()
    page.locator("#team-name").fill(name)
    page.locator("#create-team").click()
    page.wait_for_url(re.compile(r".*/teams/\d+$"))
    expect(page.locator("#page-title")).to_have_text(name)
    add_people(envhub_server, name, {f"mara-{name}": "member", f"vic-{name}": "viewer"})
    page.reload()
    expect(page.locator(".member-row")).to_have_count(3)
    page.locator("#invite-email").fill("new.colleague@acme.example")
    page.locator("#send-invite").click()
    expect(page.locator("#open-invites .invite-email")).to_have_text(["new.colleague@acme.example"])
    page.locator("#invite-email").fill("someone@intranet")  # the browser accepts it; envhub does not
    page.locator("#send-invite").click()
    expect(page.get_by_role("alert")).to_contain_text("validation_failed")
    # The owner changes a role; the change is audited.
    row = page.locator(".member-row", has_text=f"vic-{name}")
    row.locator(".member-role [role=combobox]").click()
    page.get_by_role("option", name="member").click()
    expect(row.locator(".member-role")).to_contain_text("member")
    page.goto("/audit")
    page.locator("#filter-target").fill(name)
    expect(page.locator(".audit-row").first).to_contain_text("team.member.role")


def _create_token(page: Page, name: str) -> str:
    page.locator("#new-token").click()
    page.locator("#token-name").fill(name)
    page.locator("#scope-write").click()
    page.locator("#create-token").click()
    return page.locator("#new-token-value").inner_text()


def test_a_token_is_shown_once(watched: Page, frames: SocketFrames) -> None:
    page = watched
    page.goto("/tokens")
    value = _create_token(page, "ci-deploy")
    assert value.startswith("ehp_")
    frames.wait_for_text(value)  # the one reveal: sent over the socket, where the record sees it
    assert (
        httpx.get(
            f"{watched.url.split('/tokens')[0]}/api/v1/me", headers={"Authorization": f"Bearer {value}"}
        ).status_code
        == 200
    )
    page.locator("#token-done").click()
    expect(page.locator("#new-token-value")).to_have_count(0)
    expect(page.locator(".token-row", has_text="ci-deploy")).to_contain_text("read, write")
    assert value not in page.content()
    # Another one, and the page reloaded while its dialog is still open: the
    # dialog is gone, and the server sends neither token again, not even for a moment.
    other = _create_token(page, "ci-nightly")
    frames.wait_for_text(other)
    after_reveal = frames.mark()
    page.reload()
    expect(page.locator(".token-row", has_text="ci-nightly")).to_be_visible()
    frames.wait_for_text("ci-nightly", since=after_reveal)  # the reload's hydration has arrived
    assert frames.containing(other, since=after_reveal) == []
    assert frames.containing(value, since=after_reveal) == []
    expect(page.locator("#new-token-value")).to_have_count(0)
    assert value not in page.content()
    assert other not in page.content()
    page.locator(".token-row", has_text="ci-deploy").locator(".revoke-token").click()
    expect(page.locator(".token-row", has_text="ci-deploy")).to_have_count(0)
    expect(
        page.get_by_text("Token ci-deploy revoked")
    ).to_be_visible()  # server-sent toasts work under the CSP


def test_secrets_are_write_only(watched: Page) -> None:
    page = watched
    project_id = create_project(page, f"vault-{secrets.token_hex(2)}", command="python3 -m http.server $PORT")
    page.goto(f"/projects/{project_id}")
    page.locator("#secret-name").fill("DB_PASSWORD")
    page.locator("#secret-value").fill(SECRET_VALUE)
    page.locator("#save-secret").click()
    expect(page.locator(".secret-row .secret-name")).to_have_text(["DB_PASSWORD"])
    expect(page.locator("#secret-value")).to_have_value("")
    assert SECRET_VALUE not in page.content()
    page.reload()
    expect(page.locator(".secret-row")).to_have_count(1)
    assert SECRET_VALUE not in page.content()
    # Nor does any event carry it to the browser: the whole state stays clean.
    page.goto("/audit")
    expect(page.locator(".audit-row").first).to_be_visible()
    assert SECRET_VALUE not in page.content()


def test_sharing_an_environment_and_an_agent_token(watched: Page, frames: SocketFrames) -> None:
    page = watched
    team = f"partners-{secrets.token_hex(2)}"
    page.goto("/teams")
    page.locator("#new-team").click()
    page.locator("#team-name").fill(team)
    page.locator("#create-team").click()
    page.wait_for_url(re.compile(r".*/teams/\d+$"))
    project_id = create_project(
        page, f"shared-{secrets.token_hex(2)}", command="python3 -m http.server $PORT"
    )
    page.goto(f"/projects/{project_id}")
    environment, environment_id = create_environment(page)
    page.goto(f"/projects/{project_id}/environments/{environment_id}")
    panel = page.locator("#access-panel")
    expect(panel.locator("#no-shares")).to_be_visible()
    panel.locator("#share-kind").click()
    page.get_by_role("option", name="team").click()
    panel.locator("#share-grantee").fill(team)
    panel.locator("#share-expires").fill("2099-12-31")
    panel.locator("#share-submit").click()
    expect(panel.locator(".share-row .share-grantee")).to_have_text([team])
    expect(panel.locator(".share-row")).to_contain_text("2099-12-31")
    panel.locator("#new-agent-token").click()
    page.locator("#agent-name").fill("coding-agent")
    page.locator("#create-agent-token").click()
    token = page.locator("#new-token-value").inner_text()
    assert token.startswith("eha_")
    frames.wait_for_text(token)  # the one reveal: sent over the socket, where the record sees it
    base = page.url.split("/projects/")[0]
    me = httpx.get(f"{base}/api/v1/me", headers={"Authorization": f"Bearer {token}"}).json()
    assert (me["type"], me["environment_id"]) == ("agent", environment_id)
    # A reload while its dialog is open: gone, and not sent again.
    after_reveal = frames.mark()
    page.reload()
    expect(panel.locator(".share-row .share-grantee")).to_have_text([team])
    frames.wait_for_text(environment, since=after_reveal)  # the reload's hydration has arrived
    assert frames.containing(token, since=after_reveal) == []
    expect(page.locator("#new-token-value")).to_have_count(0)
    assert token not in page.content()
    # A second one, put away with its dialog's button.
    panel.locator("#new-agent-token").click()
    page.locator("#agent-name").fill("second-agent")
    page.locator("#create-agent-token").click()
    second = page.locator("#new-token-value").inner_text()
    assert second.startswith("eha_")
    page.locator("#token-done").click()
    expect(page.locator("#new-token-value")).to_have_count(0)
    assert second not in page.content()
    panel.locator(".share-row .unshare").click()
    expect(panel.locator("#no-shares")).to_be_visible()


def _checks_run(envhub: Envhub) -> int:
    engine = create_engine(f"sqlite:///{envhub.data_dir / 'envhub.db'}")
    with Session(engine) as session:
        count = len(session.exec(select(AuditChainCheck.id)).all())
    engine.dispose()
    return count


def test_the_audit_page_verifies_filters_and_exports(
    watched: Page, tmp_path: Path, envhub_server: Envhub
) -> None:
    page = watched
    before = _checks_run(envhub_server)
    page.goto("/audit")
    expect(page.locator(".audit-row").first).to_be_visible()
    page.reload()  # visiting the page (twice) shows the last result and checks nothing
    expect(page.locator(".audit-row").first).to_be_visible()
    page.wait_for_timeout(1000)  # long enough for a check the visit started to be stored
    expect(page.locator("#chain-summary")).not_to_contain_text("Checking")
    assert _checks_run(envhub_server) == before
    page.locator("#verify-chain").click()
    expect(page.locator("#chain-summary")).to_contain_text("audit chain intact")
    expect(page.locator("#chain-when")).to_contain_text("incremental check")
    assert _checks_run(envhub_server) == before + 1
    page.locator("#verify-chain-full").click()
    expect(page.locator("#chain-when")).to_contain_text("full check")
    page.locator("#filter-actor").fill("local")
    expect(page.locator("#export-audit")).to_have_attribute("href", re.compile(r"actor=local"))
    expect(page.locator(".audit-row").first).to_contain_text("local")
    with page.expect_download() as download:
        page.locator("#export-audit").click()
    path = tmp_path / "audit.jsonl"
    download.value.save_as(path)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert records
    assert all(r["actor"].startswith("local") for r in records)
    assert {"seq", "hash", "prev_hash", "source_ip", "user_agent", "outcome"} <= set(records[0])


def test_the_device_page_signs_in_a_cli(watched: Page, envhub_server: Envhub) -> None:
    page = watched
    started = httpx.post(
        f"{envhub_server.base_url}/auth/device/code", data={"client_id": "envhub-cli", "scope": "read"}
    ).json()
    page.goto(f"/device?code={started['user_code']}")
    expect(page.locator("#device-request")).to_contain_text("envhub CLI")
    page.locator("#device-approve").click()
    expect(page.locator("#device-result")).to_contain_text("Approved")
    answer = httpx.post(
        f"{envhub_server.base_url}/auth/device/token",
        data={
            "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
            "device_code": started["device_code"],
            "client_id": "envhub-cli",
        },
    ).json()
    assert answer["access_token"].startswith("ehp_")


def test_signing_out(browser: Browser, envhub_server: Envhub) -> None:
    context = browser.new_context(base_url=envhub_server.base_url)
    page = context.new_page()
    page.goto(envhub_server.login_link())
    page.wait_for_url(f"{envhub_server.base_url}/")
    page.locator("#sign-out").click()
    page.wait_for_url(re.compile(r".*/sign-in\?signed_out=1"))
    expect(page.locator("#signed-out")).to_be_visible()
    page.goto("/")
    page.wait_for_url(re.compile(r".*/sign-in\?next=/"))
    context.close()


def _team_id(envhub: Envhub, name: str) -> int:
    engine = create_engine(f"sqlite:///{envhub.data_dir / 'envhub.db'}")
    with Session(engine) as session:
        found = session.exec(select(Team.id).where(Team.name == name)).one()
    engine.dispose()
    return found or 0
