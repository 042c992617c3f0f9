"""PostgreSQL on a real cluster: a CloudNativePG Cluster when the operator's kinds are served, else a server.

Against the real test apiserver, through the real discovery, provisioning and
runtime. Without the operator, the cluster's discovery says so and the
instance goes to the operator's PostgreSQL server (a real one), or fails with
``not_supported`` naming both options when there is none.

With it: no registry here serves CloudNativePG's CRDs (tests/render/
test_cloudnative_pg_bindings.py checks the fields against the published API as
npm serves it). So the CRDs installed here are stand-ins, written for this
test and not copied from the operator: they make the group's ``Cluster``,
``ScheduledBackup`` and ``Backup`` kinds served, with no schema (every field is accepted), so
that discovery, the apply with the environment's objects and pruning run for
real. They validate nothing of the Cluster's fields and do not pretend to.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from sqlmodel import Session, select

from envhub.config import Settings, override_settings
from envhub.domain.kube import namespace_for
from envhub.domain.kube.network import ClusterNetwork
from envhub.domain.phases import Phase
from envhub.domain.specs import EnvironmentKind
from envhub.errors import Unsupported, ValidationFailed
from envhub.integrations.folder_store import FolderObjectStore
from envhub.models import Environment, Project, ServiceInstance
from envhub.runtime.kubernetes import KubernetesRuntime, api_client
from envhub.runtime.kubernetes.discovery import _catalog
from envhub.services import backups, provisioning
from envhub.services.environments import create_environment
from envhub.services.projects import update_project
from envhub.wiring import managed_backends
from tests.conftest import build_settings
from tests.kube.helpers import Kube
from tests.support.fakes import FakeQueue
from tests.support.postgres import PostgresServer
from tests.support.runtime import RecordingProgress, make_target
from tests.support.waiting import wait_for
from tests.support.world import World

pytestmark = [pytest.mark.kube]

GROUP_VERSION = "postgresql.cnpg.io/v1"


def _stand_in(kind: str, plural: str) -> dict[str, Any]:
    """A CRD that serves ``kind`` in the operator's group and checks nothing (see the module docstring)."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.postgresql.cnpg.io", "labels": {"envhub.dev/test": "stand-in"}},
        "spec": {
            "group": "postgresql.cnpg.io",
            "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"},
            "scope": "Namespaced",
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                    },
                }
            ],
        },
    }


@pytest.fixture
def operator_kinds(kube: Kube, cluster: Any) -> Iterator[KubernetesRuntime]:
    """The operator's two kinds served while the test runs, and a runtime that has not yet asked
    about them (one that heard "not served" believes it for a minute); gone and forgotten after."""
    runtime = KubernetesRuntime(api_client(str(cluster.kubeconfig)), ready_timeout=30.0)
    extensions = client.ApiextensionsV1Api(kube.api)
    stand_ins = [
        _stand_in("Cluster", "clusters"),
        _stand_in("ScheduledBackup", "scheduledbackups"),
        _stand_in("Backup", "backups"),
    ]
    for crd in stand_ins:
        extensions.create_custom_resource_definition(crd)

    def served() -> bool:
        found = kube.get(f"/apis/{GROUP_VERSION}")
        kinds = {"Cluster", "ScheduledBackup", "Backup"}
        return found is not None and kinds <= {r["kind"] for r in found["resources"]}

    try:
        wait_for(served, timeout=30, interval=0.2, what="the stand-in CRDs served")
        yield runtime
    finally:
        for crd in stand_ins:
            with contextlib.suppress(client.ApiException):
                extensions.delete_custom_resource_definition(crd["metadata"]["name"])
        wait_for(
            lambda: kube.get(f"/apis/{GROUP_VERSION}") is None, timeout=60, interval=0.2, what="CRDs gone"
        )
        # This process's discovery remembers kinds it has seen served: forget these.
        catalog = _catalog(str(runtime.api.configuration.host))
        with catalog.lock:
            catalog.versions.pop(GROUP_VERSION, None)


@pytest.fixture
def declared(session: Session, world: World, project: Project) -> Project:
    assert project.id is not None
    return update_project(
        session=session,
        actor=world.owner,
        project_id=project.id,
        changes={"backing": [{"name": "db", "kind": "postgres", "version": "16", "size": "2Gi"}]},
    )


