"""The chart on a real API server (tests/cluster: kube-apiserver v1.20.2 and the test kubelet).

The production-like values are rendered for 1.20 and applied with ``kubectl
apply --server-side``. Then:

* every object is stored as rendered, and envhub's pods start with every
  setting resolved (a missing Secret key would stop them: CreateContainerConfigError).
  The test kubelet runs a container's ``command`` and has no images; the chart
  gives only ``args`` (the image's entry point does the rest), so they run nothing;
* SubjectAccessReviews ask the API server what each ServiceAccount may do;
* envhub's own runtime, holding the workers' and the web's real tokens, runs an
  environment end to end: apply (namespace, quota, policies, the workload Role,
  user manifests with a Secret and a RoleBinding to "view"), status, the status
  watch, logs, a terminal, prune, stop and destroy. What the chart's RBAC lacks
  fails here as the API server's 403, whatever the lists in needs.py say.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from kubernetes import client

from envhub.domain.kube import namespace_for
from envhub.errors import ClusterForbidden
from envhub.runtime.base import RuntimeState, RuntimeStatus
from envhub.runtime.kubernetes import KubernetesRuntime
from envhub.runtime.kubernetes.discovery import Applier
from envhub.runtime.kubernetes.watching import DeploymentWatcher
from tests.deploy import needs
from tests.deploy.conftest import NAMESPACE, PRODUCTION_VALUES, RELEASE, template_args
from tests.support.components import require
from tests.support.net import free_port
from tests.support.runtime import RecordingProgress, make_target
from tests.support.tools import KubeTools
from tests.support.waiting import wait_for

pytestmark = pytest.mark.kube

CLUSTER_DIR = Path(__file__).resolve().parents[1] / "cluster"
WORKER, WEB = f"{RELEASE}-worker", f"{RELEASE}-web"
Helm = Callable[..., subprocess.CompletedProcess[str]]
# The Secrets values-production.yaml names, with the keys it reads.
SECRETS = {
    "envhub-database": {"url": "postgresql+psycopg://envhub:pw@postgres.data:5432/envhub"},
    "envhub-redis": {"url": "redis://:pw@redis.data:6379/0"},
    "envhub-app": {"secret-key": "k" * 48, "encryption-key": "e" * 32},
    "envhub-oidc": {"client-secret": "oidc-secret"},
}

# User manifests of the kinds projects deploy; the Secret is dropped later, to be pruned.
SECRET = """\
apiVersion: v1
kind: Secret
metadata: {name: api-token}
stringData: {token: not-a-real-token}
"""
OTHER_MANIFESTS = [
    """\
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {greeting: hello}
""",
    """\
apiVersion: v1
kind: ServiceAccount
metadata: {name: reader}
""",
    """\
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: read-settings}
rules: [{apiGroups: [""], resources: [configmaps], verbs: [get, list, watch]}]
""",
    """\
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: reader-settings}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: read-settings}
subjects: [{kind: ServiceAccount, name: reader}]
""",
    """\
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: reader-view}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects: [{kind: ServiceAccount, name: reader}]
""",
    """\
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: cache}
spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
""",
    """\
apiVersion: policy/v1beta1
kind: PodDisruptionBudget
metadata: {name: web}
spec: {maxUnavailable: 1, selector: {matchLabels: {app.kubernetes.io/name: web}}}
""",
    """\
apiVersion: autoscaling/v1
kind: HorizontalPodAutoscaler
metadata: {name: web}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 1
  maxReplicas: 1
""",
    """\
