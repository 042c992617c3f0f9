"""The Helm chart, rendered: lint, schema validation for current Kubernetes, and what envhub relies on.

Rendered with the default values and with a production-like values file
(values-production.yaml: TLS Ingress with sign-in, 3 web replicas, existing
Secrets, network policies, the admission guard). Every object is validated
strictly (unknown fields are errors) against the schemas of Kubernetes 1.30 and
of the newest version kubernetes-validate knows.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import celpy
import kubernetes_validate
import pytest
from celpy import celtypes
from kubernetes_validate.utils import latest_version

from envhub.config import Settings
from tests.deploy import needs
from tests.deploy.conftest import (
    CHART,
    NAMESPACE,
    PRODUCTION_VALUES,
    RELEASE,
    Render,
    find,
    template_args,
)

Helm = Callable[..., subprocess.CompletedProcess[str]]
Objects = list[dict[str, Any]]

WORKER, WEB = f"{RELEASE}-worker", f"{RELEASE}-web"
CLOUDFLARED = f"{RELEASE}-cloudflared"
ACCOUNT = "0123456789abcdef0123456789abcdef"
TUNNEL = "6ff42ae2-765d-4adf-8112-31c55c1551ef"
# The cloudflare provider with everything it needs; the last entry names the connector's Secret.
CLOUDFLARE_SETS = [
    "envhub.urls.provider=cloudflare",
    f"envhub.urls.cloudflare.accountId={ACCOUNT}",
    "envhub.urls.cloudflare.zone=example.com",
    "secrets.cloudflareApiToken.name=envhub-cloudflare",
    "secrets.cloudflareTunnelToken.name=envhub-tunnel",
]
# Settings the chart passes ahead of envhub/config.py: drop a name from here once
# Settings reads it. (Sign-in and encryption are read since issue 4.)
SETTINGS_AHEAD_OF_CONFIG: set[str] = set()
VALIDATE_AT = sorted({"1.30.0", latest_version()})


@pytest.fixture(params=["default", "production"])
def objects(request: pytest.FixtureRequest) -> Objects:
    fixture = "default_objects" if request.param == "default" else "production_objects"
    return list(request.getfixturevalue(fixture))


def pod_templates(objects: Objects) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(object, pod spec) of every Deployment and Job."""
    for obj in objects:
        if obj["kind"] in ("Deployment", "Job"):
            yield obj, obj["spec"]["template"]["spec"]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in container.get("env", [])}


# -- lint and schema --------------------------------------------------------------


@pytest.mark.parametrize("values", [[], [PRODUCTION_VALUES]], ids=["default", "production"])
def test_helm_lint_is_clean(helm: Helm, values: list[Any]) -> None:
    args = ["lint", str(CHART), "--strict", "--namespace", NAMESPACE]
    for path in values:
        args += ["--values", str(path)]
    done = helm(*args)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in done.stdout


@pytest.mark.parametrize("version", VALIDATE_AT)
def test_every_object_is_valid_for_current_kubernetes(objects: Objects, version: str) -> None:
    for obj in objects:
        kubernetes_validate.validate(obj, version, strict=True)


def test_both_renders_hold_the_expected_objects(
    default_objects: Objects, production_objects: Objects
) -> None:
    def kinds(objects: Objects) -> list[tuple[str, str]]:
        return sorted((o["kind"], o["metadata"]["name"]) for o in objects)

    core = [
        ("ClusterRole", WEB),
        ("ClusterRole", WORKER),
        ("ClusterRoleBinding", WEB),
        ("ClusterRoleBinding", WORKER),
        ("ConfigMap", RELEASE),
        ("Deployment", WEB),
        ("Deployment", WORKER),
        ("Job", f"{RELEASE}-migrate"),
        ("PodDisruptionBudget", WEB),
        ("Service", WEB),
        ("ServiceAccount", WEB),
        ("ServiceAccount", WORKER),
    ]
    assert kinds(default_objects) == core
    assert kinds(production_objects) == sorted(
        [
            *core,
            ("Ingress", WEB),
            ("NetworkPolicy", RELEASE),
            ("NetworkPolicy", WEB),
            ("ValidatingAdmissionPolicy", f"{RELEASE}-guard"),
            ("ValidatingAdmissionPolicyBinding", f"{RELEASE}-guard"),
        ]
    )


def test_objects_are_helms_never_envhubs_own_environment_label(objects: Objects) -> None:
    # envhub finds its environments' objects (and garbage-collects orphans) by
    # managed-by=envhub: its own objects must never carry it.
    for obj in objects:
        labels = obj["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/managed-by") == "Helm", obj["metadata"]["name"]
        assert labels.get("app.kubernetes.io/instance") == RELEASE
        cluster_scoped = obj["kind"].startswith(("Cluster", "ValidatingAdmission"))
        assert obj["metadata"].get("namespace") == (None if cluster_scoped else NAMESPACE)


# -- ports, probes, security --------------------------------------------------------


def test_every_service_and_container_port_says_tcp(objects: Objects) -> None:
    # v1.20's server-side apply rejects a port list entry without "protocol".
    ports = [p for o in objects if o["kind"] == "Service" for p in o["spec"]["ports"]]
    ports += [p for _, spec in pod_templates(objects) for c in spec["containers"] for p in c.get("ports", [])]
    assert ports
    assert all(port.get("protocol") == "TCP" for port in ports), ports