def _environment(session: Session, world: World, project: Project, name: str) -> int:
    assert project.id is not None
    created = create_environment(
        session=session, actor=world.member, queue=FakeQueue(), project_id=project.id, name=name
    )
    assert created.id is not None
    return created.id


def _instance(session: Session, environment_id: int) -> ServiceInstance:
    session.expire_all()
    row = session.exec(select(ServiceInstance).where(ServiceInstance.environment_id == environment_id)).one()
    return row


def test_without_the_operator_an_instance_goes_to_the_server_and_nothing_joins_the_namespace(
    session: Session,
    world: World,
    declared: Project,
    settings: Settings,
    runtime: KubernetesRuntime,
    postgres_server: PostgresServer,
) -> None:
    assert runtime.serves(GROUP_VERSION, "Cluster") is False
    with_server = build_settings(
        **{
            **settings.model_dump(),
            "services_postgres_url": f"postgresql://postgres@127.0.0.1:{postgres_server.port}/postgres",
        }
    )
    with override_settings(with_server):
        backends = managed_backends(with_server, local=False, kinds=runtime)
    assert backends.postgres_clusters is not None  # offered, and declined by the cluster's answer
    env_id = _environment(session, world, declared, "pr-1")
    grant = provisioning.provision(
        session, make_target(env_id), project=declared, backends=backends, progress=RecordingProgress()
    )
    assert grant.objects == ()
    assert grant.variables["PGHOST"] == "127.0.0.1"
    assert _instance(session, env_id).backend == "server"
    assert backends.postgres is not None
    backends.postgres.remove(f"envhub_e{env_id}_db")


def test_without_the_operator_or_a_server_the_deploy_fails_saying_what_would_serve(
    session: Session, world: World, declared: Project, settings: Settings, runtime: KubernetesRuntime
) -> None:
    backends = managed_backends(settings, local=False, kinds=runtime)
    env_id = _environment(session, world, declared, "pr-2")
    with pytest.raises(Unsupported) as failed:
        provisioning.provision(
            session, make_target(env_id), project=declared, backends=backends, progress=RecordingProgress()
        )
    assert failed.value.code == "not_supported"
    assert "CloudNativePG operator" in (failed.value.hint or "")
    assert _instance(session, env_id).backend == ""  # nothing chosen: a later deploy decides afresh


