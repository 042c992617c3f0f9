"""Rendering charts with the real (pinned) helm: local charts with dependencies, pulled charts, errors.

A chart folder depends on a subchart by ``file://`` and on another from a
chart repository served on loopback; a pulled chart's archive digest is
recorded; helm's failures come back as envhub errors quoting helm.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from envhub.errors import ChartRefInvalid, ChartRenderFailed, HelmUnavailable
from envhub.integrations.helm import ChartRef, Helm, LocalChart, OciChart, RenderedChart, RepoChart
from tests.support.charts import ChartRepo, write_chart
from tests.support.oci_registry import serve_oci_registry


def _objects(rendered: RenderedChart) -> dict[str, dict[str, Any]]:
    docs = [doc for doc in yaml.safe_load_all(rendered.manifests) if doc]
    return {f"{doc['kind']}/{doc['metadata']['name']}": doc for doc in docs}


def _app_tree(tmp_path: Path, repo: ChartRepo, *, name: str = "tree", greeting: str = "hello app") -> Path:
    """A repository checkout holding deploy/app, which depends on ../common (file://) and on sub 0.1.0."""
    tree = tmp_path / name
    dependencies = (
        "dependencies:\n"
        f"  - {{name: sub, version: 0.1.0, repository: '{repo.url}'}}\n"
        "  - {name: common, version: 1.0.0, repository: 'file://../common'}\n"
    )
    app = write_chart(tree / "deploy" / "app", "app", "1.2.3", greeting=greeting, extra=dependencies)
    (app / "crds").mkdir()
    (app / "crds" / "widget.yaml").write_text(
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n"
        "metadata: {name: widgets.example.com}\n"
        "spec:\n  group: example.com\n  names: {kind: Widget, plural: widgets}\n  scope: Namespaced\n"
        "  versions: [{name: v1, served: true, storage: true, schema: {openAPIV3Schema: {type: object}}}]\n"
    )
    write_chart(tree / "deploy" / "common", "common", "1.0.0", greeting="common")
    (tree / "deploy" / "values-staging.yaml").write_text("greeting: staging\nsub: {greeting: from staging}\n")
    return tree


def render(helm: Helm, chart: ChartRef, workdir: Path, **overrides: Any) -> RenderedChart:
    arguments: dict[str, Any] = {
        "release": "shop",
        "namespace": "shop-staging",
        "values_files": [],
        "values": {},
        "kube_version": None,
        "workdir": workdir,
    }
    arguments.update(overrides)
    return helm.render(chart, **arguments)


def _render(helm: Helm, tree: Path, workdir: Path, **overrides: Any) -> RenderedChart:
    return render(helm, LocalChart(tree, "deploy/app"), workdir, **{"kube_version": "1.20.2", **overrides})


def test_a_local_chart_renders_with_its_file_and_repository_dependencies_pinned(
    helm_binary: Path, chart_repo: ChartRepo, tmp_path: Path
) -> None:
    helm = Helm(str(helm_binary))
    tree = _app_tree(tmp_path, chart_repo)
    rendered = _render(
        helm,
        tree,
        tmp_path / "work",
        values_files=[tree / "deploy" / "values-staging.yaml"],
        values={"greeting": "override", "extra": {"replicas": 2}},
    )
    objects = _objects(rendered)
    assert sorted(objects) == [
        "ConfigMap/shop-app",
        "ConfigMap/shop-common",
        "ConfigMap/shop-sub",
        "CustomResourceDefinition/widgets.example.com",  # --include-crds
    ]
    # sub is the pinned 0.1.0, though the repository also serves 0.2.0.
    assert objects["ConfigMap/shop-sub"]["metadata"]["labels"]["chart"] == "sub-0.1.0"
    assert objects["ConfigMap/shop-sub"]["data"]["greeting"] == "from staging"
    assert objects["ConfigMap/shop-common"]["data"]["greeting"] == "common"
    app = objects["ConfigMap/shop-app"]
    assert app["data"] == {"greeting": "override", "kube": "v1.20.2"}  # the overrides come last
    assert app["metadata"]["namespace"] == "shop-staging"
    assert (rendered.chart_name, rendered.chart_version) == ("app", "1.2.3")
    assert rendered.helm_version.startswith("v")
    assert rendered.values == {
        "greeting": "override",
        "sub": {"greeting": "from staging"},
        "extra": {"replicas": 2},
    }
    assert rendered.chart_digest.startswith("sha256:")
    assert any(path.endswith("sub-0.1.0.tgz") for path in chart_repo.requests)
    assert not any(path.endswith("sub-0.2.0.tgz") for path in chart_repo.requests)


def test_the_digest_of_a_chart_folder_is_its_content(
    helm_binary: Path, chart_repo: ChartRepo, tmp_path: Path
) -> None:
    """Two checkouts of the same commit give one digest (helm packages the file:// dependency afresh
    each time, with a new time in the archive); a changed file gives another."""
    helm = Helm(str(helm_binary))
    first = _render(helm, _app_tree(tmp_path, chart_repo, name="one"), tmp_path / "work-1")
    second = _render(helm, _app_tree(tmp_path, chart_repo, name="two"), tmp_path / "work-2")
    assert first.chart_digest == second.chart_digest
    assert first.manifests == second.manifests
    # Rendering the same folder again, its dependencies now built, changes nothing either.
    again = _render(helm, tmp_path / "one", tmp_path / "work-3")
    assert again.chart_digest == first.chart_digest

    changed = _render(
        helm, _app_tree(tmp_path, chart_repo, name="three", greeting="changed"), tmp_path / "work-4"
    )
    assert changed.chart_digest != first.chart_digest
    common = tmp_path / "four" / "deploy" / "common"
    _app_tree(tmp_path, chart_repo, name="four")
    (common / "values.yaml").write_text("greeting: common changed\n")  # only the file:// dependency
    assert _render(helm, tmp_path / "four", tmp_path / "work-5").chart_digest != first.chart_digest


def test_a_chart_from_a_repository_is_pulled_at_its_version_and_its_archive_digest_recorded(
    helm_binary: Path, chart_repo: ChartRepo, tmp_path: Path
) -> None:
    helm = Helm(str(helm_binary))
    chart = RepoChart(chart_repo.url, "sub", "0.2.0")
    rendered = render(helm, chart, tmp_path / "w")
    served = (chart_repo.folder / "sub-0.2.0.tgz").read_bytes()
    assert rendered.chart_digest == "sha256:" + hashlib.sha256(served).hexdigest()
    assert (rendered.chart_name, rendered.chart_version) == ("sub", "0.2.0")
    assert _objects(rendered)["ConfigMap/shop-sub"]["data"]["greeting"] == "sub 0.2.0"

    # A record's digest pins the archive: the same one renders again, another is refused.
    pinned = RepoChart(chart_repo.url, "sub", "0.2.0", digest=rendered.chart_digest)
    again = render(helm, pinned, tmp_path / "x")
    assert again.manifests == rendered.manifests
    with pytest.raises(ChartRenderFailed) as refused:
        render(helm, RepoChart(chart_repo.url, "sub", "0.2.0", digest="sha256:" + "0" * 64), tmp_path / "y")
    assert refused.value.details["reason"] == "digest_mismatch"


def test_a_version_the_repository_does_not_have_is_helms_error(
    helm_binary: Path, chart_repo: ChartRepo, tmp_path: Path
) -> None:
    with pytest.raises(ChartRenderFailed) as failed:
        render(Helm(str(helm_binary)), RepoChart(chart_repo.url, "sub", "9.9.9"), tmp_path / "w")
    assert failed.value.code == "chart_render_failed"
    assert failed.value.message.startswith("helm pull failed: ")
    assert "9.9.9" in failed.value.message
    assert "not found" in failed.value.message


@pytest.mark.parametrize(
    ("chart", "field"),
    [
        (RepoChart("http://127.0.0.1:1/", "sub", "^0.1.0"), "version"),
        (RepoChart("http://127.0.0.1:1/", "sub", "latest"), "version"),
        (RepoChart("http://127.0.0.1:1/", "sub", ">=1.0"), "version"),
        (RepoChart("ftp://127.0.0.1/charts", "sub", "1.0.0"), "repo_url"),
        (RepoChart("https://user:pw@charts.example.com/", "sub", "1.0.0"), "repo_url"),
        (RepoChart("https://charts.example.com/", "../sub", "1.0.0"), "name"),
        (OciChart("https://registry.example.com/charts/sub", "1.0.0"), "reference"),
        (OciChart("oci://registry.example.com/charts/sub", "1.x"), "version"),
    ],
)
def test_chart_references_that_pin_nothing_are_refused_before_helm_runs(
    helm_binary: Path, tmp_path: Path, chart: RepoChart | OciChart, field: str
) -> None:
    with pytest.raises(ChartRefInvalid) as refused:
        render(Helm(str(helm_binary)), chart, tmp_path / "w")
    assert refused.value.details == {"field": field}
    assert not (tmp_path / "w" / "pulled").exists()


def test_a_template_error_comes_back_with_helms_message(helm_binary: Path, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    chart = write_chart(tree / "chart", "broken", "0.1.0")
    (chart / "templates" / "bad.yaml").write_text("value: {{ .Values.missing.field }}\n")
    with pytest.raises(ChartRenderFailed) as failed:
        render(Helm(str(helm_binary)), LocalChart(tree, "chart"), tmp_path / "w")
    assert failed.value.code == "chart_render_failed"
    assert failed.value.status == 422
    assert "helm template failed" in failed.value.message
    assert "bad.yaml" in failed.value.message
    assert "nil pointer" in failed.value.message
    assert str(tmp_path / "w") not in failed.value.message  # envhub's work folder is not the user's business


def test_bad_values_and_missing_charts_are_chart_errors(helm_binary: Path, tmp_path: Path) -> None:
    helm = Helm(str(helm_binary))
    tree = tmp_path / "tree"
    write_chart(tree / "chart", "c", "0.1.0")
    (tree / "broken.yaml").write_text("greeting: [unclosed\n")
    (tree / "list.yaml").write_text("- a\n- b\n")
    for values_file in ("broken.yaml", "list.yaml"):
        with pytest.raises(ChartRenderFailed) as failed:
            render(helm, LocalChart(tree, "chart"), tmp_path / "w", values_files=[tree / values_file])
        assert failed.value.details == {"values_file": values_file}
    (tree / "empty").mkdir()
    with pytest.raises(ChartRenderFailed) as failed:
        render(helm, LocalChart(tree, "empty"), tmp_path / "w")
    assert "no Chart.yaml" in failed.value.message
    with pytest.raises(ChartRenderFailed) as failed:  # helm's own refusal: a release name it rejects
        render(helm, LocalChart(tree, "chart"), tmp_path / "w", release="Not_A_Name")
    assert "helm template failed" in failed.value.message


def test_the_version_check_refuses_an_old_or_missing_helm(helm_binary: Path, tmp_path: Path) -> None:
    assert Helm(str(helm_binary)).check() == Helm(str(helm_binary)).version()
    old = tmp_path / "old-helm"
    old.write_text("#!/bin/sh\necho v3.2.0\n")
    old.chmod(0o755)
    with pytest.raises(HelmUnavailable) as refused:
        Helm(str(old)).check()
    assert refused.value.code == "helm_unavailable"
    assert str(old) in refused.value.message
    assert "v3.2.0" in refused.value.message
    assert "3.8.0 or newer" in refused.value.message
    assert "ENVHUB_HELM_BINARY" in refused.value.hint
    with pytest.raises(HelmUnavailable):  # and so does rendering with it
        render(Helm(str(old)), LocalChart(tmp_path, "."), tmp_path / "w")

    recent = tmp_path / "recent-helm"
    recent.write_text("#!/bin/sh\necho v3.8.0\n")
    recent.chmod(0o755)
    assert Helm(str(recent)).check() == "v3.8.0"

    for missing in ("no-such-helm-binary", str(tmp_path / "nowhere" / "helm")):
        with pytest.raises(HelmUnavailable) as refused:
            Helm(missing).check()
        assert missing in refused.value.message
    garbage = tmp_path / "garbage-helm"
    garbage.write_text("#!/bin/sh\necho 'no version here'\n")
    garbage.chmod(0o755)
    with pytest.raises(HelmUnavailable):
        Helm(str(garbage)).check()
    assert shutil.which("no-such-helm-binary") is None


def test_a_chart_from_an_oci_registry_is_pulled_at_its_version_and_its_archive_digest_recorded(
    helm_binary: Path, chart_repo: ChartRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = (chart_repo.folder / "sub-0.2.0.tgz").read_bytes()
    with serve_oci_registry(tmp_path / "registry") as registry:
        registry.push_chart("charts/sub", archive, name="sub", version="0.2.0")
        monkeypatch.setenv("SSL_CERT_FILE", str(registry.ca_file))  # as an operator trusts a private registry
        helm = Helm(str(helm_binary))
        rendered = render(helm, OciChart(f"oci://{registry.host}/charts/sub", "0.2.0"), tmp_path / "w")
        assert rendered.chart_digest == "sha256:" + hashlib.sha256(archive).hexdigest()
        assert (rendered.chart_name, rendered.chart_version) == ("sub", "0.2.0")
        assert _objects(rendered)["ConfigMap/shop-sub"]["data"]["greeting"] == "sub 0.2.0"
        assert "GET /v2/charts/sub/manifests/0.2.0" in registry.requests

        with pytest.raises(ChartRenderFailed) as failed:
            render(helm, OciChart(f"oci://{registry.host}/charts/sub", "0.9.0"), tmp_path / "x")
        assert failed.value.message.startswith("helm pull failed: ")
        assert "0.9.0" in failed.value.message
