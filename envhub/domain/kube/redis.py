"""A project's managed Redis (issue 13) as objects of the environment's own namespace.

On a cluster, a declared ``redis`` service is a workload of the environment:
applied with its other objects, counted against its quota, pruned when the
project stops declaring it and removed with the namespace. Its objects are all
named ``envhub-redis-<service>``:

* A **Secret** with the server's whole configuration, mounted read-only. The
  tenant's user is given there by the SHA-256 digest of its password
  (``user default reset #<digest> ...``, the embedded server's rules and
  denied commands): the clear password is in no object of the server's and in
  no pod spec, only in the environment's own Secret, as ``REDIS_URL``.
* A **PersistentVolumeClaim** when the service is ``persistent`` (the
  declaration's ``size``, else :data:`DEFAULT_SIZE`; the operator's storage
  class, else the cluster's default), and the data is kept in an append-only
  file plus snapshots. An in-memory Redis saves nothing and gets
  an ``emptyDir`` of that size for ``dir`` (a tenant's own SAVE writes there).
* A **Deployment** of one pod, ``Recreate``, so two servers never share the
  volume. Not a StatefulSet: its claim would come from an immutable template
  and outlive it, where this claim is one of envhub's objects (pruned with the
  declaration, grown with its size), and ``stop`` scales Deployments to zero
  with the rest of the environment. A digest of the configuration on the pod
  template rolls the pod when the password is rotated. The pod runs the
  operator's pinned image as its ``redis`` user (999): non-root, read-only root
  filesystem, no capabilities, no privilege escalation, RuntimeDefault
  seccomp, no service-account token (Pod Security "restricted"). Its
  arguments go to the official image's entrypoint. Requests and limits are
  small and fixed (:data:`REQUESTS`, :data:`LIMITS`), inside the namespace's
  default quota; ``maxmemory`` stays well below the memory limit (room for
  the fork that rewrites the append-only file), so a full Redis refuses
  writes instead of being killed.
* A ClusterIP **Service** (``protocol: TCP``): the workloads' address is
  ``envhub-redis-<service>.<namespace>.svc:6379`` (:func:`redis_host`).
* A **NetworkPolicy** letting the namespace's pods in on 6379. Policies add up,
  so the namespace's allow-ingress policy (the URL provider's proxies) leaves
  out pods labelled as a managed service: nothing outside the namespace
  reaches the server.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from envhub.domain.backing import DEFAULT_PORTS, redis_password_digest, redis_tenant_rules
from envhub.domain.kube.names import MANAGED_SERVICE_LABEL, NAME_LABEL, WORKLOAD_ACCOUNT, metadata
from envhub.domain.specs import ServiceWorkload

PORT = DEFAULT_PORTS["redis"]
DEFAULT_SIZE = "1Gi"
CONFIG_KEY = "redis.conf"
CONFIG_DIR = "/etc/redis"
DATA_DIR = "/data"
# The official images' redis user and group.
REDIS_UID = 999
REQUESTS = {"cpu": "50m", "memory": "64Mi"}
LIMITS = {"cpu": "500m", "memory": "512Mi"}
MAX_MEMORY = "256mb"  # half the limit: an append-only rewrite forks the server
CONFIG_ANNOTATION = "envhub.dev/config-digest"
# Redis's own defaults: a snapshot after an hour with 1 change, 5 minutes with 100, a minute with
# 10000. One pair a line, which every Redis since 2.x reads.
_SNAPSHOTS = ("3600 1", "300 100", "60 10000")
_CONFIG_MODE = 0o440  # root:redis (fsGroup), read-only


def object_name(service: str) -> str:
    """The name of every object of the service's Redis (``envhub-redis-cache``)."""
    return f"envhub-redis-{service}"


def redis_host(namespace: str, service: str) -> str:
    """Where workloads reach the service's Redis: its Service, without the cluster's domain."""
    return f"{object_name(service)}.{namespace}.svc"


def redis_config(workload: ServiceWorkload) -> str:
    """The server's configuration file (the Secret's :data:`CONFIG_KEY`)."""
    persistence = (
        [*(f"save {pair}" for pair in _SNAPSHOTS), "appendonly yes", "appendfsync everysec"]
        if workload.persistent
        else ['save ""', "appendonly no"]
    )
    lines = [
        f"# envhub: the managed Redis {workload.name!r}; rewritten at every deploy.",
        "bind * -::*",
        f"port {PORT}",
        f"dir {DATA_DIR}",
        *persistence,
        f"maxmemory {MAX_MEMORY}",
        "maxmemory-policy noeviction",
        f"user default reset #{redis_password_digest(workload.password)} {' '.join(redis_tenant_rules())}",
    ]
    return "\n".join(lines) + "\n"


