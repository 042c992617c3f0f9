"""The releases benchmark still runs: at its smallest, and its arithmetic.

``make bench-releases`` is not part of the suite (it takes minutes and wants a
quiet machine), so this runs it once at its smallest (a 14-object chart, two
projects installed and one updated along each path, one worker), and
checks the report's counting on made-up samples.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bench.apiserver_audit import AuditLog
from bench.release_report import Sample, report
from bench.servers import ROOT
from tests.support.components import require, require_path


def test_the_benchmark_releases_along_every_path_and_reports_each() -> None:
    require("cluster")
    require("postgresql")
    require_path("helm")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.releases",
            "--rounds",
            "2",
            "--installs",
            "2",
            "--apps",
            "1",
            "--workers",
            "1",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = [line.split() for line in done.stdout.splitlines()]
    for path in (("envhub", "staging"), ("envhub", "production"), ("helm",)):
        for phase, count in (("install", "2"), ("update", "1")):  # two projects installed, one updated
            row = (*path, phase, count)
            assert any(tuple(line[: len(row)]) == row for line in lines), (row, done.stdout)
    row = ("helm+quota", "install", "2")  # helm under envhub's quota, for installs only
    assert any(tuple(line[: len(row)]) == row for line in lines), (row, done.stdout)
    assert "Releases of a 14-object Helm chart" in done.stdout


def _event(agent: str, verb: str, resource: str | None, at: str, stage: str = "ResponseComplete") -> str:
    ref = {"resource": resource, "namespace": "ns"} if resource else None
    return json.dumps(
        {"stage": stage, "userAgent": agent, "verb": verb, "objectRef": ref, "requestURI": "/apis/apps/v1",
         "requestReceivedTimestamp": at}
    )  # fmt: skip


def test_requests_are_told_apart_by_client_and_counted_in_their_window(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    log.write_text(
        "\n".join(
            [
                _event("OpenAPI-Generator/31.0.0/python", "patch", "deployments", "2026-01-01T00:00:01Z"),
                _event("OpenAPI-Generator/31.0.0/python", "get", None, "2026-01-01T00:00:02Z"),
                _event("Helm/4.1.4", "list", "pods", "2026-01-01T00:00:02Z"),
                _event("Helm/4.1.4", "list", "pods", "2026-01-01T00:00:02Z", stage="ResponseStarted"),
                _event("kube-controller-manager/v1.20.2", "update", "pods", "2026-01-01T00:00:02Z"),
                _event("Helm/4.1.4", "get", "pods", "2026-01-01T00:00:09Z"),
            ]
        )
        + "\n"
    )
    audit = AuditLog(log)
    start = 1767225600.0  # 2026-01-01T00:00:00Z
    assert [s.label for s in audit.between(start, start + 5, "envhub")] == ["patch deployments", "discover"]
    assert [s.label for s in audit.between(start, start + 5, "helm")] == ["list pods"]

    def sample(path: str, round_: int, seconds: float, requests: int) -> Sample:
        made = Sample(path, seconds=seconds, window=(0, 0), load=0.5, round=round_)
        made.served = audit.between(start, start + 5, "helm")[:1] * requests
        return made

    text = report(
        [sample("envhub staging", 1, 3.0, 10), sample("helm", 1, 2.0, 40), sample("helm", 2, 1.0, 20)],
        objects=50,
        workers=2,
    )
    staging = next(line.split() for line in text.splitlines() if line.startswith("envhub staging  install"))
    assert staging[4:9] == ["3.00", "3.00", "1.50x", "10.0", "0.25x"]
    verdict = next(
        line for line in text.splitlines() if line.startswith("envhub staging") and "helm  " in line
    )
    assert "MISSED (3.00s vs 2.00s)" in verdict
    assert "met (10 vs 40)" in verdict
