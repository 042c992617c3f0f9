"""A :class:`~envhub.domain.workloads.ContainerService` as a Deployment and a Service.

Rendered for server-side apply on v1.20 and current clusters alike, which is
why some fields that look optional are always written out:

* ``protocol: TCP`` on every container and Service port. Ports are list-maps
  keyed by (port, protocol); v1.20's server-side apply rejects a Service port
  without it ("associative list with keys has an element that omits key field
  protocol") instead of defaulting it. Container ports get it too, so both
  lists read the same and no apiserver version's defaulting matters.
* Environment variables are de-duplicated (env is a list-map keyed by name, and
  a duplicate key fails the whole apply) but keep their order, because
  ``$(VAR)`` references only see variables defined earlier.

When is a service *available*? A Deployment counts a pod once it is Ready, and
without a readiness probe that is the moment its container starts: a process
that dies a second later would already have been reported available. So every
rendered Deployment has a better signal than "started":

* a health check becomes an HTTP readiness probe (and a later liveness probe);
* otherwise a service with ports gets a TCP readiness probe on its first port,
  the ``$PORT`` it promises to listen on: available means accepting
  connections, and a process that dies while starting up never is. It costs no
  time for an app that listens promptly (the first probe runs as it starts);
* a service with nothing to probe gets ``minReadySeconds``: it must stay up for
  :data:`MIN_READY_SECONDS` before it counts. Only these pay the wait, which is
  why it is not used everywhere.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from envhub.domain.kube.names import (
    NAME_LABEL,
    PART_OF_LABEL,
    SECRETS_ANNOTATION,
    SECRETS_NAME,
    SERVICE_LABEL,
    WORKLOAD_ACCOUNT,
    metadata,
)
from envhub.domain.specs import ENVHUB_VARIABLES, EnvironmentSpec, EnvironmentTarget
from envhub.domain.workloads import ContainerService, HealthCheck

# Liveness starts this much later than readiness: a slow start should keep a pod
# out of the Service, not get it killed and restarted forever.
LIVENESS_EXTRA_DELAY_SECONDS = 30
# The default TCP readiness probe's period: how soon a late listener is noticed.
TCP_PROBE_PERIOD_SECONDS = 2
# How long a service without any probe must stay up before it counts as available.
MIN_READY_SECONDS = 5
REVISION_HISTORY = 3


@dataclass(frozen=True, slots=True)
class PublicEndpoint:
    """The Service and port the environment's public URL points at."""

    service: str
    namespace: str
    port: int

    @property
    def host(self) -> str:
        # Without the cluster domain: it differs between clusters, and the
        # resolver's search path completes "<svc>.<ns>.svc" everywhere.
        return f"{self.service}.{self.namespace}.svc"


def public_endpoint(spec: EnvironmentSpec, *, namespace: str) -> PublicEndpoint | None:
    """The first ``public`` service with a port, on its first port; None if there is none."""
    for service in spec.services:
        if service.public and service.ports:
            return PublicEndpoint(service=service.name, namespace=namespace, port=service.ports[0])
    return None


def workload_labels(target: EnvironmentTarget, service: str) -> dict[str, str]:
    return {
        **target.labels,
        NAME_LABEL: service,
        PART_OF_LABEL: target.project,
        SERVICE_LABEL: service,
    }


def selector_labels(service: str) -> dict[str, str]:
    # Immutable once a Deployment exists: never add to this.
    return {NAME_LABEL: service, SERVICE_LABEL: service}


def _port_name(port: int) -> str:
    # IANA service name rules: at most 15 characters, and at least one letter.
    return f"tcp-{port}"


def _env(target: EnvironmentTarget, service: ContainerService) -> list[dict[str, str]]:
    ours = dict(target.variables)
    theirs = {
        name: value
        for name, value in {**target.spec.env, **service.env}.items()
        if name not in ENVHUB_VARIABLES  # envhub's own values win; users cannot fake them
    }
    if service.ports and "PORT" not in theirs:
        # Same contract as the local runtime: the app listens on $PORT.
        ours["PORT"] = str(service.ports[0])
    return [{"name": name, "value": value} for name, value in {**ours, **theirs}.items()]


