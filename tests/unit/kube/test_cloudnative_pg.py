"""A managed PostgreSQL as a CloudNativePG Cluster: what is rendered, and where it goes in the environment.

The field names are checked against CloudNativePG's published API in
tests/render/test_cloudnative_pg_bindings.py; here the shape and the decisions.
"""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

import kubernetes_validate
import pytest

from envhub.domain.kube import ManifestRejected, namespace_for, render_environment
from envhub.domain.kube.cloudnative_pg import (
    BACKUP_STORE_SECRET,
    BackupStore,
    backup_path,
    cluster_name,
    primary_service,
    render_postgres_cluster,
    retention_days,
)
from envhub.domain.kube.egress import EgressDenyList
from envhub.domain.kube.guards import check_object
from envhub.domain.kube.network import ClusterNetwork
from envhub.domain.specs import EnvironmentTarget

from .conftest import make_target

STORE = BackupStore(
    bucket="acme-envhub",
    endpoint_url="https://s3.eu-west-1.amazonaws.com",
    region="eu-west-1",
    access_key_id="AKIA123",
    secret_access_key="not-shown",
)


def _by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for obj in objects:
        found.setdefault(obj["kind"], obj)
    return found


def _decoded(secret: dict[str, Any]) -> dict[str, str]:
    return {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}


def test_a_development_instance_is_one_instance_with_its_owner_and_no_backups() -> None:
    objects = render_postgres_cluster("envhub_e12_db", serial=7, password="pw-1", version="16", size="5Gi")
    assert [(o["kind"], o["metadata"]["name"]) for o in objects] == [
        ("Secret", "envhub-e12-db-owner"),
        ("Cluster", "envhub-e12-db"),
    ]
    secret, cluster = objects
    assert secret["type"] == "kubernetes.io/basic-auth"
    assert _decoded(secret) == {"username": "envhub_e12_db", "password": "pw-1"}
    spec = cluster["spec"]
    assert cluster["apiVersion"] == "postgresql.cnpg.io/v1"
    assert spec["instances"] == 1
    assert spec["imageName"] == "ghcr.io/cloudnative-pg/postgresql:16"
    assert spec["storage"] == {"size": "5Gi"}
    assert spec["enableSuperuserAccess"] is False
    assert spec["bootstrap"] == {
        "initdb": {
            "database": "envhub_e12_db",
            "owner": "envhub_e12_db",
            "secret": {"name": "envhub-e12-db-owner"},
        }
    }
    # The same Secret keeps the role's password: a rotation reaches the database.
    assert spec["managed"]["roles"] == [
        {
            "name": "envhub_e12_db",
            "ensure": "present",
            "login": True,
            "passwordSecret": {"name": "envhub-e12-db-owner"},
        }
    ]
    assert "backup" not in spec
    assert primary_service("envhub_e12_db") == "envhub-e12-db-rw"


def test_defaults_take_the_newest_version_and_a_small_volume() -> None:
    cluster = _by_kind(render_postgres_cluster("envhub_e1_db", serial=1, password="p"))["Cluster"]
    assert cluster["spec"]["imageName"] == "ghcr.io/cloudnative-pg/postgresql:17"
    assert cluster["spec"]["storage"] == {"size": "1Gi"}
    mirrored = render_postgres_cluster("envhub_e1_db", serial=1, password="p", image="mirror.acme/pg")
    assert _by_kind(mirrored)["Cluster"]["spec"]["imageName"] == "mirror.acme/pg:17"


def test_a_deployment_instance_has_a_standby_backups_to_the_store_and_a_schedule() -> None:
    objects = render_postgres_cluster(
        "envhub_e12_db", serial=7, password="pw", version="16", deployment=True, store=STORE
    )
    assert [(o["kind"], o["metadata"]["name"]) for o in objects] == [
        ("Secret", "envhub-e12-db-owner"),
        ("Secret", BACKUP_STORE_SECRET),
        ("Cluster", "envhub-e12-db"),
        ("ScheduledBackup", "envhub-e12-db-backup"),
    ]
    keys = objects[1]
    assert _decoded(keys) == {
        "ACCESS_KEY_ID": "AKIA123",
        "ACCESS_SECRET_KEY": "not-shown",
        "ACCESS_REGION": "eu-west-1",
    }
    spec = objects[2]["spec"]
    assert spec["instances"] == 2
    assert spec["backup"] == {
        "retentionPolicy": "30d",
        "barmanObjectStore": {
            "destinationPath": "s3://acme-envhub/cloudnative-pg/envhub_e12_db-7",
            "endpointURL": "https://s3.eu-west-1.amazonaws.com",
            "s3Credentials": {
                "accessKeyId": {"name": BACKUP_STORE_SECRET, "key": "ACCESS_KEY_ID"},
                "secretAccessKey": {"name": BACKUP_STORE_SECRET, "key": "ACCESS_SECRET_KEY"},
                "region": {"name": BACKUP_STORE_SECRET, "key": "ACCESS_REGION"},
            },
            "wal": {"compression": "gzip"},
            "data": {"compression": "gzip"},
        },
    }
    assert objects[3]["spec"] == {
        "schedule": "0 0 3 * * *",
        "cluster": {"name": "envhub-e12-db"},
        "method": "barmanObjectStore",
        "backupOwnerReference": "self",
        "immediate": True,
    }


