"""git as the host runs it: nothing a repository or an environment wrote runs here.

An environment writes its workspace, and anyone who can push writes the
repository, so neither gets to configure the git that envhub runs. Every call
names its repository (``--git-dir``, plus ``--work-tree`` to check out) instead
of discovering one from a folder, and runs from a folder no sandbox mounts.
git reads no system or global config and only the repository config envhub
wrote itself, which names no filter driver, include or hook; the command line
also points hooks at /dev/null, turns fsmonitor off, never follows submodules
and checks every received object. A ``.gitattributes`` in a checkout can name
a filter, but with no driver configured nothing runs. Transports are limited
to https and ssh (and local files only where the operator allows them).

The local runtime's workspaces and the deployment sources
(:mod:`envhub.integrations.sources`) both fetch with it, so it sits low, next
to :mod:`envhub.errors`, and imports nothing else of envhub.
"""

from __future__ import annotations

import base64
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from envhub.errors import EnvhubError, WorkspaceFailed

TIMEOUT = 300
_PATH = "/usr/local/bin:/usr/bin:/bin"

# Given to every call, so they hold whatever the repository's config says.
HARDENING = (
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "core.untrackedCache=false",
    "core.attributesFile=/dev/null",
    "core.sshCommand=ssh -o BatchMode=yes",
    "credential.helper=",
    "submodule.recurse=false",
    "fetch.recurseSubmodules=false",
    "transfer.fsckObjects=true",
    "gc.auto=0",
    "maintenance.auto=false",
    "safe.bareRepository=explicit",
    "init.defaultBranch=main",
    "advice.detachedHead=false",
)


@dataclass(frozen=True, slots=True)
class HostGit:
    """Runs git for one environment.

    ``cwd`` is a folder no sandbox mounts; ``protocols`` are the only
    transports git may use (``GIT_ALLOW_PROTOCOL``). ``token`` authenticates
    https fetches (HTTP basic, as ``username``) through the environment of the
    git process: it is never written to a config file or put on a command line.
    A git that fails, is missing or runs past the timeout raises ``failure``
    (the caller's error class, so the code says what could not be fetched).
    """

    cwd: Path
    protocols: tuple[str, ...] = ("https", "ssh")
    token: str | None = field(default=None, repr=False)
    username: str = "x-access-token"
    # The operator's own git config (ENVHUB_GIT_CONFIG: proxy, CA bundle); read in
    # place of a global config, below the command line's hardening.
    config_file: Path | None = None
    failure: type[EnvhubError] = WorkspaceFailed

    def run(self, *args: str, git_dir: Path, work_tree: Path | None = None) -> str:
        located = [f"--git-dir={git_dir}", *([f"--work-tree={work_tree}"] if work_tree else [])]
        return self._run([*located, *args], what=args[0])

    def init(self, path: Path, *, bare: bool) -> None:
        """A new repository at ``path`` with no template (so no sample hooks either)."""
        self._run(["init", "--quiet", "--template=", *(["--bare"] if bare else []), str(path)], what="init")

    def fetch_commit(self, git_dir: Path, repo_url: str, commit: str) -> None:
        """Fetch exactly ``commit`` (40 hex digits) of ``repo_url`` into ``git_dir``.

        Alone (``--depth 1``) first; a server that refuses to serve a commit by id
        is asked for its branches and tags instead, and the commit must be among
        them, else ``failure`` names it.
        """
        fetch = ("fetch", "--quiet", "--no-tags", "--no-write-fetch-head")
        try:
            self.run(*fetch, "--depth", "1", "--end-of-options", repo_url, commit, git_dir=git_dir)
        except EnvhubError as by_id:
            # Servers that keep uploadpack.allowReachableSHA1InWant off (protocol v0)
            # serve only what they advertise: take their branches and tags.
            refspecs = ("+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*")
            try:
                self.run(*fetch, "--end-of-options", repo_url, *refspecs, git_dir=git_dir)
            except EnvhubError:
                raise by_id from None
        try:
            self.run("cat-file", "-e", f"{commit}^{{commit}}", git_dir=git_dir)
        except EnvhubError:
            raise self.failure(
                f"commit {commit} is not in the repository (fetched its branches and tags)",
                details={"commit": commit},
            ) from None

    def read_file(self, git_dir: Path, revision: str, path: str, *, limit: int) -> str | None:
        """The text of ``path`` at ``revision``; None when it has no such file (a symlink is not
        followed: its text is its target). A file larger than ``limit`` bytes raises ``failure``
        before it is read."""
        listed = self.run("ls-tree", "--full-tree", revision, "--", path, git_dir=git_dir)
        mode_type_id, _, name = listed.partition("\t")
        fields = mode_type_id.split()
        if name != path or len(fields) != 3 or fields[1] != "blob":
            return None
        size = int(self.run("cat-file", "-s", fields[2], git_dir=git_dir))
        if size > limit:
            raise self.failure(
                f"{path} is larger than {limit // 1024} KiB",
                hint="Keep the file small; envhub reads it whole.",
                details={"path": path, "size": size},
            )
        return self.run("cat-file", "blob", fields[2], git_dir=git_dir)

    def _run(self, args: list[str], *, what: str) -> str:
        options = [arg for setting in HARDENING for arg in ("-c", setting)]
        try:
            done = subprocess.run(
                ["git", *options, *args],
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
                check=False,
                env=self._environment(),
            )
        except FileNotFoundError as exc:
            raise self.failure("git is not installed on this machine") from exc
        except subprocess.TimeoutExpired as exc:
            raise self.failure(f"git {what} took longer than {TIMEOUT}s") from exc
        if done.returncode != 0:
            output = done.stderr.strip()[-500:] or done.stdout.strip()[-500:]
            raise self.failure(f"git {what} failed: {output}", details={"command": f"git {what}"})
        return done.stdout.strip()

    def _environment(self) -> dict[str, str]:
        env = {
            "PATH": _PATH,
            "LANG": "C.UTF-8",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": str(self.config_file or "/dev/null"),
            "GIT_ATTR_NOSYSTEM": "1",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_NO_REPLACE_OBJECTS": "1",
            "GIT_ALLOW_PROTOCOL": ":".join(self.protocols),
            "GIT_PROTOCOL_FROM_USER": "0",
        }
        if "HOME" in os.environ:  # for ~ in the operator's config; ~/.gitconfig itself is not read
            env["HOME"] = os.environ["HOME"]
        if self.token:
            basic = base64.b64encode(f"{self.username}:{self.token}".encode()).decode()
            # Sent to the repository's host only: a redirect elsewhere would carry it along.
            settings = {"http.extraHeader": f"Authorization: Basic {basic}", "http.followRedirects": "false"}
            env["GIT_CONFIG_COUNT"] = str(len(settings))
            for index, (key, value) in enumerate(settings.items()):
                env[f"GIT_CONFIG_KEY_{index}"] = key
                env[f"GIT_CONFIG_VALUE_{index}"] = value
        return env