def test_with_the_operator_the_cluster_is_applied_with_the_environment_and_pruned_with_the_service(
    session: Session,
    world: World,
    declared: Project,
    settings: Settings,
    kube: Kube,
    operator_kinds: KubernetesRuntime,
) -> None:
    runtime = operator_kinds
    store = {
        "object_store_bucket": "acme-envhub",
        "object_store_url": "http://127.0.0.1:9",
        "object_store_access_key_id": "AKIA123",
        "object_store_secret_access_key": "store-secret",
    }
    configured = build_settings(**{**settings.model_dump(), **store})
    # As envhub.runtime.get_runtime shapes it from the settings.
    runtime.clusters = ClusterNetwork(
        operator_namespaces=configured.cloudnative_pg_namespaces, store_ports=configured.object_store_ports
    )
    backends = managed_backends(configured, local=False, kinds=runtime)
    env_id = _environment(session, world, declared, "staging")
    environment = session.get(Environment, env_id)
    assert environment is not None
    target = make_target(env_id, name="staging")
    progress = RecordingProgress()
    grant = provisioning.provision(session, target, project=declared, backends=backends, progress=progress)
    row = _instance(session, env_id)
    assert row.backend == "cloudnative-pg"
    assert row.reason == "CloudNativePG cluster"  # a development environment: no schedule
    cluster = f"envhub-e{env_id}-db"
    assert grant.variables["PGHOST"] == f"{cluster}-rw"
    assert grant.variables["DATABASE_URL"].endswith(f"@{cluster}-rw:5432/envhub_e{env_id}_db")

    runtime.apply(dataclasses.replace(target, service_objects=grant.objects), progress=progress)
    namespace = namespace_for(target)
    base = f"/apis/{GROUP_VERSION}/namespaces/{namespace}"
    stored = kube.get(f"{base}/clusters/{cluster}")
    assert stored is not None
    assert stored["metadata"]["labels"]["envhub.dev/environment"] == str(env_id)
    assert stored["spec"]["bootstrap"]["initdb"]["owner"] == f"envhub_e{env_id}_db"
    assert stored["spec"]["backup"]["barmanObjectStore"]["destinationPath"].startswith("s3://acme-envhub/")
    owner = kube.get(f"/api/v1/namespaces/{namespace}/secrets/{cluster}-owner")
    assert owner is not None
    assert owner["type"] == "kubernetes.io/basic-auth"
    assert base64.b64decode(owner["data"]["password"]).decode() == grant.variables["PGPASSWORD"]
    keys = kube.get(f"/api/v1/namespaces/{namespace}/secrets/envhub-backup-store")
    assert keys is not None
    assert base64.b64decode(keys["data"]["ACCESS_SECRET_KEY"]).decode() == "store-secret"
    assert kube.get(f"{base}/scheduledbackups/{cluster}-backup") is None  # development: none
    # Its pods' paths: the operator in, the API server (this apiserver's address) and the store out.
    policy = kube.get(
        f"/apis/networking.k8s.io/v1/namespaces/{namespace}/networkpolicies/envhub-cnpg-{cluster}"
    )
    assert policy is not None
    assert policy["spec"]["podSelector"] == {"matchLabels": {"envhub.dev/managed-service": cluster}}
    api_peers = [peer["ipBlock"]["cidr"] for peer in policy["spec"]["egress"][0]["to"]]
    assert api_peers
    assert all(cidr.startswith(("127.", "10.", "172.", "192.168.", "::1")) for cidr in api_peers)
    assert policy["spec"]["egress"][1]["ports"] == [{"protocol": "TCP", "port": 9}]  # the store's URL port

    # The same instance in a deployment environment gets its schedule, on the next apply.
    environment.kind = EnvironmentKind.deployment
    session.add(environment)
    session.commit()
    grant = provisioning.provision(session, target, project=declared, backends=backends, progress=progress)
    runtime.apply(dataclasses.replace(target, service_objects=grant.objects), progress=progress)
    scheduled = kube.get(f"{base}/scheduledbackups/{cluster}-backup")
    assert scheduled is not None
    assert scheduled["spec"]["cluster"] == {"name": cluster}
    cluster_now = kube.get(f"{base}/clusters/{cluster}")
    assert cluster_now is not None
    assert cluster_now["spec"]["instances"] == 2

    # The project stops declaring it: its objects leave with the next apply (pruned), nothing else.
    # A deployment environment holds it, so a team owner confirms with the project's name.
    assert declared.id is not None
    with pytest.raises(ValidationFailed, match="confirm with the project's name"):
        update_project(session=session, actor=world.owner, project_id=declared.id, changes={"backing": []})
    update_project(
        session=session,
        actor=world.owner,
        project_id=declared.id,
        changes={"backing": []},
        confirm=declared.name,
    )
    session.refresh(declared)
    grant = provisioning.provision(session, target, project=declared, backends=backends, progress=progress)
    assert grant.objects == ()
    runtime.apply(target, progress=progress)
    assert kube.get(f"{base}/clusters/{cluster}") is None
    assert (
        kube.get(f"/apis/networking.k8s.io/v1/namespaces/{namespace}/networkpolicies/envhub-cnpg-{cluster}")
        is None
    )
    assert kube.get(f"{base}/scheduledbackups/{cluster}-backup") is None
    assert kube.get(f"/api/v1/namespaces/{namespace}/secrets/{cluster}-owner") is None
    kube.delete_namespace(namespace)


def test_an_instance_in_a_cluster_stops_the_deploy_when_the_operator_is_gone(
    session: Session, world: World, declared: Project, settings: Settings, runtime: KubernetesRuntime
) -> None:
    """Applying without it would prune the Cluster and its data: the deploy fails instead."""
    backends = managed_backends(settings, local=False, kinds=runtime)
    env_id = _environment(session, world, declared, "pr-3")
    row = _instance_row(session, declared, env_id)
    row.backend = "cloudnative-pg"
    session.add(row)
    session.commit()
    with pytest.raises(Unsupported, match="no longer serves that operator's kinds"):
        provisioning.provision(
            session, make_target(env_id), project=declared, backends=backends, progress=RecordingProgress()
        )


