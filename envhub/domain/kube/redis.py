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

The objects travel like a CloudNativePG Cluster's (``cloudnative_pg.py``): the
Redis backend (``integrations/backing/redis_workloads.py``) puts them in the
instance's placement, provisioning hands them to the target as
``service_objects``, and the renderer of the environment adds its namespace and
labels (on the pod template too) and orders the Deployment after every Service.
Here they carry only their own labels, the pods' selector.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from envhub.domain.backing import (
    DEFAULT_PORTS,
    REDIS_EVICTION,
    REDIS_MAX_MEMORY,
    SERVICE_NAME,
    redis_password_digest,
    redis_tenant_rules,
)
from envhub.domain.kube.names import MANAGED_SERVICE_LABEL, NAME_LABEL, WORKLOAD_ACCOUNT, metadata

PORT = DEFAULT_PORTS["redis"]
DEFAULT_SIZE = "1Gi"
CONFIG_KEY = "redis.conf"
CONFIG_DIR = "/etc/redis"
DATA_DIR = "/data"
# The official images' redis user and group.
REDIS_UID = 999
REQUESTS = {"cpu": "50m", "memory": "64Mi"}
LIMITS = {"cpu": "500m", "memory": "512Mi"}
MAX_MEMORY = REDIS_MAX_MEMORY  # half the limit: an append-only rewrite forks the server
CONFIG_ANNOTATION = "envhub.dev/config-digest"
# Redis's own defaults: a snapshot after an hour with 1 change, 5 minutes with 100, a minute with
# 10000. One pair a line, which every Redis since 2.x reads.
_SNAPSHOTS = ("3600 1", "300 100", "60 10000")
_CONFIG_MODE = 0o440  # root:redis (fsGroup), read-only


def object_name(service: str) -> str:
    """The name of every object of the service's Redis (``envhub-redis-cache``)."""
    if not SERVICE_NAME.fullmatch(service):
        raise ValueError(f"{service!r} is not a service name")
    return f"envhub-redis-{service}"


def redis_host(namespace: str, service: str) -> str:
    """Where workloads reach the service's Redis: its Service, without the cluster's domain."""
    return f"{object_name(service)}.{namespace}.svc"


def redis_config(service: str, *, password: str, persistent: bool) -> str:
    """The server's configuration file (the Secret's :data:`CONFIG_KEY`)."""
    persistence = (
        [*(f"save {pair}" for pair in _SNAPSHOTS), "appendonly yes", "appendfsync everysec"]
        if persistent
        else ['save ""', "appendonly no"]
    )
    lines = [
        f"# envhub: the managed Redis {service!r}; rewritten at every deploy.",
        "bind * -::*",
        f"port {PORT}",
        f"dir {DATA_DIR}",
        *persistence,
        f"maxmemory {MAX_MEMORY}",
        f"maxmemory-policy {REDIS_EVICTION}",
        f"user default reset #{redis_password_digest(password)} {' '.join(redis_tenant_rules())}",
    ]
    return "\n".join(lines) + "\n"


def _selector(service: str) -> dict[str, str]:
    # Immutable once the Deployment exists: never add to this.
    return {NAME_LABEL: object_name(service), MANAGED_SERVICE_LABEL: service}


def _metadata(service: str) -> dict[str, object]:
    """Without namespace, and with the selector's labels only: the environment's renderer adds its own."""
    return metadata(object_name(service), None, _selector(service))


def _secret(service: str, config: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(service),
        "type": "Opaque",
        "data": {CONFIG_KEY: base64.b64encode(config.encode()).decode()},
    }


def _claim(service: str, *, size: str, storage_class: str) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": size or DEFAULT_SIZE}},
    }
    if storage_class:
        spec["storageClassName"] = storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _metadata(service),
        "spec": spec,
    }


def _service(service: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(service),
        "spec": {
            "type": "ClusterIP",
            "selector": _selector(service),
            "ports": [{"name": "redis", "port": PORT, "targetPort": PORT, "protocol": "TCP"}],
        },
    }


def _policy(service: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(service),
        "spec": {
            "podSelector": {"matchLabels": _selector(service)},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {}}], "ports": [{"protocol": "TCP", "port": PORT}]}],
        },
    }


def _container(image: str) -> dict[str, Any]:
    probe = {"tcpSocket": {"port": PORT}}
    return {
        "name": "redis",
        "image": image,
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


def _deployment(service: str, config: str, *, image: str, persistent: bool, size: str) -> dict[str, Any]:
    name = object_name(service)
    data: dict[str, Any] = (
        {"name": "data", "persistentVolumeClaim": {"claimName": name}}
        if persistent
        else {"name": "data", "emptyDir": {"sizeLimit": size or DEFAULT_SIZE}}
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
        "containers": [_container(image)],
        "volumes": [data, {"name": "config", "secret": {"secretName": name, "defaultMode": _CONFIG_MODE}}],
    }
    # The password's digest is in the configuration: a rotation rolls the pod. (A digest of a
    # digest of 192 random bits: nothing to learn from it.)
    digest = hashlib.sha256(config.encode()).hexdigest()[:32]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(service),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": _selector(service)},
            "template": {
                "metadata": {"labels": _selector(service), "annotations": {CONFIG_ANNOTATION: digest}},
                "spec": pod_spec,
            },
        },
    }


def render_redis(
    service: str,
    *,
    password: str,
    image: str,
    persistent: bool = True,
    size: str = "",
    storage_class: str = "",
) -> list[dict[str, Any]]:
    """The objects of the service's Redis in apply order: Secret, claim (when persistent),
    NetworkPolicy, Service, Deployment.

    Pure and repeatable: the same arguments give equal objects. ``password``
    is the instance's (only its digest is written); ``size`` is the
    declaration's ("" takes :data:`DEFAULT_SIZE`); ``storage_class`` the
    operator's ("" takes the cluster's default).
    """
    if not password:
        raise ValueError(f"the managed Redis {service!r} has no password")
    config = redis_config(service, password=password, persistent=persistent)
    objects = [_secret(service, config)]
    if persistent:
        objects.append(_claim(service, size=size, storage_class=storage_class))
    objects += [
        _policy(service),
        _service(service),
        _deployment(service, config, image=image, persistent=persistent, size=size),
    ]
    return objects
