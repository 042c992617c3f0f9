"""A project's managed Redis rendered into the environment's namespace (domain/kube/redis.py).

Its objects reach the environment as CloudNativePG's do, as the target's
``service_objects``; the environment's renderer places them. Every rendered
object is also validated against current Kubernetes schemas and snapshotted
with the ``services`` scenario (test_kube_render.py); these tests state the
rules the objects follow.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from typing import Any

import pytest

from envhub.domain.backing import REDIS_DENIED_COMMANDS
from envhub.domain.kube import ManifestRejected, namespace_for, parse_quantity, render_environment
from envhub.domain.kube.names import MANAGED_SERVICE_LABEL
from envhub.domain.kube.redis import DEFAULT_SIZE, LIMITS, MAX_MEMORY, REQUESTS, redis_host, render_redis
from envhub.domain.specs import EnvironmentTarget
from envhub.domain.workloads import QuotaSpec

from .conftest import SCENARIOS, make_target

IMAGE = "docker.io/library/redis:7.2.7"
PASSWORD = "s3cret-Password-0123456789abcdef"


Objects = list[dict[str, Any]]


def _target(*services: Objects, **spec: Any) -> EnvironmentTarget:
    """An environment with the objects of these managed services, as provisioning hands them over."""
    spec = spec or {"services": [{"name": "web", "image": "ghcr.io/acme/web:1", "ports": [8080]}]}
    placed = tuple(obj for objects in services for obj in objects)
    return make_target(spec, service_objects=placed, name="pr-7", id=7)


def _cache(**fields: Any) -> Objects:
    return render_redis(**{"service": "cache", "image": IMAGE, "password": PASSWORD, **fields})


def _objects(target: EnvironmentTarget) -> dict[tuple[str, str], dict[str, Any]]:
    return {(obj["kind"], obj["metadata"]["name"]): obj for obj in render_environment(target)}


def _config(objects: dict[tuple[str, str], dict[str, Any]], name: str = "envhub-redis-cache") -> str:
    return base64.b64decode(objects[("Secret", name)]["data"]["redis.conf"]).decode()


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels, matchExpressions) selects ``labels``, as the API server says."""
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator = expression["key"], expression["operator"]
        present = {"Exists": True, "DoesNotExist": False}.get(operator)
        if present is None:
            raise AssertionError(f"operator {operator} is not evaluated here")
        if (key in labels) != present:
            return False
    return True


def test_a_redis_is_a_secret_a_claim_a_policy_a_service_and_a_deployment_in_the_namespace() -> None:
    target = _target(_cache())
    rendered = render_environment(target)
    ns = namespace_for(target)
    mine = [(obj["kind"], obj["metadata"]["name"]) for obj in rendered if "redis" in obj["metadata"]["name"]]
    assert mine == [
        ("Secret", "envhub-redis-cache"),
        ("PersistentVolumeClaim", "envhub-redis-cache"),
        ("NetworkPolicy", "envhub-redis-cache"),
        ("Service", "envhub-redis-cache"),
        ("Deployment", "envhub-redis-cache"),
    ]
    for obj in rendered:
        if "redis" in obj["metadata"]["name"]:
            assert obj["metadata"]["namespace"] == ns
            assert obj["metadata"]["labels"]["envhub.dev/environment"] == "7"
            assert obj["metadata"]["labels"]["envhub.dev/managed-service"] == "cache"
    # Its pods are the environment's too: its labels are on the pod template, beside the selector's.
    [deployment] = [o for o in rendered if o["kind"] == "Deployment" and "redis" in o["metadata"]["name"]]
    pods = deployment["spec"]["template"]["metadata"]["labels"]
    assert pods == {**target.labels, **deployment["spec"]["selector"]["matchLabels"]}
    # Its Secrets, claim and Service come before any Deployment (Helm's order).
    kinds = [obj["kind"] for obj in rendered]
    assert kinds.index("Deployment") > max(i for i, kind in enumerate(kinds) if kind == "Service")
    assert redis_host(ns, "cache") == f"envhub-redis-cache.{ns}.svc"


def test_the_password_is_in_no_object_only_its_digest_is_in_the_servers_secret() -> None:
    objects = _objects(_target(_cache()))
    everything = json.dumps(list(objects.values()))
    assert PASSWORD not in everything
    assert base64.b64encode(PASSWORD.encode()).decode() not in everything
    config = _config(objects)
    assert PASSWORD not in config
    digest = hashlib.sha256(PASSWORD.encode()).hexdigest()
    assert f"user default reset #{digest} on ~* &* +@all " in config
    assert all(f" -{command}" in config for command in REDIS_DENIED_COMMANDS)
    # The pod reads the configuration from the Secret, mounted; nothing of it is in its spec.
    pod = objects[("Deployment", "envhub-redis-cache")]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert "env" not in container
    assert "envFrom" not in container
    assert container["args"] == ["redis-server", "/etc/redis/redis.conf"]
    assert {"name": "config", "mountPath": "/etc/redis", "readOnly": True} in container["volumeMounts"]
    assert {"name": "config", "secret": {"secretName": "envhub-redis-cache", "defaultMode": 0o440}} in pod[
        "volumes"
    ]


