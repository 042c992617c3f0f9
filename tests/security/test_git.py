"""Attacks on host-side git: what an environment writes into its workspace never runs on the host.

Issue 9, point 1, and point 5's rule for repository URLs. Each attack is
planted from a shell inside a real bubblewrap sandbox (the runtime's exec,
as the browser terminal opens it), armed against a real repository, and then
the environment is redeployed the ways envhub redeploys: a new generation with
a new commit (envhub fetches and builds a fresh workspace), a new generation of
the same commit (envhub fetches and keeps the workspace), and the reconciler's
own restart after the environment's process exits. A hook, filter, fsmonitor
or include that ran on the host would leave a marker file in a folder only the
host can see; none may appear.

Each plant is first shown to be live: git run the way the host used to run it
(``fetch`` and a forced ``checkout`` inside the workspace, plus a ``status``) on
a copy of the planted workspace leaves the markers. The planted scripts name
host paths (the workspace's host path is in the sandbox's /proc/self/mountinfo).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import re
import secrets
import shutil
import subprocess
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from envhub.config import Settings, override_settings
from envhub.errors import RepoUrlRefused, WorkspaceFailed
from envhub.jobs.environments import converge_environment
from envhub.models import AuditEvent, Environment, JobRun, Project
from envhub.runtime.local import LocalRuntime
from envhub.runtime.local.shell import LocalExecSession
from envhub.services import ports
from envhub.services.environments import create_environment
from envhub.services.projects import create_project
from envhub.services.reconciliation import reconcile
from tests.support.components import require
from tests.support.db import fetch, fetch_all, other_session
from tests.support.fakes import FakeQueue
from tests.support.gitserver import serve_git
from tests.support.runtime import RecordingProgress, endpoint_get, git, kill_environments, make_target
from tests.support.waiting import wait_for
from tests.support.world import World

pytestmark = pytest.mark.slow

SERVE = "python3 -m http.server $PORT"
_OLD_HOST_GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/local/bin:/usr/bin:/bin"}


@pytest.fixture(autouse=True)
def bubblewrap() -> None:
    """These attacks mean nothing outside the real sandbox: no bubblewrap is a failure."""
    require("bwrap")


# -- a real repository, served as a remote ----------------------------------------------------


@dataclass
class Remote:
    """A bare repository (the remote) and a clone that pushes new commits to it."""

    bare: Path
    work: Path

    @property
    def url(self) -> str:
        return str(self.bare)  # a local path: allowed by the operator setting below

    def push(self, version: str) -> str:
        (self.work / "VERSION").write_text(f"{version}\n")
        (self.work / "src" / "app.txt").write_text(f"app {version}\n")
        git("commit", "--quiet", "-am", f"version {version}", cwd=self.work)
        git("push", "--quiet", "origin", "HEAD:main", cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)


@pytest.fixture
def remote(tmp_path: Path) -> Remote:
    work = tmp_path / "upstream"
    (work / "src").mkdir(parents=True)
    git("init", "--quiet", "--initial-branch=main", cwd=work)
    # The repository names a filter for its files; a driver for it would have to come
    # from config, which is what an environment plants.
    (work / ".gitattributes").write_text("* filter=x\n")
    (work / "VERSION").write_text("one\n")
    (work / "src" / "app.txt").write_text("app one\n")
    git("add", ".", cwd=work)
    git("commit", "--quiet", "-m", "one", cwd=work)
    bare = tmp_path / "remote.git"
    git("clone", "--quiet", "--bare", str(work), str(bare), cwd=tmp_path)
    git("remote", "add", "origin", str(bare), cwd=work)
    return Remote(bare=bare, work=work)


@pytest.fixture
def markers(tmp_path: Path) -> Path:
    """Where a planted script that ran on the host leaves its mark (the sandbox has its own /tmp)."""
    folder = tmp_path / "markers"
    folder.mkdir()
    return folder


@pytest.fixture
def target(tmp_path: Path) -> Path:
    """A host folder that planted symlinks point at; it must stay exactly as it is."""
    folder = tmp_path / "host-target"
    folder.mkdir()
    (folder / "victim.txt").write_text("precious\n")
    return folder


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[LocalRuntime]:
    rt = LocalRuntime(tmp_path / "envs", sandbox="bwrap", health_timeout=30, allow_local_repos=True)
    yield rt
    kill_environments(rt)


def found(folder: Path) -> set[str]:
    return {entry.name for entry in folder.iterdir()}


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


# -- a shell inside the environment -------------------------------------------------------------


def read_until(session: LocalExecSession, pattern: str, *, timeout: float = 60) -> re.Match[str]:
    seen = b""

    def match() -> re.Match[str] | None:
        nonlocal seen
        with contextlib.suppress(TimeoutError):
            seen += session.read(timeout=0.5)
        return re.search(pattern, seen.decode(errors="replace"))

    return wait_for(
        match, timeout=timeout, interval=0, what=f"{pattern!r} in the shell", describe=lambda: repr(seen)
    )


def in_environment_shell(runtime: LocalRuntime, environment_id: int, script: str) -> None:
    """Type ``script`` into a login shell inside the environment, as a person at the terminal would."""
    session = runtime.exec(environment_id, tty=True)
    try:
        # A terminal line holds at most 4 KiB, so the script arrives in pieces.
        encoded = base64.b64encode(script.encode()).decode()
        for start in range(0, len(encoded), 1000):
            session.write(f"printf %s {encoded[start : start + 1000]} >> /tmp/plant.b64\n".encode())
        session.write(b"base64 -d /tmp/plant.b64 | sh -e; echo PLANTED-$?\n")
        code = read_until(session, r"PLANTED-(\d+)").group(1)
        assert code == "0", f"the plant failed inside the sandbox (exit {code})"
    finally:
        session.close()


def hook(path: str, marker: Path) -> str:
    """Shell lines that write an executable hook at ``path`` that touches ``marker``."""
    return f"printf '#!/bin/sh\\ntouch {marker}\\n' > {path}; chmod +x {path}\n"


# -- what each attack plants, and which markers git run the old way leaves ----------------------


@dataclass(frozen=True)
class Plant:
    name: str
    script: Callable[[Path, Path, Path], str]  # (workspace host path, markers, host target) -> sh
    armed: frozenset[str]  # markers the old host git leaves with this plant in place


def _hooks(ws: Path, m: Path, t: Path) -> str:
    names = (
        "post-checkout post-merge post-rewrite post-index-change reference-transaction "
        "pre-auto-gc pre-commit push-to-checkout fsmonitor-watchman"
    )
    lines = "".join(hook(f".git/hooks/{name}", m / f"hook-{name}") for name in names.split())
    return "mkdir -p .git/hooks\n" + lines + "git config gc.auto 1\n"


def _hooks_path(ws: Path, m: Path, t: Path) -> str:
    return (
        "mkdir -p .attack-hooks\n"
        + hook(".attack-hooks/post-checkout", m / "hooks-path")
        + hook(".attack-hooks/reference-transaction", m / "hooks-path")
        + f"git config core.hooksPath {ws}/.attack-hooks\n"
    )


def _fsmonitor(ws: Path, m: Path, t: Path) -> str:
    return hook(".attack-fsmonitor", m / "fsmonitor") + f"git config core.fsmonitor {ws}/.attack-fsmonitor\n"


def _filter(ws: Path, m: Path, t: Path) -> str:
    return textwrap.dedent(
        f"""\
        git config filter.x.smudge "sh -c 'touch {m}/filter-smudge; cat'"
        git config filter.x.clean "sh -c 'touch {m}/filter-clean; cat'"
        echo '* filter=x' >> .git/info/attributes
        """
    )


def _include(ws: Path, m: Path, t: Path) -> str:
    return (
        "mkdir -p .attack-include-hooks\n"
        + hook(".attack-include-hooks/post-checkout", m / "include")
        + hook(".attack-includeif-fsmonitor", m / "include-if")
        + f"printf '[core]\\n\\thooksPath = {ws}/.attack-include-hooks\\n' > .attack.gitconfig\n"
        + f"printf '[core]\\n\\tfsmonitor = {ws}/.attack-includeif-fsmonitor\\n' > .attack-if.gitconfig\n"
        + f"git config include.path {ws}/.attack.gitconfig\n"
        + f"git config includeIf.gitdir:/.path {ws}/.attack-if.gitconfig\n"
    )


def _gitdir_file(ws: Path, m: Path, t: Path) -> str:
    return (
        "mv .git .attack-gitdir && mkdir -p .attack-gitdir/hooks\n"
        + hook(".attack-gitdir/hooks/post-checkout", m / "gitdir-file")
        + f"printf 'gitdir: {ws}/.attack-gitdir\\n' > .git\n"
    )


def _gitdir_symlink(ws: Path, m: Path, t: Path) -> str:
    return (
        "mv .git .attack-linked && mkdir -p .attack-linked/hooks\n"
        + hook(".attack-linked/hooks/post-checkout", m / "gitdir-symlink")
        + f"ln -s {ws}/.attack-linked .git\n"
    )


def _symlinks(ws: Path, m: Path, t: Path) -> str:
    # Where the host renames, removes or would write: the previous-workspace slot,
    # a tracked file, a tracked folder, and a folder the host will later remove.
    return textwrap.dedent(
        f"""\
        ln -s {t} .envhub-previous
        rm VERSION && ln -s {t}/victim.txt VERSION
        rm -r src && ln -s {t} src
        mkdir -p deep && ln -s {t} deep/escape && ln -s {t}/victim.txt deep/victim
        """
    )


PLANTS = [
    Plant("hooks", _hooks, frozenset({"hook-post-checkout", "hook-reference-transaction"})),
    Plant("core.hooksPath", _hooks_path, frozenset({"hooks-path"})),
    Plant("core.fsmonitor", _fsmonitor, frozenset({"fsmonitor"})),
    Plant("filter driver", _filter, frozenset({"filter-smudge"})),
    Plant("include and includeIf", _include, frozenset({"include", "include-if"})),
    Plant(".git file redirecting gitdir", _gitdir_file, frozenset({"gitdir-file"})),
    Plant(".git symlink", _gitdir_symlink, frozenset({"gitdir-symlink"})),
    Plant("symlinks where the host writes", _symlinks, frozenset()),
]


def old_host_git(workspace: Path, copy: Path) -> None:
    """What the host ran before this change, on a copy of the workspace (planted symlinks kept)."""
    shutil.copytree(workspace, copy, symlinks=True)
    for args in (
        ["fetch", "--quiet", "origin"],
        ["checkout", "--quiet", "--force", "--detach", "origin/main"],
        ["status", "--short"],
    ):
        subprocess.run(["git", *args], cwd=copy, env=_OLD_HOST_GIT_ENV, capture_output=True, check=False)


def served_text(runtime: LocalRuntime, environment_id: int, path: str) -> str:
    endpoint = runtime.endpoint(environment_id)
    assert endpoint is not None
    return endpoint_get(endpoint, path).text


@pytest.mark.parametrize("plant", PLANTS, ids=[p.name for p in PLANTS])
def test_nothing_planted_in_the_workspace_runs_on_the_host_at_redeploy(
    plant: Plant, runtime: LocalRuntime, remote: Remote, markers: Path, target: Path, tmp_path: Path
) -> None:
    def deploy(generation: int) -> str:
        progress = RecordingProgress()
        runtime.apply(
            make_target(1, command=SERVE, repo_url=remote.url, ref="main", generation=generation),
            progress=progress,
        )
        return next(d for e, k, d in progress.events if (e, k) == ("finish", "workspace"))

    deploy(1)
    workspace = runtime.workspace_path(1)
    before = snapshot(target)
    in_environment_shell(runtime, 1, plant.script(workspace, markers, target))

    two = remote.push("two")
    old_host_git(workspace, tmp_path / "control")
    assert found(markers) >= plant.armed, "the plant is not live: git run the old way did not fire it"
    for marker in found(markers):
        (markers / marker).unlink()

    # A new commit: envhub fetches and builds a fresh workspace.
    assert two[:12] in deploy(2)
    assert found(markers) == set()
    assert served_text(runtime, 1, "/VERSION") == "two\n"
    assert (workspace / ".envhub-previous").is_dir()

    # The same commit again: envhub fetches and keeps the workspace as it is.
    assert "kept as it was" in deploy(3)
    assert found(markers) == set()

    # Another commit: the previous workspace (with the plant) is removed from the host.
    remote.push("three")
    deploy(4)
    assert found(markers) == set()
    assert served_text(runtime, 1, "/VERSION") == "three\n"
    assert snapshot(target) == before
    assert not (workspace / ".envhub-previous" / ".envhub-previous").exists()


def test_hostile_repository_content_writes_nowhere_and_fetches_no_submodule(
    runtime: LocalRuntime, remote: Remote, target: Path, tmp_path: Path
) -> None:
    """What a pull request commits is hostile too: symlinks out of the workspace, a submodule."""
    inner = tmp_path / "inner"
    inner.mkdir()
    git("init", "--quiet", "--initial-branch=main", cwd=inner)
    (inner / "README").write_text("inner\n")
    git("add", "README", cwd=inner)
    git("commit", "--quiet", "-m", "inner", cwd=inner)
    work = remote.work
    git("-c", "protocol.file.allow=always", "submodule", "--quiet", "add", str(inner), "sub", cwd=work)
    (work / ".envhub-previous").symlink_to(target)  # the name envhub gives the previous workspace
    (work / "escape").symlink_to(target / "victim.txt")
    git("add", ".envhub-previous", "escape", cwd=work)
    remote.push("two")
    before = snapshot(target)

    runtime.apply(
        make_target(1, command=SERVE, repo_url=remote.url, ref="main"), progress=RecordingProgress()
    )
    workspace = runtime.workspace_path(1)
    assert list((workspace / "sub").iterdir()) == []  # submodules are never fetched
    assert (workspace / ".envhub-previous").is_symlink()

    remote.push("three")
    progress = RecordingProgress()
    runtime.apply(
        make_target(1, command=SERVE, repo_url=remote.url, ref="main", generation=2), progress=progress
    )
    detail = next(d for e, k, d in progress.events if (e, k) == ("finish", "workspace"))
    assert "previous workspace" not in detail  # the checkout holds that name: the old one was removed
    assert served_text(runtime, 1, "/VERSION") == "three\n"
    assert snapshot(target) == before
    assert [p.name for p in workspace.parent.iterdir() if p.name.startswith("trash-")] == []


def run_inside(runtime: LocalRuntime, environment_id: int, script: str) -> str:
    session = runtime.exec(environment_id, ["/bin/sh", "-c", script], tty=False)
    output = b""
    try:
        while chunk := session.read(timeout=30):
            output += chunk
    finally:
        session.close()
    return output.decode(errors="replace")


def test_the_workspace_holds_a_repository_of_the_environment_own(
    runtime: LocalRuntime, remote: Remote
) -> None:
    """Inside, git works as in any clone; envhub's own repository is out of the sandbox's reach."""
    runtime.apply(
        make_target(1, command=SERVE, repo_url=remote.url, ref="main"), progress=RecordingProgress()
    )
    host_git = runtime.workspace_path(1).parent / "git"
    assert (host_git / "HEAD").is_file()
    output = run_inside(
        runtime,
        1,
        "git status --short --branch; git rev-parse --absolute-git-dir; git remote get-url origin; "
        f"test -e {host_git}/HEAD && echo host-git-visible || echo host-git-hidden",
    )
    assert output.split() == ["##", "main...origin/main", "/workspace/.git", remote.url, "host-git-hidden"]


# -- the reconciler's own redeploy, through the real services and job -----------------------------


@pytest.fixture
def settings(settings: Settings) -> Iterator[Settings]:
    """The test settings with local repositories allowed (the operator setting)."""
    allowed = settings.model_copy(update={"allow_local_repos": True})
    ports.reset()
    with override_settings(allowed):
        yield allowed
    ports.reset()


def test_the_reconciler_restart_after_the_process_exits_runs_nothing_planted(
    settings: Settings,
    session: Session,
    world: World,
    db: Engine,
    remote: Remote,
    markers: Path,
) -> None:
    runtime = ports.runtime()
    assert isinstance(runtime, LocalRuntime)
    queue = FakeQueue()
    try:
        # The app stops by itself once a file named ``stop`` appears in its workspace (and takes it away).
        command = f"{SERVE} & while [ ! -e stop ]; do sleep 0.2; done; rm stop; kill $!"
        project = create_project(
            session=session,
            actor=world.owner,
            team_id=world.acme,
            name="shop",
            repo_url=remote.url,
            command=command,
        )
        assert project.id is not None
        env = create_environment(
            session=session, actor=world.member, queue=queue, project_id=project.id, name="pr-1"
        )
        assert env.id is not None
        assert converge_environment(*queue.jobs[-1].args) == "ready"  # type: ignore[arg-type]
        workspace = runtime.workspace_path(env.id)
        plants = "".join(p.script(workspace, markers, markers) for p in PLANTS[:5])
        in_environment_shell(runtime, env.id, plants + "touch stop\n")
        remote.push("two")
        wait_for(lambda: runtime.endpoint(env.id) is None, what="the environment's process to exit")

        with other_session(db) as other:
            report = reconcile(session=other, queue=queue, runtime=runtime)
        assert report.started == [env.id]
        assert converge_environment(*queue.jobs[-1].args) == "ready"  # type: ignore[arg-type]
        assert found(markers) == set()
        assert served_text(runtime, env.id, "/VERSION") == "two\n"
        restarted = fetch(db, Environment, env.id)
        assert restarted is not None
        assert restarted.observed_generation == 2
    finally:
        kill_environments(runtime)


def test_a_private_repository_is_fetched_with_the_project_secret_the_workload_never_sees(
    remote: Remote, tmp_path: Path
) -> None:
    """The way to give envhub a token instead of putting it in the URL, over real https."""
    served = tmp_path / "served"
    served.mkdir()
    git("clone", "--quiet", "--bare", str(remote.bare), str(served / "shop.git"), cwd=tmp_path)
    token = "tok_" + secrets.token_hex(16)
    with serve_git(served, username="x-access-token", token=token) as server:
        operator_config = tmp_path / "operator.gitconfig"  # ENVHUB_GIT_CONFIG: trusts the test CA
        operator_config.write_text(f"[http]\n\tsslCAInfo = {server.ca_file}\n")
        runtime = LocalRuntime(
            tmp_path / "envs", sandbox="bwrap", health_timeout=30, git_config=operator_config
        )
        try:
            probe = 'echo "token=${GIT_TOKEN:-absent} other=${OTHER:-absent}" > probe.txt; ' + SERVE
            target = make_target(1, command=probe, repo_url=server.url("shop.git"), ref="main")
            with pytest.raises(WorkspaceFailed) as refused:
                runtime.apply(target, progress=RecordingProgress())
            # The server asked for credentials; git had none and was not allowed to ask anyone.
            assert "terminal prompts disabled" in refused.value.message
            assert server.requests
            assert {authorization for _, _, authorization in server.requests} == {""}

            progress = RecordingProgress()
            runtime.apply(
                dataclasses.replace(target, secrets={"GIT_TOKEN": token, "OTHER": "visible"}),
                progress=progress,
            )
            assert served_text(runtime, 1, "/VERSION") == "one\n"
            assert served_text(runtime, 1, "/probe.txt") == "token=absent other=visible\n"
            assert all(authorization for _, _, authorization in server.requests[-2:])
            env_dir = runtime.workspace_path(1).parent
            files = [p for p in env_dir.rglob("*") if p.is_file() and not p.is_symlink()]
            assert files
            assert not [p for p in files if token.encode() in p.read_bytes()]
            assert token not in json.dumps(progress.events)
        finally:
            kill_environments(runtime)


# -- repository URLs: credentials and local paths ---------------------------------------------------


def test_a_url_with_credentials_reaches_neither_the_audit_log_nor_a_job(
    settings: Settings, session: Session, world: World, db: Engine
) -> None:
    token = "ghp_s3cretTOKENvalue"
    with pytest.raises(RepoUrlRefused) as caught:
        create_project(
            session=session,
            actor=world.owner,
            team_id=world.acme,
            name="shop",
            repo_url=f"https://alice:{token}@git.example.com/acme/shop.git",
        )
    assert caught.value.code == "repo_url_refused"
    assert caught.value.details["reason"] == "credentials"
    assert "GIT_TOKEN" in caught.value.hint
    assert token not in json.dumps(caught.value.to_dict())

    project = create_project(
        session=session,
        actor=world.owner,
        team_id=world.acme,
        name="shop",
        repo_url="https://git.example.com/acme/shop.git",
    )
    assert project.id is not None
    with pytest.raises(RepoUrlRefused):
        create_environment(
            session=session,
            actor=world.member,
            queue=FakeQueue(),
            project_id=project.id,
            overrides={"repo_url": f"https://{token}@git.example.com/acme/shop.git"},
        )
    assert fetch_all(db, JobRun) == []
    rows = fetch_all(db, AuditEvent)
    assert [(e.action, e.outcome, e.error_code) for e in rows if e.outcome == "failure"] == [
        ("project.create", "failure", "repo_url_refused"),
        ("environment.create", "failure", "repo_url_refused"),
    ]
    assert token not in json.dumps([e.model_dump(mode="json") for e in rows])
    assert token not in json.dumps([p.model_dump(mode="json") for p in fetch_all(db, Project)])


def test_local_repositories_need_the_operator_setting(
    settings: Settings, session: Session, world: World, remote: Remote, tmp_path: Path
) -> None:
    with override_settings(settings.model_copy(update={"allow_local_repos": False})):
        for url in (remote.url, remote.bare.as_uri()):
            with pytest.raises(RepoUrlRefused) as caught:
                create_project(
                    session=session, actor=world.owner, team_id=world.acme, name="shop", repo_url=url
                )
            assert caught.value.details["reason"] == "local_not_allowed"
            assert "ENVHUB_ALLOW_LOCAL_REPOS" in caught.value.hint
    assert create_project(
        session=session, actor=world.owner, team_id=world.acme, name="shop", repo_url=remote.url
    )

    # The runtime holds the same line for anything stored before the setting changed.
    runtime = LocalRuntime(tmp_path / "envs", sandbox="bwrap", allow_local_repos=False)
    with pytest.raises(WorkspaceFailed) as refused:
        runtime.apply(make_target(1, command=SERVE, repo_url=remote.url), progress=RecordingProgress())
    assert refused.value.details == {"reason": "local_not_allowed"}
    assert not (tmp_path / "envs" / "1" / "git").exists()


def test_a_local_repository_inside_the_environments_folder_is_refused(
    runtime: LocalRuntime, remote: Remote, markers: Path
) -> None:
    """Another environment's workspace is hostile: envhub never fetches from it."""
    runtime.apply(make_target(1, command=SERVE, repo_url=remote.url), progress=RecordingProgress())
    in_environment_shell(runtime, 1, _hooks(runtime.workspace_path(1), markers, markers))
    for url in (
        str(runtime.workspace_path(1)),
        runtime.workspace_path(1).as_uri(),
        f"{runtime.root}/1/workspace/../workspace",
    ):
        with pytest.raises(WorkspaceFailed) as caught:
            runtime.apply(make_target(2, command=SERVE, repo_url=url), progress=RecordingProgress())
        assert caught.value.details == {"reason": "inside_environments"}
    assert found(markers) == set()
