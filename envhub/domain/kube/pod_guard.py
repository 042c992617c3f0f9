"""Pod specs that would reach past the container: Pod Security "baseline", and a little more.

The reference is Kubernetes' Pod Security Standards, level "baseline"
(kubernetes.io/docs/concepts/security/pod-security-standards). Clusters from
v1.23 enforce it themselves through the label on every environment namespace
(``render.render_namespace``), for every pod whoever creates it; older clusters
(v1.20 in the tests) have nothing but this check. Refused, as baseline does:

* ``hostNetwork``, ``hostPID``, ``hostIPC``; host ports;
* privileged containers; added capabilities outside baseline's list;
* Windows ``hostProcess``;
* seccomp or AppArmor ``Unconfined`` (fields and the older annotations);
* ``procMount`` other than ``Default``; sysctls outside the safe set.

Beyond baseline, because an environment runs code nobody reviewed:

* any ``seLinuxOptions`` (baseline allows a few types; none is needed here);
* volumes other than configMap, secret, emptyDir, downwardAPI, projected,
  persistentVolumeClaim and ephemeral. Baseline refuses only hostPath, but an
  inline nfs/iscsi/rbd/cephfs/glusterfs/flexVolume/csi volume mounts whatever
  storage the node can reach, with credentials or paths the user chose, and a
  gitRepo volume runs git on the node;
* a claim (ephemeral or a StatefulSet's template) naming a ``volumeName``: it
  would bind an existing PersistentVolume, possibly another tenant's;
* ``priorityClassName: system-*``: those classes preempt the cluster's own pods.

Not refused, as in baseline: running as root, ``allowPrivilegeEscalation``
(unset means true on Linux, so refusing ``true`` would change nothing),
``nodeName`` and tolerations. The "restricted" level, when an operator picks
it, is enforced by the cluster's Pod Security admission only.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from envhub.domain.kube.names import MANAGED_SERVICE_LABEL
from envhub.domain.kube.problems import Problem, child, dig, listed, mapping

# Capabilities Pod Security "baseline" allows adding.
BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
        "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
    }
)  # fmt: skip
# Namespaced sysctls "baseline" allows (the kubelet's safe set, as of v1.29).
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
# Volume sources that only carry the pod's own data or the namespace's claims.
SAFE_VOLUMES = frozenset(
    {"configMap", "secret", "emptyDir", "downwardAPI", "projected", "persistentVolumeClaim", "ephemeral"}
)
_SAFE_VOLUMES_HINT = ", ".join(sorted(SAFE_VOLUMES))
_CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")
_APPARMOR_PREFIX = "container.apparmor.security.beta.kubernetes.io/"
_SECCOMP_POD = "seccomp.security.alpha.kubernetes.io/pod"
_SECCOMP_PREFIX = "container.seccomp.security.alpha.kubernetes.io/"

# Where built-in kinds keep their pod template.
TEMPLATE_PATHS: dict[str, tuple[str, ...]] = {
    "Deployment": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "Job": ("spec", "template"),
    "ReplicationController": ("spec", "template"),
    "PodTemplate": ("template",),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}


def pod_template_metadata(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The pod template's ``metadata`` of a built-in workload, created if absent."""
    path = TEMPLATE_PATHS.get(obj["kind"])
    template = dig(obj, *path) if path else None
    if not isinstance(template, dict):
        return None
    meta = template.setdefault("metadata", {})
    return meta if isinstance(meta, dict) else None


def pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The pod spec of a Pod or of a built-in workload's template."""
    found = pod_spec_at(obj)
    return found[1] if found else None


