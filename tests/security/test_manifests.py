"""Hostile manifests: each one is refused with ``manifest_rejected``, naming the field at fault.

An attacker here controls a project's manifests (a pull request can change
them) and wants out of the environment's namespace: onto the node, into the
API server with more rights, into other tenants' traffic or storage. Every
case below goes through :func:`render_environment`, the path every deploy
takes, and must be refused before anything reaches a cluster. The benign
cases at the end show the guard is not "refuse everything".

tests/security/test_kube_escalation.py performs the RBAC escalation chain on
the real apiserver.
"""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
import yaml
from pydantic import ValidationError
from sqlmodel import Session

from envhub.domain.kube import (
    EgressDenied,
    EgressDenyList,
    ManifestRejected,
    PlatformLimits,
    namespace_for,
    render_environment,
)
from envhub.errors import ConfigurationError
from envhub.services.projects import create_project
from tests.conftest import build_settings
from tests.support.runtime import make_target
from tests.support.world import World

TARGET_ID = 1
NAMESPACE = namespace_for(make_target(TARGET_ID))
RBAC = "rbac.authorization.k8s.io/v1"


def _role(*rules: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": RBAC, "kind": "Role", "metadata": {"name": "r"}, "rules": list(rules)}


def _rule(group: str, resource: str, *verbs: str, **more: Any) -> dict[str, Any]:
    return {"apiGroups": [group], "resources": [resource], "verbs": list(verbs), **more}


def _binding(role_kind: str, role: str, subject: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": RBAC,
        "kind": "RoleBinding",
        "metadata": {"name": "b"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
        "subjects": [subject],
    }


LOCAL_SA = {"kind": "ServiceAccount", "name": "app"}
C = {"name": "c", "image": "busybox"}


def _pod_spec(**fields: Any) -> dict[str, Any]:
    return {"containers": [C], **fields}


def _container(**fields: Any) -> dict[str, Any]:
    return _pod_spec(containers=[{**C, **fields}])


def _secured(**context: Any) -> dict[str, Any]:
    return _container(securityContext=context)


def _workload(
    kind: str, spec: dict[str, Any], api_version: str = "apps/v1", *, annotations: Any = None, **more: Any
) -> dict[str, Any]:
    template: dict[str, Any] = {"spec": spec}
    if annotations:
        template["metadata"] = {"annotations": annotations}
    body: dict[str, Any] = {"selector": {"matchLabels": {"a": "b"}}, "template": template, **more}
    if kind == "CronJob":
        body = {"schedule": "@daily", "jobTemplate": {"spec": {"template": template}}}
    elif kind in ("Job", "ReplicationController"):
        body = {"template": template}
    return {"apiVersion": api_version, "kind": kind, "metadata": {"name": "w"}, "spec": body}


def _pod(spec: dict[str, Any], **metadata: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", **metadata}, "spec": spec}


def _volume(**source: Any) -> dict[str, Any]:
    return _pod(_pod_spec(volumes=[{"name": "v", **source}]))


def _service(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "s"},
        "spec": {"ports": [{"port": 80}], **spec},
    }


def _claim(**spec: Any) -> dict[str, Any]:
    body = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, **spec}
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "pvc"}, "spec": body}


def _kind(api_version: str, kind: str, **fields: Any) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": kind, "metadata": {"name": "x"}, **fields}


TEMPLATE = "spec.template.spec"
CRON = "spec.jobTemplate.spec.template.spec"
WORKLOAD_RESOURCES = [
    ("", "pods"), ("", "replicationcontrollers"), ("apps", "deployments"), ("apps", "statefulsets"),
    ("apps", "daemonsets"), ("apps", "replicasets"), ("batch", "jobs"), ("batch", "cronjobs"),
]  # fmt: skip