def test_web_probes_and_service(objects: Objects) -> None:
    web = find(objects, "Deployment", WEB)["spec"]["template"]["spec"]
    [container] = web["containers"]
    assert container["ports"] == [{"name": "http", "containerPort": 3000, "protocol": "TCP"}]
    assert container["args"] == ["web", "--port", "3000"]
    # Ready only with the database (/healthz); alive and started without it (/ping),
    # so a database outage takes pods out of the Service instead of restarting them.
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/ping", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/ping", "port": "http"}
    service = find(objects, "Service", WEB)["spec"]
    assert service["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]
    assert service["selector"] == find(objects, "Deployment", WEB)["spec"]["selector"]["matchLabels"]
    # Other web pods relay terminal sockets to this one at its own address; a stopping pod
    # waits for the Service to forget it before it ends its shells (within the grace period).
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert env["ENVHUB_INTERNAL_URL"]["value"] == "http://$(POD_IP):3000"
    assert container["lifecycle"]["preStop"] == {"exec": {"command": ["sleep", "5"]}}
    assert web["terminationGracePeriodSeconds"] > 5 + 20  # preStop, then up to 20 s to end shells
    pdb = find(objects, "PodDisruptionBudget", WEB)
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["selector"] == find(objects, "Deployment", WEB)["spec"]["selector"]


def test_pods_run_as_non_root_on_a_read_only_root_filesystem(objects: Objects) -> None:
    for obj, spec in pod_templates(objects):
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] == 10001
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["enableServiceLinks"] is False
        [container] = spec["containers"]
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"] == {"drop": ["ALL"]}
        # The only writable places: the data dir and /tmp.
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert mounts == {"/var/lib/envhub": "data", "/tmp": "tmp"}, obj["metadata"]["name"]
        volumes = {v["name"] for v in spec["volumes"]}
        assert volumes == {"data", "tmp"}


def test_the_data_dir_is_an_empty_dir_unless_a_claim_is_given(
    default_objects: Objects, production_objects: Objects
) -> None:
    def data(objects: Objects) -> dict[str, Any]:
        spec = find(objects, "Deployment", WEB)["spec"]["template"]["spec"]
        return next(v for v in spec["volumes"] if v["name"] == "data")

    assert data(default_objects) == {"name": "data", "emptyDir": {"sizeLimit": "2Gi"}}
    assert data(production_objects) == {"name": "data", "persistentVolumeClaim": {"claimName": "envhub-data"}}


# -- settings: ConfigMap and Secrets ------------------------------------------------


def test_web_and_workers_read_settings_from_the_config_map_and_secrets(production_objects: Objects) -> None:
    config = find(production_objects, "ConfigMap", RELEASE)["data"]
    assert config["ENVHUB_RUNTIME"] == "kubernetes"
    assert config["ENVHUB_MODE"] == "production"
    assert config["ENVHUB_BASE_URL"] == "https://envhub.example.com"
    assert config["ENVHUB_KUBE_INGRESS_NAMESPACES"] == "envhub-system,ingress-nginx"
    assert config["ENVHUB_DATA_DIR"] == "/var/lib/envhub"
    assert config["ENVHUB_TERMINAL_GRACE"] == "600"  # extra settings pass through, as strings
    assert config["ENVHUB_OIDC_ALLOWED_DOMAINS"] == "example.com"
    # Behind the ingress: clients are told apart by the address it forwards (rate limits, audit).
    assert config["ENVHUB_TRUSTED_PROXY_HOPS"] == "1"
    assert not {"ENVHUB_DATABASE_URL", "ENVHUB_SECRET_KEY", "ENVHUB_REDIS_URL"} & set(config)
    expected = {
        "ENVHUB_DATABASE_URL": ("envhub-database", "url"),
        "ENVHUB_REDIS_URL": ("envhub-redis", "url"),
        "ENVHUB_SECRET_KEY": ("envhub-app", "secret-key"),
        "ENVHUB_ENCRYPTION_KEY": ("envhub-app", "encryption-key"),
        "ENVHUB_OIDC_CLIENT_SECRET": ("envhub-oidc", "client-secret"),
    }
    checksums = set()
    for name in (WEB, WORKER):
        deployment = find(production_objects, "Deployment", name)
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        assert container["envFrom"] == [{"configMapRef": {"name": RELEASE}}]
        env = env_of(container)
        for variable, (secret, key) in expected.items():
            assert env[variable] == {
                "name": variable,
                "valueFrom": {"secretKeyRef": {"name": secret, "key": key}},
            }
        # Settings come from the ConfigMap; in env are only references to Secrets, and the web
        # pod's own address (each pod's differs).
        own = [e["name"] for e in env.values() if e["name"].startswith("ENVHUB_") and "value" in e]
        assert own == (["ENVHUB_INTERNAL_URL"] if name == WEB else [])
        checksums.add(deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"])
    assert len(checksums) == 1


def test_a_settings_change_rolls_the_pods(render: Render) -> None:
    def checksum(objects: Objects) -> str:
        template = find(objects, "Deployment", WORKER)["spec"]["template"]
        return str(template["metadata"]["annotations"]["checksum/config"])

    before = render()
    after = render(sets=["envhub.baseUrl=https://other.example.com"])
    assert checksum(before) != checksum(after)


def test_every_envhub_setting_the_chart_sets_is_one_envhub_reads(objects: Objects) -> None:
    known = {f"ENVHUB_{name.upper()}" for name in Settings.model_fields} | SETTINGS_AHEAD_OF_CONFIG
    names = set(find(objects, "ConfigMap", RELEASE)["data"])
    for _, spec in pod_templates(objects):
        names |= {e["name"] for c in spec["containers"] for e in c.get("env", [])}
    assert {n for n in names if n.startswith("ENVHUB_")} - known == set()


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["secrets.databaseUrl.name="], "secrets.databaseUrl.name is required"),
        (["secrets.secretKey.name="], "secrets.secretKey.name is required"),
        (["secrets.redisUrl.name="], "secrets.redisUrl.name is required"),
        (["envhub.settings.ENVHUB_SECRET_KEY=x"], "ENVHUB_SECRET_KEY is a secret"),
        (["envhub.settings.DEBUG=1"], "DEBUG is not an ENVHUB_* setting"),
        (["ingress.enabled=true"], "envhub would be reachable without sign-in"),
        (["envhub.oidc.issuer=https://id.example.com"], "say who may sign in"),
        (["envhub.urls.provider=ingress"], "envhub.urls.ingress.domain: required"),
        (["envhub.urls.provider=cloud"], "envhub.urls.provider: local, ingress or cloudflare"),
        (["envhub.urls.provider=cloudflare"], "envhub.urls.cloudflare.accountId: required"),
        (
            ["envhub.urls.provider=cloudflare", f"envhub.urls.cloudflare.accountId={ACCOUNT}"],
            "envhub.urls.cloudflare.zone: required",
        ),
        (
            [
                "envhub.urls.provider=cloudflare",
                f"envhub.urls.cloudflare.accountId={ACCOUNT}",
                "envhub.urls.cloudflare.zone=example.com",
            ],
            "secrets.cloudflareApiToken.name is required",
        ),
        (
            [*CLOUDFLARE_SETS[:-1]],
            "secrets.cloudflareTunnelToken.name is required with the cloudflared connector",
        ),
        ([*CLOUDFLARE_SETS, "envhub.urls.cloudflare.tunnelId=tunnel-1"], "tunnelId: a tunnel id"),
        ([*CLOUDFLARE_SETS, "envhub.urls.cloudflare.connector.image.tag="], "image.tag: required"),
        (["envhub.settings.ENVHUB_CLOUDFLARE_API_TOKEN=x"], "ENVHUB_CLOUDFLARE_API_TOKEN is a secret"),
    ],
)
def test_unsafe_or_incomplete_values_fail_to_render(helm: Helm, sets: list[str], message: str) -> None:
    done = helm(*template_args(sets=sets))
    assert done.returncode != 0
    assert message in done.stderr


