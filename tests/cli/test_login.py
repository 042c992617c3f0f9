"""``envhub login``, ``whoami``, ``logout``: the device flow end to end, the token 0600, revoked at logout."""

from __future__ import annotations

import json
import re
import stat
import subprocess

import httpx
from sqlmodel import Session

from envhub.services import device
from tests.cli.conftest import Cli
from tests.terminal.harness import People, Serve


def mode(path: object) -> int:
    return stat.S_IMODE(path.stat().st_mode)  # type: ignore[attr-defined]


def test_login_through_the_device_flow_then_whoami_and_logout(
    cli: Cli, serve: Serve, people: People, session: Session
) -> None:
    base = serve()
    login = subprocess.Popen(
        [str(cli.path), "login", "--server", base],
        env=cli.environ(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert login.stderr is not None
        shown = ""
        while "Confirm it at:" not in shown:
            line = login.stderr.readline()
            assert line, f"login ended before showing a code: {shown}"
            shown += line
        code = re.search(r"one-time code: (\S+)", shown)
        assert code, shown
        assert f"{base}/device?code={code.group(1)}" in shown
        # What the /device page does when the signed-in person presses Approve.
        device.approve(session, actor=people.local, user_code=code.group(1))
        out, rest = login.communicate(timeout=60)
    finally:
        login.kill()
    assert login.returncode == 0, shown + rest
    assert f"Signed in to {base} as local" in out

    folder = cli.config / "envhub"
    tokens = folder / "tokens.json"
    assert (mode(folder), mode(tokens), mode(folder / "hosts.json")) == (0o700, 0o600, 0o600)
    token = json.loads(tokens.read_text())[base]
    assert token not in (folder / "hosts.json").read_text()

    me = cli("whoami", "-o", "json")
    assert me.returncode == 0, me.stderr
    seen = json.loads(me.stdout)
    assert (seen["name"], seen["type"], seen["scopes"], seen["server"]) == (
        "local",
        "token",
        ["read", "shell", "write"],
        base,
    )
    assert "local" in cli("whoami").stdout

    out = cli("logout")
    assert out.returncode == 0, out.stderr
    assert "token revoked" in out.stdout
    assert httpx.get(f"{base}/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert base not in json.loads(tokens.read_text())
    after = cli("whoami")
    assert after.returncode == 3, after.stderr
    assert "not_signed_in" in after.stderr
    assert "envhub login" in after.stderr


def test_a_denied_sign_in_fails_with_its_code(
    cli: Cli, serve: Serve, people: People, session: Session
) -> None:
    base = serve()
    login = subprocess.Popen(
        [str(cli.path), "login", "--server", base, "-o", "json"],
        env=cli.environ(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert login.stdout is not None
        waiting = json.loads(login.stdout.readline())
        assert waiting["status"] == "waiting"
        device.deny(session, actor=people.local, user_code=waiting["user_code"])
        _, errors = login.communicate(timeout=60)
    finally:
        login.kill()
    assert login.returncode == 4, errors
    assert json.loads(errors)["error"]["code"] == "device_access_denied"
    assert not (cli.config / "envhub" / "tokens.json").exists()


def test_an_environment_token_needs_nothing_stored(cli: Cli, serve: Serve, people: People) -> None:
    base = serve()
    credential = people.token(people.world.member, ("read",))
    token = credential.headers["Authorization"].removeprefix("Bearer ")
    me = cli("whoami", "-o", "json", ENVHUB_SERVER=base, ENVHUB_TOKEN=token)
    assert me.returncode == 0, me.stderr
    assert json.loads(me.stdout)["name"] == "max"
    refused = cli("whoami", "-o", "json", ENVHUB_SERVER=base, ENVHUB_TOKEN="ehp_not-a-token")
    assert refused.returncode == 3
    assert json.loads(refused.stderr)["error"]["code"] == "unauthenticated"
    assert not (cli.config / "envhub").exists()


def test_login_asks_for_a_deploy_token_for_ci(
    cli: Cli, serve: Serve, people: People, session: Session
) -> None:
    """CI's token: `envhub login --scopes deploy` makes one that can only release."""
    base = serve()
    login = subprocess.Popen(
        [str(cli.path), "login", "--server", base, "--scopes", "deploy", "-o", "json"],
        env=cli.environ(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert login.stdout is not None
        waiting = json.loads(login.stdout.readline())
        device.approve(session, actor=people.local, user_code=waiting["user_code"])
        out, errors = login.communicate(timeout=60)
    finally:
        login.kill()
    assert login.returncode == 0, errors
    assert json.loads(out)["status"] == "signed_in"
    me = json.loads(cli("whoami", "-o", "json").stdout)
    assert me["scopes"] == ["deploy"]
    assert cli("projects", "ls").returncode == 4  # it reads nothing
