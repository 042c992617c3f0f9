"""Representative environments, shared by the kube rendering tests."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from envhub.domain.kube.redis import render_redis
from envhub.domain.specs import EnvironmentTarget, parse_spec
from envhub.urls.ingress import IngressUrls

USER_MANIFESTS = """\
# A hand-written app next to envhub's own services.
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  labels: {tier: config, app.kubernetes.io/managed-by: helm}
data:
  released: 2024-01-01
---
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: queue
  namespace: ""
spec:
  selector: {matchLabels: {app: queue}}
  template:
    metadata: {labels: {app: queue}}
    spec:
      containers:
        - name: queue
          image: rabbitmq:3
          ports: [{containerPort: 5672}]
---
apiVersion: v1
kind: Service
metadata: {name: queue}
spec:
  selector: {app: queue}
  ports: [{name: amqp, port: 5672}]  # no protocol: envhub adds TCP
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: queue}
"""


def make_target(spec: dict[str, Any], **fields: Any) -> EnvironmentTarget:
    values: dict[str, Any] = {
        "id": 42,
        "name": "dev-swift-otter",
        "project": "shop",
        "team": "acme",
        "generation": 3,
    }
    values.update(fields)
    return EnvironmentTarget(spec=parse_spec(spec), **values)


def with_ingress(target: EnvironmentTarget, **provider: str) -> EnvironmentTarget:
    """``target`` as the ingress URL provider hands it to the runtime."""
    address = IngressUrls(domain="preview.example.com", **provider).address(target)
    return dataclasses.replace(target, public_url=address.url, ingress=address.ingress)


# name -> (target, render_environment keyword arguments)
SCENARIOS: dict[str, tuple[EnvironmentTarget, dict[str, Any]]] = {
    # One web service with every default: the common preview environment.
    "minimal": (make_target({"services": [{"name": "web", "image": "nginx:1.27", "ports": [8080]}]}), {}),
    # Everything at once, with names long enough to be hashed and a quota above the caps.
    "full": (
        make_target(
            {
                "env": {"GREETING": "hello", "SHARED": "environment"},
                "services": [
                    {
                        "name": "web",
                        "image": "ghcr.io/acme/web:1.2.3",
                        "command": ["/app/server"],
                        "args": ["--listen", "$(PORT)"],
                        "env": {"SHARED": "service", "ENVHUB_PROJECT": "spoofed"},
                        "ports": [8080, 9090],
                        "health": {"path": "/healthz", "initial_delay_seconds": 5, "period_seconds": 5},
                        "replicas": 2,
                    },
                    {
                        "name": "worker",
                        "image": "ghcr.io/acme/worker@sha256:" + "0" * 64,
                        "resources": {
                            "cpu": "250m",
                            "memory": "1Gi",
                            "cpu_limit": None,
                            "memory_limit": "2Gi",
                        },
                        "public": False,
                    },
                    {
                        "name": "admin",
                        "image": "ghcr.io/acme/admin:2",
                        "ports": [3000],
                        "env": {"PORT": "3000"},
                    },
                ],
                "quota": {
                    "cpu": "12",
                    "memory": "64Gi",
                    "cpu_limit": "16000m",
                    "pods": 80,
                    "default_cpu_limit": "6",
                },
                "egress": {
                    "cidrs": ["10.20.30.40", "192.168.0.0/16", "2001:db8::/32"],
                    "namespaces": ["shared-cache", "monitoring"],
                    "services": ["data/postgres:5432", "data/redis"],
                },
            },
            id=123456,
            name="feature-very-long-branch-name-for-checkout-redesign",
            project="storefront-frontend",
            team="platform-engineering",
        ),
        {"ingress_namespaces": ("envhub-system", "ingress-nginx"), "dns_cidrs": ("169.254.20.10",)},
    ),
    # Raw manifests next to a service; discovery answers for the kinds it knows.
    "manifests": (
        make_target(
            {
                "services": [{"name": "api", "image": "ghcr.io/acme/api:7", "ports": [8000], "health": {}}],
                "manifests": USER_MANIFESTS,
            },
            name="staging",
            id=7,
        ),
        {"dns_any_namespace": False, "is_namespaced": lambda api_version, kind: True},
    ),
    # The ingress URL provider: its Ingress, ENVHUB_PUBLIC_URL in every container, manifests' too.
    "ingress": (
        with_ingress(
            make_target(
                {
                    "services": [
                        {"name": "worker", "image": "ghcr.io/acme/w:1", "public": False, "ports": [9000]},
                        {"name": "web", "image": "ghcr.io/acme/web:1", "ports": [8080, 9090]},
                    ],
                    "manifests": USER_MANIFESTS,
                },
                name="feature-very-long-branch-name-for-checkout-redesign",
                project="storefront-frontend",
            ),
            class_name="nginx",
            cluster_issuer="letsencrypt-prod",
        ),
        {"is_namespaced": lambda api_version, kind: True},
    ),
    # A project's managed Redis services, one persistent and one in memory, as the job hands them over.
    "services": (
        make_target(
            {"services": [{"name": "web", "image": "ghcr.io/acme/web:1", "ports": [8080]}]},
            secrets={
                "REDIS_URL": "redis://:fixture-password@envhub-redis-cache.envhub-acme-shop-pr-7-7.svc:6379/0"
            },
            secrets_digest="0" * 32,
            service_objects=(
                *render_redis(
                    "cache",
                    password="fixture-password",
                    image="docker.io/library/redis:7.2.7",
                    size="2Gi",
                    storage_class="fast-ssd",
                ),
                *render_redis(
                    "queue",
                    password="other-password",
                    image="docker.io/library/redis:7.2.7",
                    persistent=False,
                ),
            ),
            name="pr-7",
            id=7,
        ),
        {},
    ),
}


@pytest.fixture(params=sorted(SCENARIOS))
def scenario(request: pytest.FixtureRequest) -> tuple[str, EnvironmentTarget, dict[str, Any]]:
    target, kwargs = SCENARIOS[request.param]
    return request.param, target, kwargs