def test_a_plain_redis_url_replaces_the_secret(render: Render) -> None:
    objects = render(sets=["redisUrl=redis://redis.data:6379/0", "secrets.redisUrl.name="])
    [container] = find(objects, "Deployment", WORKER)["spec"]["template"]["spec"]["containers"]
    assert env_of(container)["ENVHUB_REDIS_URL"] == {
        "name": "ENVHUB_REDIS_URL",
        "value": "redis://redis.data:6379/0",
    }


# -- the migrations Job -------------------------------------------------------------


def test_migrations_run_as_a_helm_hook_before_install_and_upgrade(objects: Objects) -> None:
    job = find(objects, "Job", f"{RELEASE}-migrate")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    spec = job["spec"]["template"]["spec"]
    assert spec["restartPolicy"] == "Never"
    [container] = spec["containers"]
    assert container["args"] == ["migrate"]
    # A pre-install hook runs before the release's ConfigMap and ServiceAccounts
    # exist: it must use neither, and it needs no API token.
    assert "envFrom" not in container
    assert "serviceAccountName" not in spec
    assert spec["automountServiceAccountToken"] is False
    env = env_of(container)
    assert env["ENVHUB_MODE"]["value"] == "production"
    assert set(env) >= {"ENVHUB_DATABASE_URL", "ENVHUB_SECRET_KEY"}
    assert "ENVHUB_REDIS_URL" not in env  # only what migrating needs
    assert "ENVHUB_OIDC_CLIENT_SECRET" not in env


def test_the_job_and_the_deployments_run_the_same_image(production_objects: Objects) -> None:
    images = {c["image"] for _, spec in pod_templates(production_objects) for c in spec["containers"]}
    assert images == {"registry.example.com/platform/envhub:0.1.0"}
    for _, spec in pod_templates(production_objects):
        assert spec["imagePullSecrets"] == [{"name": "registry-credentials"}]


# -- RBAC ---------------------------------------------------------------------------


def rules(objects: Objects, name: str) -> list[dict[str, Any]]:
    return list(find(objects, "ClusterRole", name)["rules"])


def test_every_manifest_kind_is_mapped() -> None:
    assert set(needs.manifest_kinds()) <= set(needs.MANIFEST_RESOURCES)


def test_the_workers_role_is_exactly_what_the_runtime_needs(default_objects: Objects) -> None:
    worker = rules(default_objects, WORKER)
    missing = {need for need in needs.worker_needs() if not needs.allows(worker, *need)}
    assert missing == set()
    for role in needs.worker_binds():
        assert needs.allows(worker, "rbac.authorization.k8s.io", "clusterroles", "bind", name=role)
    # Nothing beyond it: every grant is a need (bind is limited to those names).
    extra = needs.granted(worker) - needs.worker_needs()
    assert extra == {("rbac.authorization.k8s.io", "clusterroles", "bind")}
    [bind] = [r for r in worker if "bind" in r["verbs"]]
    assert bind["resourceNames"] == sorted(needs.worker_binds())


def test_the_webs_role_only_reads_streams_logs_and_opens_terminals(default_objects: Objects) -> None:
    web = rules(default_objects, WEB)
    missing = {
        need for need in needs.web_needs() if not needs.allows(web, *need, name=needs.WEB_NAMED.get(need))
    }
    assert missing == set()
    assert needs.granted(web) == needs.web_needs()
    for need in needs.WEB_NAMED:  # for that name only
        assert not needs.allows(web, *need, name="default")