# (id, manifest, the field the refusal must name)
HOSTILE: list[tuple[str, dict[str, Any], str]] = [
    # -- RBAC: a workload that can create what the guard checks skips the guard --
    *[
        (f"role-{verb}-{resource}", _role(_rule(group, resource, verb)), "rules[0].resources")
        for group, resource in WORKLOAD_RESOURCES
        for verb in ("create", "patch", "update")
    ],
    (
        "role-pods-patch-by-resourceName",
        _role(_rule("", "pods", "patch", resourceNames=["x"])),
        "rules[0].resources",
    ),
    ("role-ephemeralcontainers", _role(_rule("", "pods/ephemeralcontainers", "patch")), "rules[0].resources"),
    ("role-exec-create", _role(_rule("", "pods/exec", "create")), "rules[0].resources"),
    ("role-exec-get-websocket", _role(_rule("", "pods/exec", "get")), "rules[0].resources"),
    ("role-attach", _role(_rule("", "pods/attach", "get", "create")), "rules[0].resources"),
    ("role-services-proxy", _role(_rule("", "services/proxy", "get")), "rules[0].resources"),
    ("role-wildcard-resources", _role(_rule("", "*", "get")), "rules[0].resources"),
    ("role-wildcard-subresource", _role(_rule("", "*/exec", "get")), "rules[0].resources"),
    ("role-wildcard-verbs", _role(_rule("", "configmaps", "*")), "rules[0].verbs"),
    ("role-wildcard-groups", _role(_rule("*", "configmaps", "get")), "rules[0].apiGroups"),
    ("role-escalate", _role(_rule("rbac.authorization.k8s.io", "roles", "escalate")), "rules[0].verbs"),
    ("role-bind", _role(_rule("rbac.authorization.k8s.io", "clusterroles", "bind")), "rules[0].verbs"),
    ("role-impersonate", _role(_rule("", "serviceaccounts", "impersonate")), "rules[0].verbs"),
    ("role-psp-use", _role(_rule("policy", "podsecuritypolicies", "use")), "rules[0].verbs"),
    ("role-token-create", _role(_rule("", "serviceaccounts/token", "create")), "rules[0].resources"),
    ("role-secrets-create", _role(_rule("", "secrets", "create")), "rules[0].resources"),
    (
        "role-rolebindings-create",
        _role(_rule("rbac.authorization.k8s.io", "rolebindings", "create")),
        "rules[0].resources",
    ),
    ("role-services-create", _role(_rule("", "services", "create")), "rules[0].resources"),
    (
        "role-networkpolicies-delete",
        _role(_rule("networking.k8s.io", "networkpolicies", "delete")),
        "rules[0].resources",
    ),
    ("role-custom-kind-create", _role(_rule("example.com", "runners", "create")), "rules[0].resources"),
    (
        "role-second-rule",
        _role(_rule("", "configmaps", "get"), _rule("apps", "deployments", "patch")),
        "rules[1].resources",
    ),
    (
        "role-non-resource-urls",
        _role({"nonResourceURLs": ["/metrics"], "verbs": ["get"]}),
        "rules[0].nonResourceURLs",
    ),
    ("binding-cluster-admin", _binding("ClusterRole", "cluster-admin", LOCAL_SA), "roleRef.name"),
    ("binding-admin", _binding("ClusterRole", "admin", LOCAL_SA), "roleRef.name"),
    ("binding-edit", _binding("ClusterRole", "edit", LOCAL_SA), "roleRef.name"),
    (
        "binding-all-users",
        _binding("Role", "r", {"kind": "Group", "name": "system:authenticated"}),
        "subjects[0].kind",
    ),
    ("binding-user", _binding("Role", "r", {"kind": "User", "name": "alice"}), "subjects[0].kind"),
    (
        "binding-foreign-account",
        _binding("Role", "r", {**LOCAL_SA, "namespace": "kube-system"}),
        "subjects[0].namespace",
    ),
    ("cluster-role", _kind(RBAC, "ClusterRole", rules=[]), "kind"),
    ("cluster-role-binding", _kind(RBAC, "ClusterRoleBinding", roleRef={}, subjects=[]), "kind"),
    # -- pods, in every workload kind: onto the node ---------------------------
    (
        "deployment-host-network",
        _workload("Deployment", _pod_spec(hostNetwork=True)),
        f"{TEMPLATE}.hostNetwork",
    ),
    ("statefulset-host-pid", _workload("StatefulSet", _pod_spec(hostPID=True)), f"{TEMPLATE}.hostPID"),
    ("daemonset-host-ipc", _workload("DaemonSet", _pod_spec(hostIPC=True)), f"{TEMPLATE}.hostIPC"),
    (
        "job-privileged",
        _workload("Job", _secured(privileged=True), "batch/v1"),
        f"{TEMPLATE}.containers[0].securityContext.privileged",
    ),
    (
        "cronjob-v1beta1-privileged-init",
        _workload(
            "CronJob",
            {**_pod_spec(), "initContainers": [{**C, "securityContext": {"privileged": True}}]},
            "batch/v1beta1",
        ),
        f"{CRON}.initContainers[0].securityContext.privileged",
    ),
    (
        "cronjob-v1-host-path",
        _workload("CronJob", _pod_spec(volumes=[{"name": "r", "hostPath": {"path": "/"}}]), "batch/v1"),
        f"{CRON}.volumes[0].hostPath",
    ),
    (
        "replicaset-sys-admin",
        _workload("ReplicaSet", _secured(capabilities={"add": ["SYS_ADMIN"]})),
        f"{TEMPLATE}.containers[0].securityContext.capabilities.add",
    ),
    (
        "replicationcontroller-all-caps",
        _workload("ReplicationController", _secured(capabilities={"add": ["ALL"]}), "v1"),
        f"{TEMPLATE}.containers[0].securityContext.capabilities.add",
    ),
    (
        "pod-template-host-network",
        _kind("v1", "PodTemplate", template={"spec": _pod_spec(hostNetwork=True)}),
        "template.spec.hostNetwork",
    ),
    (
        "pod-ephemeral-privileged",
        _pod({**_pod_spec(), "ephemeralContainers": [{**C, "securityContext": {"privileged": True}}]}),
        "spec.ephemeralContainers[0].securityContext.privileged",
    ),
    (
        "pod-host-port",
        _pod(_container(ports=[{"containerPort": 80, "hostPort": 80}])),
        "spec.containers[0].ports[0].hostPort",
    ),
    (
        "pod-selinux",
        _pod(_pod_spec(securityContext={"seLinuxOptions": {"type": "spc_t"}})),
        "spec.securityContext.seLinuxOptions",
    ),
    (
        "container-selinux",
        _pod(_secured(seLinuxOptions={"user": "system_u"})),
        "spec.containers[0].securityContext.seLinuxOptions",
    ),
    (
        "proc-mount-unmasked",
        _pod(_secured(procMount="Unmasked")),
        "spec.containers[0].securityContext.procMount",
    ),
    (
        "unsafe-sysctl",
        _pod(_pod_spec(securityContext={"sysctls": [{"name": "kernel.msgmax", "value": "1"}]})),
        "spec.securityContext.sysctls[0].name",
    ),
    (
        "windows-host-process",
        _pod(_pod_spec(securityContext={"windowsOptions": {"hostProcess": True}})),
        "spec.securityContext.windowsOptions.hostProcess",
    ),
    (
        "seccomp-unconfined",
        _pod(_secured(seccompProfile={"type": "Unconfined"})),
        "spec.containers[0].securityContext.seccompProfile.type",
    ),
    (
        "apparmor-unconfined-field",
        _pod(_pod_spec(securityContext={"appArmorProfile": {"type": "Unconfined"}})),
        "spec.securityContext.appArmorProfile.type",
    ),
    (
        "apparmor-unconfined-annotation",
        _pod(_pod_spec(), annotations={"container.apparmor.security.beta.kubernetes.io/c": "unconfined"}),
        "metadata.annotations[container.apparmor.security.beta.kubernetes.io/c]",
    ),
    (
        "seccomp-unconfined-template-annotation",
        _workload(
            "Deployment", _pod_spec(), annotations={"seccomp.security.alpha.kubernetes.io/pod": "unconfined"}
        ),
        "spec.template.metadata.annotations[seccomp.security.alpha.kubernetes.io/pod]",
    ),
    ("system-priority", _pod(_pod_spec(priorityClassName="system-node-critical")), "spec.priorityClassName"),
    # -- inline volumes: whatever storage the node can reach -------------------
    *[
        (f"volume-{source}", _volume(**{source: body}), f"spec.volumes[0].{source}")
        for source, body in [
            ("nfs", {"server": "10.0.0.5", "path": "/exports"}),
            ("iscsi", {"targetPortal": "10.0.0.5:3260", "iqn": "iqn.2001-04.com.example:storage", "lun": 0}),
            ("rbd", {"monitors": ["10.0.0.5:6789"], "image": "vol"}),
            ("cephfs", {"monitors": ["10.0.0.5:6789"]}),
            ("flexVolume", {"driver": "example.com/lvm"}),
            ("csi", {"driver": "secrets-store.csi.k8s.io"}),
            ("glusterfs", {"endpoints": "gluster", "path": "vol"}),
            ("gitRepo", {"repository": "https://example.com/hooks.git"}),
        ]
    ],
    (
        "ephemeral-claims-a-volume",
        _volume(ephemeral={"volumeClaimTemplate": {"spec": {"volumeName": "pv-1"}}}),
        "spec.volumes[0].ephemeral.volumeClaimTemplate.spec.volumeName",
    ),
    ("claim-names-a-volume", _claim(volumeName="pv-of-another-team"), "spec.volumeName"),
    (
        "statefulset-claims-a-volume",
        _workload(
            "StatefulSet",
            _pod_spec(),
            volumeClaimTemplates=[{"metadata": {"name": "d"}, "spec": {"volumeName": "pv-1"}}],
        ),
        "spec.volumeClaimTemplates[0].spec.volumeName",
    ),
    (
        "claim-from-another-namespace",
        _claim(dataSourceRef={"kind": "PersistentVolumeClaim", "name": "db", "namespace": "payments"}),
        "spec.dataSourceRef.namespace",
    ),
    # -- Services and traffic --------------------------------------------------
    ("service-node-port", _service(type="NodePort"), "spec.type"),
    ("service-load-balancer", _service(type="LoadBalancer"), "spec.type"),
    (
        "service-external-name",
        _service(type="ExternalName", externalName="kubernetes.default.svc"),
        "spec.type",
    ),
    ("service-external-ips", _service(externalIPs=["10.96.0.1"]), "spec.externalIPs"),
    ("endpoints", _kind("v1", "Endpoints", subsets=[{"addresses": [{"ip": "169.254.169.254"}]}]), "kind"),
    (
        "network-policy-allow-all",
        _kind("networking.k8s.io/v1", "NetworkPolicy", spec={"podSelector": {}, "egress": [{}]}),
        "kind",
    ),
    ("ingress", _kind("networking.k8s.io/v1", "Ingress", spec={}), "kind"),
    ("http-route", _kind("gateway.networking.k8s.io/v1", "HTTPRoute", spec={}), "kind"),
    ("reference-grant", _kind("gateway.networking.k8s.io/v1beta1", "ReferenceGrant", spec={}), "kind"),
    # -- the cluster itself, and other namespaces ------------------------------
    (
        "webhook",
        _kind("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration", webhooks=[]),
        "kind",
    ),
    ("crd", _kind("apiextensions.k8s.io/v1", "CustomResourceDefinition", spec={}), "kind"),
    ("api-service", _kind("apiregistration.k8s.io/v1", "APIService", spec={}), "kind"),
    ("namespace", _kind("v1", "Namespace"), "kind"),
    (
        "config-map-in-kube-system",
        {**_kind("v1", "ConfigMap"), "metadata": {"name": "x", "namespace": "kube-system"}},
        "metadata.namespace",
    ),
    (
        "envhubs-own-quota",
        _kind("v1", "ResourceQuota", spec={}) | {"metadata": {"name": "envhub-quota"}},
        "metadata.name",
    ),
    (
        "custom-kind-with-privileged-pod",
        _kind("example.com/v1", "Runner", spec={"podTemplate": {"spec": _secured(privileged=True)}}),
        "spec.podTemplate.spec.containers[0].securityContext.privileged",
    ),
]