def test_a_development_instance_archives_to_the_store_without_a_schedule() -> None:
    kinds = [o["kind"] for o in render_postgres_cluster("envhub_e3_db", serial=2, password="p", store=STORE)]
    assert kinds == ["Secret", "Secret", "Cluster"]


def test_without_keys_the_pods_use_their_cloud_identity_and_no_key_secret_is_made() -> None:
    store = BackupStore(bucket="acme-envhub", schedule="0 30 1 * * 0", retention="4w")
    objects = render_postgres_cluster("envhub_e3_db", serial=2, password="p", deployment=True, store=store)
    assert [o["metadata"]["name"] for o in objects if o["kind"] == "Secret"] == ["envhub-e3-db-owner"]
    barman = _by_kind(objects)["Cluster"]["spec"]["backup"]["barmanObjectStore"]
    assert barman["s3Credentials"] == {"inheritFromIAMRole": True}
    assert "endpointURL" not in barman
    assert _by_kind(objects)["ScheduledBackup"]["spec"]["schedule"] == "0 30 1 * * 0"
    assert _by_kind(objects)["Cluster"]["spec"]["backup"]["retentionPolicy"] == "4w"


def test_an_instance_made_again_never_shares_the_archive_of_the_one_before() -> None:
    assert backup_path(STORE, "envhub_e12_db", 7) != backup_path(STORE, "envhub_e12_db", 8)


def test_rendering_is_repeatable_and_secrets_stay_out_of_repr() -> None:
    first = render_postgres_cluster("envhub_e12_db", serial=7, password="pw", store=STORE, deployment=True)
    assert first == render_postgres_cluster(
        "envhub_e12_db", serial=7, password="pw", store=STORE, deployment=True
    )
    assert "not-shown" not in repr(STORE)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"bucket": ""}, "needs a bucket"),
        ({"bucket": "b", "access_key_id": "only-one"}, "both keys"),
        ({"bucket": "b", "schedule": "@daily"}, "six-field cron"),
        ({"bucket": "b", "retention": "30 days"}, "retention"),
    ],
)
def test_a_store_that_cannot_work_is_refused(fields: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BackupStore(**fields)


@pytest.mark.parametrize("instance", ["", "Envhub_e1_db", "envhub-e1-db", "envhub_e1_"])
def test_only_instance_names_become_clusters(instance: str) -> None:
    with pytest.raises(ValueError, match="not an instance name"):
        cluster_name(instance)


def _with_service(target: EnvironmentTarget, objects: list[dict[str, Any]]) -> EnvironmentTarget:
    return dataclasses.replace(target, service_objects=tuple(objects))


def test_the_environment_applies_them_in_its_namespace_with_its_labels_before_its_workloads() -> None:
    target = _with_service(
        make_target({"services": [{"name": "web", "image": "nginx", "ports": [8080]}]}),
        render_postgres_cluster("envhub_e1_db", serial=1, password="p", store=STORE),
    )
    objects = render_environment(target)
    namespace = namespace_for(target)
    names = [(o["kind"], o["metadata"]["name"]) for o in objects]
    cluster_at = names.index(("Cluster", "envhub-e1-db"))
    assert names.index(("Secret", "envhub-e1-db-owner")) < cluster_at < names.index(("Deployment", "web"))
    for obj in objects[cluster_at - 2 : cluster_at + 1]:
        assert obj["metadata"]["namespace"] == namespace
        assert obj["metadata"]["labels"] == target.labels
    # The Secrets are valid Kubernetes objects (the Cluster is the operator's kind: see the bindings test).
    secrets = [o for o in objects[cluster_at - 2 : cluster_at] if o["kind"] == "Secret"]
    for secret in secrets:
        kubernetes_validate.validate(secret, kubernetes_validate.latest_version(), strict=True)
    # The target itself keeps them out of its repr and its equality, like the project's secrets.
    assert "envhub-e1-db" not in repr(target)
    assert target == dataclasses.replace(target, service_objects=())


def test_a_user_manifest_may_neither_take_nor_name_the_backup_store_secret() -> None:
    own = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": BACKUP_STORE_SECRET}, "data": {}}
    with pytest.raises(ManifestRejected, match="envhub's own object"):
        check_object(own, namespace="ns")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "thief"},
        "spec": {
            "containers": [
                {
                    "name": "c",
                    "image": "busybox",
                    "env": [
                        {
                            "name": "K",
                            "valueFrom": {
                                "secretKeyRef": {"name": BACKUP_STORE_SECRET, "key": "ACCESS_KEY_ID"}
                            },
                        }
                    ],
                }
            ]
        },
    }
    with pytest.raises(ManifestRejected) as refused:
        check_object(pod, namespace="ns")
    assert refused.value.details["field"] == "spec.containers[0].env[0].valueFrom.secretKeyRef.name"
    # A user's own CloudNativePG Cluster may not borrow the keys to read other environments' backups.
    cluster = {
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "Cluster",
        "metadata": {"name": "mine"},
        "spec": {
            "externalClusters": [
                {
                    "name": "other",
                    "barmanObjectStore": {
                        "destinationPath": "s3://acme-envhub/cloudnative-pg/envhub_e9_db-3",
                        "s3Credentials": {
                            "accessKeyId": {"name": BACKUP_STORE_SECRET, "key": "ACCESS_KEY_ID"}
                        },
                    },
                }
            ]
        },
    }
    with pytest.raises(ManifestRejected, match="every environment's backups"):
        check_object(cluster, namespace="ns")
    # Its own database's Secret is the environment's to use.
    pod["spec"]["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"]["name"] = "envhub-e1-db-owner"
    check_object(pod, namespace="ns")


