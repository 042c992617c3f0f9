"""Fixtures for rendering: the pinned helm and a chart repository on loopback.

helm is installed once into a cache outside the checkout (tests/support/tools.py,
``make test-tools``); without it the tests fail naming it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.charts import ChartRepo, serve_chart_repo
from tests.support.components import require_path


@pytest.fixture(scope="session")
def helm_binary() -> Path:
    return require_path("helm")


@pytest.fixture
def chart_repo(tmp_path: Path, helm_binary: Path) -> Iterator[ChartRepo]:
    """Serves chart ``sub`` at 0.1.0 and 0.2.0."""
    with serve_chart_repo(tmp_path, helm_binary) as repo:
        yield repo
