"""Fixtures for the deploy tests: helm (and kubectl, hadolint) from the tools cache, and chart rendering.

helm is pinned and installed once into a cache outside the checkout
(tests/support/tools.py, ``make test-tools``); without it the tests fail.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import tools
from tests.support.components import require

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "envhub"
PRODUCTION_VALUES = Path(__file__).resolve().parent / "values-production.yaml"
RELEASE = "envhub"
NAMESPACE = "envhub"

Render = Callable[..., list[dict[str, Any]]]


@pytest.fixture(scope="session")
def kube_tools() -> tools.KubeTools:
    require("helm")
    require("kubectl")
    return tools.kube_tools()


@pytest.fixture(scope="session")
def helm(kube_tools: tools.KubeTools) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run helm; returns the completed process (check it yourself)."""

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(kube_tools.helm), *args], capture_output=True, text=True, timeout=60, check=False
        )

    return run


def template_args(
    values: Sequence[Path] = (), sets: Sequence[str] = (), kube_version: str | None = None
) -> list[str]:
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    for path in values:
        args += ["--values", str(path)]
    for assignment in sets:
        args += ["--set", assignment]
    if kube_version:
        args += ["--kube-version", kube_version]
    return args


@pytest.fixture(scope="session")
def render(helm: Callable[..., subprocess.CompletedProcess[str]]) -> Render:
    """``helm template`` the chart; the rendered objects, in order."""

    def run(
        values: Sequence[Path] = (), sets: Sequence[str] = (), kube_version: str | None = None
    ) -> list[dict[str, Any]]:
        done = helm(*template_args(values, sets, kube_version))
        assert done.returncode == 0, done.stderr
        return [doc for doc in yaml.safe_load_all(done.stdout) if doc]

    return run


@pytest.fixture(scope="session")
def default_objects(render: Render) -> list[dict[str, Any]]:
    return render()


@pytest.fixture(scope="session")
def production_objects(render: Render) -> list[dict[str, Any]]:
    return render(values=[PRODUCTION_VALUES])


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]
