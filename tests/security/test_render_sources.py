"""Attacks on rendering a deployment's sources: a repository reaching past its own tree.

Whoever can push to the project's repository writes the manifests folder,
the chart, its ``Chart.yaml`` and its symlinks; the deployment's settings name
paths in it. None of it may make envhub read files of the machine it runs on
(which would end up in the manifests applied to the cluster, readable there),
use the operator's helm configuration, or fetch through git transports that
run commands.

Each plant is first shown to be live where it can be: the same chart given to
helm directly leaks the file or uses the configuration; envhub refuses it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from envhub.errors import ChartRenderFailed, RepoUrlRefused, SourcePathInvalid
from envhub.integrations.helm import Helm, LocalChart
from envhub.integrations.sources import checkout, read_manifests
from tests.support.charts import serve_chart_repo, write_chart
from tests.support.components import require_path
from tests.support.runtime import git


@pytest.fixture(scope="module")
def helm_binary() -> Path:
    return require_path("helm")


def _render(helm: Path, tree: Path, path: str, workdir: Path) -> str:
    rendered = Helm(str(helm)).render(
        LocalChart(tree, path),
        release="r",
        namespace="n",
        values_files=[],
        values={},
        kube_version=None,
        workdir=workdir,
    )
    return rendered.manifests


def _tree(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    (tree / "deploy" / "base").mkdir(parents=True)
    (tree / "deploy" / "app.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\n")
    return tree


# -- git -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "ext::sh -c touch% /tmp/envhub-pwned",  # a remote helper that runs a command
        "http://127.0.0.1/x.git",  # cleartext, where a token would travel
        "https://user:secret@example.com/x.git",  # a credential in what gets recorded
        "--upload-pack=touch /tmp/envhub-pwned",  # an option, not a URL
        "/srv/other-team/repo.git",  # this machine's disk
    ],
)
def test_urls_that_run_commands_or_read_this_machine_are_refused(tmp_path: Path, url: str) -> None:
    with pytest.raises(RepoUrlRefused):
        checkout(url, "0" * 40, into=tmp_path / "tree", token=None)
    assert not (tmp_path / "tree").exists()


def test_a_committed_symlink_to_a_host_file_is_checked_out_but_never_read(tmp_path: Path) -> None:
    secret = tmp_path / "host-secret.txt"
    secret.write_text("apiVersion: v1\nkind: Secret\nmetadata: {name: stolen}\n")
    work = tmp_path / "upstream"
    (work / "deploy").mkdir(parents=True)
    git("init", "--quiet", "--initial-branch=main", cwd=work)
    (work / "deploy" / "app.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\n")
    os.symlink(secret, work / "deploy" / "leak.yaml")
    git("add", ".", cwd=work)
    git("commit", "--quiet", "-m", "plant", cwd=work)
    commit = git("rev-parse", "HEAD", cwd=work)

    tree = checkout(str(work), commit, into=tmp_path / "tree", token=None, protocols=("file",))
    assert (tree / "deploy" / "leak.yaml").is_symlink()  # git checks symlinks out as they are
    with pytest.raises(SourcePathInvalid) as refused:
        read_manifests(tree, "deploy")
    assert refused.value.details == {"path": "deploy/leak.yaml", "reason": "escapes"}
    assert "stolen" not in str(refused.value.to_dict())


# -- manifests paths ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["../outside", "deploy/../../outside", "/etc", "/etc/passwd", "deploy\\..\\..\\x"]
)
def test_paths_leaving_the_tree_are_refused(tmp_path: Path, path: str) -> None:
    tree = _tree(tmp_path)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.yaml").write_text("kind: Secret\n")
    with pytest.raises(SourcePathInvalid) as refused:
        read_manifests(tree, path)
    assert refused.value.details == {"path": path, "reason": "escapes"}
    assert path in refused.value.message


def test_symlinks_leading_out_are_refused_and_those_inside_are_read(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.yaml").write_text("apiVersion: v1\nkind: Secret\nmetadata: {name: stolen}\n")
    os.symlink("app.yaml", tree / "deploy" / "z.yaml")  # inside the tree: fine
    names = [doc["metadata"]["name"] for doc in yaml.safe_load_all(read_manifests(tree, "deploy")) if doc]
    assert names == ["app", "app"]

    os.symlink(outside / "secret.yaml", tree / "deploy" / "base" / "leak.yaml")
    with pytest.raises(SourcePathInvalid) as refused:
        read_manifests(tree, "deploy")
    assert refused.value.details == {"path": "deploy/base/leak.yaml", "reason": "escapes"}
    with pytest.raises(SourcePathInvalid):
        read_manifests(tree, "deploy/base/leak.yaml")
    (tree / "deploy" / "base" / "leak.yaml").unlink()

    os.symlink(outside, tree / "deploy" / "linked")  # a folder
    with pytest.raises(SourcePathInvalid) as refused:
        read_manifests(tree, "deploy")
    assert refused.value.details == {"path": "deploy/linked", "reason": "escapes"}
    with pytest.raises(SourcePathInvalid) as refused:
        read_manifests(tree, "deploy/linked/secret.yaml")
    assert refused.value.details["reason"] == "escapes"
    assert "stolen" not in str(refused.value.to_dict())


# -- charts ---------------------------------------------------------------------------------------


def test_a_chart_symlink_to_a_host_file_would_leak_it_through_helm_and_is_refused(
    helm_binary: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "host-secret.txt"
    secret.write_text("operator-password-123\n")
    tree = tmp_path / "tree"
    chart = write_chart(tree / "chart", "c", "0.1.0")
    os.symlink(secret, chart / "passwd")
    (chart / "templates" / "leak.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: leak}\n"
        'data:\n  got: {{ .Files.Get "passwd" | quote }}\n'
    )
    # Live: helm itself follows the symlink and renders the file into the manifests.
    direct = subprocess.run(
        [str(helm_binary), "template", "r", str(chart)],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "helm-home")},
        timeout=60,
        check=False,
    )
    assert "operator-password-123" in direct.stdout
    with pytest.raises(SourcePathInvalid) as refused:
        _render(helm_binary, tree, "chart", tmp_path / "w")
    assert refused.value.details == {"path": "chart/passwd", "reason": "escapes"}
    assert "operator-password-123" not in str(refused.value.to_dict())


def test_a_file_dependency_outside_the_repository_is_refused(helm_binary: Path, tmp_path: Path) -> None:
    write_chart(tmp_path / "elsewhere", "elsewhere", "1.0.0", greeting="another team's chart")
    tree = tmp_path / "tree"
    dependency = (
        "dependencies:\n  - {name: elsewhere, version: 1.0.0, repository: 'file://../../elsewhere'}\n"
    )
    write_chart(tree / "chart", "c", "0.1.0", extra=dependency)
    with pytest.raises(SourcePathInvalid) as refused:
        _render(helm_binary, tree, "chart", tmp_path / "w")
    assert refused.value.details == {"path": "../elsewhere", "reason": "escapes"}
    assert not (tree / "chart" / "charts").exists()  # refused before helm ran
    with pytest.raises(SourcePathInvalid):
        _render(helm_binary, tree, "../elsewhere", tmp_path / "w")
    with pytest.raises(SourcePathInvalid):
        _render(helm_binary, tree, str(tmp_path / "elsewhere"), tmp_path / "w")


def test_helm_uses_none_of_the_operators_configuration(
    helm_binary: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A repository the operator added by name (with its credentials, in real life) is not the
    chart's to use, and envhub's helm writes nothing into the operator's home."""
    with serve_chart_repo(tmp_path / "served", helm_binary) as repo:
        home = tmp_path / "home"
        (home / ".config" / "helm").mkdir(parents=True)
        (home / ".config" / "helm" / "repositories.yaml").write_text(
            f"apiVersion: v1\nrepositories:\n  - name: mine\n    url: {repo.url}\n"
        )
        tree = tmp_path / "tree"
        dependency = "dependencies:\n  - {name: sub, version: 0.1.0, repository: '@mine'}\n"
        write_chart(tree / "chart", "c", "0.1.0", extra=dependency)
        # Live: helm run the usual way resolves '@mine' from the operator's configuration.
        copy = tmp_path / "copy"
        shutil.copytree(tree / "chart", copy)
        direct = subprocess.run(
            [str(helm_binary), "dependency", "build", str(copy)],
            capture_output=True,
            text=True,
            env={"PATH": "/usr/bin:/bin", "HOME": str(home)},
            timeout=60,
            check=False,
        )
        assert direct.returncode == 0, direct.stderr
        before = sorted(p.relative_to(home).as_posix() for p in home.rglob("*"))

        for name in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "HELM_CONFIG_HOME"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HOME", str(home))
        monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig-that-must-not-be-read"))
        with pytest.raises(ChartRenderFailed) as failed:
            _render(helm_binary, tree, "chart", tmp_path / "w")
        assert "mine" in failed.value.message
        assert sorted(p.relative_to(home).as_posix() for p in home.rglob("*")) == before
