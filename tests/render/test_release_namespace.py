"""A chart that places its objects in ``.Release.Namespace`` (most charts do) renders for
envhub, whose runtime puts every object in the environment's own namespace."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from envhub.config import Settings, override_settings
from envhub.domain import releases as rel
from envhub.domain.kube.manifests import parse_manifests
from envhub.errors import ManifestRejected
from envhub.integrations import rendering

TEMPLATE = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: placed
  namespace: {{ .Release.Namespace }}
data: {where: {{ .Release.Namespace | quote }}}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: elsewhere
  namespace: {{ .Values.other }}
"""


def _repo(folder: Path, other: str) -> tuple[Path, str]:
    chart = folder / "chart"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: shop\nversion: 1.0.0\n")
    (chart / "values.yaml").write_text(f"other: {other}\n")
    (chart / "templates" / "objects.yaml").write_text(TEMPLATE)

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
            cwd=folder, check=True, capture_output=True, text=True,
        ).stdout.strip()  # fmt: skip

    git("init", "--quiet", "--initial-branch=main")
    git("add", "--all")
    git("commit", "--quiet", "-m", "chart")
    return folder, git("rev-parse", "HEAD")


def _render(helm_binary: Path, tmp_path: Path, other: str) -> rel.RenderedArtifact:
    repo, sha = _repo(tmp_path / "repo", other)
    request = rel.RenderRequest(
        project="shop",
        commit=sha,
        ref="main",
        repo_url=str(repo),
        source=rel.ReleaseSource(kind=rel.SourceKind.helm, path="chart"),
        environments=(
            rel.DeploymentEnvironment(name="staging"),
            rel.DeploymentEnvironment(name="production"),
        ),
        images={},
        base_spec={},
        token=None,
    )
    settings = Settings(data_dir=tmp_path / "data", allow_local_repos=True, helm_binary=str(helm_binary))
    with override_settings(settings):
        return rendering.render(request)


def test_objects_in_the_release_namespace_go_to_the_environments_own(
    helm_binary: Path, tmp_path: Path
) -> None:
    made = _render(helm_binary, tmp_path, other='""')  # "elsewhere" names no namespace here
    for name in ("staging", "production"):
        objects = {o["metadata"]["name"]: o for o in parse_manifests(made.rendered[name])}
        assert {n: o["metadata"].get("namespace") for n, o in objects.items()} == {
            "placed": None,
            "elsewhere": None,
        }
        assert objects["placed"]["data"] == {"where": name}  # the chart saw its release namespace


def test_an_object_in_another_namespace_is_still_refused(helm_binary: Path, tmp_path: Path) -> None:
    with pytest.raises(ManifestRejected, match="names namespace 'kube-system'"):
        _render(helm_binary, tmp_path, other="kube-system")
