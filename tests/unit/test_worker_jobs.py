"""The worker runs every job envhub enqueues: a job it refuses is lost work (the reconciler
re-drives it into the same refusal)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import envhub
from envhub.jobs.worker import RUNNABLE


def _enqueued_job_names() -> set[str]:
    """Every ``*_JOB = "envhub.jobs...."`` constant in envhub's sources."""
    found = set()
    for path in Path(envhub.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Assign)
                and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id.endswith("_JOB")
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
                and node.value.value.startswith("envhub.jobs.")
            ):
                found.add(node.value.value)
    return found


def test_every_job_envhub_enqueues_is_runnable_by_the_worker() -> None:
    names = _enqueued_job_names()
    assert "envhub.jobs.releases.render_artifact" in names
    assert names <= RUNNABLE


def test_every_runnable_job_is_a_function() -> None:
    for name in RUNNABLE:
        module, _, function = name.rpartition(".")
        assert callable(getattr(importlib.import_module(module), function)), name