@pytest.mark.parametrize("account", [WORKER, WEB])
def test_no_role_can_escalate_impersonate_or_read_secrets(default_objects: Objects, account: str) -> None:
    granted = rules(default_objects, account)
    for rule in granted:
        for field in ("verbs", "resources", "apiGroups"):
            assert "*" not in rule[field], rule
        assert "nonResourceURLs" not in rule
    rbac = "rbac.authorization.k8s.io"
    forbidden = [
        (rbac, "roles", "escalate"),
        (rbac, "clusterroles", "escalate"),
        (rbac, "roles", "bind"),
        (rbac, "clusterroles", "create"),
        (rbac, "clusterrolebindings", "create"),
        ("", "users", "impersonate"),
        ("", "serviceaccounts", "impersonate"),
        ("", "secrets", "get"),
        ("", "secrets", "list"),
        ("", "secrets", "watch"),
        ("", "nodes", "delete"),
        ("", "nodes", "get"),
        ("", "persistentvolumes", "create"),
        ("apiextensions.k8s.io", "customresourcedefinitions", "create"),
        ("admissionregistration.k8s.io", "validatingwebhookconfigurations", "delete"),
        ("networking.k8s.io", "ingresses", "create"),  # user Ingresses are refused (guards.py)
    ]
    assert [f for f in forbidden if needs.allows(granted, *f)] == []
    # "bind" only on the ClusterRole "view", never on admin or cluster-admin.
    assert not needs.allows(granted, rbac, "clusterroles", "bind", name="admin")
    assert not needs.allows(granted, rbac, "clusterroles", "bind", name="cluster-admin")


def test_the_web_cannot_change_anything(default_objects: Objects) -> None:
    web = rules(default_objects, WEB)
    writes = {"create", "patch", "update", "delete", "deletecollection"}
    # Opening terminals, minting a short-lived token for a workload account (by name),
    # reviewing a workspace's token (git credentials), and the gateway's requests to apps
    # through the service proxy (writes to nothing in the cluster: RBAC names them after
    # the HTTP method).
    assert {(g, r, v) for g, r, v in needs.granted(web) if v in writes} == {
        ("", "pods/exec", "create"),
        ("", "serviceaccounts/token", "create"),
        ("authentication.k8s.io", "tokenreviews", "create"),
    } | {need for need in needs.SERVICE_PROXY if need[2] in writes}


def test_extra_rules_extend_the_workers_role(production_objects: Objects) -> None:
    worker = rules(production_objects, WORKER)
    assert needs.allows(worker, "cert-manager.io", "certificates", "create")
    assert not needs.allows(rules(production_objects, WEB), "cert-manager.io", "certificates", "create")


def test_the_bindings_give_each_account_its_role(objects: Objects) -> None:
    for name in (WORKER, WEB):
        binding = find(objects, "ClusterRoleBinding", name)
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": name,
        }
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": name, "namespace": NAMESPACE}]
        account = find(objects, "ServiceAccount", name)
        assert account["automountServiceAccountToken"] is False  # only the pods that use it mount it
    for deployment, account in ((WEB, WEB), (WORKER, WORKER)):
        spec = find(objects, "Deployment", deployment)["spec"]["template"]["spec"]
        assert spec["serviceAccountName"] == account
        assert spec["automountServiceAccountToken"] is True


def test_the_admission_guard_confines_envhubs_accounts(production_objects: Objects, helm: Helm) -> None:
    policy = find(production_objects, "ValidatingAdmissionPolicy", f"{RELEASE}-guard")["spec"]
    [condition] = policy["matchConditions"]
    for account in (WEB, WORKER):
        assert f'"system:serviceaccount:{NAMESPACE}:{account}"' in condition["expression"]
    assert policy["failurePolicy"] == "Fail"
    [rule] = policy["matchConstraints"]["resourceRules"]
    assert set(rule["operations"]) == {"CREATE", "UPDATE", "DELETE", "CONNECT"}
    assert rule["resources"] == ["*", "*/*"]
    variables = {v["name"]: v["expression"] for v in policy["variables"]}
    assert '["envhub-system"]' in variables["inManagedNamespace"]
    binding = find(production_objects, "ValidatingAdmissionPolicyBinding", f"{RELEASE}-guard")["spec"]
    assert binding == {"policyName": f"{RELEASE}-guard", "validationActions": ["Deny"]}
    # Older clusters have no ValidatingAdmissionPolicy: refuse instead of installing nothing.
    done = helm(*template_args(values=[PRODUCTION_VALUES], kube_version="1.29.0"))
    assert done.returncode != 0
    assert "rbac.admissionGuard needs Kubernetes 1.30" in done.stderr


class _Object(celtypes.MapType):
    """An object in the guard's CEL. Kubernetes' CEL compares any value with null
    (``object != null``); cel-python's maps compare with null for ``==`` only."""

    def __ne__(self, other: Any) -> bool:
        return True if other is None else bool(super().__ne__(other))


def _cel_object(obj: dict[str, Any] | None) -> Any:
    return None if obj is None else _Object(celpy.json_to_cel(obj))


