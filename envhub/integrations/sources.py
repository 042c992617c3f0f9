"""What a deployment environment is built from: the project's repository at one commit.

A deployment names an exact commit, never a branch, so that what was
approved is what runs and the same record renders the same objects again.
:func:`checkout` fetches that one commit with :class:`~envhub.hostgit.HostGit`
(no hooks, filters or config of the repository's run) into a plain tree with
no ``.git`` in it; :func:`read_manifests` and :func:`inside` read paths of that
tree without letting a path or a symlink of the repository reach the rest of
the machine.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path, PurePosixPath

from envhub.domain.repos import require_allowed
from envhub.errors import CommitInvalid, SourceFetchFailed, SourcePathInvalid
from envhub.hostgit import HostGit

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
MAX_MANIFEST_BYTES = 5 * 1024 * 1024
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def checkout(
    repo_url: str,
    commit: str,
    *,
    into: Path,
    token: str | None,
    protocols: tuple[str, ...] = ("https", "ssh"),
    git_config: Path | None = None,
) -> Path:
    """Fetch exactly ``commit`` of ``repo_url`` and check its files out into ``into``; returns ``into``.

    ``commit`` is a full 40-hex commit id (upper case is accepted and read as
    lower case); anything else, a branch, tag or short id included, raises
    :class:`CommitInvalid` before any network access. ``repo_url`` must be one
    envhub fetches (:func:`envhub.domain.repos.require_allowed`; local paths
    only when ``protocols`` holds ``file``), else :class:`RepoUrlRefused`.
    ``token`` authenticates https (as :class:`HostGit` does, never on a command
    line or in a file); ``git_config`` is the operator's git config
    (``ENVHUB_GIT_CONFIG``).

    The commit is fetched alone (``--depth 1``); a server that refuses to
    serve a commit by id is asked for its branches and tags instead, and the
    commit must be among them. ``into`` must be missing or an empty folder;
    afterwards it holds the commit's files and no repository (envhub's bare
    repository lives in a temporary folder, removed on return). Any git
    failure (unreachable, refused credentials, unknown commit) raises
    :class:`SourceFetchFailed` with git's message.
    """
    wanted = commit.strip().lower()
    if not _COMMIT.fullmatch(wanted):
        raise CommitInvalid(
            f"{commit[:80]!r} is not a full commit id: a deployment names its commit by all 40 hex digits",
            details={"commit": commit[:80]},
        )
    require_allowed(repo_url, allow_local="file" in protocols)
    if into.exists() and (not into.is_dir() or any(into.iterdir())):
        raise ValueError(f"{into} must be missing or an empty folder")
    into.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="envhub-source-"))
    try:
        git = HostGit(
            cwd=scratch, protocols=protocols, token=token, config_file=git_config, failure=SourceFetchFailed
        )
        git_dir = scratch / "repo.git"
        git.init(git_dir, bare=True)
        git.fetch_commit(git_dir, repo_url, wanted)
        git.run("checkout", "--quiet", "--force", "--detach", wanted, git_dir=git_dir, work_tree=into)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return into


def inside(tree: Path, path: str) -> Path:
    """``path`` (relative, ``/``-separated) resolved inside ``tree``, which it must exist in.

    Raises :class:`SourcePathInvalid` naming the path for an absolute path,
    a ``..`` part, a symlink on the way leading out of ``tree`` (reason
    ``escapes``), and for nothing there (``missing``). ``""`` and ``"."``
    name ``tree`` itself.
    """
    parts = PurePosixPath(path)
    if parts.is_absolute() or path.startswith("\\") or ".." in parts.parts or "\\" in path:
        raise _refused(path, "escapes", "must be a relative path inside the repository, without '..'")
    root = tree.resolve()
    target = root.joinpath(*parts.parts)
    if not _within(root, target):
        raise _refused(path, "escapes", "leads out of the repository through a symlink")
    if not target.exists():
        raise _refused(path, "missing", "does not exist in the repository at this commit")
    return target


def read_manifests(tree: Path, path: str) -> str:
    """The Kubernetes manifests at ``path`` in ``tree`` as one multi-document YAML text.

    ``path`` names a file (read whatever its suffix) or a folder, whose
    ``*.yaml``, ``*.yml`` and ``*.json`` files are read recursively, sorted by
    their path; symlinked folders are not entered. Each file becomes its own
    document(s), preceded by ``---`` and a ``# Source: <path>`` comment (JSON
    is YAML, so a JSON object is one document). The path is checked by
    :func:`inside`; a symlinked file leading out of ``tree`` is refused
    (``escapes``), a folder without manifest files is ``empty``, more than
    :data:`MAX_MANIFEST_BYTES` in all is ``too_large``, and a file that is not
    UTF-8 is ``not_text``: each a :class:`SourcePathInvalid` naming the path.
    Nothing is parsed here.
    """
    root = tree.resolve()
    target = inside(tree, path)
    files = [target] if target.is_file() else _manifest_files(root, target)
    if not files:
        raise _refused(path, "empty", "holds no .yaml, .yml or .json file")
    total = 0
    for file in files:
        if not _within(root, file):
            raise _refused(_relative(root, file), "escapes", "is a symlink leading out of the repository")
        if not file.is_file():
            raise _refused(_relative(root, file), "missing", "is a symlink to nothing")
        total += file.stat().st_size
        if total > MAX_MANIFEST_BYTES:
            raise _refused(path, "too_large", f"holds more than {MAX_MANIFEST_BYTES // (1024 * 1024)} MiB")
    documents = []
    for file in files:
        name = _relative(root, file)
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise _refused(name, "not_text", "is not UTF-8 text") from None
        documents.append(f"---\n# Source: {name}\n{text.lstrip(chr(0xFEFF))}".rstrip("\n") + "\n")
    return "".join(documents)


def _manifest_files(root: Path, folder: Path) -> list[Path]:
    found = []
    for current, folders, names in os.walk(folder, followlinks=False):
        for name in folders:
            entry = Path(current) / name
            if entry.is_symlink() and not _within(root, entry):
                raise _refused(
                    _relative(root, entry), "escapes", "is a symlink leading out of the repository"
                )
        for name in names:
            entry = Path(current) / name
            # A dangling symlink is kept, to be refused by name; a symlink to a folder is not a file.
            if entry.suffix.lower() in MANIFEST_SUFFIXES and (entry.is_file() or not entry.exists()):
                found.append(entry)
    return sorted(found, key=lambda entry: _relative(root, entry))


def _within(root: Path, entry: Path) -> bool:
    return entry.resolve().is_relative_to(root)


def _relative(root: Path, entry: Path) -> str:
    return (Path(os.path.abspath(entry))).relative_to(root).as_posix()


def _refused(path: str, reason: str, problem: str) -> SourcePathInvalid:
    return SourcePathInvalid(f"{path or '.'!s} {problem}", details={"path": path, "reason": reason})
