"""What terminal tests stand on, for tests/terminal and tests/security alike.

* :func:`make_environment`: acme/shop's environment "dev" (tests/support/world.py),
  with its workspace made so the local runtime can open shells in it.
* :class:`People` signs in for real: the local user, an owner of acme here,
  with the browser's cookie from the local sign-in flow; max (member), vera
  (viewer) and globex's otto with personal tokens, as the CLI does.
* :func:`servers`: ``start(grace=..., ping=..., app=..., **env)`` runs the app
  (tests/terminal/app.py unless ``app`` names another) under Granian in its own process, against the test
  database, Redis and data folder, and returns its base URL; ``start.stop(url)`` stops one as
  Kubernetes stops a pod.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
from sqlmodel import Session, col, select

from envhub.config import Settings
from envhub.domain.principals import Principal
from envhub.models import AuditEvent, Environment, Membership, Project, Role
from envhub.services.environments import create_environment
from envhub.services.identity import ensure_local_principal
from tests.support import zygote
from tests.support.fakes import FakeQueue
from tests.support.net import free_port, port_open
from tests.support.waiting import wait_for
from tests.support.world import World
from tests.terminal.signin import Credential, browser_cookie, personal_token

ROOT = Path(__file__).resolve().parents[2]


def make_environment(session: Session, world: World, project: Project, settings: Settings) -> Environment:
    environment = create_environment(
        session=session, actor=world.owner, queue=FakeQueue(), project_id=project.id or 0, name="dev"
    )
    (settings.envs_dir / str(environment.id) / "workspace").mkdir(parents=True)
    return environment


class People:
    def __init__(self, settings: Settings, session: Session, world: World) -> None:
        self.settings, self.session, self.world = settings, session, world
        self.local = ensure_local_principal(session)
        assert self.local.user_id is not None
        session.add(Membership(team_id=world.acme, user_id=self.local.user_id, role=Role.owner))
        session.commit()
        self._cookies: dict[str, Credential] = {}

    def me(self, base_url: str) -> Credential:
        """The local user's browser, signed in through a login link (once per server)."""
        if base_url not in self._cookies:
            self._cookies[base_url] = browser_cookie(base_url, self.settings)
        return self._cookies[base_url]

    def token(self, person: Principal, scopes: tuple[str, ...] = ("read", "shell")) -> Credential:
        return personal_token(self.session, person, scopes)

    @property
    def max(self) -> Credential:
        return self.token(self.world.member)

    @property
    def vera(self) -> Credential:
        return self.token(self.world.viewer)

    @property
    def otto(self) -> Credential:
        return self.token(self.world.outsider)


def shell_events(session: Session, environment_id: int) -> list[AuditEvent]:
    session.expire_all()
    rows = session.exec(
        select(AuditEvent)
        .where(AuditEvent.target_id == environment_id, col(AuditEvent.action).startswith("environment.shell"))
        .order_by(col(AuditEvent.id))
    )
    return list(rows)


def processes_with(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if marker in " ".join(proc.info["cmdline"] or []):
            found.append(proc)
    return found


Serve = Callable[..., str]


class Servers:
    """``servers(...)(grace=..., ping=..., app=..., **env)`` starts one more app; ``stop(url)`` stops one.

    Each process is told its own address as ``ENVHUB_INTERNAL_URL`` (where other
    replicas relay terminal sockets to it); ``env`` may override any variable,
    e.g. ``ENVHUB_BASE_URL`` when the processes stand behind one proxy.
    """

    def __init__(self, settings: Settings, tmp_path: Path) -> None:
        self.settings, self.tmp_path = settings, tmp_path
        self.procs: dict[str, tuple[zygote.Forked, Path]] = {}

    def __call__(
        self, grace: float = 300.0, ping: float = 20.0, app: str = "tests.terminal.app:app", **extra: str
    ) -> str:
        port = free_port()
        url = f"http://localhost:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ENVHUB_")}
        env.update(
            ENVHUB_DATA_DIR=str(self.settings.data_dir),
            ENVHUB_DATABASE_URL=self.settings.database_url,
            ENVHUB_REDIS_URL=self.settings.redis_url,
            ENVHUB_BASE_URL=url,
            ENVHUB_INTERNAL_URL=f"http://127.0.0.1:{port}",
            ENVHUB_TERMINAL_GRACE=str(grace),
            ENVHUB_TERMINAL_PING_INTERVAL=str(ping),
            PYTHONUNBUFFERED="1",
        )
        env.update(extra)
        log = self.tmp_path / f"server-{port}.log"
        args = ["--interface", "asgi", "--host", "127.0.0.1", "--port", str(port), "--workers", "1", app]
        proc = zygote.spawn("granian", args, env=env, cwd=ROOT, log=log)
        self.procs[url] = (proc, log)
        wait_for(
            lambda: port_open(port) or proc.poll() is not None,
            timeout=60,
            what="the terminal test server",
        )
        if proc.poll() is not None:
            raise AssertionError(log.read_text())
        return url

    def stop(self, url: str) -> None:
        """Stop the server at ``url`` as Kubernetes stops a pod: SIGTERM, then SIGKILL after 15 s."""
        proc, log = self.procs[url]
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if os.environ.get("ENVHUB_TEST_SHOW_SERVER_LOG"):
            sys.stderr.write(log.read_text(errors="replace"))

    def crash(self, url: str) -> None:
        """Kill the server at ``url`` and its workers at once (SIGKILL): no shutdown runs."""
        proc, _ = self.procs[url]
        for child in psutil.Process(proc.pid).children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):  # it may end between the listing and the kill
                child.kill()
        proc.kill()
        proc.wait()

    def stop_all(self) -> None:
        for url, (proc, _) in list(self.procs.items()):
            if proc.poll() is None:
                self.stop(url)


@contextlib.contextmanager
def servers(settings: Settings, tmp_path: Path) -> Iterator[Servers]:
    """Start as many servers as the test asks for; stop them all at the end."""
    started = Servers(settings, tmp_path)
    try:
        yield started
    finally:
        started.stop_all()