def _render(*manifests: dict[str, Any], **spec: Any) -> list[dict[str, Any]]:
    text = yaml.safe_dump_all(manifests) if manifests else None
    return render_environment(make_target(TARGET_ID, manifests=text, **spec))


def test_the_table_is_large_and_every_id_is_unique() -> None:
    ids = [case[0] for case in HOSTILE]
    assert len(ids) == len(set(ids))
    assert len(ids) >= 25


@pytest.mark.parametrize(
    ("manifest", "field"), [case[1:] for case in HOSTILE], ids=[case[0] for case in HOSTILE]
)
def test_a_hostile_manifest_is_refused_naming_the_field(manifest: dict[str, Any], field: str) -> None:
    benign = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "fine"}, "data": {"a": "b"}}
    with pytest.raises(ManifestRejected) as refused:
        _render(benign, manifest)
    error = refused.value
    assert error.code == "manifest_rejected"
    assert error.details["field"] == field, error.message
    assert error.details["object"] == f"{manifest['kind']}/{manifest['metadata']['name']}"
    assert field in error.message or error.details["reason"] != "isolation"
    assert error.hint


def test_the_full_escalation_chain_is_refused_at_its_role() -> None:
    """ServiceAccount + Role (pods: create) + RoleBinding, then the pod that account would make."""
    chain = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "builder"}},
        _role(_rule("", "pods", "create", "get")),
        _binding("Role", "r", {"kind": "ServiceAccount", "name": "builder"}),
        _workload(
            "Deployment",
            {**_pod_spec(), "serviceAccountName": "builder", "automountServiceAccountToken": True},
        ),
    ]
    with pytest.raises(ManifestRejected) as refused:
        _render(*chain)
    details = refused.value.details
    assert (details["object"], details["reason"], details["fields"]) == (
        "Role/r",
        "isolation",
        ["rules[0].resources"],
    )
    assert "create on pods" in refused.value.message


