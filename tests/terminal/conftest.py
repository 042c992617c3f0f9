"""Terminal tests: a real envhub API app under Granian (as in production), real shells,
real sign-in. The fixtures are thin: tests/terminal/harness.py holds what they build.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import Session

from envhub.config import Settings
from envhub.models import Environment, Project
from tests.support.world import World
from tests.terminal.harness import People, Servers, make_environment, servers


@pytest.fixture
def environment(session: Session, world: World, project: Project, settings: Settings) -> Environment:
    return make_environment(session, world, project, settings)


@pytest.fixture
def people(settings: Settings, session: Session, world: World) -> People:
    return People(settings, session, world)


@pytest.fixture
def serve(settings: Settings, tmp_path: Path) -> Iterator[Servers]:
    """``serve(grace=..., ping=..., **env)`` starts the app and returns its base URL; ``serve.stop(url)``."""
    with servers(settings, tmp_path) as start:
        yield start
