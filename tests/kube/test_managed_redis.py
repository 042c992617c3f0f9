"""A project's managed Redis on the real test apiserver: applied with the environment, in its namespace.

The API server validates and stores every object by server-side apply (its
own 422s, quota admission, the claim counted against the quota); a second
apply writes nothing; a new password changes the Secret and rolls the pod;
dropping the service prunes its objects, claim included; and through the
services and real workers, an environment of a project declaring Redis gets
it, its workloads get ``REDIS_URL`` in their Secret, a rotation rolls the Redis,
and deleting the environment removes it all.

The test kubelet runs no images (a container without a command is reported
running), so what the Redis process makes of its configuration is tested
against a real redis-server in tests/backing/test_redis_workloads.py.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from collections.abc import Callable
from typing import Any, NamedTuple
from urllib.parse import unquote, urlsplit

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from envhub.domain.kube import namespace_for
from envhub.domain.phases import Phase
from envhub.domain.specs import EnvironmentTarget
from envhub.integrations.backing.redis_workloads import RedisWorkloads
from envhub.models import Environment, InstanceState, ServiceInstance
from envhub.runtime.base import RuntimeState
from envhub.runtime.kubernetes import KubernetesRuntime
from envhub.services import backing, ports
from envhub.services.environments import create_environment, delete_environment
from envhub.services.projects import create_project
from tests.kube.helpers import Kube, KubeWorkers, web_service
from tests.support.db import audit_events, fetch, fetch_all
from tests.support.runtime import RecordingProgress
from tests.support.waiting import wait_for
from tests.support.world import World

pytestmark = pytest.mark.kube

MakeEnv = Callable[..., EnvironmentTarget]
IMAGE = "docker.io/library/redis:7.2.7"
FIRST = "first-password-0123456789abcdef"
SECOND = "second-password-0123456789abcdef"
# Where each object of a managed Redis lives, by kind.
_PATHS = {
    "Secret": "/api/v1/namespaces/{ns}/secrets/{name}",
    "PersistentVolumeClaim": "/api/v1/namespaces/{ns}/persistentvolumeclaims/{name}",
    "NetworkPolicy": "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies/{name}",
    "Service": "/api/v1/namespaces/{ns}/services/{name}",
    "Deployment": "/apis/apps/v1/namespaces/{ns}/deployments/{name}",
}


def redis_objects(kube: Kube, ns: str, service: str) -> dict[str, dict[str, Any]]:
    """The service's Redis objects as the API server stored them, by kind (missing ones left out)."""
    found = {
        kind: kube.get(path.format(ns=ns, name=f"envhub-redis-{service}")) for kind, path in _PATHS.items()
    }
    return {kind: obj for kind, obj in found.items() if obj is not None}


def versions(objects: dict[str, dict[str, Any]]) -> dict[str, tuple[str, int | None]]:
    return {
        kind: (obj["metadata"]["resourceVersion"], obj["metadata"].get("generation"))
        for kind, obj in objects.items()
    }


