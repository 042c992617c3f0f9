"""Releases of deployment environments on the real test apiserver (issue 12 points 2, 3, 5 and 7).

Each source — manifests in the repository, a Helm chart with a dependency
rendered by the real helm binary, container images by digest — is released,
updated and rolled back through the services, with the render job and the
convergence job run in-process as a worker runs them, against the test
cluster. Production receives exactly what staging ran.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, col, select

from envhub.config import Settings, override_settings
from envhub.domain.releases import ReleaseStatus, ReleaseTrigger, diff_objects, load_objects
from envhub.jobs.environments import converge_environment
from envhub.jobs.releases import render_artifact
from envhub.models import Artifact, Environment, JobRun, Project, Release
from envhub.runtime.local.processes import free_port
from envhub.services import ports, releases
from envhub.services.projects import create_project
from tests.conftest import build_settings
from tests.kube.helpers import HTTP_SERVER, Kube, web_service
from tests.support.charts import write_chart
from tests.support.repos import WorkRepo
from tests.support.tools import kube_tools
from tests.support.world import World

pytestmark = [pytest.mark.kube, pytest.mark.slow]

DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64


@pytest.fixture
def release_settings(kube_settings: Settings) -> Iterator[Settings]:
    values = {**kube_settings.model_dump(), "allow_local_repos": True, "helm_binary": str(kube_tools().helm)}
    with override_settings(build_settings(**values)) as configured:
        ports.reset()
        yield configured
    ports.reset()


@pytest.fixture
def repo(tmp_path: Path) -> WorkRepo:
    return WorkRepo(tmp_path / "repo")


def _project(session: Session, world: World, repo: WorkRepo | None, **workloads: Any) -> Project:
    project = create_project(
        session=session,
        actor=world.owner,
        team_id=world.acme,
        name="shop",
        repo_url=str(repo.path) if repo else None,
        workloads=workloads or None,
    )
    assert project.id is not None
    return project


def _configure(
    session: Session, world: World, project: Project, source: dict[str, Any], **production: Any
) -> None:
    settings = {
        "source": source,
        "environments": [
            {"name": "staging", "overrides": production.pop("staging", {})},
            {
                "name": "production",
                "overrides": production.pop("overrides", {}),
                "promotion": {"promote_from": "staging", "approvals": 1, "rollout_deadline_seconds": 60},
            },
        ],
    }
    releases.configure_deployments(
        session=session, actor=world.owner, project_id=project.id or 0, settings=settings
    )


def _land(session: Session, release: Release) -> Release:
    """What the workers do: render (when it has not been), then apply until the release settles."""
    session.expire_all()
    artifact = session.get(Artifact, release.artifact_id)
    assert artifact is not None
    if artifact.status.value == "rendering":
        render_artifact(release.artifact_id)
    session.expire_all()
    current = session.get(Release, release.id)
    assert current is not None
    assert current.status is ReleaseStatus.deploying, f"{current.status}: {current.message}"
    run = session.exec(
        select(JobRun).where(JobRun.environment_id == current.environment_id).order_by(col(JobRun.id).desc())
    ).first()
    assert run is not None
    converge_environment(current.environment_id, run.id or 0)
    session.expire_all()
    settled = session.get(Release, release.id)
    assert settled is not None
    return settled


def _release(session: Session, world: World, project: Project, commit: str, **kwargs: Any) -> Release:
    [made] = releases.create_release(
        session=session,
        actor=world.member,
        queue=ports.queue(),
        project_id=project.id or 0,
        commit=commit,
        **kwargs,
    )
    return made


def _namespace(session: Session, project: Project, name: str, kube: Kube) -> str:
    environment = session.exec(
        select(Environment).where(Environment.project_id == project.id, Environment.name == name)
    ).one()
    [namespace] = kube.live_namespaces(environment.id)
    return namespace


def _configmap(kube: Kube, namespace: str, name: str) -> dict[str, Any] | None:
    return kube.get(f"/api/v1/namespaces/{namespace}/configmaps/{name}")


def _deployment(kube: Kube, namespace: str, name: str) -> dict[str, Any] | None:
    return kube.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}")


WEB = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: python:3.12-slim
        command: COMMAND
        ports: [{containerPort: PORT, protocol: TCP}]
        resources: {requests: {cpu: 10m, memory: 16Mi}, limits: {cpu: 100m, memory: 64Mi}}
"""
CONFIG = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {greeting: GREETING}\n"
FAILING_JOB = """\
apiVersion: batch/v1
kind: Job
metadata: {name: migrate}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: migrate
        image: python:3.12-slim
        command: [sh, -c, 'exit 1']
        resources: {requests: {cpu: 10m, memory: 16Mi}, limits: {cpu: 100m, memory: 64Mi}}
"""
CHART_DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: {{ .Values.replicas }}
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: {{ .Values.image }}
        command: COMMAND
        ports: [{containerPort: PORT, protocol: TCP}]
        resources: {requests: {cpu: 10m, memory: 16Mi}, limits: {cpu: 100m, memory: 64Mi}}