class Guard:
    """The admission guard's CEL, evaluated as the API server would for one request (cel-python)."""

    def __init__(self, policy: dict[str, Any]) -> None:
        environment = celpy.Environment()
        compile_ = lambda text: environment.program(environment.compile(text))  # noqa: E731
        self.conditions = [compile_(c["expression"]) for c in policy["matchConditions"]]
        self.variables = [(v["name"], compile_(v["expression"])) for v in policy["variables"]]
        self.validations = [(compile_(v["expression"]), v["message"]) for v in policy["validations"]]

    def refusals(
        self,
        *,
        user: str,
        operation: str,
        resource: tuple[str, str],
        obj: dict[str, Any] | None = None,
        old: dict[str, Any] | None = None,
        namespace: dict[str, Any] | None = None,
    ) -> list[str] | None:
        """Messages of the failed validations; None when the policy does not apply to the request."""
        request = {"operation": operation, "resource": {"group": resource[0], "resource": resource[1]},
                   "userInfo": {"username": user}}  # fmt: skip
        activation: dict[str, Any] = {
            "request": celpy.json_to_cel(request),
            "object": _cel_object(obj),
            "oldObject": _cel_object(old),
            "namespaceObject": _cel_object(namespace),
        }
        if not all(condition.evaluate(activation) for condition in self.conditions):
            return None
        computed = celtypes.MapType()
        for name, program in self.variables:
            computed[celtypes.StringType(name)] = program.evaluate({**activation, "variables": computed})
        activation["variables"] = computed
        return [
            " ".join(message.split())
            for program, message in self.validations
            if not program.evaluate(activation)
        ]


def _namespace(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def test_the_admission_guard_holds_envhub_to_its_namespaces_and_pod_security(
    production_objects: Objects,
) -> None:
    guard = Guard(find(production_objects, "ValidatingAdmissionPolicy", f"{RELEASE}-guard")["spec"])
    worker = f"system:serviceaccount:{NAMESPACE}:{WORKER}"
    namespaces = ("", "namespaces")
    pss = {"pod-security.kubernetes.io/enforce": "baseline"}
    managed = {"app.kubernetes.io/managed-by": "envhub"}
    ours = _namespace("envhub-acme-shop-dev-7", **managed, **pss)

    assert guard.refusals(user=worker, operation="CREATE", resource=namespaces, obj=ours) == []
    strict = _namespace(
        "envhub-acme-shop-dev-7", **managed, **{"pod-security.kubernetes.io/enforce": "restricted"}
    )
    assert guard.refusals(user=worker, operation="UPDATE", resource=namespaces, obj=strict, old=ours) == []
    assert guard.refusals(user=worker, operation="DELETE", resource=namespaces, old=ours) == []
    # Without Pod Security, or at "privileged": refused, so no pod in it escapes the cluster's own check.
    for labels in ({}, {"pod-security.kubernetes.io/enforce": "privileged"}):
        bare = _namespace("envhub-acme-shop-dev-7", **managed, **labels)
        assert guard.refusals(user=worker, operation="CREATE", resource=namespaces, obj=bare) == [
            "envhub's namespaces must enforce Pod Security baseline or restricted "
            "(label pod-security.kubernetes.io/enforce)"
        ]
        assert guard.refusals(user=worker, operation="UPDATE", resource=namespaces, obj=bare, old=ours)
    # A namespace with envhub's labels but another name is never envhub's to create, adopt or delete.
    decoy = _namespace("team-billing", **managed, **pss)
    for operation, obj, old in (("CREATE", decoy, None), ("UPDATE", decoy, decoy), ("DELETE", None, decoy)):
        assert guard.refusals(user=worker, operation=operation, resource=namespaces, obj=obj, old=old)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}
    assert (
        guard.refusals(user=worker, operation="CREATE", resource=("", "pods"), obj=pod, namespace=ours) == []
    )
    assert guard.refusals(user=worker, operation="CREATE", resource=("", "pods"), obj=pod, namespace=decoy)
    # Someone else's requests are not the policy's business.
    admin = "kubernetes-admin"
    assert guard.refusals(user=admin, operation="CREATE", resource=namespaces, obj=decoy) is None


# -- Ingress and network policy -----------------------------------------------------


def test_the_ingress_serves_the_web_over_tls_with_long_lived_websockets(production_objects: Objects) -> None:
    ingress = find(production_objects, "Ingress", WEB)
    spec = ingress["spec"]
    assert spec["ingressClassName"] == "nginx"
    assert spec["tls"] == [{"hosts": ["envhub.example.com"], "secretName": "envhub-tls"}]
    [rule] = spec["rules"]
    assert rule["host"] == "envhub.example.com"
    [path] = rule["http"]["paths"]
    assert path["backend"] == {"service": {"name": WEB, "port": {"name": "http"}}}
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/affinity"] == "cookie"
    assert annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "3600"
    assert annotations["cert-manager.io/cluster-issuer"] == "letsencrypt"  # the user's kept