def test_every_problem_of_an_object_is_named_not_only_the_first() -> None:
    spec = {**_secured(privileged=True, capabilities={"add": ["NET_ADMIN"]}), "hostNetwork": True}
    with pytest.raises(ManifestRejected) as refused:
        _render(_workload("Deployment", spec))
    assert refused.value.details["fields"] == [
        f"{TEMPLATE}.hostNetwork",
        f"{TEMPLATE}.containers[0].securityContext.privileged",
        f"{TEMPLATE}.containers[0].securityContext.capabilities.add",
    ]


BENIGN = """\
apiVersion: v1
kind: ServiceAccount
metadata: {name: app}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: app}
rules:
  - {apiGroups: [""], resources: [pods, services, endpoints, secrets], verbs: [get, list, watch]}
  - {apiGroups: [""], resources: [configmaps], verbs: [get, create, update, patch, delete]}
  - {apiGroups: [coordination.k8s.io], resources: [leases], verbs: [get, create, update]}
  - {apiGroups: [apps], resources: [deployments/scale], verbs: [get, patch]}
  - {apiGroups: [""], resources: [pods], verbs: [delete]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: app}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: app}
subjects: [{kind: ServiceAccount, name: app}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: app-view}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects: [{kind: ServiceAccount, name: app, namespace: NAMESPACE}]
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: db}
spec: {clusterIP: None, selector: {app: db}, ports: [{port: 5432}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: NAMESPACE}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      labels: {app: web}
      annotations: {container.apparmor.security.beta.kubernetes.io/web: runtime/default}
    spec:
      serviceAccountName: app
      securityContext:
        runAsNonRoot: true
        seccompProfile: {type: RuntimeDefault}
        sysctls: [{name: net.ipv4.ip_unprivileged_port_start, value: "0"}]
      initContainers:
        - name: migrate
          image: ghcr.io/acme/shop:1
          securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
      containers:
        - name: web
          image: ghcr.io/acme/shop:1
          env: [{name: NAMESPACE, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}]
          ports: [{containerPort: 8080}]
          securityContext:
            procMount: Default
            capabilities: {add: [NET_BIND_SERVICE, CHOWN], drop: [ALL]}
          volumeMounts:
            - {name: config, mountPath: /etc/shop}
            - {name: data, mountPath: /var/lib/shop}
      volumes:
        - {name: config, configMap: {name: shop}}
        - {name: secret, secret: {secretName: shop}}
        - {name: scratch, emptyDir: {}}
        - {name: data, persistentVolumeClaim: {claimName: data}}
        - {name: info, downwardAPI: {items: [{path: labels, fieldRef: {fieldPath: metadata.labels}}]}}
        - name: token
          projected: {sources: [{serviceAccountToken: {path: token, audience: vault}}]}
        - name: cache
          ephemeral:
            volumeClaimTemplate:
              spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
---
apiVersion: batch/v1beta1
kind: CronJob
metadata: {name: nightly}
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers: [{name: report, image: busybox, command: [sh, -c, date]}]
---
apiVersion: example.com/v1
kind: Widget
metadata: {name: w}
spec: {size: 3, containers: "not a pod spec"}
"""