"""


def _workload(template: str, port: int) -> str:
    """The template with a web server any number of replicas can run on the one test node."""
    return template.replace("COMMAND", json.dumps(["python3", "-c", HTTP_SERVER, str(port)])).replace(
        "PORT", str(port)
    )


def _manifests(port: int, greeting: str, extra: bool) -> dict[str, str]:
    files = {
        "deploy/web.yaml": _workload(WEB, port),
        "deploy/config.yaml": CONFIG.replace("GREETING", greeting),
    }
    if extra:
        files["deploy/extra.yaml"] = (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: extra}\ndata: {a: b}\n"
        )
    return files


def test_configuring_makes_each_deployment_environment_s_namespace_and_isolation_before_any_release(
    release_settings: Settings, session: Session, world: World, repo: WorkRepo, kube: Kube
) -> None:
    port = free_port()
    repo.write(_manifests(port, "hello", extra=False))
    commit = repo.commit("first")
    project = _project(session, world, repo)
    _configure(session, world, project, {"kind": "manifests", "path": "deploy"})
    uids = {}
    for name in ("staging", "production"):
        environment = session.exec(
            select(Environment).where(Environment.project_id == project.id, Environment.name == name)
        ).one()
        [run] = session.exec(select(JobRun).where(JobRun.environment_id == environment.id)).all()
        assert (run.kind, run.generation, run.status.value) == ("prepare", 0, "queued")
        assert converge_environment(environment.id or 0, run.id or 0) == "prepared"
        namespace = _namespace(session, project, name, kube)
        listed = {
            kind: [item["metadata"]["name"] for item in (kube.get(path) or {}).get("items", [])]
            for kind, path in {
                "quota": f"/api/v1/namespaces/{namespace}/resourcequotas",
                "limits": f"/api/v1/namespaces/{namespace}/limitranges",
                "policies": f"/apis/networking.k8s.io/v1/namespaces/{namespace}/networkpolicies",
                "roles": f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles",
                "deployments": f"/apis/apps/v1/namespaces/{namespace}/deployments",
                "configmaps": f"/api/v1/namespaces/{namespace}/configmaps",
            }.items()
        }
        assert all(listed[kind] for kind in ("quota", "limits", "policies", "roles"))
        assert listed["deployments"] == []  # nothing runs yet
        assert "settings" not in listed["configmaps"]
        session.expire_all()
        environment = session.get(Environment, environment.id)
        assert environment is not None
        assert (environment.phase.value, environment.observed_generation) == ("pending", 0)
        assert environment.message == "No release yet; its namespace and isolation are ready"
        done = session.get(JobRun, run.id)
        assert done is not None
        assert done.status.value == "succeeded"
        assert [(s["key"], s["status"]) for s in done.steps] == [("namespace", "done"), ("isolation", "done")]
        uids[name] = (kube.get(f"/api/v1/namespaces/{namespace}") or {})["metadata"]["uid"]

    # The first release adds its workloads to the namespace made for it.
    first = _land(session, _release(session, world, project, commit))
    assert first.status is ReleaseStatus.ready, first.message
    staging = _namespace(session, project, "staging", kube)
    assert (kube.get(f"/api/v1/namespaces/{staging}") or {})["metadata"]["uid"] == uids["staging"]
    assert (_configmap(kube, staging, "settings") or {})["data"] == {"greeting": "hello"}
    assert _deployment(kube, staging, "web") is not None


def test_a_manifests_source_is_applied_updated_and_rolled_back(
    release_settings: Settings, session: Session, world: World, repo: WorkRepo, kube: Kube
) -> None:
    port = free_port()
    repo.write(_manifests(port, "hello", extra=True))
    first_commit = repo.commit("first")
    project = _project(session, world, repo)
    _configure(session, world, project, {"kind": "manifests", "path": "deploy"})
    first = _land(session, _release(session, world, project, first_commit))
    assert first.status is ReleaseStatus.ready, first.message
    staging = _namespace(session, project, "staging", kube)
    assert (_configmap(kube, staging, "settings") or {})["data"] == {"greeting": "hello"}
    assert _configmap(kube, staging, "extra") is not None
    assert _deployment(kube, staging, "web") is not None

    # An update: a changed object changes, a dropped one is pruned.
    (repo.path / "deploy/extra.yaml").unlink()
    repo.write(_manifests(port, "bonjour", extra=False))
    second = _land(session, _release(session, world, project, repo.commit("second")))
    assert second.status is ReleaseStatus.ready, second.message
    assert (_configmap(kube, staging, "settings") or {})["data"] == {"greeting": "bonjour"}
    assert _configmap(kube, staging, "extra") is None

    # The diff against what runs names objects, not values: what rolling back to #1 would change.
    from envhub.services.release_views import release_detail

    detail = release_detail(session=session, actor=world.member, release_id=first.id or 0)
    assert {(c["key"], c["change"]) for c in detail["changes"]} == {
        ("ConfigMap/extra", "added"), ("ConfigMap/settings", "changed")
    }  # fmt: skip

    # Rollback: a new release with the first one's content.
    back = releases.rollback(
        session=session, actor=world.admin, queue=ports.queue(), release_id=first.id or 0
    )
    assert (back.number, back.trigger, back.artifact_id) == (3, ReleaseTrigger.rollback, first.artifact_id)
    back = _land(session, back)
    assert back.status is ReleaseStatus.ready, back.message
    assert (_configmap(kube, staging, "settings") or {})["data"] == {"greeting": "hello"}
    assert _configmap(kube, staging, "extra") is not None


def _chart(repo: WorkRepo, port: int, message: str) -> None:
    """A chart with a dependency by file:// (a subchart in the repository) and a Deployment of its own."""
    write_chart(repo.path / "charts-src" / "sub", "sub", "0.1.0", greeting="from the subchart") if not (
        repo.path / "charts-src" / "sub"
    ).exists() else None
    app = repo.path / "deploy" / "app"
    if not app.exists():
        write_chart(
            app, "app", "1.0.0",
            extra="dependencies:\n- name: sub\n  version: 0.1.0\n  repository: file://../../charts-src/sub\n",
        )  # fmt: skip
    (app / "values.yaml").write_text(f"greeting: {message}\nreplicas: 1\nimage: ghcr.io/acme/shop:latest\n")
    (app / "templates" / "deployment.yaml").write_text(_workload(CHART_DEPLOYMENT, port))