def test_network_policies_close_envhubs_pods_but_the_web_port(production_objects: Objects) -> None:
    everything = find(production_objects, "NetworkPolicy", RELEASE)["spec"]
    assert everything["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "envhub",
        "app.kubernetes.io/instance": RELEASE,
    }
    assert everything["ingress"] == []
    assert everything["policyTypes"] == ["Ingress", "Egress"]
    dns, *rest = everything["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert len(rest) == 3
    web = find(production_objects, "NetworkPolicy", WEB)["spec"]
    [allowed] = web["ingress"]
    assert allowed["ports"] == [{"port": "http", "protocol": "TCP"}]
    operators, web_pods, workspaces, *proxies = allowed["from"]
    # The operator's list, the other web pods (they relay terminal sockets to the pod holding
    # the shell), environments' workspace pods (their git credential helper), then the URL
    # provider's proxies (sign-in projects' traffic comes to the gateway).
    assert operators["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "ingress-nginx"}
    web_selector = find(production_objects, "Deployment", WEB)["spec"]["selector"]["matchLabels"]
    assert web_pods == {"podSelector": {"matchLabels": web_selector}}
    assert workspaces == {
        "namespaceSelector": {"matchLabels": {"app.kubernetes.io/managed-by": "envhub"}},
        "podSelector": {"matchLabels": {"envhub.dev/service": "workspace"}},
    }
    # ...which is where the workspaces' own policy lets them go (domain/kube/git_credentials.py).
    settings = find(production_objects, "ConfigMap", RELEASE)["data"]
    pod_labels = dict(pair.split("=") for pair in settings["ENVHUB_KUBE_WEB_POD_LABELS"].split(","))
    web_pod = find(production_objects, "Deployment", WEB)["spec"]["template"]
    assert pod_labels.items() <= web_pod["metadata"]["labels"].items()
    [container] = [c for c in web_pod["spec"]["containers"] if c["name"] == "web"]
    assert int(settings["ENVHUB_KUBE_WEB_POD_PORT"]) in {p["containerPort"] for p in container["ports"]}
    providers = find(production_objects, "ConfigMap", RELEASE)["data"]["ENVHUB_KUBE_INGRESS_NAMESPACES"]
    namespaces = [peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for peer in proxies]
    assert namespaces == providers.split(",")


def test_notes_warn_about_missing_sign_in(helm: Helm) -> None:
    done = helm("install", RELEASE, str(CHART), "--dry-run=client", "--namespace", NAMESPACE)
    assert done.returncode == 0, done.stderr
    assert "WARNING: no OpenID Connect sign-in is configured" in done.stdout
    assert "port-forward service/envhub-web 3000:80" in done.stdout
    done = helm(
        "install",
        RELEASE,
        str(CHART),
        "--dry-run=client",
        "--namespace",
        NAMESPACE,
        "--values",
        str(PRODUCTION_VALUES),
    )
    assert done.returncode == 0, done.stderr
    assert "WARNING" not in done.stdout
    assert "sticky" not in done.stdout  # several web replicas need no affinity
    assert "https://envhub.example.com/" in done.stdout


def test_the_ingress_provider_moves_the_grants_from_the_web_to_the_workers(render: Render) -> None:
    objects = render(
        sets=[
            "envhub.urls.provider=ingress",
            "envhub.urls.ingress.domain=preview.example.com",
            "envhub.urls.ingress.className=nginx",
            "envhub.urls.ingress.clusterIssuer=letsencrypt",
        ]
    )
    settings = find(objects, "ConfigMap", RELEASE)["data"]
    assert {
        name: value for name, value in settings.items() if "URL_PROVIDER" in name or "INGRESS_" in name
    } == {
        "ENVHUB_URL_PROVIDER": "ingress",
        "ENVHUB_INGRESS_DOMAIN": "preview.example.com",
        "ENVHUB_INGRESS_CLASS": "nginx",
        "ENVHUB_INGRESS_CLUSTER_ISSUER": "letsencrypt",
        "ENVHUB_KUBE_INGRESS_NAMESPACES": "envhub-system",
    }
    worker, web = rules(objects, WORKER), rules(objects, WEB)
    assert needs.granted(worker) - needs.worker_needs(ingress=True) == {
        ("rbac.authorization.k8s.io", "clusterroles", "bind")
    }
    assert {need for need in needs.worker_needs(ingress=True) if not needs.allows(worker, *need)} == set()
    assert needs.granted(web) == needs.web_needs(local_urls=False)


def test_local_urls_are_the_default_with_their_domain(render: Render) -> None:
    settings = find(render(sets=["envhub.urls.localUrlDomain=envs.example.com"]), "ConfigMap", RELEASE)[
        "data"
    ]
    assert (settings["ENVHUB_URL_PROVIDER"], settings["ENVHUB_LOCAL_URL_DOMAIN"]) == (
        "local",
        "envs.example.com",
    )


def test_the_gateway_is_named_by_the_web_service_as_the_cluster_reaches_it(render: Render) -> None:
    objects = render(sets=["web.service.port=8080"])
    settings = find(objects, "ConfigMap", RELEASE)["data"]
    web = find(objects, "Service", WEB)
    assert settings["ENVHUB_GATEWAY_INTERNAL_URL"] == f"http://{WEB}.{NAMESPACE}.svc:8080"
    assert web["spec"]["ports"][0]["port"] == 8080


@pytest.mark.parametrize("version", VALIDATE_AT)
def test_the_cloudflare_provider_runs_the_connector_from_the_tunnel_token(
    render: Render, version: str
) -> None:
    objects = render(
        values=[PRODUCTION_VALUES], sets=[*CLOUDFLARE_SETS, f"envhub.urls.cloudflare.tunnelId={TUNNEL}"]
    )
    for obj in objects:
        kubernetes_validate.validate(obj, version, strict=True)
    settings = find(objects, "ConfigMap", RELEASE)["data"]
    assert {
        name: value for name, value in settings.items() if "CLOUDFLARE" in name or "URL_PROVIDER" in name
    } == {
        "ENVHUB_URL_PROVIDER": "cloudflare",
        "ENVHUB_CLOUDFLARE_ACCOUNT_ID": ACCOUNT,
        "ENVHUB_CLOUDFLARE_ZONE": "example.com",
        "ENVHUB_CLOUDFLARE_TUNNEL_ID": TUNNEL,
        "ENVHUB_CLOUDFLARE_TUNNEL_NAME": "envhub",
    }
    # The connector runs here: environments accept its traffic.
    assert settings["ENVHUB_KUBE_INGRESS_NAMESPACES"] == f"envhub-system,ingress-nginx,{NAMESPACE}"

    connector = find(objects, "Deployment", CLOUDFLARED)
    spec = connector["spec"]["template"]["spec"]
    [container] = spec["containers"]
    assert container["image"] == "cloudflare/cloudflared:2025.11.1"
    assert container["args"] == ["tunnel", "--no-autoupdate", "--metrics", "0.0.0.0:2000", "run"]
    assert env_of(container) == {
        "TUNNEL_TOKEN": {
            "name": "TUNNEL_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": "envhub-tunnel", "key": "cloudflare-tunnel-token"}},
        }
    }
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "metrics"}
    assert spec["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in spec  # no API access: the namespace's default, without a token
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert connector["spec"]["replicas"] == 2

    api_token = {
        "name": "ENVHUB_CLOUDFLARE_API_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "envhub-cloudflare", "key": "cloudflare-api-token"}},
    }
    for name in (WEB, WORKER):
        [envhub] = find(objects, "Deployment", name)["spec"]["template"]["spec"]["containers"]
        assert env_of(envhub)["ENVHUB_CLOUDFLARE_API_TOKEN"] == api_token
        assert "TUNNEL_TOKEN" not in env_of(envhub)
    [migrate] = find(objects, "Job", f"{RELEASE}-migrate")["spec"]["template"]["spec"]["containers"]
    assert env_of(migrate)["ENVHUB_URL_PROVIDER"] == {"name": "ENVHUB_URL_PROVIDER", "value": "local"}
    assert "ENVHUB_CLOUDFLARE_API_TOKEN" not in env_of(migrate)

    # Neither the gateway's service proxy nor Ingresses: Cloudflare routes to Services directly.
    worker, web = rules(objects, WORKER), rules(objects, WEB)
    assert needs.granted(worker) - needs.worker_needs() == {
        ("rbac.authorization.k8s.io", "clusterroles", "bind"),
        ("cert-manager.io", "certificates", "create"),
        ("cert-manager.io", "certificates", "patch"),
        ("cert-manager.io", "certificates", "delete"),
    }
    assert needs.granted(web) == needs.web_needs(local_urls=False)


def test_the_connector_is_optional_and_absent_for_other_providers(
    render: Render, default_objects: Objects
) -> None:
    assert [o for o in default_objects if o["metadata"]["name"] == CLOUDFLARED] == []
    objects = render(sets=[*CLOUDFLARE_SETS[:-1], "envhub.urls.cloudflare.connector.enabled=false"])
    assert [o for o in objects if o["metadata"]["name"] == CLOUDFLARED] == []
    assert find(objects, "ConfigMap", RELEASE)["data"]["ENVHUB_KUBE_INGRESS_NAMESPACES"] == "envhub-system"


# -- metrics ------------------------------------------------------------------------

MONITORED = [
    "metrics.serviceMonitor.enabled=true",
    "metrics.serviceMonitor.labels.release=kube-prometheus-stack",
    "secrets.metricsToken.name=envhub-metrics",
]


def test_workers_serve_their_metrics_on_the_pods_address_and_no_monitor_by_default(
    default_objects: Objects, render: Render
) -> None:
    config = find(default_objects, "ConfigMap", RELEASE)["data"]
    assert (config["ENVHUB_WORKER_METRICS_PORT"], config["ENVHUB_WORKER_METRICS_HOST"]) == ("9101", "0.0.0.0")
    assert config["ENVHUB_LOG_FORMAT"] == "text"
    [worker] = find(default_objects, "Deployment", WORKER)["spec"]["template"]["spec"]["containers"]
    assert worker["ports"] == [
        {"name": "metrics", "containerPort": 9101, "protocol": "TCP"},
        {"name": "reconciler", "containerPort": 9102, "protocol": "TCP"},
    ]
    assert not [o for o in default_objects if o["kind"] == "ServiceMonitor"]
    [web] = find(default_objects, "Deployment", WEB)["spec"]["template"]["spec"]["containers"]
    assert "ENVHUB_METRICS_TOKEN" not in env_of(web)

    off = render(sets=["metrics.workerPort=0", "envhub.logFormat=json"])
    [worker] = find(off, "Deployment", WORKER)["spec"]["template"]["spec"]["containers"]
    assert "ports" not in worker
    assert "ENVHUB_WORKER_METRICS_PORT" not in find(off, "ConfigMap", RELEASE)["data"]
    assert find(off, "ConfigMap", RELEASE)["data"]["ENVHUB_LOG_FORMAT"] == "json"


@pytest.mark.parametrize("version", VALIDATE_AT)
def test_the_service_monitors_scrape_the_web_with_the_token_and_both_ports_of_every_worker(
    render: Render, version: str
) -> None:
    objects = render(sets=MONITORED)
    web_monitor = find(objects, "ServiceMonitor", WEB)
    assert web_monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert web_monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    web_service = find(objects, "Service", WEB)
    assert web_monitor["spec"]["selector"]["matchLabels"].items() <= web_service["metadata"]["labels"].items()
    assert web_monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    [endpoint] = web_monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in web_service["spec"]["ports"]}
    assert (endpoint["path"], endpoint["interval"], endpoint["scrapeTimeout"]) == ("/metrics", "30s", "10s")
    assert endpoint["authorization"] == {
        "type": "Bearer",
        "credentials": {"name": "envhub-metrics", "key": "metrics-token"},
    }
    [web] = find(objects, "Deployment", WEB)["spec"]["template"]["spec"]["containers"]
    assert env_of(web)["ENVHUB_METRICS_TOKEN"]["valueFrom"] == {
        "secretKeyRef": {"name": "envhub-metrics", "key": "metrics-token"}
    }
    [worker] = find(objects, "Deployment", WORKER)["spec"]["template"]["spec"]["containers"]
    assert "ENVHUB_METRICS_TOKEN" not in env_of(worker)  # the worker's ports want no token

    # Every worker pod, on both ports: a headless Service over the workers' named ports.
    workers = find(objects, "Service", f"{RELEASE}-worker-metrics")
    kubernetes_validate.validate(workers, version, strict=True)
    assert workers["spec"]["clusterIP"] == "None"
    assert (
        workers["spec"]["selector"] == find(objects, "Deployment", WORKER)["spec"]["selector"]["matchLabels"]
    )
    assert [(p["name"], p["port"], p["targetPort"]) for p in workers["spec"]["ports"]] == [
        ("metrics", 9101, "metrics"),
        ("reconciler", 9102, "reconciler"),
    ]
    assert {p["targetPort"] for p in workers["spec"]["ports"]} <= {p["name"] for p in worker["ports"]}
    worker_monitor = find(objects, "ServiceMonitor", WORKER)
    assert worker_monitor["spec"]["selector"]["matchLabels"].items() <= workers["metadata"]["labels"].items()
    assert (
        not worker_monitor["spec"]["selector"]["matchLabels"].items()
        <= web_service["metadata"]["labels"].items()
    )
    assert [(e["port"], e["path"]) for e in worker_monitor["spec"]["endpoints"]] == [
        ("metrics", "/metrics"),
        ("reconciler", "/metrics"),
    ]
    assert all("authorization" not in e for e in worker_monitor["spec"]["endpoints"])