def unversioned(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` without its resourceVersion."""
    return {**obj, "metadata": {k: v for k, v in obj["metadata"].items() if k != "resourceVersion"}}


def config_of(secret: dict[str, Any]) -> str:
    return base64.b64decode(secret["data"]["redis.conf"]).decode()


def digest(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


class Declared(NamedTuple):
    """A declared Redis and the password provisioning committed for it."""

    name: str
    password: str
    persistent: bool = True
    size: str = ""


def workload(name: str, password: str, **fields: Any) -> Declared:
    return Declared(name, password, **fields)


def shell_output(runtime: KubernetesRuntime, environment_id: int, script: str) -> str:
    session = runtime.exec(environment_id, ["sh", "-c", script], tty=False)
    try:
        chunks = []
        while chunk := session.read(timeout=15):
            chunks.append(chunk)
        return b"".join(chunks).decode()
    finally:
        session.close()


def with_redis(target: EnvironmentTarget, *workloads: Declared) -> EnvironmentTarget:
    """``target`` as the job hands it over: the objects of each Redis's placement, and the app's
    REDIS_URL among its secrets."""
    ns = namespace_for(target)
    backend = RedisWorkloads(image=IMAGE)
    placed = [
        backend.place(w.name, namespace=ns, password=w.password, persistent=w.persistent, size=w.size)
        for w in workloads
    ]
    urls = {
        f"{w.name.upper()}_REDIS_URL": f"redis://:{w.password}@envhub-redis-{w.name}.{ns}.svc:6379/0"
        for w in workloads
    }
    return dataclasses.replace(
        target,
        service_objects=tuple(obj for placement in placed for obj in placement.objects),
        secrets=urls,
        secrets_digest=hashlib.sha256(json.dumps(sorted(urls.items())).encode()).hexdigest()[:32],
    )


def test_a_redis_is_applied_accepted_idempotent_rolled_by_a_new_password_and_pruned(
    runtime: KubernetesRuntime, kube: Kube, make_env: MakeEnv
) -> None:
    base = make_env(name="pr-1", services=[web_service()])
    ns = namespace_for(base)
    target = with_redis(
        base,
        workload("cache", FIRST, size="2Gi"),
        workload("queue", "queue-password-0123456789", persistent=False),
    )
    status = runtime.apply(target, progress=RecordingProgress())
    assert status.state is RuntimeState.ready
    assert status.details["workloads"] == (
        "Deployment/envhub-redis-cache, Deployment/envhub-redis-queue, Deployment/web"
    )

    cache = redis_objects(kube, ns, "cache")
    assert set(cache) == set(_PATHS)
    assert set(redis_objects(kube, ns, "queue")) == set(_PATHS) - {"PersistentVolumeClaim"}
    for obj in cache.values():
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "envhub"
        assert obj["metadata"]["labels"]["envhub.dev/environment"] == str(target.id)
    # The Service speaks TCP on 6379 to the Redis pods.
    service = cache["Service"]["spec"]
    assert [(p["port"], p["targetPort"], p["protocol"]) for p in service["ports"]] == [(6379, 6379, "TCP")]
    assert service["selector"] == {
        "app.kubernetes.io/name": "envhub-redis-cache",
        "envhub.dev/managed-service": "cache",
    }
    # The claim holds the declared size and counts against the namespace's quota.
    assert cache["PersistentVolumeClaim"]["spec"]["resources"]["requests"]["storage"] == "2Gi"
    quota = wait_for(
        lambda: (
            (q := kube.get(f"/api/v1/namespaces/{ns}/resourcequotas/envhub-quota"))
            and q["status"].get("used", {}).get("requests.storage") == "2Gi"
            and q
        ),
        timeout=30,
        what="the claim to be counted by the quota",
    )
    assert quota["status"]["used"]["persistentvolumeclaims"] == "1"
    # The password is nowhere in the server's objects; its digest is in the Secret's configuration.
    stored = json.dumps(cache)
    assert FIRST not in stored
    assert base64.b64encode(FIRST.encode()).decode() not in stored
    assert f"#{digest(FIRST)} " in config_of(cache["Secret"])
    template = cache["Deployment"]["spec"]["template"]
    [container] = template["spec"]["containers"]
    assert (container["image"], container["args"]) == (IMAGE, ["redis-server", "/etc/redis/redis.conf"])
    assert "env" not in container
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert template["spec"]["securityContext"]["runAsNonRoot"] is True
    assert container["ports"] == [{"name": "redis", "containerPort": 6379, "protocol": "TCP"}]
    # Only the namespace's pods reach it: its own policy, and the ingress policy leaves it out.
    policy = cache["NetworkPolicy"]["spec"]
    assert policy["ingress"] == [
        {"from": [{"podSelector": {}}], "ports": [{"protocol": "TCP", "port": 6379}]}
    ]
    ingress = kube.get(f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies/envhub-allow-ingress")
    assert ingress is not None
    assert ingress["spec"]["podSelector"] == {
        "matchExpressions": [{"key": "envhub.dev/managed-service", "operator": "DoesNotExist"}]
    }
    pods = kube.items(f"/api/v1/namespaces/{ns}/pods", labelSelector="envhub.dev/managed-service=cache")
    assert len(pods) == 1

    # A second apply changes nothing. The v1.20 API server stores a no-op apply of a claim anyway
    # (a new resourceVersion, the same object: kubernetes/kubernetes#95460); every other object is
    # left unwritten.
    runtime.apply(target, progress=RecordingProgress())
    again = redis_objects(kube, ns, "cache")
    claim, again_claim = cache.pop("PersistentVolumeClaim"), again.pop("PersistentVolumeClaim")
    assert versions(again) == versions(cache)
    assert unversioned(again_claim) == unversioned(claim)
    cache["PersistentVolumeClaim"] = again_claim

    # A new password: a new Secret, and the pod rolls (a new ReplicaSet, its pod template's digest).
    rotated = with_redis(
        dataclasses.replace(base, generation=2),
        workload("cache", SECOND, size="2Gi"),
        workload("queue", "queue-password-0123456789", persistent=False),
    )
    runtime.apply(rotated, progress=RecordingProgress())
    after = redis_objects(kube, ns, "cache")
    assert f"#{digest(SECOND)} " in config_of(after["Secret"])
    assert digest(FIRST) not in config_of(after["Secret"])
    assert after["Deployment"]["metadata"]["generation"] == cache["Deployment"]["metadata"]["generation"] + 1
    old_digest = template["metadata"]["annotations"]["envhub.dev/config-digest"]
    assert after["Deployment"]["spec"]["template"]["metadata"]["annotations"]["envhub.dev/config-digest"] != (
        old_digest
    )
    assert versions({k: after[k] for k in ("Service", "NetworkPolicy")}) == versions(
        {k: cache[k] for k in ("Service", "NetworkPolicy")}
    )
    assert after["PersistentVolumeClaim"]["metadata"]["uid"] == claim["metadata"]["uid"]  # the same data
    sets = kube.items(
        f"/apis/apps/v1/namespaces/{ns}/replicasets", labelSelector="envhub.dev/managed-service=cache"
    )
    assert len(sets) == 2
    assert after["Deployment"]["status"]["updatedReplicas"] == 1

    # The project stops declaring the cache: its objects are pruned, the claim with them.
    smaller = with_redis(
        dataclasses.replace(base, generation=3),
        workload("queue", "queue-password-0123456789", persistent=False),
    )
    runtime.apply(smaller, progress=RecordingProgress())
    remaining = redis_objects(kube, ns, "cache")
    claim = remaining.pop("PersistentVolumeClaim", None)
    assert remaining == {}
    # A claim goes once no pod uses it (its protection finalizer): deleted, if not yet gone.
    assert claim is None or claim["metadata"].get("deletionTimestamp")
    wait_for(
        lambda: "PersistentVolumeClaim" not in redis_objects(kube, ns, "cache"),
        timeout=60,
        what="the claim to go",
    )
    assert set(redis_objects(kube, ns, "queue")) == set(_PATHS) - {"PersistentVolumeClaim"}


QUEUE_MANIFEST = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: queue}
spec:
  selector: {matchLabels: {app: queue}}
  template:
    metadata: {labels: {app: queue}}
    spec:
      containers: [{name: queue, image: busybox, command: [sleep, "3600"]}]
"""


def test_a_shell_that_names_no_service_opens_in_the_app_never_in_its_redis(
    runtime: KubernetesRuntime, make_env: MakeEnv
) -> None:
    # Manifests only: no container service to rank first, and "envhub-redis-cache" sorts before "queue".
    target = with_redis(make_env(name="pr-3", manifests=QUEUE_MANIFEST), workload("cache", FIRST))
    runtime.apply(target, progress=RecordingProgress())
    assert shell_output(runtime, target.id, "echo $HOSTNAME").strip().startswith("queue-")


# -- through the services, with real workers ---------------------------------------------------


def env_row(db: Engine, env_id: int) -> Environment:
    row = fetch(db, Environment, env_id)
    assert row is not None
    return row


def settled(db: Engine, env_id: int, workers: KubeWorkers, phase: Phase = Phase.ready) -> Environment:
    """The environment in ``phase`` with its last change applied."""

    def check() -> Environment | None:
        env = env_row(db, env_id)
        if env.phase is Phase.failed:
            raise AssertionError(f"environment failed: {env.error_code}: {env.message}\n{workers.log_tail()}")
        done = env.phase is phase and (
            phase is Phase.deleted or env.observed_generation == env.desired_generation
        )
        return env if done else None

    return wait_for(check, timeout=120, interval=0.2, what=f"phase {phase.value}", describe=workers.log_tail)


def app_redis_url(kube: Kube, ns: str) -> str:
    secret = kube.get(f"/api/v1/namespaces/{ns}/secrets/envhub-secrets")
    assert secret is not None
    return base64.b64decode(secret["data"]["REDIS_URL"]).decode()


@pytest.mark.slow
def test_an_environment_gets_its_redis_rotates_it_and_takes_it_away(
    session: Session, world: World, db: Engine, workers: KubeWorkers, kube: Kube
) -> None:
    project = create_project(
        session=session,
        actor=world.owner,
        team_id=world.acme,
        name="shop",
        workloads={"services": [web_service()]},
        backing=[{"name": "cache", "kind": "redis", "size": "1Gi"}],
    )
    assert project.id is not None
    workers.start()
    env = create_environment(
        session=session, actor=world.member, queue=ports.queue(), project_id=project.id, name="pr-1"
    )
    assert env.id is not None
    env_id = env.id
    settled(db, env_id, workers)
    [ns] = kube.live_namespaces(env_id)
    assert ns == f"envhub-acme-shop-pr-1-{env_id}"

    [row] = fetch_all(db, ServiceInstance)
    assert (row.state, row.backend) == (InstanceState.ready, "workload")
    url = urlsplit(app_redis_url(kube, ns))
    assert (url.hostname, url.port, url.username) == (f"envhub-redis-cache.{ns}.svc", 6379, "")
    password = unquote(url.password or "")
    objects = redis_objects(kube, ns, "cache")
    assert set(objects) == set(_PATHS)
    assert f"#{digest(password)} " in config_of(objects["Secret"])  # the server takes the app's password
    assert password not in json.dumps(objects)
    web = kube.get(f"/apis/apps/v1/namespaces/{ns}/deployments/web")
    assert web is not None
    [app] = web["spec"]["template"]["spec"]["containers"]
    assert app["envFrom"] == [{"secretRef": {"name": "envhub-secrets"}}]  # REDIS_URL by reference
    assert password not in json.dumps(web)
    assert all(password not in str(event.details) for event in audit_events(db))

    # Rotation: a new password for the server and the app; the Redis pod rolls onto it.
    session.expire_all()
    backing.rotate_service_credentials(
        session=session, actor=world.member, queue=ports.queue(), environment_id=env_id, service="cache"
    )
    wait_for(lambda: env_row(db, env_id).desired_generation >= 2, timeout=10, what="the redeploy")
    settled(db, env_id, workers)
    new_password = unquote(urlsplit(app_redis_url(kube, ns)).password or "")
    assert new_password != password
    rotated = redis_objects(kube, ns, "cache")
    assert f"#{digest(new_password)} " in config_of(rotated["Secret"])
    assert digest(password) not in config_of(rotated["Secret"])
    annotation = "envhub.dev/config-digest"
    assert (
        rotated["Deployment"]["spec"]["template"]["metadata"]["annotations"][annotation]
        != objects["Deployment"]["spec"]["template"]["metadata"]["annotations"][annotation]
    )
    assert (
        rotated["PersistentVolumeClaim"]["metadata"]["uid"]
        == objects["PersistentVolumeClaim"]["metadata"]["uid"]
    )
    # The app's pods roll too: they read the new REDIS_URL when they start.
    rolled = kube.get(f"/apis/apps/v1/namespaces/{ns}/deployments/web")
    assert rolled is not None
    secrets_digest = "envhub.dev/secrets-digest"
    assert (
        rolled["spec"]["template"]["metadata"]["annotations"][secrets_digest]
        != web["spec"]["template"]["metadata"]["annotations"][secrets_digest]
    )

    # Deleting the environment takes its Redis with the namespace; the instance is removed.
    session.expire_all()
    delete_environment(session=session, actor=world.member, queue=ports.queue(), environment_id=env_id)
    settled(db, env_id, workers, Phase.deleted)
    assert kube.namespace_gone(ns)
    [row] = fetch_all(db, ServiceInstance)
    assert (row.state, row.credential) == (InstanceState.removed, "")