apiVersion: batch/v1beta1
kind: CronJob
metadata: {name: nightly}
spec:
  schedule: "0 3 * * *"
  suspend: true
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers: [{name: nightly, image: busybox, command: ["true"]}]
""",
]
MANIFESTS = "---\n".join([OTHER_MANIFESTS[0], SECRET, *OTHER_MANIFESTS[1:]])


def load_cluster_module() -> ModuleType:
    """tests/cluster is not a package: its modules import each other flat."""
    if str(CLUSTER_DIR) not in sys.path:
        sys.path.insert(0, str(CLUSTER_DIR))
    import cluster

    return cluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    module = load_cluster_module()
    require("cluster")
    with module.TestCluster() as started:
        yield started


@pytest.fixture(scope="module")
def admin(cluster: Any) -> client.ApiClient:
    return cluster.api_client()


@pytest.fixture(scope="module")
def installed(
    cluster: Any,
    admin: client.ApiClient,
    kube_tools: KubeTools,
    helm: Helm,
    tmp_path_factory: pytest.TempPathFactory,
) -> list[dict[str, Any]]:
    """The production-like release, rendered for 1.20 (no admission guard there) and server-side applied."""
    done = helm(
        *template_args(
            values=[PRODUCTION_VALUES], sets=["rbac.admissionGuard.enabled=false"], kube_version="1.20.2"
        )
    )
    assert done.returncode == 0, done.stderr
    objects = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
    scratch = tmp_path_factory.mktemp("release")
    manifest = scratch / "release.yaml"
    manifest.write_text(done.stdout)
    core = client.CoreV1Api(admin)
    core.create_namespace({"metadata": {"name": NAMESPACE}})
    for name, data in SECRETS.items():
        core.create_namespaced_secret(NAMESPACE, {"metadata": {"name": name}, "stringData": data})
    applied = subprocess.run(
        [str(kube_tools.kubectl), "apply", "--server-side", "--field-manager=helm", "-f", str(manifest)],
        capture_output=True,
        text=True,
        # kubectl keeps a discovery cache under $HOME/.kube: a scratch HOME keeps it out of the checkout.
        env={"KUBECONFIG": str(cluster.kubeconfig), "HOME": str(scratch), "PATH": "/usr/bin:/bin"},
        timeout=60,
        check=False,
    )
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.count("serverside-applied") == len(objects)
    return objects


def review(admin: client.ApiClient, account: str, verb: str, resource: str, **attributes: str) -> bool:
    """The API server's verdict: may ``account`` (envhub's web or worker) do ``verb`` on ``resource``?"""
    group, _, resource = resource.rpartition(":")
    base, _, subresource = resource.partition("/")
    body = {
        "spec": {
            "user": f"system:serviceaccount:{NAMESPACE}:{account}",
            "groups": [
                "system:serviceaccounts",
                f"system:serviceaccounts:{NAMESPACE}",
                "system:authenticated",
            ],
            "resourceAttributes": {
                "group": group,
                "resource": base,
                "subresource": subresource,
                "verb": verb,
                **attributes,
            },
        }
    }
    return bool(client.AuthorizationV1Api(admin).create_subject_access_review(body).status.allowed)


def token_for(admin: client.ApiClient, account: str) -> str:
    issued = client.CoreV1Api(admin).create_namespaced_service_account_token(
        account, NAMESPACE, {"spec": {"expirationSeconds": 3600}}
    )
    return str(issued.status.token)


# -- the release as the API server stored it ------------------------------------------


def test_every_rendered_object_is_stored_as_rendered(
    installed: list[dict[str, Any]], admin: client.ApiClient, cluster: Any
) -> None:
    applier = Applier(admin)
    for obj in installed:
        resource = applier.resource(obj["apiVersion"], obj["kind"])
        status, _body = cluster.request(
            resource.path(obj["metadata"]["name"], obj["metadata"].get("namespace"))
        )
        assert status == 200, f"{obj['kind']}/{obj['metadata']['name']}"
    kinds = {o["kind"] for o in installed}
    assert {"Ingress", "NetworkPolicy", "PodDisruptionBudget", "Job", "ClusterRole"} <= kinds
    pdb = next(o for o in installed if o["kind"] == "PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1beta1"  # what 1.20 serves


def test_envhubs_pods_start_with_every_setting_resolved(
    installed: list[dict[str, Any]], admin: client.ApiClient
) -> None:
    apps, core = client.AppsV1Api(admin), client.CoreV1Api(admin)

    def available() -> bool:
        for name in (WEB, WORKER):
            status = apps.read_namespaced_deployment(name, NAMESPACE).status
            if (status.available_replicas or 0) < 3:
                return False
        return True

    def pods() -> str:
        listing = core.list_namespaced_pod(NAMESPACE).items
        return "\n".join(
            f"{p.metadata.name}: {p.status.phase} {p.status.container_statuses}" for p in listing
        )

    wait_for(available, timeout=30, what="3 web and 3 worker pods available", describe=pods)

    def migrations_running() -> bool:
        selector = "app.kubernetes.io/component=migrations"
        listing = core.list_namespaced_pod(NAMESPACE, label_selector=selector).items
        return [pod.status.phase for pod in listing] == ["Running"]

    wait_for(migrations_running, timeout=30, what="the migrations pod to start", describe=pods)


def test_the_cloudflared_connector_applies_and_starts_with_its_token(
    installed: list[dict[str, Any]],
    admin: client.ApiClient,
    cluster: Any,
    kube_tools: KubeTools,
    helm: Helm,
    tmp_path: Path,
) -> None:
    """The cloudflare provider's connector, rendered for 1.20 beside the release and server-side
    applied: stored as rendered, and its pods start with the tunnel token resolved from its Secret."""
    done = helm(
        *template_args(
            values=[PRODUCTION_VALUES],
            sets=[
                "rbac.admissionGuard.enabled=false",
                "envhub.urls.provider=cloudflare",
                "envhub.urls.cloudflare.accountId=0123456789abcdef0123456789abcdef",
                "envhub.urls.cloudflare.zone=example.com",
                "secrets.cloudflareApiToken.name=envhub-cloudflare",
                "secrets.cloudflareTunnelToken.name=envhub-tunnel",
            ],
            kube_version="1.20.2",
        )
    )
    assert done.returncode == 0, done.stderr
    [connector] = [
        doc
        for doc in yaml.safe_load_all(done.stdout)
        if doc and doc["kind"] == "Deployment" and doc["metadata"]["name"] == f"{RELEASE}-cloudflared"
    ]
    core, apps = client.CoreV1Api(admin), client.AppsV1Api(admin)
    core.create_namespaced_secret(
        NAMESPACE,
        {"metadata": {"name": "envhub-tunnel"}, "stringData": {"cloudflare-tunnel-token": "eyJhIjoi..."}},
    )
    manifest = tmp_path / "cloudflared.yaml"
    manifest.write_text(yaml.safe_dump(connector))
    applied = subprocess.run(
        [str(kube_tools.kubectl), "apply", "--server-side", "--field-manager=helm", "-f", str(manifest)],
        capture_output=True,
        text=True,
        env={"KUBECONFIG": str(cluster.kubeconfig), "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
        timeout=60,
        check=False,
    )
    assert applied.returncode == 0, applied.stderr
    stored = apps.read_namespaced_deployment(f"{RELEASE}-cloudflared", NAMESPACE)
    [container] = stored.spec.template.spec.containers
    assert container.env[0].value_from.secret_key_ref.name == "envhub-tunnel"
    assert stored.spec.template.spec.automount_service_account_token is False

    def pods() -> str:
        selector = "app.kubernetes.io/component=cloudflared"
        listing = core.list_namespaced_pod(NAMESPACE, label_selector=selector).items
        return "\n".join(
            f"{p.metadata.name}: {p.status.phase} {p.status.container_statuses}" for p in listing
        )

    def started() -> bool:
        selector = "app.kubernetes.io/component=cloudflared"
        listing = core.list_namespaced_pod(NAMESPACE, label_selector=selector).items
        return len(listing) == 2 and all(pod.status.phase == "Running" for pod in listing)

    # A missing Secret or key would hold them in CreateContainerConfigError.
    wait_for(started, timeout=30, what="2 cloudflared pods running", describe=pods)


# -- what the API server lets each account do -----------------------------------------


def test_the_worker_may_do_what_the_runtime_needs_in_a_namespace_that_does_not_exist_yet(
    installed: list[dict[str, Any]], admin: client.ApiClient
) -> None:
    fresh = "envhub-acme-shop-preview-4242"
    wait_for(
        lambda: review(admin, WORKER, "create", "namespaces"), timeout=10, what="RBAC to see the binding"
    )
    assert review(admin, WORKER, "patch", "namespaces", name=fresh)
    assert review(admin, WORKER, "delete", "namespaces", name=fresh)
    for group, resource, verb in sorted(needs.worker_needs()):
        assert review(admin, WORKER, verb, f"{group}:{resource}", namespace=fresh), (group, resource, verb)
    # Roles granting the workload Role's verbs, and RoleBindings to "view".
    assert review(admin, WORKER, "create", "rbac.authorization.k8s.io:roles", namespace=fresh)
    assert review(admin, WORKER, "bind", "rbac.authorization.k8s.io:clusterroles", name="view")
    assert review(admin, WORKER, "create", "apps:deployments", namespace=fresh)
    assert review(admin, WORKER, "create", "serviceaccounts/token", namespace=fresh, name="envhub-workload")
    # The status watch spans every namespace.
    assert review(admin, WORKER, "watch", "apps:deployments")


def test_the_web_may_read_stream_logs_and_open_terminals(
    installed: list[dict[str, Any]], admin: client.ApiClient
) -> None:
    ns = "envhub-acme-shop-preview-4242"
    wait_for(
        lambda: review(admin, WEB, "list", "pods", namespace=ns), timeout=10, what="RBAC to see the binding"
    )
    for group, resource, verb in sorted(needs.web_needs()):
        named = needs.WEB_NAMED.get((group, resource, verb))
        extra = {"name": named} if named else {}
        assert review(admin, WEB, verb, f"{group}:{resource}", namespace=ns, **extra), (group, resource, verb)


@pytest.mark.parametrize(
    ("account", "verb", "resource", "attributes"),
    [
        # Cluster-admin things, for either account.
        (WORKER, "delete", "nodes", {}),
        (WORKER, "get", "secrets", {"namespace": "kube-system"}),
        (WORKER, "list", "secrets", {}),
        (WORKER, "create", "rbac.authorization.k8s.io:clusterrolebindings", {}),
        (WORKER, "escalate", "rbac.authorization.k8s.io:roles", {"namespace": "default"}),
        (WORKER, "bind", "rbac.authorization.k8s.io:clusterroles", {"name": "cluster-admin"}),
        (WORKER, "impersonate", "serviceaccounts", {"namespace": "kube-system"}),
        (WORKER, "create", "apiextensions.k8s.io:customresourcedefinitions", {}),
        (WORKER, "create", "networking.k8s.io:ingresses", {"namespace": "default"}),
        (WEB, "delete", "nodes", {}),
        (WEB, "get", "secrets", {"namespace": "kube-system"}),
        # The split: the web changes nothing (the workers exec, for dev containers' lifecycle
        # commands and background processes, so pods/exec is no longer the web's alone).
        (WEB, "create", "namespaces", {}),
        (WEB, "create", "apps:deployments", {"namespace": "default"}),
        (WEB, "patch", "apps:deployments/scale", {"namespace": "default"}),
        (WEB, "create", "serviceaccounts/token", {"namespace": "kube-system"}),
        (WEB, "create", "rbac.authorization.k8s.io:roles", {"namespace": "default"}),
        (WEB, "delete", "pods", {"namespace": "default"}),
    ],
)
def test_neither_account_can_do_what_envhub_does_not_need(
    installed: list[dict[str, Any]],
    admin: client.ApiClient,
    account: str,
    verb: str,
    resource: str,
    attributes: dict[str, str],
) -> None:
    wait_for(lambda: review(admin, account, "list", "namespaces"), timeout=10, what="RBAC to see the binding")
    assert not review(admin, account, verb, resource, **attributes)


# -- envhub's runtime, with the chart's accounts ---------------------------------------


def test_the_runtime_runs_an_environment_with_the_charts_accounts(
    installed: list[dict[str, Any]], admin: client.ApiClient, cluster: Any
) -> None:
    worker_api = cluster.api_client(token=token_for(admin, WORKER))
    web_api = cluster.api_client(token=token_for(admin, WEB))
    worker = KubernetesRuntime(worker_api, ready_timeout=30.0, heartbeat_interval=1.0)
    web = KubernetesRuntime(web_api, ready_timeout=30.0, heartbeat_interval=1.0)
    wait_for(
        lambda: review(admin, WORKER, "create", "namespaces"), timeout=10, what="RBAC to see the binding"
    )
    port = free_port()
    service = {
        "name": "web",
        "image": "python:3.12-slim",
        "command": ["sh", "-c", f"echo started; exec python3 -m http.server {port}"],
        "ports": [port],
    }
    target = make_target(97001, name="chart", services=[service], manifests=MANIFESTS)
    ns = namespace_for(target)
    core = client.CoreV1Api(admin)

    # The workers: apply everything, the workload Role (created without
    # "escalate"), and the user's Secret and RoleBinding to "view" among it.
    status = worker.apply(target, progress=RecordingProgress())
    assert status.state is RuntimeState.ready
    assert core.read_namespaced_secret("api-token", ns).data["token"]
    binding = client.RbacAuthorizationV1Api(admin).read_namespaced_role_binding("reader-view", ns)
    assert binding.role_ref.name == "view"
    assert worker.status(target.id).state is RuntimeState.ready
    assert target.id in worker.managed_environments()
    seen: dict[int, RuntimeStatus] = {}
    DeploymentWatcher(worker_api, seen.__setitem__).relist()  # the status watch's list, in every namespace
    assert seen[target.id].state is RuntimeState.ready

    # A user Role that would grant more than envhub holds is the API server's to refuse.
    reads_secrets = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "reads-secrets", "namespace": ns},
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}],
    }
    with pytest.raises(ClusterForbidden) as refused:
        Applier(worker_api).apply(reads_secrets)
    assert "not currently held" in refused.value.message

    # The web: what is running, its logs, a terminal.
    inspection = web.inspect(target.id)
    assert [pod.name for pod in inspection.pods]
    assert inspection.location == ns
    wait_for(lambda: "started" in list(web.logs(target.id, tail=20)), timeout=15, what="the service's log")
    session = web.exec(target.id, ["sh", "-c", "echo terminal-ok"], tty=False)
    output = b""
    while chunk := session.read(timeout=15):
        output += chunk
    assert session.wait(timeout=15) == 0
    session.close()
    assert b"terminal-ok" in output

    # The web applies nothing (the worker may exec: dev containers' lifecycle commands run there).
    with pytest.raises(ClusterForbidden):
        web.apply(make_target(97002, name="nope", services=[service]), progress=RecordingProgress())

    # Prune (the Secret left the manifests), stop, destroy.
    without_secret = "---\n".join(OTHER_MANIFESTS)
    updated = make_target(97001, generation=2, name="chart", services=[service], manifests=without_secret)
    worker.apply(updated, progress=RecordingProgress())
    with pytest.raises(client.ApiException) as gone:
        core.read_namespaced_secret("api-token", ns)
    assert gone.value.status == 404
    worker.stop(target.id)
    assert client.AppsV1Api(admin).read_namespaced_deployment("web", ns).spec.replicas == 0
    worker.destroy(target.id, progress=RecordingProgress())
    assert worker.managed_environments() == set()
