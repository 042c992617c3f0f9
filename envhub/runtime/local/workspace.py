"""An environment's workspace folder: empty, or a checkout of the project's repository.

The workspace is mounted read-write into the sandbox, so everything in it was
possibly written by the environment: the host never runs git in it, never
reads it, and never writes through it. Instead, in the environment's folder
(which no sandbox mounts)::

    git/              envhub's own bare repository: fetched from the remote, never copied
    checkout.json     what the workspace was built from (repository, ref, commit)
    workspace.new/    the next workspace while it is built
    trash-*/          what is being removed

A deploy fetches into ``git/`` (with :mod:`envhub.hostgit`), and when the commit
differs from the one the workspace holds, builds a fresh workspace next to it:
a new repository of the environment's own (its ``.git`` is a copy; envhub
never runs git in it again) checked out at the commit, on the branch when the
ref is one. The new workspace then takes the old one's place by rename, and the
old one moves inside it as ``.envhub-previous`` (its local changes, untracked
files and commits stay there until the next new commit replaces it). When the
commit is unchanged (a restart, a redeploy of the same commit) the workspace is
kept exactly as it is.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from envhub.domain.repos import RepoKind, require_allowed
from envhub.errors import RepoUrlRefused, WorkspaceFailed
from envhub.hostgit import HostGit

WORKSPACE = "workspace"
PREVIOUS = ".envhub-previous"
_GIT = "git"
_STAGING = "workspace.new"
_RECORD = "checkout.json"
_TRASH = "trash-"
_HEX = frozenset("0123456789abcdef")
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW

# The removals below rely on it: rmtree neither follows nor races a planted symlink.
assert shutil.rmtree.avoids_symlink_attacks


@dataclass(frozen=True, slots=True)
class Checkout:
    repo_url: str
    ref: str | None
    revision: str


@dataclass(frozen=True, slots=True)
class Credentials:
    """An https token from the project's secrets (HTTP basic)."""

    token: str
    username: str = "x-access-token"


def prepare(
    env_dir: Path,
    *,
    repo_url: str | None,
    ref: str | None,
    allow_local: bool = False,
    credentials: Credentials | None = None,
    git_config: Path | None = None,
) -> str:
    """Make ``env_dir/workspace`` hold ``repo_url`` at ``ref``; returns what was done.

    Idempotent: a workspace already built from the same commit is left alone.
    """
    workspace = env_dir / WORKSPACE
    _sweep(env_dir)
    if repo_url is None:
        (env_dir / _RECORD).unlink(missing_ok=True)
        workspace.mkdir(parents=True, exist_ok=True)
        return "empty workspace"
    protocols = _protocols(env_dir, repo_url, allow_local=allow_local)
    remote = HostGit(
        cwd=env_dir,
        protocols=protocols,
        token=credentials.token if credentials and repo_url.startswith("https://") else None,
        username=credentials.username if credentials else "x-access-token",
        config_file=git_config,
    )
    git_dir = env_dir / _GIT
    _fetch(remote, git_dir, repo_url)
    default = _default_branch(remote, git_dir) if ref is None else None
    target = ref or default or "HEAD"
    revision = _resolve(remote, git_dir, target)
    done = f"{repo_url} at {target} ({revision[:12]})"
    wanted = Checkout(repo_url, ref, revision)
    if _recorded(env_dir) == wanted and workspace.is_dir():
        return f"{done}; workspace kept as it was"
    branch = target if _is_branch(remote, git_dir, target, revision) else None
    _build(env_dir, git_dir, repo_url=repo_url, branch=branch, default=default, revision=revision)
    kept = _replace(env_dir)
    (env_dir / _RECORD).write_text(json.dumps(asdict(wanted)))
    _sweep(env_dir)
    return f"{done}; previous workspace in {PREVIOUS}" if kept else done