def _labels(workload: ServiceWorkload, labels: dict[str, str]) -> dict[str, str]:
    return {**labels, **_selector(workload)}


def _selector(workload: ServiceWorkload) -> dict[str, str]:
    # Immutable once the Deployment exists: never add to this.
    return {NAME_LABEL: object_name(workload.name), MANAGED_SERVICE_LABEL: workload.name}


def _secret(workload: ServiceWorkload, config: str, namespace: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(object_name(workload.name), namespace, labels),
        "type": "Opaque",
        "data": {CONFIG_KEY: base64.b64encode(config.encode()).decode()},
    }


def _claim(workload: ServiceWorkload, namespace: str, labels: dict[str, str]) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": workload.size or DEFAULT_SIZE}},
    }
    if workload.storage_class:
        spec["storageClassName"] = workload.storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": metadata(object_name(workload.name), namespace, labels),
        "spec": spec,
    }


def _service(workload: ServiceWorkload, namespace: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(object_name(workload.name), namespace, labels),
        "spec": {
            "type": "ClusterIP",
            "selector": _selector(workload),
            "ports": [{"name": "redis", "port": PORT, "targetPort": PORT, "protocol": "TCP"}],
        },
    }


def _policy(workload: ServiceWorkload, namespace: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(object_name(workload.name), namespace, labels),
        "spec": {
            "podSelector": {"matchLabels": _selector(workload)},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {}}], "ports": [{"protocol": "TCP", "port": PORT}]}],
        },
    }


def _container(workload: ServiceWorkload) -> dict[str, Any]:
    probe = {"tcpSocket": {"port": PORT}}
    return {
        "name": "redis",
        "image": workload.image,
        "args": ["redis-server", f"{CONFIG_DIR}/{CONFIG_KEY}"],
        "ports": [{"name": "redis", "containerPort": PORT, "protocol": "TCP"}],
        "resources": {"requests": dict(REQUESTS), "limits": dict(LIMITS)},
        "readinessProbe": {**probe, "periodSeconds": 2, "failureThreshold": 3},
        # Late and patient: loading a large append-only file takes a while.
        "livenessProbe": {**probe, "initialDelaySeconds": 30, "periodSeconds": 10, "failureThreshold": 6},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": REDIS_UID,
            "runAsGroup": REDIS_UID,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "data", "mountPath": DATA_DIR},
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        ],
    }


def _deployment(
    workload: ServiceWorkload, config: str, namespace: str, labels: dict[str, str]
) -> dict[str, Any]:
    name = object_name(workload.name)
    data: dict[str, Any] = (
        {"name": "data", "persistentVolumeClaim": {"claimName": name}}
        if workload.persistent
        else {"name": "data", "emptyDir": {"sizeLimit": workload.size or DEFAULT_SIZE}}
    )
    pod_spec = {
        "serviceAccountName": WORKLOAD_ACCOUNT,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": REDIS_UID,
            "runAsGroup": REDIS_UID,
            "fsGroup": REDIS_UID,
            "fsGroupChangePolicy": "OnRootMismatch",
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [_container(workload)],
        "volumes": [data, {"name": "config", "secret": {"secretName": name, "defaultMode": _CONFIG_MODE}}],
    }
    # The password's digest is in the configuration: a rotation rolls the pod. (A digest of a
    # digest of 192 random bits: nothing to learn from it.)
    digest = hashlib.sha256(config.encode()).hexdigest()[:32]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(name, namespace, labels),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": _selector(workload)},
            "template": {
                "metadata": {"labels": dict(labels), "annotations": {CONFIG_ANNOTATION: digest}},
                "spec": pod_spec,
            },
        },
    }


def render_redis(
    workload: ServiceWorkload, *, namespace: str, labels: dict[str, str]
) -> list[dict[str, Any]]:
    """The service's objects in apply order: Secret, claim (when persistent), NetworkPolicy,
    Service, Deployment. ``labels`` are the environment's."""
    if not workload.password:
        raise ValueError(f"the managed Redis {workload.name!r} has no password")
    config = redis_config(workload)
    own = _labels(workload, labels)
    objects = [_secret(workload, config, namespace, own)]
    if workload.persistent:
        objects.append(_claim(workload, namespace, own))
    objects += [
        _policy(workload, namespace, own),
        _service(workload, namespace, own),
        _deployment(workload, config, namespace, own),
    ]
    return objects
