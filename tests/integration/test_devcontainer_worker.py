"""A development environment made from a repository with a devcontainer.json, through a real worker.

The worker provisions it on the local runtime; the job's steps show each
lifecycle command with its output, in the order they ran, and the environment's
view (what the page, the REST API, the CLI and MCP show) lists the forwarded
ports and what envhub did not honour.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from envhub.api.app import create_api
from envhub.config import Settings, override_settings
from envhub.domain.phases import Phase
from envhub.models import Environment, JobRun, Project
from envhub.runtime.local import LocalRuntime
from envhub.services import ports
from envhub.services.environment_views import environment_status
from envhub.services.environments import create_environment
from envhub.services.projects import update_project
from tests.conftest import build_settings
from tests.integration.test_worker import wait_phase
from tests.support.components import require
from tests.support.db import fetch, fetch_all
from tests.support.repos import WorkRepo
from tests.support.runtime import kill_environments
from tests.support.servers import serve_asgi
from tests.support.workers import Workers
from tests.support.world import World

pytestmark = pytest.mark.slow

CONFIG = """{
  // What a small Python web app's team would write.
  "name": "shop",
  "image": "mcr.microsoft.com/devcontainers/python:1-3.12",
  "containerEnv": { "SHOP_MODE": "preview" },
  "remoteEnv": { "SHOP_GREETING": "hello from ${containerEnv:SHOP_MODE}" },
  "forwardPorts": [8000, 8001],
  "portsAttributes": { "8000": { "label": "Shop" }, "8001": { "label": "Docs" } },
  "postCreateCommand": "echo seeding the catalogue; echo apples > catalogue.txt",
  "postStartCommand": ["/bin/sh", "-c", "echo \\"$SHOP_GREETING\\" > greeting.txt; echo greeted"],
  "capAdd": ["NET_ADMIN"],
  "features": { "ghcr.io/devcontainers/features/node:1": { "version": "22" } },
}
"""


@pytest.fixture
def local_settings(settings: Settings) -> Iterator[Settings]:
    values = {
        **settings.model_dump(),
        "reconcile_interval": 0.5,
        "job_stale_after": 2.0,
        "allow_local_repos": True,
    }
    with override_settings(build_settings(**values)) as configured:
        ports.reset()
        yield configured
    ports.reset()


@pytest.fixture
def workers(local_settings: Settings, tmp_path: Path) -> Iterator[Workers]:
    require("bwrap")
    pool = Workers(local_settings, tmp_path, extra={"ENVHUB_ALLOW_LOCAL_REPOS": "true"})
    yield pool
    pool.stop_all()
    kill_environments(LocalRuntime(local_settings.envs_dir))


def test_an_environment_from_a_devcontainer_repository_shows_its_steps_env_and_refusals(
    session: Session, world: World, project: Project, db: Engine, workers: Workers, tmp_path: Path
) -> None:
    repo = WorkRepo(tmp_path / "repo")
    files = {".devcontainer/devcontainer.json": CONFIG, "index.html": "shop\n", "docs/index.html": "docs\n"}
    repo.commit("dev container", files)
    assert project.id is not None
    update_project(
        session=session, actor=world.owner, project_id=project.id, changes={"repo_url": str(repo.path)}
    )
    session.commit()
    workers.start()
    created = create_environment(
        session=session,
        actor=world.member,
        queue=ports.queue(),
        project_id=project.id,
        name="pr-1",
        overrides={"command": "python3 -m http.server 8001 --directory docs & python3 -m http.server $PORT"},
    )
    assert created.id is not None
    env = wait_phase(db, created.id, Phase.ready, workers)

    # The job's steps: each hook where it ran (before the app started), with its output.
    [run] = fetch_all(db, JobRun, JobRun.environment_id == env.id)
    keys = [step["key"] for step in run.steps]
    assert keys.index("devcontainer") < keys.index("post_create") < keys.index("post_start")
    assert keys.index("post_start") < keys.index("start")
    steps = {step["key"]: step for step in run.steps}
    assert steps["post_create"]["title"] == "Run postCreateCommand"
    assert steps["post_create"]["detail"] == "seeding the catalogue"
    assert steps["post_start"]["detail"] == "greeted"
    assert steps["post_start"]["status"] == "done"

    # The app saw the devcontainer's variables; what postCreateCommand made is in the workspace.
    with serve_asgi(create_api()) as port:
        host = {"Host": "pr-1.shop.acme.localhost:3000"}
        greeting = httpx.get(f"http://127.0.0.1:{port}/greeting.txt", headers=host, timeout=30)
        catalogue = httpx.get(f"http://127.0.0.1:{port}/catalogue.txt", headers=host, timeout=30)
        # The other forwarded port has a URL of its own, through the same gateway.
        docs_host = {"Host": "8001.pr-1.shop.acme.localhost:3000"}
        docs = httpx.get(f"http://127.0.0.1:{port}/", headers=docs_host, timeout=30)
        unknown = httpx.get(f"http://127.0.0.1:{port}/", headers={"Host": "9.pr-1.shop.acme.localhost:3000"})
    assert greeting.text == "hello from preview\n"
    assert catalogue.text == "apples\n"
    assert docs.text == "docs\n"
    assert unknown.status_code >= 500  # a port the environment does not forward leads nowhere

    # Every face's view lists the port (with its URL) and what was not honoured, with why.
    session.expire_all()
    detail = environment_status(session=session, actor=world.member, environment_id=env.id or 0)["detail"]
    assert detail["devcontainer"] == ".devcontainer/devcontainer.json"
    assert detail["devcontainer_ports"] == [
        {"port": 8000, "label": "Shop", "protocol": "http", "url": env.public_url},
        {
            "port": 8001,
            "label": "Docs",
            "protocol": "http",
            "url": "http://8001.pr-1.shop.acme.localhost:3000/",
        },
    ]
    refused = {entry["key"]: entry["reason"] for entry in detail["devcontainer_unsupported"]}
    assert set(refused) == {"capAdd", "features.ghcr.io/devcontainers/features/node:1", "image"}
    assert "isolation" in refused["capAdd"]
    stored = fetch(db, Environment, env.id)
    assert stored is not None
    assert stored.devcontainer is not None
    assert stored.devcontainer["published_port"] == 8000
