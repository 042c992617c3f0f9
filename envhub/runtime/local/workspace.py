"""An environment's workspace folder: empty, or a git checkout at a ref."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from envhub.errors import WorkspaceFailed

_GIT_TIMEOUT = 300


def _git(*args: str, cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=_GIT_TIMEOUT,
            check=False,
            env={"GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/local/bin:/usr/bin:/bin"},
        )
    except FileNotFoundError as exc:
        raise WorkspaceFailed("git is not installed on this machine") from exc
    except subprocess.TimeoutExpired as exc:
        raise WorkspaceFailed(f"git {args[0]} took longer than {_GIT_TIMEOUT}s") from exc
    if done.returncode != 0:
        raise WorkspaceFailed(
            f"git {args[0]} failed: {done.stderr.strip()[-500:] or done.stdout.strip()[-500:]}",
            details={"command": "git " + " ".join(args)},
        )
    return done.stdout.strip()


def prepare(workspace: Path, *, repo_url: str | None, ref: str | None) -> str:
    """Make ``workspace`` hold ``repo_url`` at ``ref``; returns what was done.

    Idempotent: an existing checkout of the same repository is fetched and moved
    to the ref instead of cloned again.
    """
    if repo_url is None:
        workspace.mkdir(parents=True, exist_ok=True)
        return "empty workspace"
    if (workspace / ".git").is_dir():
        current = _git("remote", "get-url", "origin", cwd=workspace)
        if current != repo_url:
            shutil.rmtree(workspace)
    if not (workspace / ".git").is_dir():
        if workspace.exists():
            shutil.rmtree(workspace)
        workspace.parent.mkdir(parents=True, exist_ok=True)
        _git("clone", "--quiet", "--no-tags", "--", repo_url, str(workspace))
    else:
        _git("fetch", "--quiet", "origin", cwd=workspace)
    target = ref or _default_branch(workspace)
    revision = _resolve(workspace, target)
    _git("checkout", "--quiet", "--force", "--detach", revision, cwd=workspace)
    return f"{repo_url} at {target} ({revision[:12]})"


def _default_branch(workspace: Path) -> str:
    try:
        head = _git("symbolic-ref", "--short", "refs/remotes/origin/HEAD", cwd=workspace)
    except WorkspaceFailed:
        return "HEAD"
    return head.removeprefix("origin/")


def _resolve(workspace: Path, ref: str) -> str:
    for candidate in (f"origin/{ref}", ref):
        try:
            return _git("rev-parse", "--verify", "--quiet", f"{candidate}^{{commit}}", cwd=workspace)
        except WorkspaceFailed:
            continue
    raise WorkspaceFailed(
        f"ref {ref!r} was not found in the repository",
        hint="Check the branch, tag or commit name and redeploy.",
        details={"ref": ref},
    )


def remove(workspace: Path) -> None:
    shutil.rmtree(workspace, ignore_errors=True)