def _instance_row(session: Session, project: Project, environment_id: int) -> ServiceInstance:
    """The instance record a first deploy made (as a deploy on an operator that was there would)."""
    assert project.id is not None
    row = ServiceInstance(environment_id=environment_id, project_id=project.id, service="db", kind="postgres")
    session.add(row)
    session.commit()
    return row


# -- the operator's backups, listed, asked for and restored through envhub --------------------------

STORE_SETTINGS = {
    "object_store_bucket": "acme-envhub",
    "object_store_url": "http://127.0.0.1:9",
    "object_store_access_key_id": "AKIA123",
    "object_store_secret_access_key": "store-secret",
}


def _as_the_operator_reports(
    kube: Kube, namespace: str, name: str, cluster: str, *, phase: str, scheduled: bool = False, **status: str
) -> None:
    """Write a Backup's status as the operator would (the stand-in CRD has no status subresource)."""
    path = f"/apis/{GROUP_VERSION}/namespaces/{namespace}/backups"
    body = {
        "apiVersion": GROUP_VERSION,
        "kind": "Backup",
        "metadata": {
            "name": name,
            "labels": {"cnpg.io/scheduled-backup": f"{cluster}-backup"} if scheduled else {},
        },
        "spec": {"cluster": {"name": cluster}, "method": "barmanObjectStore"},
        "status": {"phase": phase, "serverName": cluster, **status},
    }
    existing = kube.get(f"{path}/{name}")
    api = client.CustomObjectsApi(kube.api)
    group, version = GROUP_VERSION.split("/")
    if existing is None:
        api.create_namespaced_custom_object(group, version, namespace, "backups", body)
    else:
        api.patch_namespaced_custom_object(
            group, version, namespace, "backups", name, {"status": body["status"]}
        )


def _cluster_healthy(kube: Kube, namespace: str, cluster: str) -> None:
    group, version = GROUP_VERSION.split("/")
    client.CustomObjectsApi(kube.api).patch_namespaced_custom_object(
        group,
        version,
        namespace,
        "clusters",
        cluster,
        {"status": {"phase": "Cluster in healthy state", "readyInstances": 1}},
    )


