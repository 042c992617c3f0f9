"""``envhub kubeconfig`` + ``envhub kube-credential``: plain kubectl on an environment's namespace.

Against the shared test control plane (tests/support/cluster.py) with envhub on its
Kubernetes runtime: the generated context reaches the environment's own
namespace, another team's is refused, the file holds no token, and the plugin
hands kubectl short-lived ones. On the local runtime the command fails with
``not_supported``.
"""

from __future__ import annotations

import contextlib
import json
import stat
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlmodel import Session

from envhub.domain.kube import namespace_for
from envhub.domain.specs import EnvironmentTarget, parse_spec
from envhub.models import Environment, Project
from tests.cli.conftest import Cli
from tests.support.components import require_path
from tests.support.runtime import RecordingProgress
from tests.support.world import World
from tests.terminal.harness import People, Serve


@pytest.fixture(scope="module")
def kubectl() -> Path:
    return require_path("kubectl")


@pytest.fixture
def namespaces(cluster: Any, world: World, session: Session) -> Iterator[dict[str, tuple[int, str]]]:
    """One live environment per team, applied by envhub's runtime: {team: (id, namespace)}."""
    from kubernetes.client import CoreV1Api
    from kubernetes.client.exceptions import ApiException

    from envhub.runtime.kubernetes import KubernetesRuntime, api_client

    runtime = KubernetesRuntime(api_client(str(cluster.kubeconfig)), ready_timeout=30.0)
    made = {}
    for team, team_id in (("acme", world.acme), ("globex", world.globex)):
        project = Project(team_id=team_id, name="shop")
        session.add(project)
        session.flush()
        row = Environment(project_id=project.id or 0, name="dev", phase="ready", spec={})
        session.add(row)
        session.commit()
        target = EnvironmentTarget(
            id=row.id or 0, name="dev", project="shop", team=team, generation=1, spec=parse_spec({})
        )
        runtime.apply(target, progress=RecordingProgress())
        made[team] = (row.id or 0, namespace_for(target))
    yield made
    core = CoreV1Api(cluster.api_client())
    for _, namespace in made.values():
        with contextlib.suppress(ApiException):
            core.delete_namespace(namespace)


def signed_in(
    people: People, base: str, person: Any, scopes: tuple[str, ...] = ("read", "shell")
) -> dict[str, str]:
    token = people.token(person, scopes).headers["Authorization"][7:]
    return {"ENVHUB_SERVER": base, "ENVHUB_TOKEN": token}


@pytest.mark.kube
def test_kubectl_with_the_generated_kubeconfig_reaches_its_namespace_only(
    cli: Cli,
    serve: Serve,
    people: People,
    cluster: Any,
    kubectl: Path,
    namespaces: dict[str, tuple[int, str]],
    tmp_path: Path,
) -> None:
    base = serve(ENVHUB_RUNTIME="kubernetes", ENVHUB_KUBECONFIG=str(cluster.kubeconfig))
    (acme_id, acme_ns), (_, globex_ns) = namespaces["acme"], namespaces["globex"]
    member = signed_in(people, base, people.world.member)
    config = tmp_path / "kube" / "config"
    config.parent.mkdir()
    mine = {"name": "mine", "context": {"cluster": "mine", "user": "mine"}}
    config.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "contexts": [mine]}))

    written = cli("kubeconfig", str(acme_id), "--output-file", str(config), "-o", "json", **member)
    assert written.returncode == 0, written.stderr
    assert json.loads(written.stdout)["namespace"] == acme_ns
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    kubeconfig = yaml.safe_load(config.read_text())
    kept, context = kubeconfig["contexts"]
    assert kept == mine  # merged: what was there stays
    assert (kubeconfig["current-context"], context["context"]["namespace"]) == (context["name"], acme_ns)
    [user] = kubeconfig["users"]
    assert set(user["user"]) == {"exec"}  # no token, no certificate: nothing long-lived on disk
    assert user["user"]["exec"]["args"][:2] == ["kube-credential", str(acme_id)]

    env = cli.environ(**member)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(kubectl), "--kubeconfig", str(config), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    own = run("get", "pods", "-o", "json")
    assert own.returncode == 0, own.stderr
    assert json.loads(own.stdout)["items"] == []
    assert run("get", "deployments").returncode == 0
    other = run("get", "pods", "-n", globex_ns)
    assert other.returncode != 0
    assert "forbidden" in other.stderr.lower()
    secrets = run("get", "secrets")
    assert secrets.returncode != 0
    assert "forbidden" in secrets.stderr.lower()

    credential = cli("kube-credential", str(acme_id), **member)
    assert credential.returncode == 0, credential.stderr
    answer = json.loads(credential.stdout)
    assert (answer["apiVersion"], answer["kind"]) == ("client.authentication.k8s.io/v1", "ExecCredential")
    expires = datetime.fromisoformat(answer["status"]["expirationTimestamp"].replace("Z", "+00:00"))
    assert datetime.now(UTC) < expires <= datetime.now(UTC) + timedelta(hours=1)

    viewer = cli(
        "kubeconfig",
        str(acme_id),
        "--output-file",
        str(tmp_path / "v"),
        **signed_in(people, base, people.world.viewer),
    )
    assert viewer.returncode == 4, viewer.stderr
    assert "forbidden" in viewer.stderr
    stranger = cli("kube-credential", str(acme_id), **signed_in(people, base, people.world.outsider))
    assert stranger.returncode == 5, stranger.stderr


def test_kubeconfig_on_the_local_runtime_fails_with_not_supported(
    cli: Cli, serve: Serve, people: People, environment: Environment, tmp_path: Path
) -> None:
    """On the local runtime there is no namespace: a clear code, and the user's kubeconfig untouched."""
    base = serve()
    config = tmp_path / "config"
    config.write_text("apiVersion: v1\nkind: Config\ncurrent-context: mine\ncontexts: []\n")
    before = config.read_text()
    refused = cli(
        "kubeconfig",
        str(environment.id),
        "--output-file",
        str(config),
        "-o",
        "json",
        **signed_in(people, base, people.world.member),
    )
    assert refused.returncode == 10, refused.stderr
    error = json.loads(refused.stderr)["error"]
    assert error["code"] == "not_supported"
    assert "ENVHUB_RUNTIME=kubernetes" in error["hint"]
    assert config.read_text() == before