def test_network_policies_let_prometheus_reach_the_metric_ports_only_when_told(
    render: Render, production_objects: Objects
) -> None:
    assert not [o for o in production_objects if o["metadata"]["name"] == f"{RELEASE}-worker-metrics"]
    prometheus = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    objects = render(
        values=[PRODUCTION_VALUES],
        sets=[
            "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name=monitoring"
        ],
    )
    workers = find(objects, "NetworkPolicy", f"{RELEASE}-worker-metrics")["spec"]
    assert workers["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "worker"
    [allowed] = workers["ingress"]
    assert allowed["ports"] == [
        {"port": "metrics", "protocol": "TCP"},
        {"port": "reconciler", "protocol": "TCP"},
    ]
    assert allowed["from"] == [prometheus]
    scrape, served = find(objects, "NetworkPolicy", WEB)["spec"]["ingress"]
    assert scrape == {"ports": [{"port": "http", "protocol": "TCP"}], "from": [prometheus]}
    assert prometheus not in served["from"]  # webFrom is unchanged


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["envhub.logFormat=xml"], "envhub.logFormat: text or json"),
        (["envhub.settings.ENVHUB_METRICS_TOKEN=x"], "ENVHUB_METRICS_TOKEN is a secret"),
    ],
)
def test_bad_metrics_and_log_values_fail_to_render(helm: Helm, sets: list[str], message: str) -> None:
    done = helm(*template_args(sets=sets))
    assert done.returncode != 0
    assert message in done.stderr


