"""A chart that brings its own PostgreSQL: detected after helm renders it, and not provisioned twice.

The chart is rendered by the real helm (as a release of a Helm chart is) and
the environment runs the rendered objects on the real test apiserver. The
project declares a PostgreSQL, and this envhub has no PostgreSQL backend at
all: the deploy can only succeed if provisioning sees the chart's own database
and skips the service, saying why.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from envhub.integrations.helm import Helm, LocalChart
from envhub.models import InstanceState, ServiceInstance
from envhub.services import ports
from envhub.services.environments import create_environment
from envhub.services.projects import create_project
from tests.kube.helpers import Kube, KubeWorkers
from tests.kube.test_managed_redis import settled
from tests.support.components import require_path
from tests.support.db import fetch_all
from tests.support.world import World

pytestmark = pytest.mark.kube

_DATABASE = """\
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {{ .Release.Name }}-db
spec:
  serviceName: {{ .Release.Name }}-db
  replicas: 1
  selector:
    matchLabels: {app: {{ .Release.Name }}-db}
  template:
    metadata:
      labels: {app: {{ .Release.Name }}-db}
    spec:
      containers:
        - name: postgres
          image: "docker.io/library/postgres:{{ .Values.postgresVersion }}"
          ports:
            - {containerPort: 5432, protocol: TCP}
          resources:
            requests: {cpu: 50m, memory: 64Mi}
            limits: {cpu: 500m, memory: 256Mi}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ .Release.Name }}-db
spec:
  selector: {app: {{ .Release.Name }}-db}
  ports:
    - {port: 5432, targetPort: 5432, protocol: TCP}
"""


def _chart(tree: Path) -> Path:
    chart = tree / "deploy" / "app"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: app\nversion: 1.0.0\n")
    (chart / "values.yaml").write_text('postgresVersion: "16"\n')
    (chart / "templates" / "database.yaml").write_text(_DATABASE)
    return chart


@pytest.mark.slow
def test_a_chart_that_runs_its_own_postgres_is_not_given_a_second_one(
    session: Session, world: World, db: Engine, workers: KubeWorkers, kube: Kube, tmp_path: Path
) -> None:
    _chart(tmp_path / "repo")
    rendered = Helm(str(require_path("helm"))).render(
        LocalChart(tree=tmp_path / "repo", path="deploy/app"),
        release="shop",
        namespace="placeholder",
        values_files=[],
        values={},
        kube_version="1.20.2",
        workdir=tmp_path / "work",
    )
    project = create_project(
        session=session,
        actor=world.owner,
        team_id=world.acme,
        name="shop",
        workloads={"manifests": rendered.manifests},
        backing=[{"name": "db", "kind": "postgres"}],
    )
    assert project.id is not None
    assert ports.backing().postgres is None  # nothing here could make a database
    workers.start()
    env = create_environment(
        session=session, actor=world.member, queue=ports.queue(), project_id=project.id, name="pr-1"
    )
    assert env.id is not None
    settled(db, env.id, workers)
    [ns] = kube.live_namespaces(env.id)
    assert kube.get(f"/apis/apps/v1/namespaces/{ns}/statefulsets/shop-db") is not None
    [row] = fetch_all(db, ServiceInstance)
    assert row.state is InstanceState.skipped
    assert row.reason == "not provisioned: StatefulSet shop-db runs docker.io/library/postgres:16"
