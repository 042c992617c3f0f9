"""Releases of a 50-object Helm chart beside ``helm upgrade --install``: ``make bench-releases``.

One world (bench/pull_requests.py's): the test cluster (tests/cluster: a real
kube-apiserver v1.20.2, etcd, controller-manager, and the test kubelet that
runs containers as local processes), a private PostgreSQL, a redis-server,
envhub's API app under Granian, ``--workers`` real workers on the Kubernetes
runtime, and the loopback GitHub stub. A project is connected to a repository
on the stub; its deployment settings release a Helm chart from the project's
own git repository (bench/release_chart.py: ``4 * apps + 10`` objects), to
``staging`` on a push to main and then, promoted, to ``production`` once
another admin approves.

``--rounds`` times over, each round a new commit of the chart (its values'
``revision``: the first round installs, the others roll every workload).
An install happens once per project, so round 1 installs ``--installs``
projects (each connected to a repository of its own on the stub) and as many
helm releases, envhub and helm taking turns to go first; later rounds update
the first project and the first helm release:

* envhub, staging: a signed ``push`` delivery to ``main`` through the webhook
  route, until the database shows the staging release ``ready``;
* envhub, production: ``approve_release`` by another team admin, until the
  production release is ``ready``;
* helm: ``helm upgrade --install --wait=watcher --wait-for-jobs`` of the same
  chart at the same commit, with the same values, into a namespace of its own
  on the same cluster (its process start, chart loading and rendering
  included, as envhub's rendering is); once with helm's defaults (client-go's
  5 requests a second after a burst of 100, which its rollout polling hits),
  once with ``--qps`` (``--helm-qps``, 100 by default) in another namespace.

Each path starts once no pod of the cluster is terminating any more (the
rolled-out releases' old pods are gone) and a second has passed: none pays
for the one before it. Times are ``time.monotonic()``. Apiserver requests are counted the same way
for both, on the server: the apiserver's audit log (bench/apiserver_audit.py),
per client by user agent, in each release's time window. envhub's workers
also log their own requests (``ENVHUB_KUBE_REQUEST_LOG``); the release jobs'
share of them is reported beside the audit count (the rest is the workers'
reconciler and status watch, which run whether or not anything is released).

What envhub spends that helm does not (STYLE 15) comes from the database's
own timestamps of each release: the webhook and its job, the render job
(queue, checkout, ``helm template``, validation), the convergence job's queue,
and the environment's isolation objects (namespace, quota, limits, network
policies, RBAC), shown in the requests by resource.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
from sqlmodel import Session, col, select

from bench.apiserver_audit import AuditLog
from bench.kube_requests import read_requests
from bench.pull_requests import Repo, connect_to_stub, environ, processes
from bench.release_chart import CHART_PATH, objects, write_chart
from bench.release_report import Sample, report
from envhub.config import Settings, override_settings
from envhub.domain.kube.limits import PlatformLimits, clamp_quota, render_limit_range, render_resource_quota
from envhub.domain.kube.names import QUOTA_NAME
from envhub.domain.principals import Principal
from envhub.domain.releases import ReleaseStatus
from envhub.domain.workloads import QuotaSpec
from envhub.launcher import migrate
from envhub.models import Artifact, Environment, JobRun, JobStatus, Membership, Release, Role, Team, User
from envhub.models.db import engine_for
from envhub.runtime.local.processes import free_port
from envhub.services import jobruns, ports, projects, releases
from envhub.wiring import install as wire_adapters
from tests.kube.helpers import load_cluster_module
from tests.support.github_stub import GithubStub, github_stub
from tests.support.postgres import private_postgres
from tests.support.redis_server import private_redis
from tests.support.repos import WorkRepo
from tests.support.tools import kube_tools

REPOSITORY = "bench/shop"
HELM_RELEASE = "shop"
HELM_NAMESPACE = "helm-shop"
SETTINGS = {
    "source": {"kind": "helm", "path": CHART_PATH},
    "branches": ["main"],
    "environments": [
        {"name": "staging"},
        {"name": "production", "promotion": {"promote_from": "staging", "approvals": 1}},
    ],
}
# Seconds of nothing terminating before a path starts (quiet()).
QUIET_PAUSE = 1.0
# The chart's pods and Services, with room for a rolling update's surge.
QUOTA = {"pods": 60, "services": 30}


# -- the world ---------------------------------------------------------------------------------


@dataclass
class World:
    settings: Settings
    stub: GithubStub
    repo: Repo
    secret: str
    approver: Principal
    project_id: int
    repository: str = REPOSITORY
    environments: dict[str, int] = field(default_factory=dict)  # name -> environment id


def seed(settings: Settings, stub: GithubStub, repo: Repo, installs: int) -> list[World]:
    """A team with an owner and a second admin, and ``installs`` projects with their deployments,
    each connected to a repository of its own on the stub (all render the one git repository): the
    first is installed and then updated round after round, the others are installed once each, so
    that installs, which happen once per project, are measured more than once."""
    with Session(engine_for(settings.database_url), expire_on_commit=False) as session:
        owner, approver = User(username="bench"), User(username="approver")
        team = Team(name="bench", display_name="Bench")
        for row in (owner, approver, team):
            session.add(row)
        session.flush()
        assert owner.id is not None
        assert approver.id is not None
        assert team.id is not None
        session.add(Membership(team_id=team.id, user_id=owner.id, role=Role.owner))
        session.add(Membership(team_id=team.id, user_id=approver.id, role=Role.admin))
        session.commit()
        me = Principal(name="bench", user_id=owner.id)
        worlds = []
        for index in range(installs):
            suffix = f"-{index + 1}" if index else ""
            project = projects.create_project(
                session=session,
                actor=me,
                team_id=team.id,
                name=f"shop{suffix}",
                repo_url=str(repo.path),
                workloads={"quota": QUOTA},
            )
            assert project.id is not None
            releases.configure_deployments(
                session=session, actor=me, project_id=project.id, settings=SETTINGS
            )
            repository = f"{REPOSITORY}{suffix}"
            secret = connect_to_stub(session, me, project.id, stub, repository)
            world = World(
                settings, stub, repo, secret, Principal(name="approver", user_id=approver.id),
                project.id, repository,
            )  # fmt: skip
            for env in releases.deployment_environments(session, project.id):
                assert env.id is not None
                world.environments[env.name] = env.id
            worlds.append(world)
        return worlds


def wait_prepared(settings: Settings, worlds: list[World], timeout: float) -> None:
    """Until the workers have made every deployment environment's namespace and isolation, as
    configuring a project has them do long before its first merge (helm+quota's namespace is made
    beforehand too, outside its measured time)."""
    ids = [env_id for world in worlds for env_id in world.environments.values()]
    deadline = time.monotonic() + timeout
    with Session(engine_for(settings.database_url)) as session:
        while True:
            runs = session.exec(
                select(JobRun).where(col(JobRun.environment_id).in_(ids), JobRun.kind == jobruns.PREPARE)
            ).all()
            done = {run.environment_id for run in runs if run.status is JobStatus.succeeded}
            if done >= set(ids):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"environments {sorted(set(ids) - done)} were not prepared in time")
            time.sleep(0.2)
            session.expire_all()


def commit_chart(repo: Repo, apps: int, revision: int) -> str:
    write_chart(repo.path / CHART_PATH, apps=apps, revision=revision)
    return WorkRepo.commit(repo, f"chart revision {revision}")


def push(http: httpx.Client, world: World, before: str, after: str) -> float:
    """A push to main, signed with the connection's secret and sent as GitHub sends it; when envhub
    answered (wall clock)."""
    payload = {
        "ref": "refs/heads/main",
        "before": before,
        "after": after,
        "created": False,
        "deleted": False,
        "forced": False,
        "repository": {"full_name": world.repository, "id": 1},
        "pusher": {"name": "octocat", "email": "octocat@example.com"},
        "sender": {"login": "octocat", "id": 1, "type": "User"},
    }
    body = json.dumps(payload).encode()
    digest = hmac.new(world.secret.encode(), body, hashlib.sha256).hexdigest()
    answer = http.post(
        "/webhooks/github",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": f"sha256={digest}",
        },
    )
    if answer.status_code != 202:
        raise RuntimeError(f"webhook answered {answer.status_code}: {answer.text}")
    return time.time()


# -- a quiet cluster before each path ---------------------------------------------------------


def quiet(kubectl: Path, kubeconfig: Path, timeout: float = 60.0) -> None:
    """Wait until no pod anywhere is still terminating, then a moment more.

    A rolling update is ready before its old pods are gone; their shutdown
    keeps the test kubelet and the controllers busy for a while after. Every
    path (envhub's two and helm's) starts on a cluster that has finished
    with the one before, as a release a person approves minutes later would.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listed = subprocess.run(
            [str(kubectl), "--kubeconfig", str(kubeconfig), "get", "pods", "--all-namespaces", "-o", "json"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        pods = json.loads(listed.stdout).get("items", [])
        if not any(pod["metadata"].get("deletionTimestamp") for pod in pods):
            time.sleep(QUIET_PAUSE)
            return
        time.sleep(0.2)
    raise RuntimeError(f"pods were still terminating after {timeout:g}s")


# -- waiting on the database -------------------------------------------------------------------


def wait_release(world: World, environment: str, sha: str, timeout: float) -> Release:
    """The release of ``sha`` in ``environment`` once it is ready (raises if it fails or times out)."""
    engine = engine_for(world.settings.database_url)
    deadline = time.monotonic() + timeout
    while True:
        with Session(engine, expire_on_commit=False) as session:
            found = session.exec(
                select(Release)
                .join(Artifact, col(Artifact.id) == Release.artifact_id)
                .where(Release.environment_id == world.environments[environment], Artifact.commit_sha == sha)
                .order_by(col(Release.id).desc())
            ).first()
        if found is not None and found.status is ReleaseStatus.ready:
            return found
        if found is not None and found.status in (ReleaseStatus.failed, ReleaseStatus.cancelled):
            status = found.status.value
            raise RuntimeError(f"{environment} release #{found.number}: {status}: {found.message}")
        if found is not None and found.status is ReleaseStatus.waiting and environment == "production":
            return found  # the caller approves it
        if time.monotonic() > deadline:
            state = f"{found.status.value}: {found.message}" if found else "no release"
            raise RuntimeError(f"timed out waiting for the {environment} release of {sha[:12]} ({state})")
        time.sleep(0.05)


def segments(
    world: World, release: Release, started: float, seen: float, answered: float | None = None
) -> dict[str, float]:
    """Where the release's time went, from the database's timestamps (seconds)."""
    with Session(engine_for(world.settings.database_url)) as session:
        artifact = session.get(Artifact, release.artifact_id)
        run = session.exec(
            select(JobRun).where(
                JobRun.environment_id == release.environment_id, JobRun.generation == release.generation
            )
        ).first()
        environment = session.get(Environment, release.environment_id)
    assert artifact is not None
    assert run is not None
    assert environment is not None
    assert release.started_at is not None
    assert release.finished_at is not None
    assert artifact.rendered_at is not None
    at = {
        "started": started,
        "recorded": release.created_at.timestamp(),
        "rendered": artifact.rendered_at.timestamp(),
        "deploying": release.started_at.timestamp(),
        "job started": (run.started_at or release.started_at).timestamp(),
        "job finished": release.finished_at.timestamp(),
        "seen": seen,
    }
    out = {}
    if release.trigger.value == "push":
        assert answered is not None
        out["webhook answered (web process)"] = answered - at["started"]
        out["delivery job, to the release recorded"] = at["recorded"] - answered
        enqueued = (artifact.enqueued_at or artifact.created_at).timestamp()
        out["render job (queue, checkout, helm template, validation)"] = at["rendered"] - enqueued
        out["rendered, to the environment's job dispatched"] = at["deploying"] - at["rendered"]
    else:
        out["approval (gates, database), to the job dispatched"] = at["deploying"] - at["started"]
    out["convergence job: queue"] = at["job started"] - at["deploying"]
    out["convergence job: apply + rollout wait, to ready"] = at["job finished"] - at["job started"]
    out.update(_steps(run))
    out["ready in the database, to seen here"] = at["seen"] - at["job finished"]
    return out


def _steps(run: JobRun) -> dict[str, float]:
    """The convergence job's own steps (namespace, isolation, workloads, health, ...), as it recorded them."""
    out = {}
    for step in run.steps:
        begun, ended = step.get("started_at"), step.get("finished_at")
        if begun and ended:
            seconds = datetime.fromisoformat(ended).timestamp() - datetime.fromisoformat(begun).timestamp()
            out[f"  step {step['key']}: {step.get('title') or step['key']}"] = seconds
    return out


# -- one round ---------------------------------------------------------------------------------


@dataclass
class Clock:
    """Monotonic for durations, wall time for the audit log's windows."""

    mono: float = field(default_factory=time.monotonic)
    wall: float = field(default_factory=time.time)


def envhub_round(
    world: World, http: httpx.Client, before: str, sha: str, timeout: float, settle: Callable[[], None]
) -> list[Sample]:
    settle()
    load = os.getloadavg()[0]
    start = Clock()
    answered = push(http, world, before, sha)
    staging = wait_release(world, "staging", sha, timeout)
    seen = Clock()
    waiting = wait_release(world, "production", sha, timeout)
    assert waiting.status is ReleaseStatus.waiting, waiting.message
    first = Sample(
        "envhub staging", seconds=seen.mono - start.mono, window=(start.wall, seen.wall), load=load
    )
    first.segments = segments(world, staging, start.wall, seen.wall, answered)

    settle()
    load = os.getloadavg()[0]
    start = Clock()
    with (
        override_settings(world.settings),
        Session(engine_for(world.settings.database_url), expire_on_commit=False) as session,
    ):
        releases.approve_release(
            session=session, actor=world.approver, queue=ports.queue(), release_id=waiting.id or 0
        )
    production = wait_release(world, "production", sha, timeout)
    while production.status is not ReleaseStatus.ready:
        production = wait_release(world, "production", sha, timeout)
    seen = Clock()
    second = Sample(
        "envhub production", seconds=seen.mono - start.mono, window=(start.wall, seen.wall), load=load
    )
    second.segments = segments(world, production, start.wall, seen.wall)
    return [first, second]


def helm_env(home: Path, kubeconfig: Path) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "XDG_CACHE_HOME": str(home / "cache"),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_DATA_HOME": str(home / "data"),
        "KUBECONFIG": str(kubeconfig),
    }


def helm_round(
    helm: Path,
    chart: Path,
    env: dict[str, str],
    timeout: float,
    qps: float | None,
    suffix: str = "",
    quota: Path | None = None,
) -> Sample:
    """``helm upgrade --install --wait`` of the chart as the repository holds it now.

    With ``qps``, helm's client may send that many requests a second (``--qps``);
    without, it keeps client-go's default of 5 (after a burst of 100). ``suffix``
    names another release, in a namespace of its own (the extra installs).
    With ``quota`` (kubectl), the namespace is made beforehand with the
    ResourceQuota and LimitRange envhub gives an environment of the project,
    and the quota counted: what envhub's isolation costs an install, measured
    on helm.
    """
    name = f"{HELM_RELEASE}{suffix}"
    namespace = f"{HELM_NAMESPACE}{'-quota' if quota else '-qps' if qps else ''}{suffix}"
    if quota is not None:
        isolate(quota, env, namespace)
    argv = [
        str(helm), "upgrade", "--install", name, str(chart), "--namespace", namespace,
        "--create-namespace", "--wait=watcher", "--wait-for-jobs", "--timeout", f"{int(timeout)}s",
    ]  # fmt: skip
    if qps is not None:
        argv += ["--qps", f"{qps:g}"]
    load = os.getloadavg()[0]
    start = Clock()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout + 30, check=False)
    end = Clock()
    if done.returncode != 0:
        raise RuntimeError(f"helm failed: {done.stderr.strip()[-2000:]}")
    path = "helm" if qps is None else f"helm --qps {qps:g}"
    if quota is not None:
        path = "helm+quota"
    sample = Sample(path, seconds=end.mono - start.mono, window=(start.wall, end.wall), load=load)
    rendered = Clock()
    subprocess.run(
        [str(helm), "template", name, str(chart), "--namespace", namespace],
        env=env, capture_output=True, check=True,
    )  # fmt: skip
    sample.segments = {"helm template alone (what rendering costs helm)": time.monotonic() - rendered.mono}
    return sample