def test_a_persistent_redis_keeps_an_append_only_file_on_its_claim() -> None:
    objects = _objects(_target(_cache(size="5Gi")))
    claim = objects[("PersistentVolumeClaim", "envhub-redis-cache")]
    assert claim["spec"] == {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}}}
    config = _config(objects).splitlines()
    assert "appendonly yes" in config
    assert "appendfsync everysec" in config
    assert [line for line in config if line.startswith("save ")] == [
        "save 3600 1",
        "save 300 100",
        "save 60 10000",
    ]
    assert "dir /data" in config
    deployment = objects[("Deployment", "envhub-redis-cache")]
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}  # never two servers on one volume
    assert deployment["spec"]["replicas"] == 1
    pod = deployment["spec"]["template"]["spec"]
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "envhub-redis-cache"}} in pod["volumes"]
    # Without a size, the default; without the operator's storage class, the cluster's default.
    default = _objects(_target(_cache()))[("PersistentVolumeClaim", "envhub-redis-cache")]
    assert default["spec"]["resources"]["requests"]["storage"] == DEFAULT_SIZE
    classed = _objects(_target(_cache(storage_class="fast-ssd")))[
        ("PersistentVolumeClaim", "envhub-redis-cache")
    ]
    assert classed["spec"]["storageClassName"] == "fast-ssd"


def test_an_in_memory_redis_saves_nothing_and_has_no_claim() -> None:
    objects = _objects(_target(_cache(persistent=False)))
    assert ("PersistentVolumeClaim", "envhub-redis-cache") not in objects
    config = _config(objects).splitlines()
    assert 'save ""' in config
    assert "appendonly no" in config
    pod = objects[("Deployment", "envhub-redis-cache")]["spec"]["template"]["spec"]
    assert {"name": "data", "emptyDir": {"sizeLimit": DEFAULT_SIZE}} in pod["volumes"]


def test_a_new_password_changes_the_secret_and_rolls_the_pod_and_nothing_else() -> None:
    before = _objects(_target(_cache()))
    again = _objects(_target(_cache()))
    assert again == before  # deterministic: a second apply writes nothing
    after = _objects(_target(_cache(password="another-password-0123456789")))
    changed = sorted(key for key in before if before[key] != after[key])
    assert changed == [
        ("Deployment", "envhub-redis-cache"),
        ("Secret", "envhub-redis-cache"),
    ]
    annotation = "envhub.dev/config-digest"
    old = before[("Deployment", "envhub-redis-cache")]["spec"]["template"]["metadata"]["annotations"]
    new = after[("Deployment", "envhub-redis-cache")]["spec"]["template"]["metadata"]["annotations"]
    assert old[annotation] != new[annotation]
    without_template = [
        {**objects[("Deployment", "envhub-redis-cache")]["spec"], "template": None}
        for objects in (before, after)
    ]
    assert without_template[0] == without_template[1]


def test_the_service_speaks_tcp_to_the_redis_pods_only() -> None:
    objects = _objects(_target(_cache()))
    service = objects[("Service", "envhub-redis-cache")]["spec"]
    assert service["type"] == "ClusterIP"
    assert service["ports"] == [{"name": "redis", "port": 6379, "targetPort": 6379, "protocol": "TCP"}]
    pods = objects[("Deployment", "envhub-redis-cache")]["spec"]["template"]["metadata"]["labels"]
    assert _matches({"matchLabels": service["selector"]}, pods)
    web = objects[("Deployment", "web")]["spec"]["template"]["metadata"]["labels"]
    assert not _matches({"matchLabels": service["selector"]}, web)
    [port] = objects[("Deployment", "envhub-redis-cache")]["spec"]["template"]["spec"]["containers"][0][
        "ports"
    ]
    assert port == {"name": "redis", "containerPort": 6379, "protocol": "TCP"}


def test_only_pods_of_the_namespace_reach_the_redis() -> None:
    objects = _objects(_target(_cache()))
    redis_pods = objects[("Deployment", "envhub-redis-cache")]["spec"]["template"]["metadata"]["labels"]
    web_pods = objects[("Deployment", "web")]["spec"]["template"]["metadata"]["labels"]
    policies = {name: obj["spec"] for (kind, name), obj in objects.items() if kind == "NetworkPolicy"}
    own = policies["envhub-redis-cache"]
    assert _matches(own["podSelector"], redis_pods)
    assert not _matches(own["podSelector"], web_pods)
    assert own["policyTypes"] == ["Ingress"]
    assert own["ingress"] == [{"from": [{"podSelector": {}}], "ports": [{"protocol": "TCP", "port": 6379}]}]
    # Policies add up: every other policy that lets traffic in from outside the namespace leaves the
    # Redis pods out. (Default deny and the namespace's own pods are what remain for them.)
    from_outside = {
        name
        for name, spec in policies.items()
        if any(
            "namespaceSelector" in peer or "ipBlock" in peer
            for rule in spec.get("ingress", [])
            for peer in rule.get("from", [])
        )
    }
    assert from_outside == {"envhub-allow-ingress"}
    ingress = policies["envhub-allow-ingress"]["podSelector"]
    assert not _matches(ingress, redis_pods)
    assert _matches(ingress, web_pods)  # the app stays public


