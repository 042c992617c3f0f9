"""The image recipe (deploy/Dockerfile) and its entry point, without a container engine.

There is no Docker engine on these machines, so the Dockerfile is linted with
hadolint and checked against its build context's ignore file; the entry point
runs here as it runs in the image.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.conftest import ROOT
from tests.support.components import require_path

DOCKERFILE = ROOT / "deploy" / "Dockerfile"
IGNORE = ROOT / "deploy" / "Dockerfile.dockerignore"
ENTRYPOINT = ROOT / "deploy" / "docker" / "entrypoint.py"


@pytest.fixture(scope="session")
def hadolint() -> Path:
    return require_path("hadolint")


def test_hadolint_finds_nothing(hadolint: Path) -> None:
    done = subprocess.run(
        [str(hadolint), "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def copied_sources() -> list[str]:
    """What the Dockerfile copies from the build context (not from other stages)."""
    sources = []
    for line in DOCKERFILE.read_text().splitlines():
        parts = line.split()
        if parts[:1] == ["COPY"] and not any(p.startswith("--from=") for p in parts):
            sources += [p for p in parts[1:-1] if not p.startswith("--")]
    return sources


def test_the_build_context_holds_what_the_image_copies_and_nothing_else() -> None:
    lines = [line.strip() for line in IGNORE.read_text().splitlines()]
    patterns = [line for line in lines if line and not line.startswith("#")]
    assert patterns[0] == "*"  # an allowlist: nothing enters the context unless named
    allowed = [p[1:].rstrip("/") for p in patterns if p.startswith("!")]
    sources = copied_sources()
    assert sources, "no COPY found"
    for source in sources:
        source = source.rstrip("/")
        assert any(source == a or source.startswith(f"{a}/") for a in allowed), f"{source} is ignored"
        assert (ROOT / source).exists(), source
    for secret_or_bulky in (".env", ".venv", ".git", "var", ".web", ".tools", "tests"):
        assert not any(secret_or_bulky == a or a.startswith(f"{secret_or_bulky}/") for a in allowed)


def test_the_image_runs_as_a_non_root_user_with_tini() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^USER 10001:10001$", text, re.MULTILINE)
    assert 'ENTRYPOINT ["tini", "--", "python", "/app/deploy/docker/entrypoint.py"]' in text
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim$", text, re.MULTILINE)
    # The frontend is built into the image, at image build time.
    assert "reflex export --frontend-only --no-zip --env prod" in text
    # bun as `make setup` gets it: the version the Makefile pins.
    makefile_bun = re.search(r"^BUN_VERSION := (\S+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert makefile_bun is not None
    assert f"ARG BUN_VERSION={makefile_bun[1]}" in text
    # No secret in any layer: no ENV or ARG names one.
    for line in text.splitlines():
        if line.startswith(("ENV", "ARG", "    ")):
            assert not re.search(r"(SECRET|PASSWORD|TOKEN|DATABASE_URL|REDIS_URL)", line), line


def run_entrypoint(
    tmp_path: Path, *args: str, entrypoint: Path = ENTRYPOINT
) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(tmp_path),
        "ENVHUB_MODE": "development",
        "ENVHUB_DATA_DIR": str(tmp_path / "data"),
        "ENVHUB_DATABASE_URL": f"sqlite:///{tmp_path / 'envhub.db'}",
    }
    return subprocess.run(
        [sys.executable, str(entrypoint), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_migrate_applies_the_migrations(tmp_path: Path) -> None:
    done = run_entrypoint(tmp_path, "migrate")
    assert done.returncode == 0, done.stderr
    assert "database is up to date" in done.stdout
    assert (tmp_path / "envhub.db").stat().st_size > 0


def test_other_commands_run_as_given(tmp_path: Path) -> None:
    done = run_entrypoint(tmp_path, "python", "-c", "import os; print(os.getcwd())")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(ROOT)  # the app directory, like the image's /app


def test_web_refuses_to_start_without_the_prebuilt_frontend(tmp_path: Path) -> None:
    # The entry point in a tree with no .web/: as if the image skipped `reflex export`.
    app = tmp_path / "app"
    (app / "deploy" / "docker").mkdir(parents=True)
    copy = shutil.copy(ENTRYPOINT, app / "deploy" / "docker" / "entrypoint.py")
    done = run_entrypoint(tmp_path, "web", entrypoint=Path(copy))
    assert done.returncode == 2
    assert "no prebuilt frontend" in done.stderr