def _protocols(env_dir: Path, repo_url: str, *, allow_local: bool) -> tuple[str, ...]:
    """The transports this fetch may use, after checking the URL once more.

    Specs were checked when they were saved; this holds for anything stored
    before that rule or with the operator's setting changed since.
    """
    try:
        source = require_allowed(repo_url, allow_local=allow_local)
    except RepoUrlRefused as exc:
        raise WorkspaceFailed(exc.message, hint=exc.hint, details={"reason": exc.details["reason"]}) from None
    assert source is not None
    if source.kind is RepoKind.remote:
        return ("https", "ssh")
    path = Path(unquote(urlsplit(repo_url).path) if repo_url.startswith("file:") else repo_url)
    if path.resolve().is_relative_to(env_dir.parent.resolve()):
        raise WorkspaceFailed(
            "the repository is inside envhub's environments folder",
            hint="Point the project at a repository outside envhub's data folder.",
            details={"reason": "inside_environments"},
        )
    return ("file",)


def _fetch(git: HostGit, git_dir: Path, repo_url: str) -> None:
    if (git_dir / "HEAD").is_file() and _origin(git, git_dir) != repo_url:
        shutil.rmtree(git_dir)
    if not (git_dir / "HEAD").is_file():
        shutil.rmtree(git_dir, ignore_errors=True)
        git.init(git_dir, bare=True)
        git.run("config", "remote.origin.url", repo_url, git_dir=git_dir)
    refspecs = ("+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*")
    git.run("fetch", "--quiet", "--prune", "--no-tags", "origin", *refspecs, git_dir=git_dir)


def _origin(git: HostGit, git_dir: Path) -> str | None:
    try:
        return git.run("config", "--get", "remote.origin.url", git_dir=git_dir)
    except WorkspaceFailed:
        return None


def _default_branch(git: HostGit, git_dir: Path) -> str | None:
    """The remote's default branch (its HEAD), or None when HEAD names no branch."""
    for line in git.run("ls-remote", "--symref", "origin", "HEAD", git_dir=git_dir).splitlines():
        target, _, name = line.partition("\t")
        if name == "HEAD" and target.startswith("ref: refs/heads/"):
            return target.removeprefix("ref: refs/heads/")
    return None


def _rev(git: HostGit, git_dir: Path, name: str) -> str | None:
    try:
        return git.run(
            "rev-parse", "--verify", "--quiet", "--end-of-options", f"{name}^{{commit}}", git_dir=git_dir
        )
    except WorkspaceFailed:
        return None


def _resolve(git: HostGit, git_dir: Path, ref: str) -> str:
    """The commit ``ref`` names: a branch, a tag, or a commit id (fetched by id if needed)."""
    candidates = [f"refs/heads/{ref}", f"refs/tags/{ref}"]
    if 4 <= len(ref) <= 40 and set(ref) <= _HEX:
        candidates.append(ref)
    revision = next((rev for rev in (_rev(git, git_dir, name) for name in candidates) if rev), None)
    if revision is None:
        # Not under a branch or tag: a commit id or a full ref such as refs/pull/1/head.
        try:
            git.run("fetch", "--quiet", "--no-tags", "origin", ref, git_dir=git_dir)
        except WorkspaceFailed:
            revision = None
        else:
            revision = _rev(git, git_dir, "FETCH_HEAD")
    if revision is None:
        raise WorkspaceFailed(
            f"ref {ref!r} was not found in the repository",
            hint="Check the branch, tag or commit name and redeploy.",
            details={"ref": ref},
        )
    # Keeps the commit's objects in envhub's repository and lets the next step copy them.
    git.run("update-ref", "refs/envhub/deploy", revision, git_dir=git_dir)
    return revision


def _is_branch(git: HostGit, git_dir: Path, name: str, revision: str) -> bool:
    return _rev(git, git_dir, f"refs/heads/{name}") == revision


