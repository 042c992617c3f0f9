"""Every local environment knows its own public URL: ENVHUB_PUBLIC_URL in its app and its shells."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from envhub.api.app import create_api
from envhub.domain.phases import Phase
from envhub.models import Project
from envhub.runtime.local import LocalRuntime
from tests.integration.test_worker import create, runtime, wait_phase, worker_settings, workers
from tests.support.servers import serve_asgi
from tests.support.workers import Workers
from tests.support.world import World

pytestmark = pytest.mark.slow
__all__ = ["runtime", "worker_settings", "workers"]  # fixtures, shared with test_worker


def test_the_sandboxed_app_and_its_shell_see_the_url_people_open(
    session: Session, world: World, project: Project, db: Engine, workers: Workers, runtime: LocalRuntime
) -> None:
    workers.start()
    env_id = create(
        session, world, project, 'echo "url=$ENVHUB_PUBLIC_URL" > url.txt; python3 -m http.server $PORT'
    )
    env = wait_phase(db, env_id, Phase.ready, workers)
    assert env.public_url == "http://pr-1.shop.acme.localhost:3000/"

    # The app wrote what it was told; read it back through that very URL (the gateway).
    with serve_asgi(create_api()) as port:
        response = httpx.get(
            f"http://127.0.0.1:{port}/url.txt", headers={"Host": "pr-1.shop.acme.localhost:3000"}, timeout=30
        )
    assert response.status_code == 200
    assert response.text == f"url={env.public_url}\n"

    # A shell opened beside it (the terminal, an agent's run_command) is told the same.
    shell = runtime.exec(env_id, ["/bin/sh", "-c", 'echo "url=$ENVHUB_PUBLIC_URL"'], tty=False)
    try:
        output = b""
        while chunk := shell.read(timeout=30):
            output += chunk
        assert shell.wait(30) == 0
    finally:
        shell.close()
    assert output.decode().strip() == f"url={env.public_url}"