def test_a_helm_chart_with_a_dependency_goes_to_staging_then_after_approval_to_production_unchanged(
    release_settings: Settings, session: Session, world: World, repo: WorkRepo, kube: Kube
) -> None:
    port = free_port()
    _chart(repo, port, "hello")
    commit = repo.commit("chart")
    project = _project(session, world, repo)
    _configure(
        session, world, project, {"kind": "helm", "path": "deploy/app", "values": {"greeting": "shared"}},
        staging={"env": {"STAGE": "staging"}},
        overrides={"values": {"replicas": 2}, "env": {"STAGE": "production"}},
    )  # fmt: skip
    staged = _land(session, _release(session, world, project, commit, images={"ghcr.io/acme/shop": DIGEST_A}))
    assert staged.status is ReleaseStatus.ready, staged.message
    artifact = session.get(Artifact, staged.artifact_id)
    assert artifact is not None
    assert (artifact.chart["name"], artifact.chart["version"]) == ("app", "1.0.0")
    assert artifact.chart["digest"].startswith("sha256:")
    staging = _namespace(session, project, "staging", kube)
    # The dependency was rendered by the real helm; the image runs by the digest CI sent.
    assert (_configmap(kube, staging, "shop-sub") or {})["data"]["greeting"] == "from the subchart"
    assert (_configmap(kube, staging, "shop-app") or {})["data"]["greeting"] == "shared"
    web = _deployment(kube, staging, "web") or {}
    assert web["spec"]["template"]["spec"]["containers"][0]["image"] == f"ghcr.io/acme/shop@{DIGEST_A}"

    # Production waits for an approval, then runs the same artifact: same chart digest, same image digest.
    promoted = session.exec(select(Release).where(Release.key == f"promotion:{staged.id}")).one()
    assert promoted.status is ReleaseStatus.waiting
    releases.approve_release(
        session=session, actor=world.admin, queue=ports.queue(), release_id=promoted.id or 0
    )
    landed = _land(session, promoted)
    assert landed.status is ReleaseStatus.ready, landed.message
    assert landed.artifact_id == staged.artifact_id
    production = _namespace(session, project, "production", kube)
    prod_web = _deployment(kube, production, "web") or {}
    assert prod_web["spec"]["template"]["spec"]["containers"][0]["image"] == f"ghcr.io/acme/shop@{DIGEST_A}"
    assert prod_web["spec"]["replicas"] == 2  # what production declares
    # The two renderings differ only in what production declares (replicas, its variables).
    changes = diff_objects(
        load_objects(artifact.rendered["staging"]), load_objects(artifact.rendered["production"])
    )
    assert [change.key for change in changes] == ["Deployment/web"]
    changed = "\n".join(changes[0].lines)
    assert "-  replicas: 1" in changed
    assert "+  replicas: 2" in changed
    assert "value: production" in changed

    # An update of the chart, then a rollback to the first release.
    _chart(repo, port, "updated")
    second = _land(
        session,
        _release(session, world, project, repo.commit("update"), images={"ghcr.io/acme/shop": DIGEST_B}),
    )
    assert second.status is ReleaseStatus.ready, second.message
    web = _deployment(kube, staging, "web") or {}
    assert web["spec"]["template"]["spec"]["containers"][0]["image"] == f"ghcr.io/acme/shop@{DIGEST_B}"
    back = _land(
        session,
        releases.rollback(session=session, actor=world.admin, queue=ports.queue(), release_id=staged.id or 0),
    )
    assert back.status is ReleaseStatus.ready, back.message
    web = _deployment(kube, staging, "web") or {}
    assert web["spec"]["template"]["spec"]["containers"][0]["image"] == f"ghcr.io/acme/shop@{DIGEST_A}"


