"""Deployment sources: one commit of a real repository served over https, and the manifests in it.

The repository is served by git's own ``git-http-backend`` behind TLS and a
token (tests/support/gitserver.py), the way a private GitHub repository is.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from envhub.errors import CommitInvalid, SourceFetchFailed, SourcePathInvalid
from envhub.integrations.sources import MAX_MANIFEST_BYTES, checkout, read_manifests
from tests.support.gitserver import GitServer, serve_git
from tests.support.runtime import git


@dataclass
class Served:
    server: GitServer
    token: str
    config: Path  # the operator's git config (ENVHUB_GIT_CONFIG): trusts the server's CA
    work: Path  # a clone that commits and pushes
    first: str
    second: str

    @property
    def url(self) -> str:
        return self.server.url("shop.git")


def _commit(work: Path, files: dict[str, str], message: str) -> str:
    for name, text in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    git("add", ".", cwd=work)
    git("commit", "--quiet", "-m", message, cwd=work)
    git("push", "--quiet", "origin", "HEAD:main", cwd=work)
    return git("rev-parse", "HEAD", cwd=work)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    root = tmp_path / "served"
    root.mkdir()
    bare = root / "shop.git"
    git("init", "--quiet", "--bare", "--initial-branch=main", str(bare), cwd=tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    git("init", "--quiet", "--initial-branch=main", cwd=work)
    git("remote", "add", "origin", str(bare), cwd=work)
    first = _commit(work, {"deploy/app.yaml": "kind: ConfigMap\n# one\n", "VERSION": "one\n"}, "one")
    second = _commit(work, {"deploy/app.yaml": "kind: ConfigMap\n# two\n", "VERSION": "two\n"}, "two")
    token = "tok_" + secrets.token_hex(8)
    with serve_git(root, username="x-access-token", token=token) as server:
        config = tmp_path / "operator.gitconfig"
        config.write_text(f"[http]\n\tsslCAInfo = {server.ca_file}\n")
        yield Served(server, token, config, work, first, second)


def test_checkout_fetches_exactly_the_commit_asked_for_and_leaves_no_repository(
    served: Served, tmp_path: Path
) -> None:
    into = tmp_path / "tree"
    tree = checkout(served.url, served.first, into=into, token=served.token, git_config=served.config)
    assert tree == into
    # The older commit, not the branch's tip, and only its files: no .git to read or run.
    assert (tree / "VERSION").read_text() == "one\n"
    assert sorted(p.name for p in tree.iterdir()) == ["VERSION", "deploy"]
    assert all(authorization for _, _, authorization in served.server.requests[1:])
    # Upper case is the same commit id.
    again = checkout(
        served.url,
        served.second.upper(),
        into=tmp_path / "again",
        token=served.token,
        git_config=served.config,
    )
    assert (again / "VERSION").read_text() == "two\n"


@pytest.mark.parametrize(
    "commit", ["main", "HEAD", "v1.0", "abc1234", "a" * 39, "a" * 41, "g" * 40, "--upload-pack=x"]
)
def test_checkout_refuses_anything_but_a_full_commit_id_before_fetching(
    served: Served, tmp_path: Path, commit: str
) -> None:
    with pytest.raises(CommitInvalid) as refused:
        checkout(served.url, commit, into=tmp_path / "tree", token=served.token, git_config=served.config)
    assert refused.value.code == "commit_invalid"
    assert "40" in refused.value.message
    assert "40-character" in refused.value.hint
    assert served.server.requests == []
    assert not (tmp_path / "tree").exists()


def test_a_commit_the_server_does_not_have_is_reported_by_id(served: Served, tmp_path: Path) -> None:
    missing = "0123456789abcdef0123456789abcdef01234567"
    with pytest.raises(SourceFetchFailed) as failed:
        checkout(served.url, missing, into=tmp_path / "tree", token=served.token, git_config=served.config)
    assert failed.value.code == "source_fetch_failed"
    assert missing in failed.value.message


def test_a_server_refusing_fetch_by_id_is_asked_for_its_branches_and_tags(
    served: Served, tmp_path: Path
) -> None:
    """Protocol v0 with allowReachableSHA1InWant off (git's default) serves only advertised tips."""
    served.config.write_text(served.config.read_text() + "[protocol]\n\tversion = 0\n")
    tree = checkout(
        served.url, served.first, into=tmp_path / "tree", token=served.token, git_config=served.config
    )
    assert (tree / "VERSION").read_text() == "one\n"
    # Two conversations: the commit by id (refused, it is not advertised), then the refs.
    adverts = [path for _, path, auth in served.server.requests if "info/refs" in path and auth]
    assert len(adverts) == 2, served.server.requests


def test_without_the_token_git_fails_without_asking_anyone(served: Served, tmp_path: Path) -> None:
    with pytest.raises(SourceFetchFailed) as failed:
        checkout(served.url, served.first, into=tmp_path / "tree", token=None, git_config=served.config)
    assert "terminal prompts disabled" in failed.value.message
    assert {authorization for _, _, authorization in served.server.requests} == {""}


# -- read_manifests ---------------------------------------------------------------------------


def _tree(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    (tree / "deploy" / "base").mkdir(parents=True)
    (tree / "deploy" / "b.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n")
    (tree / "deploy" / "a.yml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a1}\n---\n"
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a2}\n"
    )
    (tree / "deploy" / "base" / "c.json").write_text(
        '{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "c"}}'
    )
    (tree / "deploy" / "README.md").write_text("# not a manifest\n")
    (tree / "deploy" / "notes.txt").write_text("kind: nope\n")
    return tree


def _names(text: str) -> list[str]:
    return [doc["metadata"]["name"] for doc in yaml.safe_load_all(text) if doc]


def test_a_folder_is_read_recursively_sorted_by_path_as_one_stream(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    text = read_manifests(tree, "deploy")
    assert _names(text) == ["a1", "a2", "b", "c"]  # a.yml, b.yaml, base/c.json
    assert "# Source: deploy/base/c.json" in text
    assert "not a manifest" not in text
    assert "nope" not in text
    assert _names(read_manifests(tree, "deploy/")) == _names(text)
    assert _names(read_manifests(tree, ".")) == _names(text)


def test_a_file_is_read_alone(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    assert _names(read_manifests(tree, "deploy/b.yaml")) == ["b"]
    assert _names(read_manifests(tree, "./deploy/base/c.json")) == ["c"]


def test_missing_and_empty_paths_are_named(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    with pytest.raises(SourcePathInvalid) as refused:
        read_manifests(tree, "deploy/nope")
    assert refused.value.details == {"path": "deploy/nope", "reason": "missing"}
    assert "deploy/nope does not exist" in refused.value.message
    (tree / "empty" / "deeper").mkdir(parents=True)
    (tree / "empty" / "deeper" / "x.txt").write_text("x")
    with pytest.raises(SourcePathInvalid) as refused:
        read_manifests(tree, "empty")
    assert refused.value.details == {"path": "empty", "reason": "empty"}
    os.symlink("gone.yaml", tree / "deploy" / "dangling.yaml")
    with pytest.raises(SourcePathInvalid) as refused:
        read_manifests(tree, "deploy")
    assert refused.value.details == {"path": "deploy/dangling.yaml", "reason": "missing"}


def test_more_than_the_bound_is_refused_before_reading(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    chunk = "# " + "x" * (1024 * 1024 - 1024) + "\n"  # five fit beside the small files
    for index in range(5):
        (tree / "deploy" / f"big-{index}.yaml").write_text(chunk)
    assert len(read_manifests(tree, "deploy")) < MAX_MANIFEST_BYTES + 4096  # five 1 MiB files fit
    (tree / "deploy" / "big-5.yaml").write_text(chunk)
    with pytest.raises(SourcePathInvalid) as refused:
        read_manifests(tree, "deploy")
    assert refused.value.details == {"path": "deploy", "reason": "too_large"}
    assert "5 MiB" in refused.value.message


def test_a_file_that_is_not_text_is_named(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    (tree / "deploy" / "bin.yaml").write_bytes(b"\xff\xfe\x00kind")
    with pytest.raises(SourcePathInvalid) as refused:
        read_manifests(tree, "deploy")
    assert refused.value.details == {"path": "deploy/bin.yaml", "reason": "not_text"}


def test_a_checked_out_commit_reads_like_any_tree(served: Served, tmp_path: Path) -> None:
    tree = checkout(
        served.url, served.second, into=tmp_path / "tree", token=served.token, git_config=served.config
    )
    assert read_manifests(tree, "deploy") == "---\n# Source: deploy/app.yaml\nkind: ConfigMap\n# two\n"