def test_an_ordinary_application_is_accepted() -> None:
    objects = render_environment(make_target(TARGET_ID, manifests=BENIGN.replace("NAMESPACE", NAMESPACE)))
    mine = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert {("Role", "app"), ("RoleBinding", "app-view"), ("Deployment", "web"), ("CronJob", "nightly"),
            ("Widget", "w"), ("PersistentVolumeClaim", "data")} <= mine  # fmt: skip
    assert all(o["metadata"]["namespace"] == NAMESPACE for o in objects if o["kind"] != "Namespace")


# -- egress: the deny list ------------------------------------------------------


@pytest.mark.parametrize(
    ("egress", "field", "denied"),
    [
        ({"cidrs": ["169.254.169.254/32"]}, "egress.cidrs[0]", "169.254.169.254/32"),
        ({"cidrs": ["10.0.0.0/8", "169.254.169.254"]}, "egress.cidrs[1]", "169.254.169.254/32"),
        ({"cidrs": ["fd00:ec2::254/128"]}, "egress.cidrs[0]", "fd00:ec2::254/128"),
        ({"cidrs": ["100.100.100.200/32"]}, "egress.cidrs[0]", "100.100.100.200/32"),
        # 169.254.169.254 written as IPv6: some network plugins read it as the IPv4 address.
        ({"cidrs": ["::ffff:169.254.169.254/128"]}, "egress.cidrs[0]", "::ffff:0:0/96"),
        ({"cidrs": ["::ffff:0:0/96"]}, "egress.cidrs[0]", "::ffff:0:0/96"),
        ({"namespaces": ["kube-system"]}, "egress.namespaces[0]", "kube-system"),
        ({"services": ["kube-system/kube-dns:53"]}, "egress.services[0]", "namespace kube-system"),
        ({"services": ["default/kubernetes:443"]}, "egress.services[0]", "the API server"),
    ],
)
def test_the_allowlist_cannot_open_what_the_platform_denies(
    egress: dict[str, Any], field: str, denied: str
) -> None:
    with pytest.raises(EgressDenied) as refused:
        _render(egress=egress)
    assert refused.value.code == "egress_denied"
    assert refused.value.details["field"] == field
    assert refused.value.details["denied"] == denied