def test_an_image_source_runs_the_digest_ci_sent_and_rolls_back(
    release_settings: Settings, session: Session, world: World, kube: Kube
) -> None:
    project = _project(session, world, None, services=[web_service(image="ghcr.io/acme/shop:main")])
    _configure(session, world, project, {"kind": "image"}, overrides={"replicas": {"web": 2}})
    commit_a, commit_b = "a" * 40, "b" * 40
    first = _land(
        session, _release(session, world, project, commit_a, images={"ghcr.io/acme/shop": DIGEST_A})
    )
    assert first.status is ReleaseStatus.ready, first.message
    staging = _namespace(session, project, "staging", kube)

    def image() -> str:
        deployment = _deployment(kube, staging, "web") or {}
        return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])

    assert image() == f"ghcr.io/acme/shop@{DIGEST_A}"
    second = _land(
        session, _release(session, world, project, commit_b, images={"ghcr.io/acme/shop": DIGEST_B})
    )
    assert second.status is ReleaseStatus.ready, second.message
    assert image() == f"ghcr.io/acme/shop@{DIGEST_B}"
    back = _land(
        session,
        releases.rollback(session=session, actor=world.admin, queue=ports.queue(), release_id=first.id or 0),
    )
    assert back.status is ReleaseStatus.ready, back.message
    assert image() == f"ghcr.io/acme/shop@{DIGEST_A}"
    artifact = session.get(Artifact, first.artifact_id)
    assert artifact is not None
    production = {
        o["kind"] + "/" + o["metadata"]["name"]: o for o in load_objects(artifact.rendered["production"])
    }
    assert production["Deployment/web"]["spec"]["replicas"] == 2


