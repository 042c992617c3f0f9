"""A git repository on disk whose commits a test or a benchmark makes (a project's repository)."""

from __future__ import annotations

import subprocess
from pathlib import Path


class WorkRepo:
    """``main`` in a fresh repository at ``path``; files are written, then committed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True)
        self.git("init", "--quiet", "--initial-branch=main")

    def git(self, *args: str) -> str:
        identity = ["-c", "user.name=envhub-tests", "-c", "user.email=tests@example.com"]
        done = subprocess.run(
            ["git", *identity, *args], cwd=self.path, check=True, capture_output=True, text=True
        )
        return done.stdout.strip()

    def write(self, files: dict[str, str]) -> None:
        for name, text in files.items():
            target = self.path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)

    def commit(self, message: str, files: dict[str, str] | None = None) -> str:
        """Commit everything in the folder (with ``files`` written first); the new commit's id."""
        self.write(files or {})
        self.git("add", "--all")
        self.git("commit", "--quiet", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")