# -- the cluster's network policy, and the label that selects its pods --------------------------------


def _with_cluster(**render: Any) -> list[dict[str, Any]]:
    target = dataclasses.replace(
        make_target({"services": [{"name": "web", "image": "nginx:1.27", "ports": [8080]}]}),
        service_objects=tuple(render_postgres_cluster("envhub_e42_db", serial=1, password="p", store=STORE)),
    )
    return render_environment(target, **render)


def test_a_managed_cluster_gets_a_policy_for_its_operator_the_api_server_and_the_object_store() -> None:
    network = ClusterNetwork(
        operator_namespaces=("cnpg-system",), api_server=("10.96.0.1", "172.18.0.2"), store_ports=(9000,)
    )
    objects = _with_cluster(clusters=network, deny=EgressDenyList(cidrs=("169.254.169.254/32",)))
    [policy] = [o for o in objects if o["metadata"]["name"] == "envhub-cnpg-envhub-e42-db"]
    spec = policy["spec"]
    assert spec["podSelector"] == {"matchLabels": {"envhub.dev/managed-service": "envhub-e42-db"}}
    [operator] = spec["ingress"]
    assert operator["from"][0]["namespaceSelector"]["matchExpressions"][0]["values"] == ["cnpg-system"]
    assert {p["port"] for p in operator["ports"]} == {8000, 5432}
    api, store = spec["egress"]
    assert [peer["ipBlock"]["cidr"] for peer in api["to"]] == ["10.96.0.1/32", "172.18.0.2/32"]
    assert store["ports"] == [{"protocol": "TCP", "port": 9000}]
    assert store["to"][0]["ipBlock"]["cidr"] == "0.0.0.0/0"
    assert "169.254.169.254/32" in store["to"][0]["ipBlock"]["except"]  # the deny list holds
    # Its pods wear the managed-service label: the URL provider's proxies are not let in.
    [cluster] = [o for o in objects if o["kind"] == "Cluster"]
    assert cluster["spec"]["inheritedMetadata"]["labels"] == {"envhub.dev/managed-service": "envhub-e42-db"}
    allow_ingress = next(o for o in objects if o["metadata"]["name"] == "envhub-allow-ingress")
    excluded = allow_ingress["spec"]["podSelector"]["matchExpressions"][0]
    assert excluded == {"key": "envhub.dev/managed-service", "operator": "DoesNotExist"}


def test_an_environment_without_a_cluster_gets_no_cluster_policy() -> None:
    target = make_target({"services": [{"name": "web", "image": "nginx:1.27", "ports": [8080]}]})
    names = [o["metadata"]["name"] for o in render_environment(target) if o["kind"] == "NetworkPolicy"]
    assert not [name for name in names if name.startswith("envhub-cnpg-")]


@pytest.mark.parametrize("label", ["cnpg.io/cluster", "envhub.dev/managed-service"])
def test_a_users_pod_may_not_wear_the_labels_that_open_a_clusters_paths(label: str) -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "sneaky"},
        "spec": {
            "selector": {"matchLabels": {"app": "sneaky"}},
            "template": {
                "metadata": {"labels": {"app": "sneaky", label: "envhub-e42-db"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            },
        },
    }
    with pytest.raises(ManifestRejected, match=f"label {label} is reserved") as caught:
        check_object(deployment, namespace="envhub-acme-shop-dev-42")
    assert caught.value.details["field"] == f"spec.template.metadata.labels[{label}]"


@pytest.mark.parametrize(("retention", "days"), [("30d", 30), ("4w", 28), ("6m", 180)])
def test_a_retention_policy_in_days(retention: str, days: int) -> None:
    assert retention_days(retention) == days


def test_a_restored_generation_is_a_cluster_of_its_own_name() -> None:
    assert cluster_name("envhub_e12_db") == "envhub-e12-db"
    assert cluster_name("envhub_e12_db", 2) == "envhub-e12-db-g2"
    assert primary_service("envhub_e12_db", 2) == "envhub-e12-db-g2-rw"
    objects = render_postgres_cluster("envhub_e12_db", serial=7, password="p", store=STORE, generation=2)
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert ("Cluster", "envhub-e12-db-g2") in names
    assert ("Secret", "envhub-e12-db-g2-owner") in names
