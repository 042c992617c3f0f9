"""Kubernetes access follows teams, and environment credentials are short-lived.

Against the real test control plane (kube-apiserver v1.20.2, tests/cluster):
envhub's runtime applies two environments (teams acme and globex); then
SubjectAccessReviews and impersonated requests show that a person carrying
the groups envhub derives from their memberships (``envhub:team:<team>``,
``...:edit``) reaches exactly their team's namespaces, and that the TokenRequest
credentials for an environment's ServiceAccount expire and stay in their
namespace.
"""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session

from envhub.config import Settings
from envhub.domain.kube import kube_groups, namespace_for
from envhub.domain.specs import EnvironmentTarget, parse_spec
from envhub.errors import PermissionDenied
from envhub.models import Environment, Project
from envhub.services.credentials import environment_credentials
from tests.support.components import require
from tests.support.runtime import RecordingProgress
from tests.support.world import World

pytestmark = pytest.mark.kube

CLUSTER_DIR = Path(__file__).resolve().parents[1] / "cluster"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    if str(CLUSTER_DIR) not in sys.path:
        sys.path.insert(0, str(CLUSTER_DIR))
    import cluster as cluster_module

    require("cluster")
    with cluster_module.TestCluster(kubelet=False) as started:
        yield started


@pytest.fixture(scope="module")
def runtime(cluster: Any) -> Any:
    from envhub.runtime.kubernetes import KubernetesRuntime, api_client

    return KubernetesRuntime(api_client(str(cluster.kubeconfig)), ready_timeout=30.0)


@pytest.fixture
def environments(
    settings: Settings, world: World, session: Session, runtime: Any
) -> dict[str, tuple[int, str]]:
    """One live environment per team: {team: (environment id, namespace)}."""
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
    return made


def review(
    cluster: Any,
    *,
    groups: list[str],
    namespace: str,
    verb: str,
    resource: str,
    subresource: str = "",
    group: str = "",
) -> bool:
    from kubernetes.client import (
        AuthorizationV1Api,
        V1ResourceAttributes,
        V1SubjectAccessReview,
        V1SubjectAccessReviewSpec,
    )

    attributes = V1ResourceAttributes(
        namespace=namespace, verb=verb, resource=resource, subresource=subresource or None, group=group
    )
    body = V1SubjectAccessReview(
        spec=V1SubjectAccessReviewSpec(
            user="someone@acme.example", groups=groups, resource_attributes=attributes
        )
    )
    result = AuthorizationV1Api(cluster.api_client()).create_subject_access_review(body)
    return bool(result.status.allowed)


def test_team_groups_reach_exactly_their_teams_namespaces(
    cluster: Any, environments: dict[str, tuple[int, str]]
) -> None:
    acme, globex = environments["acme"][1], environments["globex"][1]
    viewer, member = kube_groups([("acme", "viewer")]), kube_groups([("acme", "member")])
    assert viewer == ["envhub:team:acme"]
    assert member == ["envhub:team:acme", "envhub:team:acme:edit"]
    for groups in (viewer, member):
        reachable = {
            ns
            for ns in (acme, globex)
            if review(cluster, groups=groups, namespace=ns, verb="list", resource="pods")
        }
        assert reachable == {acme}
    assert not any(
        review(cluster, groups=[], namespace=ns, verb="get", resource="pods") for ns in (acme, globex)
    )


@pytest.mark.parametrize(
    ("verb", "resource", "subresource", "group", "viewer", "editor"),
    [
        ("get", "pods", "log", "", True, True),
        ("watch", "deployments", "", "apps", True, True),
        ("list", "events", "", "", True, True),
        ("get", "secrets", "", "", False, False),  # secrets are never readable by people
        ("create", "pods", "exec", "", False, False),  # shells go through envhub's audited terminal
        ("create", "pods", "portforward", "", False, False),
        ("delete", "pods", "", "", False, True),
        ("patch", "deployments", "scale", "apps", False, True),
        ("create", "deployments", "", "apps", False, False),  # workloads come from envhub's desired state
        ("update", "networkpolicies", "", "networking.k8s.io", False, False),
        ("delete", "resourcequotas", "", "", False, False),
        ("create", "rolebindings", "", "rbac.authorization.k8s.io", False, False),
        ("create", "serviceaccounts", "token", "", False, False),
    ],
)
def test_view_and_edit_mean_what_they_say(
    cluster: Any,
    environments: dict[str, tuple[int, str]],
    verb: str,
    resource: str,
    subresource: str,
    group: str,
    viewer: bool,
    editor: bool,
) -> None:
    namespace = environments["acme"][1]
    for groups, allowed in (
        (kube_groups([("acme", "viewer")]), viewer),
        (kube_groups([("acme", "admin")]), editor),
    ):
        assert (
            review(
                cluster,
                groups=groups,
                namespace=namespace,
                verb=verb,
                resource=resource,
                subresource=subresource,
                group=group,
            )
            is allowed
        )


def test_an_impersonated_team_member_lists_only_their_namespace(
    cluster: Any, environments: dict[str, tuple[int, str]]
) -> None:
    """A real request, as kubectl with an OIDC token carrying these groups would make it."""
    from kubernetes.client import CoreV1Api
    from kubernetes.client.exceptions import ApiException

    client = cluster.api_client()
    client.set_default_header("Impersonate-User", "alice@acme.example")
    client.set_default_header("Impersonate-Group", "envhub:team:acme")
    core = CoreV1Api(client)
    assert core.list_namespaced_pod(environments["acme"][1]).items == []
    with pytest.raises(ApiException) as refused:
        core.list_namespaced_pod(environments["globex"][1])
    assert refused.value.status == 403


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return decoded


def test_environment_credentials_are_short_lived_and_confined(
    cluster: Any, runtime: Any, world: World, session: Session, environments: dict[str, tuple[int, str]]
) -> None:
    from kubernetes.client import CoreV1Api
    from kubernetes.client.exceptions import ApiException

    acme_id, acme_ns = environments["acme"]
    issued = environment_credentials(
        session=session, actor=world.member, runtime=runtime, environment_id=acme_id, ttl_seconds=600
    )
    assert (issued.namespace, issued.account) == (acme_ns, "envhub-workload")
    claims = _claims(issued.token)
    assert claims["exp"] - claims["iat"] == 600  # expires by itself, ten minutes from now
    assert claims["kubernetes.io"]["serviceaccount"]["name"] == "envhub-workload"
    assert issued.token not in repr(issued)
    core = CoreV1Api(cluster.api_client(token=issued.token))
    assert core.list_namespaced_pod(acme_ns).items == []  # what the workload account may read
    for forbidden in (
        lambda: core.list_namespaced_pod(environments["globex"][1]),
        lambda: core.list_namespaced_secret(acme_ns),
    ):
        with pytest.raises(ApiException) as refused:
            forbidden()
        assert refused.value.status == 403
    with pytest.raises(PermissionDenied):  # viewers may not shell in, so get no credentials either
        environment_credentials(session=session, actor=world.viewer, runtime=runtime, environment_id=acme_id)