def test_the_operators_deny_list_adds_to_the_defaults() -> None:
    deny = EgressDenyList(cidrs=("10.20.0.0/16",), namespaces=("envhub", "vault"))
    for egress in (
        {"cidrs": ["10.20.1.0/24"]},
        {"namespaces": ["envhub"]},
        {"services": ["vault/vault:8200"]},
    ):
        with pytest.raises(EgressDenied):
            render_environment(make_target(TARGET_ID, egress=egress), deny=deny)
    # The defaults stay, whatever the operator lists.
    with pytest.raises(EgressDenied):
        render_environment(make_target(TARGET_ID, egress={"cidrs": ["169.254.169.254/32"]}), deny=deny)


def test_a_wide_allowlist_has_the_denied_addresses_cut_out() -> None:
    deny = EgressDenyList().extended(cidrs=["10.96.0.1/32", "192.168.1.10"])
    objects = render_environment(
        make_target(TARGET_ID, egress={"cidrs": ["0.0.0.0/0", "::/0", "10.0.0.0/8", "8.8.8.8/32"]}), deny=deny
    )
    [policy] = [o for o in objects if o["metadata"]["name"] == "envhub-allow-egress"]
    blocks = {
        peer["ipBlock"]["cidr"]: peer["ipBlock"].get("except") for peer in policy["spec"]["egress"][0]["to"]
    }
    assert blocks == {
        "0.0.0.0/0": ["169.254.169.254/32", "100.100.100.200/32", "10.96.0.1/32", "192.168.1.10/32"],
        "::/0": ["fd00:ec2::254/128"],
        "10.0.0.0/8": ["10.96.0.1/32"],
        "8.8.8.8/32": None,
    }
    kubernetes_validate.validate(policy, kubernetes_validate.latest_version(), strict=True)