def pod_spec_at(obj: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]] | None:
    """(path of the pod spec, the spec, the pod's metadata) of a Pod or built-in workload."""
    if obj["kind"] == "Pod":
        spec, meta, path = obj.get("spec"), obj.get("metadata"), "spec"
    else:
        template_path = TEMPLATE_PATHS.get(obj["kind"])
        if template_path is None:
            return None
        template = dig(obj, *template_path)
        spec, meta = dig(template, "spec"), dig(template, "metadata")
        path = ".".join((*template_path, "spec"))
    if not isinstance(spec, dict):
        return None
    return path, spec, mapping(meta)


def _security_context_problems(context: Any, at: str) -> Iterator[Problem]:
    """Fields a pod's and a container's securityContext share."""
    context = mapping(context)
    if dig(context, "windowsOptions", "hostProcess") is True:
        yield Problem(child(at, "windowsOptions.hostProcess"), "Windows host processes run on the node")
    if context.get("seLinuxOptions"):
        yield Problem(child(at, "seLinuxOptions"), "custom SELinux labels are not allowed")
    if dig(context, "seccompProfile", "type") == "Unconfined":
        yield Problem(child(at, "seccompProfile.type"), "seccomp must not be Unconfined")
    if dig(context, "appArmorProfile", "type") == "Unconfined":
        yield Problem(child(at, "appArmorProfile.type"), "AppArmor must not be Unconfined")


def _container_problems(container: dict[str, Any], at: str) -> Iterator[Problem]:
    name = container.get("name")
    context_at = child(at, "securityContext")
    context = mapping(container.get("securityContext"))
    yield from _security_context_problems(context, context_at)
    if context.get("privileged") is True:
        yield Problem(
            child(context_at, "privileged"), f"container {name!r} is privileged (it controls the node)"
        )
    added = [str(cap) for cap in listed(dig(context, "capabilities", "add"))]
    extra = sorted(set(added) - BASELINE_CAPABILITIES)
    if extra:
        yield Problem(
            child(context_at, "capabilities.add"),
            f"container {name!r} adds capabilities {', '.join(extra)} (not on Pod Security baseline's list)",
        )
    if context.get("procMount") not in (None, "Default"):
        yield Problem(child(context_at, "procMount"), "only the Default /proc mount is allowed")
    for index, port in enumerate(listed(container.get("ports"))):
        if isinstance(port, dict) and port.get("hostPort"):
            yield Problem(
                child(child(at, "ports"), index) + ".hostPort",
                f"container {name!r} uses a hostPort (the node's network)",
            )


def _claim_problems(claim_spec: Any, at: str) -> Iterator[Problem]:
    """A PersistentVolumeClaim spec (own, templated or ephemeral)."""
    claim_spec = mapping(claim_spec)
    if claim_spec.get("volumeName"):
        yield Problem(
            child(at, "volumeName"), "binding a named PersistentVolume could claim another tenant's storage"
        )


def _volume_problems(volume: dict[str, Any], at: str) -> Iterator[Problem]:
    sources = [key for key in volume if key != "name"]
    for source in sources:
        if source not in SAFE_VOLUMES:
            yield Problem(
                child(at, source),
                f"{source} volume {volume.get('name')!r} is not allowed (only {_SAFE_VOLUMES_HINT})",
            )
    if "ephemeral" in volume:
        yield from _claim_problems(
            dig(volume, "ephemeral", "volumeClaimTemplate", "spec"),
            child(at, "ephemeral.volumeClaimTemplate.spec"),
        )


def _annotation_problems(meta: dict[str, Any], at: str) -> Iterator[Problem]:
    for key, value in mapping(meta.get("annotations")).items():
        where = f"{at}.annotations[{key}]"
        if key.startswith(_APPARMOR_PREFIX) and value == "unconfined":
            yield Problem(where, "AppArmor must not be unconfined")
        if (key == _SECCOMP_POD or key.startswith(_SECCOMP_PREFIX)) and value == "unconfined":
            yield Problem(where, "seccomp must not be unconfined")