def test_the_operators_backups_are_listed_asked_for_and_restored_through_envhub(
    session: Session,
    world: World,
    declared: Project,
    settings: Settings,
    kube: Kube,
    operator_kinds: KubernetesRuntime,
    tmp_path: Any,
) -> None:
    runtime = operator_kinds
    configured = build_settings(**{**settings.model_dump(), **STORE_SETTINGS})
    backends = managed_backends(configured, local=False, kinds=runtime)
    clusters = backends.postgres_clusters
    assert clusters is not None
    store = FolderObjectStore(tmp_path / "store")
    queue = FakeQueue()
    progress = RecordingProgress()
    env_id = _environment(session, world, declared, "pr-1")
    target = make_target(env_id, name="pr-1")
    grant = provisioning.provision(session, target, project=declared, backends=backends, progress=progress)
    runtime.apply(dataclasses.replace(target, service_objects=grant.objects), progress=progress)
    namespace = namespace_for(target)
    cluster = f"envhub-e{env_id}-db"
    archive = f"s3://acme-envhub/cloudnative-pg/envhub_e{env_id}_db-{_instance(session, env_id).id}"

    # Listed: a scheduled backup the operator finished, and one of an unrelated cluster (not envhub's).
    _as_the_operator_reports(
        kube, namespace, f"{cluster}-backup-1", cluster, phase="completed", scheduled=True,
        backupId="20261207T030000", destinationPath=archive,
        startedAt="2026-12-07T03:00:00Z", stoppedAt="2026-12-07T03:02:30Z",
    )  # fmt: skip
    _as_the_operator_reports(kube, namespace, "someone-elses", "not-envhubs", phase="completed")
    done = backups.drive(session=session, queue=queue, store=store, clusters=clusters)
    assert done["cluster_backups_seen"] == 1
    view = backups.environment_backups(session=session, actor=world.member, environment_id=env_id)
    [listed] = view["backups"]
    assert (listed["state"], listed["method"], listed["trigger"]) == ("succeeded", "barman", "schedule")
    assert listed["seconds"] == 150.0
    assert listed["size"] == ""  # barman keeps it to itself
    assert listed["restorable"]
    assert (
        backups.drive(session=session, queue=queue, store=store, clusters=clusters)["cluster_backups_seen"]
        == 0
    )

    # Asked for: the job makes a Backup object; the operator's failure is recorded with its reason.
    asked = backups.request_backup(
        session=session, actor=world.member, queue=queue, environment_id=env_id, service="db"
    )
    assert backups.perform_backup(session, asked["id"], backends=backends, store=store).startswith("asked")
    made = kube.get(f"/apis/{GROUP_VERSION}/namespaces/{namespace}/backups/{cluster}-{asked['id']}")
    assert made is not None
    assert made["spec"] == {"cluster": {"name": cluster}, "method": "barmanObjectStore"}
    assert made["metadata"]["labels"]["envhub.dev/environment"] == str(env_id)
    _as_the_operator_reports(
        kube, namespace, f"{cluster}-{asked['id']}", cluster, phase="failed", error="can't upload: 403"
    )
    backups.drive(session=session, queue=queue, store=store, clusters=clusters)
    failed = next(
        row
        for row in backups.environment_backups(session=session, actor=world.member, environment_id=env_id)[
            "backups"
        ]
        if row["id"] == asked["id"]
    )
    assert (failed["state"], failed["error"]) == ("failed", "can't upload: 403")

    # A pg_dump backup does not go into a Cluster; the operator's does, by making the Cluster again.
    environment = session.get(Environment, env_id)
    assert environment is not None
    environment.phase = Phase.ready
    session.add(environment)
    session.commit()
    restore = backups.restore_backup(
        session=session, actor=world.member, queue=queue, backup_id=listed["id"], environment_id=env_id
    )
    assert restore["state"] == "running"
    assert "generation 1" in restore["detail"]
    assert queue.jobs  # the redeploy that makes the Cluster again
    row = _instance(session, env_id)
    assert row.generation == 1
    grant = provisioning.provision(session, target, project=declared, backends=backends, progress=progress)
    assert grant.variables["PGHOST"] == f"{cluster}-g1-rw"  # a new Cluster, beside nothing of the old
    runtime.apply(dataclasses.replace(target, service_objects=grant.objects), progress=progress)
    assert kube.get(f"/apis/{GROUP_VERSION}/namespaces/{namespace}/clusters/{cluster}") is None  # pruned
    remade = kube.get(f"/apis/{GROUP_VERSION}/namespaces/{namespace}/clusters/{cluster}-g1")
    assert remade is not None
    assert remade["metadata"]["annotations"]["envhub.dev/generation"] == "1"
    assert remade["spec"]["bootstrap"]["recovery"]["recoveryTarget"] == {"backupID": "20261207T030000"}
    [source] = remade["spec"]["externalClusters"]
    assert source["barmanObjectStore"]["destinationPath"] == archive
    assert remade["spec"]["backup"]["barmanObjectStore"]["destinationPath"] == f"{archive}-g1"
    assert (
        backups.drive(session=session, queue=queue, store=store, clusters=clusters)["cluster_restores_done"]
        == 0
    )
    _cluster_healthy(kube, namespace, f"{cluster}-g1")
    assert (
        backups.drive(session=session, queue=queue, store=store, clusters=clusters)["cluster_restores_done"]
        == 1
    )
    finished = backups.environment_backups(session=session, actor=world.member, environment_id=env_id)
    assert finished["restores"][0]["state"] == "succeeded"
    # The new generation is backed up as itself; the backup it came from stays listed and restorable.
    again = backups.request_backup(
        session=session, actor=world.member, queue=queue, environment_id=env_id, service="db"
    )
    backups.perform_backup(session, again["id"], backends=backends, store=store)
    asked_again = kube.get(f"/apis/{GROUP_VERSION}/namespaces/{namespace}/backups/{cluster}-g1-{again['id']}")
    assert asked_again is not None
    assert asked_again["spec"]["cluster"] == {"name": f"{cluster}-g1"}
    kept = next(row for row in finished["backups"] if row["id"] == listed["id"])
    assert kept["restorable"]
    assert kept["expires"].startswith("kept until 2027-01-06")  # the operator's 30 days after it ended

    # Into a new environment: its Cluster starts from the backup, under the source's database name.
    new = backups.restore_backup(
        session=session, actor=world.member, queue=queue, backup_id=listed["id"], new_environment="pr-2"
    )
    new_target = make_target(new["environment_id"], name="pr-2")
    grant = provisioning.provision(
        session, new_target, project=declared, backends=backends, progress=progress
    )
    assert grant.variables["DATABASE_URL"].endswith(f"/envhub_e{env_id}_db")
    assert grant.variables["PGUSER"] == f"envhub_e{env_id}_db"
    [recovered] = [o for o in grant.objects if o["kind"] == "Cluster"]
    assert recovered["spec"]["bootstrap"]["recovery"]["owner"] == f"envhub_e{env_id}_db"
    assert "recovering from backup" in _instance(session, new["environment_id"]).seed_detail
    kube.delete_namespace(namespace)