def _build(
    env_dir: Path, git_dir: Path, *, repo_url: str, branch: str | None, default: str | None, revision: str
) -> None:
    """A fresh workspace in ``workspace.new``: the environment's own repository, checked out.

    Everything here happens in folders no sandbox can reach; its objects are
    copied from envhub's repository over the local transport (no hard links).
    """
    staging = env_dir / _STAGING
    shutil.rmtree(staging, ignore_errors=True)
    local = HostGit(cwd=env_dir, protocols=("file",))
    local.init(staging, bare=False)
    dot_git = staging / ".git"
    local.run("config", "remote.origin.url", repo_url, git_dir=dot_git)
    local.run("config", "remote.origin.fetch", "+refs/heads/*:refs/remotes/origin/*", git_dir=dot_git)
    refspecs = (
        "+refs/heads/*:refs/remotes/origin/*",
        "+refs/tags/*:refs/tags/*",
        "+refs/envhub/deploy:refs/envhub/deploy",
    )
    local.run("fetch", "--quiet", "--no-tags", git_dir.resolve().as_uri(), *refspecs, git_dir=dot_git)
    if default is not None:
        local.run(
            "symbolic-ref", "refs/remotes/origin/HEAD", f"refs/remotes/origin/{default}", git_dir=dot_git
        )
    if branch is not None:
        checkout = ["-B", branch, f"refs/remotes/origin/{branch}"]
    else:
        checkout = ["--detach", revision]
    local.run("checkout", "--quiet", "--force", *checkout, git_dir=dot_git, work_tree=staging)
    local.run("update-ref", "-d", "refs/envhub/deploy", git_dir=dot_git)
    (dot_git / "info").mkdir(exist_ok=True)
    (dot_git / "info" / "exclude").write_text(f"/{PREVIOUS}/\n")


def _replace(env_dir: Path) -> bool:
    """Put ``workspace.new`` in the workspace's place; the old one goes inside it.

    Only renames, relative to folders opened without following symlinks: an
    entry the environment planted is moved as the entry it is, never followed.
    The one from before (``.envhub-previous`` inside the old workspace) is moved
    out of every sandbox's reach first and removed. Returns whether the old
    workspace was kept.
    """
    parent = os.open(env_dir, _DIRECTORY)
    try:
        try:
            old = os.open(WORKSPACE, _DIRECTORY, dir_fd=parent)
        except FileNotFoundError:
            os.rename(_STAGING, WORKSPACE, src_dir_fd=parent, dst_dir_fd=parent)
            return False
        try:
            os.rename(PREVIOUS, _TRASH + secrets.token_hex(8), src_dir_fd=old, dst_dir_fd=parent)
        except FileNotFoundError:
            pass
        finally:
            os.close(old)
        staging = os.open(_STAGING, _DIRECTORY, dir_fd=parent)
        try:
            os.rename(WORKSPACE, PREVIOUS, src_dir_fd=parent, dst_dir_fd=staging)
            kept = True
        except OSError:  # the checkout has an entry of that name itself
            os.rename(WORKSPACE, _TRASH + secrets.token_hex(8), src_dir_fd=parent, dst_dir_fd=parent)
            kept = False
        finally:
            os.close(staging)
        os.rename(_STAGING, WORKSPACE, src_dir_fd=parent, dst_dir_fd=parent)
        return kept
    finally:
        os.close(parent)


def built_from(env_dir: Path) -> str | None:
    """The commit the workspace was last built from (None: an empty workspace)."""
    recorded = _recorded(env_dir)
    return recorded.revision if recorded is not None else None


def committed_file(env_dir: Path, path: str, *, limit: int) -> str | None:
    """The text of ``path`` in the commit the workspace was built from; None when it has no such file.

    Read from envhub's own repository, never from the workspace (which the
    environment may have changed): a file of the commit, not a file of the
    environment. A symlink is not followed (its text is its target); a file
    larger than ``limit`` bytes is refused before it is read.
    """
    recorded = _recorded(env_dir)
    git_dir = env_dir / _GIT
    if recorded is None or not (git_dir / "HEAD").is_file():
        return None
    git = HostGit(cwd=env_dir, protocols=("file",))
    return git.read_file(git_dir, recorded.revision, path, limit=limit)


def _recorded(env_dir: Path) -> Checkout | None:
    try:
        return Checkout(**json.loads((env_dir / _RECORD).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _sweep(env_dir: Path) -> None:
    if not env_dir.is_dir():
        return
    with os.scandir(env_dir) as entries:
        for entry in entries:
            if not entry.name.startswith(_TRASH):
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:  # a symlink or file the environment planted: the entry goes, its target stays
                Path(entry.path).unlink(missing_ok=True)


def remove(env_dir: Path) -> None:
    shutil.rmtree(env_dir, ignore_errors=True)
