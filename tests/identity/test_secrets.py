"""Secrets: sealed with AES-GCM at rest, never listed, logged or returned; handed over at deploy."""

from __future__ import annotations

import base64
import dataclasses
import logging
import os
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from envhub.config import Settings, override_settings
from envhub.domain.kube import render_environment
from envhub.errors import SecretUnreadable, ValidationFailed
from envhub.models import AuditEvent, Environment, Project, StoredSecret
from envhub.runtime.local import LocalRuntime
from envhub.services import convergence, secrets
from envhub.services.convergence import Assignment
from envhub.services.crypto import Cipher, cipher
from tests.conftest import build_settings
from tests.support.runtime import RecordingProgress, endpoint_get, make_target
from tests.support.world import World

VALUE = "s3cr3t-VALUE-that-must-not-leak"


@pytest.fixture
def shop(session: Session, world: World) -> int:
    project = Project(team_id=world.acme, name="shop")
    session.add(project)
    session.commit()
    return project.id or 0


def test_a_secret_is_sealed_at_rest_and_never_listed(
    settings: Settings, world: World, session: Session, shop: int, db: Engine
) -> None:
    info = secrets.set_secret(
        session=session, actor=world.admin, project_id=shop, name="DB_PASSWORD", value=VALUE
    )
    assert (info.name, not hasattr(info, "value")) == ("DB_PASSWORD", True)
    with db.connect() as conn:
        stored = conn.execute(text("SELECT value FROM stored_secret")).scalar_one()
        everything = " ".join(str(row) for row in conn.execute(text("SELECT * FROM audit_event")))
    assert VALUE not in stored
    assert stored.startswith("v1.")
    assert VALUE not in everything
    listed = secrets.list_secrets(session=session, actor=world.viewer, project_id=shop)
    assert [(s.name, type(s).__slots__) for s in listed] == [("DB_PASSWORD", ("id", "name", "updated_at"))]
    assert secrets.environment_secrets(session, team_id=world.acme, project_id=shop) == {"DB_PASSWORD": VALUE}


def test_secrets_are_never_logged(
    settings: Settings, world: World, session: Session, shop: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secrets.set_secret(session=session, actor=world.admin, project_id=shop, name="API_KEY", value=VALUE)
    with pytest.raises(ValidationFailed):
        secrets.set_secret(session=session, actor=world.admin, project_id=shop, name="9bad", value=VALUE)
    secrets.environment_secrets(session, team_id=world.acme, project_id=shop)
    target = dataclasses.replace(make_target(), secrets={"API_KEY": VALUE})
    logging.getLogger("probe").info("target: %r", target)
    assert VALUE not in caplog.text
    assert VALUE not in repr(target)


def test_a_ciphertext_only_opens_where_it_belongs(
    settings: Settings, world: World, session: Session, shop: int, db: Engine
) -> None:
    secrets.set_secret(session=session, actor=world.admin, project_id=shop, name="A", value="alpha")
    secrets.set_secret(session=session, actor=world.admin, project_id=shop, name="B", value="bravo")
    with db.begin() as conn:  # someone with database access moves A's ciphertext onto B
        conn.execute(
            text(
                "UPDATE stored_secret SET value = "
                "(SELECT value FROM stored_secret WHERE name = 'A') WHERE name = 'B'"
            )
        )
    with pytest.raises(SecretUnreadable) as caught:
        secrets.environment_secrets(session, team_id=world.acme, project_id=shop)
    assert caught.value.code == "secret_unreadable"


def test_tampering_and_unknown_keys_are_refused(settings: Settings) -> None:
    sealed = cipher().seal("value", purpose="p")
    version, kid, body = sealed.split(".")
    raw = bytearray(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    raw[-1] ^= 1
    flipped = f"{version}.{kid}.{base64.urlsafe_b64encode(bytes(raw)).decode().rstrip('=')}"
    for broken in (flipped, sealed[:-4], "garbage", f"v9.{kid}.{body}"):
        with pytest.raises(SecretUnreadable):
            cipher().open(broken, purpose="p")
    with pytest.raises(SecretUnreadable):
        Cipher(os.urandom(32)).open(sealed, purpose="p")


def test_rotating_the_key_keeps_old_secrets_readable(settings: Settings, tmp_path: Path) -> None:
    old, new = (base64.b64encode(os.urandom(32)).decode() for _ in range(2))
    values = {name: getattr(settings, name) for name in ("data_dir", "database_url", "redis_url")}
    with override_settings(build_settings(**values, encryption_key=old)):
        sealed = cipher().seal("value", purpose="p")
    with override_settings(build_settings(**values, encryption_key=new)), pytest.raises(SecretUnreadable):
        cipher().open(sealed, purpose="p")
    with override_settings(build_settings(**values, encryption_key=new, encryption_old_keys=old)):
        assert cipher().open(sealed, purpose="p") == "value"
        assert (
            cipher().seal("v", purpose="p").split(".")[1] != sealed.split(".")[1]
        )  # new values use the new key


def test_secrets_reach_kubernetes_by_reference(settings: Settings) -> None:
    plain = make_target(services=[{"name": "web", "image": "nginx", "ports": [80]}])
    target = dataclasses.replace(plain, secrets={"API_KEY": VALUE}, secrets_digest="abc")
    objects = render_environment(target)
    [secret] = [o for o in objects if o["kind"] == "Secret"]
    assert secret["metadata"]["name"] == "envhub-secrets"
    assert base64.b64decode(secret["data"]["API_KEY"]).decode() == VALUE
    [deployment] = [o for o in objects if o["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]
    assert pod["metadata"]["annotations"] == {"envhub.dev/secrets-digest": "abc"}
    assert pod["spec"]["containers"][0]["envFrom"] == [{"secretRef": {"name": "envhub-secrets"}}]
    assert VALUE not in repr(deployment)
    assert not [
        o
        for o in render_environment(make_target(services=[{"name": "web", "image": "nginx"}]))
        if o["kind"] == "Secret"
    ]


def test_a_deploy_hands_secrets_to_the_local_environment(
    settings: Settings, world: World, session: Session, shop: int, tmp_path: Path
) -> None:
    secrets.set_secret(session=session, actor=world.admin, project_id=shop, name="API_KEY", value=VALUE)
    environment = Environment(project_id=shop, name="dev", spec={})
    session.add(environment)
    session.commit()
    write = "import os; open('seen.txt', 'w').write(os.environ['API_KEY'])"
    command = f'python3 -c "{write}" && python3 -m http.server $PORT'
    target = make_target(environment.id or 0, command=command)
    assignment = Assignment(
        run_id=0, environment_id=environment.id or 0, project_id=shop, target=target, desired_state="present"
    )
    handed = convergence.with_secrets(session, assignment)
    assert dict(handed.secrets) == {"API_KEY": VALUE}
    assert len(handed.secrets_digest) == 32
    runtime = LocalRuntime(tmp_path / "envs", health_timeout=30)
    try:
        status = runtime.apply(handed, progress=RecordingProgress())
        assert status.endpoint is not None
        assert endpoint_get(status.endpoint, timeout=5).status_code == 200
        assert (runtime.workspace_path(handed.id) / "seen.txt").read_text() == VALUE
    finally:
        runtime.destroy(handed.id, progress=RecordingProgress())
    stored = session.exec(select(StoredSecret)).one()
    assert VALUE not in stored.value
    assert all(VALUE not in repr(e.details) for e in session.exec(select(AuditEvent)))
