"""git inside a local environment pushes to the project's repository with a token envhub hands out.

Real git in the bubblewrap sandbox, with nothing but envhub's configuration:
``git ls-remote`` and ``git push`` to the GitHub stub's git smart HTTP
(``git http-backend``, GitHub Enterprise's layout: the API under /api/v3, git
at the root), which demands HTTP Basic with a token its App issued. git asks
envhub's credential helper; the helper asks the relay outside the sandbox,
which asks envhub's API with the environment's identity; envhub asks the
stub for an installation token for the one repository. The stub listens on
this machine's own address, which the sandbox reaches through slirp4netns as
it would reach GitHub.
"""

from __future__ import annotations

import dataclasses
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from sqlmodel import Session, select

from envhub.api.app import create_api
from envhub.config import Settings
from envhub.domain.git_credentials import IDENTITY_KEY_PURPOSE
from envhub.integrations.github import TOKENS
from envhub.models import AuditEvent, GithubConnection, Project
from envhub.runtime.local import LocalRuntime
from envhub.runtime.local.git_access import GitAccess
from envhub.services import commands
from envhub.services.git_credentials import repository_origin
from envhub.services.github import connect_github
from tests.support.components import require
from tests.support.github_stub import GithubStub, github_stub
from tests.support.runtime import RecordingProgress, kill_environments, make_target
from tests.support.servers import serve_asgi
from tests.support.world import World
from tests.terminal.harness import make_environment

pytestmark = pytest.mark.slow

REPOSITORY = "acme/widgets"
SERVE = "python3 -m http.server $PORT"


def this_machines_address() -> str:
    """An IPv4 address of this machine other than loopback (what the sandbox can reach)."""
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family == socket.AF_INET and not address.address.startswith("127."):
                return str(address.address)
    pytest.fail("this machine has no IPv4 address off loopback for the sandbox to reach")


@pytest.fixture(scope="module")
def remote() -> Iterator[GithubStub]:
    with github_stub(prefix="/api/v3", host="0.0.0.0") as stub:  # the sandbox comes from outside loopback
        stub.host = this_machines_address()
        yield stub


def test_git_in_the_sandbox_pushes_a_branch_with_a_token_envhub_issued(
    remote: GithubStub, session: Session, world: World, project: Project, settings: Settings, tmp_path: Path
) -> None:
    require("bwrap")
    require("slirp4netns")
    require("git")
    remote.reset()
    TOKENS.forget()
    remote.add_repo(REPOSITORY, private=True)
    remote.add_repo("acme/other")
    private_key = remote.add_app(42)
    remote.install(42, 7, REPOSITORY, "acme/other")
    bare = remote.serve_git(tmp_path / "git", REPOSITORY)
    remote.serve_git(tmp_path / "git", "acme/other")
    # envhub takes plain http for a loopback API only: connect through loopback, then point the
    # connection at the machine's address, as a GitHub Enterprise server on the network would be.
    loopback = remote.api_url.replace(remote.host, "127.0.0.1")
    connect_github(
        session=session, actor=world.admin, project_id=project.id or 0, repository=REPOSITORY,
        auth="app", api_url=loopback, app_id=42, installation_id=7, private_key=private_key,
    )  # fmt: skip
    connection = session.exec(select(GithubConnection)).one()
    connection.api_url = remote.api_url
    session.add(connection)
    session.commit()
    environment = make_environment(session, world, project, settings)
    assert environment.id is not None
    origin = repository_origin(session, project.id or 0)
    assert origin == remote.origin

    with serve_asgi(create_api()) as port:
        access = GitAccess(f"http://localhost:{port}", settings.derived_key(IDENTITY_KEY_PURPOSE))
        runtime = LocalRuntime(settings.envs_dir, sandbox="auto", health_timeout=30, git_access=access)
        try:
            target = dataclasses.replace(make_target(environment.id, command=SERVE), git_origin=origin)
            runtime.apply(target, progress=RecordingProgress())

            def run(script: str) -> tuple[int | None, str]:
                done = commands.run_command(
                    session=session,
                    actor=world.owner,
                    runtime=runtime,
                    environment_id=environment.id or 0,
                    command=["sh", "-c", f"export GIT_TERMINAL_PROMPT=0; {script}"],
                    timeout=90,
                    cap=1 << 20,
                )
                return done.end.exit_code, done.output.decode(errors="replace")

            url = f"{origin}/{REPOSITORY}.git"
            code, said = run(
                "git init -q -b work repo && cd repo && echo hello > README && git add README && "
                "git -c user.name=Agent -c user.email=agent@example.com commit -q -m 'A change' && "
                f"git ls-remote {url} && git push -q {url} HEAD:refs/heads/agent-change && echo pushed"
            )
            assert (code, said.strip().splitlines()[-1:]) == (0, ["pushed"]), said
            pushed = subprocess.run(
                ["git", "--git-dir", str(bare), "log", "-1", "--format=%s", "agent-change"],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            assert pushed.stdout.strip() == "A change"

            # git asked without credentials first (401), then with the token envhub issued.
            statuses = [call.status for call in remote.calls if call.auth == "git"]
            assert statuses[0] == 401
            assert 200 in statuses
            tokens = [t for t, g in remote.grants.items() if g.permissions and g.installation_id == 7]
            assert len(tokens) == 1
            assert remote.grants[tokens[0]].repositories == {REPOSITORY}

            # The token reaches no other repository, even one the App is installed on.
            code, said = run(f"git ls-remote {origin}/acme/other.git")
            assert code != 0, said

            # Nothing of the token is left in the workspace or in any process's environment.
            workspace = settings.envs_dir / str(environment.id) / "workspace"
            for path in workspace.rglob("*"):
                if path.is_file():
                    assert tokens[0].encode() not in path.read_bytes(), path
            code, said = run(
                f"cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n' | grep -c {tokens[0]} || true"
            )
            assert said.strip() == "0"
        finally:
            kill_environments(runtime)

    session.expire_all()
    issued = session.exec(select(AuditEvent).where(AuditEvent.action == "environment.git_credentials")).all()
    assert {event.outcome for event in issued} == {"success"}
    assert issued[0].details["repository"] == REPOSITORY