# -- a project's defaults are checked when saved ---------------------------------


def test_a_project_with_hostile_manifests_or_egress_is_refused_when_saved(
    session: Session, world: World
) -> None:
    chain = yaml.safe_dump_all([_role(_rule("", "pods", "create")), _binding("Role", "r", LOCAL_SA)])
    with pytest.raises(ManifestRejected) as refused:
        create_project(session=session, actor=world.owner, team_id=world.acme, name="evil",
                       workloads={"manifests": chain})  # fmt: skip
    assert refused.value.details["field"] == "rules[0].resources"
    with pytest.raises(EgressDenied) as denied:
        create_project(session=session, actor=world.owner, team_id=world.acme, name="evil",
                       workloads={"egress": {"cidrs": ["169.254.169.254/32"]}})  # fmt: skip
    assert denied.value.details["field"] == "egress.cidrs[0]"


def test_pod_security_is_never_set_below_baseline() -> None:
    with pytest.raises(ConfigurationError, match="at least baseline"):
        PlatformLimits(pod_security="privileged")
    with pytest.raises(ValidationError):
        build_settings(kube_pod_security="privileged")
    with pytest.raises(ValidationError, match="not a CIDR block"):
        build_settings(kube_egress_deny_cidrs="10.0.0.0/8,metadata.internal")


def test_a_namespaced_custom_kind_named_cluster_is_not_refused_when_a_project_is_saved(
    session: Session, world: World
) -> None:
    # CloudNativePG's "Cluster" is namespaced; the cluster's discovery says so at deploy time.
    cluster = _kind("postgresql.cnpg.io/v1", "Cluster", spec={"instances": 1})
    project = create_project(
        session=session,
        actor=world.owner,
        team_id=world.acme,
        name="db",
        workloads={"manifests": yaml.safe_dump(cluster)},
    )
    assert project.manifests