def test_a_release_whose_job_fails_names_it_and_rolls_back_by_itself(
    release_settings: Settings, session: Session, world: World, repo: WorkRepo, kube: Kube
) -> None:
    port = free_port()
    repo.write(_manifests(port, "hello", extra=False))
    good = repo.commit("good")
    project = _project(session, world, repo)
    settings = {
        "source": {"kind": "manifests", "path": "deploy"},
        "environments": [
            {"name": "staging", "promotion": {"auto_rollback": True, "rollout_deadline_seconds": 60}}
        ],
    }
    releases.configure_deployments(
        session=session, actor=world.owner, project_id=project.id or 0, settings=settings
    )
    first = _land(session, _release(session, world, project, good))
    assert first.status is ReleaseStatus.ready, first.message

    repo.write(
        {"deploy/config.yaml": CONFIG.replace("GREETING", "broken"), "deploy/migrate.yaml": FAILING_JOB}
    )
    broken = _land(session, _release(session, world, project, repo.commit("broken")))
    assert broken.status is ReleaseStatus.failed
    assert broken.error_code == "rollout_failed"
    assert "Job/migrate" in broken.message
    assert [item["workload"] for item in broken.workloads] == ["Job/migrate"]

    # The environment asked for it: a rollback to the last good release is under way.
    session.expire_all()
    back = session.exec(select(Release).where(Release.key == f"autorollback:{broken.id}")).one()
    assert (back.trigger, back.artifact_id, back.triggered_by) == (
        ReleaseTrigger.rollback,
        first.artifact_id,
        "envhub",
    )
    back = _land(session, back)
    assert back.status is ReleaseStatus.ready, back.message
    staging = _namespace(session, project, "staging", kube)
    assert (_configmap(kube, staging, "settings") or {})["data"] == {"greeting": "hello"}
    assert kube.get(f"/apis/batch/v1/namespaces/{staging}/jobs/migrate") is None


def test_a_deployment_past_its_own_progress_deadline_fails_the_release_before_envhubs(
    release_settings: Settings, session: Session, world: World, repo: WorkRepo
) -> None:
    """Kubernetes gives up on a rollout after ``progressDeadlineSeconds``: so does the release, naming
    the Deployment and its pods' reason, long before its own deadline."""
    crashing = (
        WEB.replace("COMMAND", json.dumps(["sh", "-c", "exit 3"]))
        .replace("PORT", str(free_port()))
        .replace("  replicas: 1\n", "  replicas: 1\n  progressDeadlineSeconds: 2\n")
    )
    repo.write({"deploy/web.yaml": crashing, "deploy/config.yaml": CONFIG.replace("GREETING", "hi")})
    project = _project(session, world, repo)
    settings = {
        "source": {"kind": "manifests", "path": "deploy"},
        "environments": [{"name": "staging", "promotion": {"rollout_deadline_seconds": 240}}],
    }
    releases.configure_deployments(
        session=session, actor=world.owner, project_id=project.id or 0, settings=settings
    )
    failed = _land(session, _release(session, world, project, repo.commit("crashes")))

    assert failed.status is ReleaseStatus.failed, failed.message
    assert failed.error_code == "rollout_failed"
    assert "progressDeadlineSeconds" in failed.message
    assert [(item["workload"], item["reason"]) for item in failed.workloads] == [
        ("Deployment/web", "ProgressDeadlineExceeded")
    ]
    assert "not rolled out within" not in failed.message  # not envhub's own deadline