def test_a_deployment_clusters_newest_backup_is_proven_by_a_scratch_cluster_that_recovers_it(
    session: Session,
    world: World,
    declared: Project,
    settings: Settings,
    kube: Kube,
    operator_kinds: KubernetesRuntime,
    tmp_path: Any,
) -> None:
    runtime = operator_kinds
    configured = build_settings(**{**settings.model_dump(), **STORE_SETTINGS})
    backends = managed_backends(configured, local=False, kinds=runtime)
    clusters = backends.postgres_clusters
    assert clusters is not None
    store, queue, progress = FolderObjectStore(tmp_path / "store"), FakeQueue(), RecordingProgress()
    env_id = _environment(session, world, declared, "staging")
    environment = session.get(Environment, env_id)
    assert environment is not None
    environment.kind = EnvironmentKind.deployment
    session.add(environment)
    session.commit()
    target = make_target(env_id, name="staging")
    grant = provisioning.provision(session, target, project=declared, backends=backends, progress=progress)
    runtime.apply(dataclasses.replace(target, service_objects=grant.objects), progress=progress)
    namespace, cluster = namespace_for(target), f"envhub-e{env_id}-db"
    archive = f"s3://acme-envhub/cloudnative-pg/envhub_e{env_id}_db-{_instance(session, env_id).id}"
    for name, backup_id in (
        (f"{cluster}-backup-1", "20261206T030000"),
        (f"{cluster}-backup-2", "20261207T030000"),
    ):
        _as_the_operator_reports(
            kube, namespace, name, cluster, phase="completed", scheduled=True, backupId=backup_id,
            destinationPath=archive, startedAt=f"{backup_id[:4]}-12-0{backup_id[7]}T03:00:00Z",
            stoppedAt=f"{backup_id[:4]}-12-0{backup_id[7]}T03:01:00Z",
        )  # fmt: skip

    done = backups.drive(session=session, queue=queue, store=store, clusters=clusters)
    assert done["cluster_checks_started"] == 1
    [check] = backups.environment_backups(session=session, actor=world.member, environment_id=env_id)[
        "restores"
    ]
    assert (check["purpose"], check["state"]) == ("check", "running")
    scratch = kube.get(f"/apis/{GROUP_VERSION}/namespaces/{namespace}/clusters/{cluster}-c{check['id']}")
    assert scratch is not None
    assert scratch["spec"]["bootstrap"]["recovery"]["recoveryTarget"] == {
        "backupID": "20261207T030000"
    }  # newest
    assert scratch["spec"]["inheritedMetadata"]["labels"] == {"envhub.dev/managed-service": cluster}
    assert "backup" not in scratch["spec"]  # a scratch Cluster archives nothing
    assert (
        backups.drive(session=session, queue=queue, store=store, clusters=clusters)["cluster_checks_started"]
        == 0
    )

    _cluster_healthy(kube, namespace, f"{cluster}-c{check['id']}")
    backups.drive(session=session, queue=queue, store=store, clusters=clusters)
    view = backups.environment_backups(session=session, actor=world.member, environment_id=env_id)
    assert view["restores"][0]["state"] == "succeeded"
    newest = next(row for row in view["backups"] if row["check"])
    assert newest["check"].startswith("passed: recovered into a scratch Cluster")
    assert kube.get(f"/apis/{GROUP_VERSION}/namespaces/{namespace}/clusters/{cluster}-c{check['id']}") is None
    kube.delete_namespace(namespace)