def test_the_pod_is_restricted_non_root_on_a_read_only_root() -> None:
    deployment = _objects(_target(_cache()))[("Deployment", "envhub-redis-cache")]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 999
    assert pod["securityContext"]["fsGroup"] == 999  # the claim and the Secret's file are the redis group's
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    [container] = pod["containers"]
    assert container["image"] == IMAGE
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": 999,
        "runAsGroup": 999,
        "capabilities": {"drop": ["ALL"]},
    }
    # Redis writes only to its data folder, which is a volume.
    assert {"name": "data", "mountPath": "/data"} in container["volumeMounts"]
    assert container["readinessProbe"]["tcpSocket"] == {"port": 6379}


def test_its_resources_fit_the_default_quota_and_maxmemory_stays_under_the_limit() -> None:
    container = _objects(_target(_cache()))[("Deployment", "envhub-redis-cache")]["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert container["resources"] == {"requests": REQUESTS, "limits": LIMITS}
    quota = QuotaSpec()
    # Requests within the per-container defaults other pods get, limits within the default ceiling.
    assert parse_quantity(REQUESTS["cpu"]) <= parse_quantity(quota.default_cpu)
    assert parse_quantity(REQUESTS["memory"]) <= parse_quantity(quota.default_memory)
    assert parse_quantity(LIMITS["cpu"]) <= parse_quantity(quota.default_cpu_limit)
    assert parse_quantity(LIMITS["memory"]) <= parse_quantity(quota.default_memory_limit)
    assert parse_quantity(DEFAULT_SIZE) <= parse_quantity(quota.storage)
    maxmemory = int(MAX_MEMORY.removesuffix("mb")) * 1024 * 1024  # Redis's "mb" is MiB
    assert maxmemory <= parse_quantity(LIMITS["memory"]) / 2


def test_two_redis_services_get_objects_of_their_own() -> None:
    queue = _cache(service="queue", password="queue-password-0123456789", persistent=False)
    objects = _objects(_target(_cache(), queue))
    assert _config(objects) != _config(objects, "envhub-redis-queue")
    cache_pods = objects[("Deployment", "envhub-redis-cache")]["spec"]["template"]["metadata"]["labels"]
    queue_service = objects[("Service", "envhub-redis-queue")]["spec"]
    assert not _matches({"matchLabels": queue_service["selector"]}, cache_pods)


def test_a_manifest_object_of_the_same_name_is_refused() -> None:
    manifest = (
        "apiVersion: v1\nkind: Service\nmetadata: {name: envhub-redis-cache}\nspec: {ports: [{port: 1}]}\n"
    )
    target = _target(_cache(), services=[], manifests=manifest)
    with pytest.raises(ManifestRejected, match="defined twice"):
        render_environment(target, is_namespaced=lambda api_version, kind: True)


def test_what_cannot_be_rendered_is_refused() -> None:
    with pytest.raises(ValueError, match="no password"):
        _cache(password="")


@pytest.mark.parametrize("service", ["", "Cache", "cache-1", "a" * 21])
def test_only_service_names_name_objects(service: str) -> None:
    # Only a service's name (lower-case letters and digits) names objects: nothing else reaches the namespace.
    with pytest.raises(ValueError, match="not a service name"):
        _cache(service=service)


def test_the_scenario_renders_what_the_job_hands_over() -> None:
    target, _ = SCENARIOS["services"]
    assert [
        (obj["kind"], obj["metadata"]["labels"][MANAGED_SERVICE_LABEL]) for obj in target.service_objects
    ] == [
        *(
            (kind, "cache")
            for kind in ("Secret", "PersistentVolumeClaim", "NetworkPolicy", "Service", "Deployment")
        ),
        *((kind, "queue") for kind in ("Secret", "NetworkPolicy", "Service", "Deployment")),
    ]
    # The objects, and so the passwords' digests, never show in a printed target (a log line, a
    # traceback's locals), and are not part of its equality, like the project's secrets.
    printed = repr(dataclasses.replace(target, secrets={}))
    assert "envhub-redis-cache" not in printed
    assert "fixture-password" not in printed
    assert hashlib.sha256(b"fixture-password").hexdigest() not in printed
    assert "other-password" not in printed
    assert target == dataclasses.replace(target, service_objects=())