def isolate(kubectl: Path, env: dict[str, str], namespace: str) -> None:
    """``namespace`` with the quota and limits envhub gives the bench's environments, the quota counted."""
    quota, _cut = clamp_quota(QuotaSpec.model_validate(QUOTA), PlatformLimits())
    labels = {"app.kubernetes.io/managed-by": "bench"}
    objects = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        render_resource_quota(quota, namespace=namespace, labels=labels),
        render_limit_range(quota, namespace=namespace, labels=labels),
    ]
    document = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
    subprocess.run([str(kubectl), "apply", "-f", "-"], input=document, env=env, text=True, check=True)
    subprocess.run(
        [str(kubectl), "wait", "-n", namespace, "resourcequota", QUOTA_NAME, "--timeout=60s",
         "--for=jsonpath={.status.hard.pods}"],
        env=env, capture_output=True, check=True,
    )  # fmt: skip


def helm_paths(
    helm: Path,
    chart: Path,
    env: dict[str, str],
    args: argparse.Namespace,
    suffix: str,
    settle: Callable[[], None],
    quota: Path | None = None,
) -> list[Sample]:
    """helm's release of the chart, with its default client rate and then (``--helm-qps``) a higher
    one; with ``quota`` (kubectl, for installs), once more into a namespace under envhub's quota."""
    settle()
    made = [helm_round(helm, chart, env, args.timeout, None, suffix)]
    if args.helm_qps:
        settle()
        made.append(helm_round(helm, chart, env, args.timeout, args.helm_qps, suffix))
    if quota is not None:
        settle()
        made.append(helm_round(helm, chart, env, args.timeout, None, suffix, quota=quota))
    return made