# Labels that open network paths to the pods wearing them: the policy of a managed CloudNativePG
# cluster (operator in, the API server and the object store out) selects its pods by them.
RESERVED_POD_LABELS = {
    "cnpg.io/cluster": "the pods of CloudNativePG clusters wear it (envhub's network policy selects it)",
    MANAGED_SERVICE_LABEL: "the pods of envhub's managed services wear it",
}


def _label_problems(meta: dict[str, Any], at: str) -> Iterator[Problem]:
    for key in mapping(meta.get("labels")):
        if key in RESERVED_POD_LABELS:
            yield Problem(f"{at}.labels[{key}]", f"label {key} is reserved: {RESERVED_POD_LABELS[key]}")


def pod_problems(
    spec: dict[str, Any], at: str, meta: dict[str, Any] | None = None, meta_at: str = ""
) -> list[Problem]:
    """Everything refused in one pod spec found at path ``at`` (and its metadata at ``meta_at``)."""
    problems: list[Problem] = []
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field) is True:
            problems.append(Problem(child(at, field), f"{field}: true shares the node's namespaces"))
    context_at = child(at, "securityContext")
    context = mapping(spec.get("securityContext"))
    problems += _security_context_problems(context, context_at)
    for index, sysctl in enumerate(listed(context.get("sysctls"))):
        name = str(mapping(sysctl).get("name", ""))
        if name not in SAFE_SYSCTLS:
            problems.append(
                Problem(f"{context_at}.sysctls[{index}].name", f"sysctl {name!r} is not in the safe set")
            )
    priority = spec.get("priorityClassName")
    if isinstance(priority, str) and priority.startswith("system-"):
        problems.append(
            Problem(child(at, "priorityClassName"), f"{priority} is reserved for the cluster's own pods")
        )
    for index, volume in enumerate(listed(spec.get("volumes"))):
        if isinstance(volume, dict):
            problems += _volume_problems(volume, f"{child(at, 'volumes')}[{index}]")
    for field in _CONTAINER_LISTS:
        for index, container in enumerate(listed(spec.get(field))):
            if isinstance(container, dict):
                problems += _container_problems(container, f"{child(at, field)}[{index}]")
    if meta is not None:
        problems += _annotation_problems(meta, meta_at)
        problems += _label_problems(meta, meta_at)
    return problems


def workload_problems(obj: dict[str, Any]) -> list[Problem]:
    """Problems of a Pod or built-in workload's pod spec, and a StatefulSet's claim templates."""
    found = pod_spec_at(obj)
    if found is None:
        return []
    at, spec, meta = found
    meta_at = "metadata" if obj["kind"] == "Pod" else at.removesuffix(".spec") + ".metadata"
    problems = pod_problems(spec, at, meta, meta_at)
    if obj["kind"] == "StatefulSet":
        for index, template in enumerate(listed(dig(obj, "spec", "volumeClaimTemplates"))):
            problems += _claim_problems(dig(template, "spec"), f"spec.volumeClaimTemplates[{index}].spec")
    return problems


def claim_problems(obj: dict[str, Any]) -> list[Problem]:
    """Problems of a PersistentVolumeClaim object."""
    return list(_claim_problems(obj.get("spec"), "spec"))


def embedded_pod_problems(node: Any, at: str = "") -> list[Problem]:
    """Pod specs anywhere in an object of a kind envhub does not know (a custom resource).

    Anything holding a ``containers`` list is checked as a pod spec: operators
    of custom kinds (jobs, workflows, functions) turn such fields into pods
    that no other check here sees. The ``metadata``, ``data`` and
    ``stringData`` of the object itself are skipped.
    """
    problems: list[Problem] = []
    if isinstance(node, dict):
        if isinstance(node.get("containers"), list):
            problems += pod_problems(node, at)
        for key, value in node.items():
            if not at and key in ("metadata", "data", "stringData", "binaryData"):
                continue
            problems += embedded_pod_problems(value, child(at, str(key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            problems += embedded_pod_problems(value, child(at, index))
    return problems
