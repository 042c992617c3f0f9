"""``envhub shell`` through a real pseudo-terminal (pexpect): typing, echo, resize, reattach, exit status."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pexpect

from envhub.models import Environment
from tests.cli.conftest import Cli
from tests.cli.proxy import relay
from tests.terminal.harness import People, Serve

TIMEOUT = 60
# The prompt as the shell prints it, or as a restored screen draws it (under load the shell can
# print before the command's socket is attached; the server then sends the screen instead).
PROMPT = r"[#$](?: |(?:\x1b\[[0-9;?]*[A-Za-z])+)$"


def signed_in(cli: Cli, people: People, base: str, person: object = None) -> dict[str, str]:
    credential = people.token(person or people.world.owner, ("read", "shell"))
    return cli.environ(ENVHUB_SERVER=base, ENVHUB_TOKEN=credential.headers["Authorization"][7:])


def spawn(cli: Cli, env: dict[str, str], *args: str) -> pexpect.spawn:
    return pexpect.spawn(
        str(cli.path), list(args), env=env, dimensions=(24, 80), timeout=TIMEOUT, encoding="utf-8"
    )


def test_a_shell_echoes_follows_resizes_and_exits_with_the_remote_status(
    cli: Cli, serve: Serve, people: People, environment: Environment
) -> None:
    env = signed_in(cli, people, serve())
    shell = spawn(cli, env, "shell", str(environment.id))
    try:
        shell.expect(PROMPT)  # typed only once the remote shell asks, so every echo is the remote's
        shell.sendline("echo hel''lo-$((6*7))")
        shell.expect_exact("echo hel''lo-$((6*7))")  # the remote shell's echo of what was typed
        shell.expect_exact("hello-42")
        shell.sendline("stty size")
        shell.expect(r"24 80\s")
        shell.setwinsize(41, 132)  # the kernel sends SIGWINCH to the envhub command
        shell.sendline("stty size")
        shell.expect(r"41 132\s")
        shell.sendline("exit 7")
        shell.expect(pexpect.EOF)
    finally:
        shell.close(force=True)
    assert shell.exitstatus == 7, shell.before


def test_a_command_instead_of_a_shell(
    cli: Cli, serve: Serve, people: People, environment: Environment
) -> None:
    env = signed_in(cli, people, serve())
    shell = spawn(
        cli, env, "shell", str(environment.id), "-c", "test -t 0 && echo on-a-tty; stty size; exit 3"
    )
    shell.expect(pexpect.EOF)
    shell.close()
    assert "on-a-tty" in (shell.before or "")
    assert "24 80" in (shell.before or "")
    assert shell.exitstatus == 3


def test_a_dropped_connection_reattaches_to_the_same_shell(
    cli: Cli, serve: Serve, people: People, environment: Environment
) -> None:
    base = serve()
    port = urlsplit(base).port
    assert port
    with relay(port) as network:
        env = signed_in(cli, people, f"http://localhost:{network.port}")
        shell = spawn(cli, env, "shell", str(environment.id))
        try:
            shell.expect(PROMPT)
            shell.sendline("export MARK=kept; echo ready-$MARK")
            shell.expect_exact("ready-kept")
            network.cut()
            shell.expect_exact("connection lost; reconnecting")
            shell.expect_exact("reconnected")
            assert network.accepted >= 2
            shell.sendline("echo again-$MARK")
            shell.expect_exact("again-kept")  # the same shell: its variable survived
            shell.sendline("exit 5")
            shell.expect(pexpect.EOF)
        finally:
            shell.close(force=True)
    assert shell.exitstatus == 5


def test_a_shell_refused_says_why_and_exits_255(
    cli: Cli, serve: Serve, people: People, environment: Environment
) -> None:
    base = serve()
    viewer = signed_in(cli, people, base, people.world.viewer)
    refused = cli(
        "shell",
        str(environment.id),
        "-o",
        "json",
        **{k: viewer[k] for k in ("ENVHUB_SERVER", "ENVHUB_TOKEN")},
    )
    assert refused.returncode == 255, refused.stderr
    assert json.loads(refused.stderr)["error"]["code"] == "forbidden"
    outsider = signed_in(cli, people, base, people.world.outsider)
    hidden = cli("shell", str(environment.id), **{k: outsider[k] for k in ("ENVHUB_SERVER", "ENVHUB_TOKEN")})
    assert hidden.returncode == 255
    assert "not_found" in hidden.stderr
