"""``envhub backups``: the real command against a running envhub (tests/cli/conftest.py).

The dumps themselves are taken and restored by tests/integration/test_backups.py;
here the database holds a ready database and a finished backup of it, and the
command lists, asks for a backup, restores, and refuses a deployment
environment's restore without its name, through the REST API.
"""

from __future__ import annotations

from pathlib import Path

from sqlmodel import Session

from envhub.domain.specs import EnvironmentKind
from envhub.models import BackupState, Environment, InstanceState, Project, ServiceBackup, ServiceInstance
from envhub.models.base import utcnow
from tests.cli.conftest import Cli
from tests.cli.test_environments import as_json, error_of, signed_in
from tests.support.world import World
from tests.terminal.harness import People, Serve


def _backed_up(session: Session, project: Project, environment: Environment) -> int:
    project.backing = [{"name": "db", "kind": "postgres"}]
    instance = ServiceInstance(
        environment_id=environment.id or 0,
        project_id=project.id or 0,
        service="db",
        kind="postgres",
        state=InstanceState.ready,
        credential="sealed",
    )
    session.add_all([project, instance])
    session.commit()
    backup = ServiceBackup(
        instance_id=instance.id or 0,
        environment_id=environment.id or 0,
        project_id=project.id or 0,
        service="db",
        state=BackupState.succeeded,
        key="backups/x/db.dump",
        size_bytes=13_000_000,
        sha256="ab" * 32,
        seconds=2.5,
        finished_at=utcnow(),
    )
    session.add(backup)
    session.commit()
    assert backup.id is not None
    return backup.id


def test_backups_are_listed_taken_and_restored_and_a_deployment_needs_its_name(
    cli: Cli,
    server: str,
    people: People,
    world: World,
    project: Project,
    environment: Environment,
    session: Session,
) -> None:
    backup_id = _backed_up(session, project, environment)
    member = signed_in(people, server, world.member)

    table = cli("backups", "ls", "shop/dev", **member)
    assert table.returncode == 0, table.stderr
    assert "db: last backup" in table.stdout
    assert "13.0 MB" in table.stdout
    assert "SHA-256" in table.stdout
    listed = as_json(cli("backups", "ls", "shop/dev", "--service", "db", "-o", "json", **member))
    assert isinstance(listed, dict)
    assert [row["id"] for row in listed["backups"]] == [backup_id]

    asked = as_json(cli("backups", "create", "shop/dev", "db", "-o", "json", **member))
    assert isinstance(asked, dict)
    assert (asked["state"], asked["trigger"]) == ("queued", "manual")
    restored = as_json(cli("backups", "restore", str(backup_id), "-o", "json", **member))
    assert isinstance(restored, dict)
    assert (restored["state"], restored["environment_id"], restored["backup_id"]) == (
        "queued", environment.id, backup_id,
    )  # fmt: skip

    viewer = cli(
        "backups", "create", "shop/dev", "db", "-o", "json", **signed_in(people, server, world.viewer)
    )
    assert (viewer.returncode, error_of(viewer)["code"]) == (4, "forbidden")
    missing = cli("backups", "create", "shop/dev", "nope", "-o", "json", **member)
    assert error_of(missing)["code"] == "not_found"

    environment.kind = EnvironmentKind.deployment
    session.add(environment)
    session.commit()
    owner = signed_in(people, server, world.owner)
    unconfirmed = cli("backups", "restore", str(backup_id), "-o", "json", **owner)
    assert error_of(unconfirmed)["code"] == "validation_failed"
    assert "confirm" in str(error_of(unconfirmed)["message"])


def test_a_backup_starts_a_new_environment_from_the_cli(
    cli: Cli,
    server: str,
    people: People,
    world: World,
    project: Project,
    environment: Environment,
    session: Session,
) -> None:
    backup_id = _backed_up(session, project, environment)
    member = signed_in(people, server, world.member)
    made = as_json(cli("backups", "restore", str(backup_id), "--new", "dev-copy", "-o", "json", **member))
    assert isinstance(made, dict)
    assert (made["purpose"], made["state"]) == ("seed", "queued")
    copy = session.get(Environment, made["environment_id"])
    assert copy is not None
    assert copy.name == "dev-copy"
    both = cli("backups", "restore", str(backup_id), "--new", "x", "--into", "shop/dev", **member)
    assert both.returncode == 7
    assert "give one" in both.stderr


def test_the_operators_catalog_is_listed_for_anyone_signed_in(
    cli: Cli, serve: Serve, people: People, world: World
) -> None:
    example = Path(__file__).resolve().parents[2] / "deploy" / "catalog.example.yaml"
    with_catalog = serve(ENVHUB_SERVICES_CATALOG=str(example))
    viewer = signed_in(people, with_catalog, world.viewer)
    table = cli("services", "catalog", **viewer)
    assert table.returncode == 0, table.stderr
    assert "rabbitmq" in table.stdout
    assert "version=3.13" in table.stdout
    assert "AMQP_URL" in table.stdout
    listed = as_json(cli("services", "catalog", "-o", "json", **viewer))
    assert isinstance(listed, list)
    assert [entry["name"] for entry in listed] == ["rabbitmq"]
    assert listed[0]["parameters"][0]["pattern"] == r"^3\.[0-9]{1,2}$"
    without = serve()
    empty = cli("services", "catalog", **signed_in(people, without, world.viewer))
    assert "offers no catalog" in empty.stdout