# -- object store -------------------------------------------------------------------

OBJECT_STORE = [
    "envhub.objectStore.bucket=envhub-files",
    "envhub.objectStore.url=http://minio.storage:9000",
    "secrets.objectStoreAccessKeyId.name=envhub-s3",
    "secrets.objectStoreSecretAccessKey.name=envhub-s3",
]


def test_the_object_store_reaches_web_and_workers_and_is_off_by_default(
    default_objects: Objects, render: Render
) -> None:
    assert not any(
        name.startswith("ENVHUB_OBJECT_STORE") for name in find(default_objects, "ConfigMap", RELEASE)["data"]
    )

    objects = render(sets=OBJECT_STORE)
    config = find(objects, "ConfigMap", RELEASE)["data"]
    assert config["ENVHUB_OBJECT_STORE_BUCKET"] == "envhub-files"
    assert config["ENVHUB_OBJECT_STORE_URL"] == "http://minio.storage:9000"
    assert config["ENVHUB_OBJECT_STORE_REGION"] == "us-east-1"
    for name in (WEB, WORKER):
        [container] = find(objects, "Deployment", name)["spec"]["template"]["spec"]["containers"]
        env = env_of(container)
        assert env["ENVHUB_OBJECT_STORE_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {
            "name": "envhub-s3",
            "key": "object-store-access-key-id",
        }
        assert env["ENVHUB_OBJECT_STORE_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {
            "name": "envhub-s3",
            "key": "object-store-secret-access-key",
        }
    # What the chart passes, envhub reads as a valid configuration.
    Settings(
        **{
            key.removeprefix("ENVHUB_").lower(): value
            for key, value in config.items()
            if "OBJECT_STORE" in key
        }
    )

    keyless = render(sets=OBJECT_STORE[:2])  # an IAM role for the service account instead of keys
    [web] = find(keyless, "Deployment", WEB)["spec"]["template"]["spec"]["containers"]
    assert "ENVHUB_OBJECT_STORE_ACCESS_KEY_ID" not in env_of(web)


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["envhub.objectStore.url=http://minio:9000"], "envhub.objectStore.url is set without a bucket"),
        (OBJECT_STORE[2:], "named without a bucket"),
        (OBJECT_STORE[:3], "name both or neither"),
        (["envhub.settings.ENVHUB_OBJECT_STORE_SECRET_ACCESS_KEY=x"], "is a secret"),
    ],
)
def test_incomplete_object_store_values_fail_to_render(helm: Helm, sets: list[str], message: str) -> None:
    done = helm(*template_args(sets=sets))
    assert done.returncode != 0
    assert message in done.stderr