def _probes(health: HealthCheck | None, ports: tuple[int, ...]) -> dict[str, Any]:
    if health is None:
        if not ports:
            return {}
        return {
            "readinessProbe": {
                "tcpSocket": {"port": ports[0]},
                "periodSeconds": TCP_PROBE_PERIOD_SECONDS,
                "failureThreshold": 3,
            }
        }
    port = health.port if health.port is not None else (ports[0] if ports else None)
    if port is None:
        return {}  # nothing to probe; the spec allows a health check without ports
    action = {"path": health.path, "port": port, "scheme": "HTTP"}
    return {
        "readinessProbe": {
            "httpGet": dict(action),
            "initialDelaySeconds": health.initial_delay_seconds,
            "periodSeconds": health.period_seconds,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": dict(action),
            "initialDelaySeconds": health.initial_delay_seconds + LIVENESS_EXTRA_DELAY_SECONDS,
            "periodSeconds": max(health.period_seconds, 10),
            "failureThreshold": 6,
        },
    }


def _container(target: EnvironmentTarget, service: ContainerService) -> dict[str, Any]:
    container: dict[str, Any] = {"name": service.name, "image": service.image}
    if service.command:
        container["command"] = list(service.command)
    if service.args:
        container["args"] = list(service.args)
    container["env"] = _env(target, service)
    if target.secrets:
        # By reference: the values stay in the Secret, which people's
        # kubectl roles cannot read, instead of the readable pod spec.
        container["envFrom"] = [{"secretRef": {"name": SECRETS_NAME}}]
    if service.ports:
        container["ports"] = [
            {"name": _port_name(port), "containerPort": port, "protocol": "TCP"} for port in service.ports
        ]
    resources = service.resources
    limits = {
        key: value
        for key, value in (("cpu", resources.cpu_limit), ("memory", resources.memory_limit))
        if value is not None
    }
    container["resources"] = {"requests": {"cpu": resources.cpu, "memory": resources.memory}}
    if limits:
        container["resources"]["limits"] = limits
    container.update(_probes(service.health, service.ports))
    # Not runAsNonRoot: many public images run as root and would not start. What
    # is always safe is to forbid gaining more privileges than the image starts with.
    container["securityContext"] = {"allowPrivilegeEscalation": False}
    return container


def render_deployment(
    target: EnvironmentTarget, service: ContainerService, *, namespace: str
) -> dict[str, Any]:
    labels = workload_labels(target, service.name)
    container = _container(target, service)
    pod_spec = {
        "serviceAccountName": WORKLOAD_ACCOUNT,
        # The containers never call the Kubernetes API; no token, nothing to steal.
        "automountServiceAccountToken": False,
        # Docker-link variables (WEB_PORT=tcp://...) for every Service would
        # clash with the app's own settings and change whenever a Service is added.
        "enableServiceLinks": False,
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
    }
    template: dict[str, Any] = {"labels": dict(labels)}
    if target.secrets and target.secrets_digest:
        # Pods read envFrom when they start: a new digest rolls them.
        template["annotations"] = {SECRETS_ANNOTATION: target.secrets_digest}
    spec: dict[str, Any] = {
        "replicas": service.replicas,
        "revisionHistoryLimit": REVISION_HISTORY,
        "selector": {"matchLabels": selector_labels(service.name)},
        "template": {"metadata": template, "spec": pod_spec},
    }
    if "readinessProbe" not in container:
        spec["minReadySeconds"] = MIN_READY_SECONDS  # nothing else tells "started" from "stays up"
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(service.name, namespace, labels),
        "spec": spec,
    }


def render_secrets(target: EnvironmentTarget, *, namespace: str) -> dict[str, Any] | None:
    """The Secret holding the project's secrets for this environment; None without any."""
    if not target.secrets:
        return None
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(SECRETS_NAME, namespace, target.labels),
        "type": "Opaque",
        "data": {
            name: base64.b64encode(value.encode()).decode() for name, value in sorted(target.secrets.items())
        },
    }


def render_service(
    target: EnvironmentTarget, service: ContainerService, *, namespace: str
) -> dict[str, Any] | None:
    """The ClusterIP Service in front of ``service``; None when it listens on no port."""
    if not service.ports:
        return None
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(service.name, namespace, workload_labels(target, service.name)),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(service.name),
            "ports": [
                {"name": _port_name(port), "port": port, "targetPort": port, "protocol": "TCP"}
                for port in service.ports
            ],
        },
    }