# -- the run -----------------------------------------------------------------------------------


def attribute(samples: list[Sample], audit: AuditLog, request_log: Path) -> None:
    """Each sample's apiserver requests: the audit log's, and the release jobs' own log."""
    logged = read_requests(request_log)
    offset = time.time() - time.monotonic()  # the request log's clock is the workers' monotonic one
    for sample in samples:
        start, end = sample.window
        agent = "helm" if sample.path.startswith("helm") else "envhub"
        sample.served = audit.between(start, end, agent)
        if agent == "envhub":
            sample.job_requests = sum(1 for r in logged if r.by_job and start <= r.start + offset <= end)


def run(args: argparse.Namespace, scratch: Path) -> list[Sample]:
    tools = kube_tools()
    repo = Repo(scratch / "repo")
    audit_path = scratch / "audit.jsonl"
    request_log = scratch / "requests.jsonl"
    samples: list[Sample] = []
    (scratch / "redis").mkdir()
    (scratch / "helm-home").mkdir()
    cluster_type = load_cluster_module().TestCluster
    with (
        cluster_type(audit_log=audit_path) as cluster,
        private_postgres() as postgres,
        private_redis(scratch / "redis") as redis,
        github_stub() as stub,
    ):
        print(f"test cluster up in {cluster.started_in:.1f}s", flush=True)
        port = free_port()
        settings = Settings(
            database_url=postgres.create_database("envhub_bench_releases"),
            redis_url=redis.url,
            data_dir=scratch / "data",
            queue_name="bench",
            base_url=f"http://localhost:{port}",
            allow_local_repos=True,
            runtime="kubernetes",
            kubeconfig=str(cluster.kubeconfig),
            helm_binary=str(tools.helm),
        )
        before = commit_chart(repo, args.apps, 0)
        with override_settings(settings):
            wire_adapters()
            migrate(settings)
            worlds = seed(settings, stub, repo, args.installs)
        engine_for(settings.database_url).dispose()
        env = environ(settings, port, debounce=1.0)
        env.update(
            ENVHUB_RUNTIME="kubernetes",
            ENVHUB_KUBECONFIG=str(cluster.kubeconfig),
            ENVHUB_KUBE_READY_TIMEOUT=str(int(args.timeout)),
            ENVHUB_HELM_BINARY=str(tools.helm),
            ENVHUB_KUBE_REQUEST_LOG=str(request_log),
        )
        del env["ENVHUB_RECONCILE_INTERVAL"]  # the production default
        helm = helm_env(scratch / "helm-home", cluster.kubeconfig)

        def settle() -> None:
            quiet(tools.kubectl, cluster.kubeconfig)

        with (
            processes(env, port, args.workers, scratch),
            httpx.Client(base_url=f"http://localhost:{port}", timeout=30) as http,
        ):
            wait_prepared(settings, worlds, args.timeout)
            for revision in range(1, args.rounds + 1):
                sha = commit_chart(repo, args.apps, revision)
                # Round 1 installs every project (and as many helm releases); later rounds update the first.
                installing = tools.kubectl if revision == 1 else None
                for index, world in enumerate(worlds if revision == 1 else worlds[:1]):
                    suffix = f"-{index + 1}" if index else ""
                    print(f"round {revision}: envhub {world.repository} and helm{suffix} ...", flush=True)
                    # Alternate who goes first, so a change in the machine's load falls on both.
                    if index % 2 == 0:
                        made = envhub_round(world, http, before, sha, args.timeout, settle)
                        made += helm_paths(
                            tools.helm, repo.path / CHART_PATH, helm, args, suffix, settle, installing
                        )
                    else:
                        made = helm_paths(
                            tools.helm, repo.path / CHART_PATH, helm, args, suffix, settle, installing
                        )
                        made += envhub_round(world, http, before, sha, args.timeout, settle)
                    for sample in made:
                        sample.round = revision
                    samples += made
                    print("  " + ", ".join(f"{s.path} {s.seconds:.2f}s" for s in made), flush=True)
                before = sha
            time.sleep(2)  # the last watches end and reach the audit log
        attribute(samples, AuditLog(audit_path), request_log)
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=6, help="releases per path (the first installs)")
    parser.add_argument(
        "--installs", type=int, default=3, help="projects (and helm releases) installed in round 1"
    )
    parser.add_argument("--apps", type=int, default=10, help="apps in the chart: 4 objects each, plus 10")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds one release may take")
    parser.add_argument(
        "--helm-qps",
        type=float,
        default=100.0,
        help="also run helm with --qps this high, in a namespace of its own (0: only helm's default, 5/s)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, audit log)")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.apps < 1:
        parser.error("--rounds and --apps must be at least 1")
    scratch = Path(tempfile.mkdtemp(prefix="envhub-bench-releases-"))
    samples: list[Sample] = []
    try:
        samples = run(args, scratch)
    finally:
        if args.keep:
            print(f"work folder kept: {scratch}", file=sys.stderr)
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    print(report(samples, objects=objects(args.apps), workers=args.workers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
