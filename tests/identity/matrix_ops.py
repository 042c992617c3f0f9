"""Every service operation, as a row of the authorization matrix (test_authz_matrix.py).

Each row names the use case, where its permission comes from (a team, one
environment, a person at the dashboard, the principal's own things), the
action it needs, and how to run it against the matrix world; ``run`` returns
something truthy when acme's object was reached (for lists: when it is listed).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, col, select

from envhub.config import PROJECT_ROOT, get_settings, override_settings
from envhub.domain.policy import Action
from envhub.domain.principals import Principal
from envhub.domain.releases import ReleaseStatus
from envhub.models import (
    BackupState,
    Environment,
    InstanceState,
    Project,
    ServiceBackup,
    ServiceInstance,
    ServiceRestore,
)
from envhub.services import (
    audit_log,
    background,
    backing,
    backups,
    commands,
    costs,
    credentials,
    device,
    environment_listing,
    environment_requests,
    environment_views,
    environments,
    files,
    github,
    identity_views,
    inspection,
    listing,
    logs,
    project_views,
    projects,
    release_views,
    releases,
    secrets,
    sharing,
    sleeping,
    teams,
    terminal,
    tokens,
    url_access,
    usage,
    waiting,
)
from envhub.services.access import authorize_environment
from envhub.services.audit_log import AuditFilter
from envhub.services.environment_listing import EnvironmentFilters
from tests.identity.matrix_world import DEPLOYMENTS, MatrixWorld, unique
from tests.support.fakes import FakeQueue

EXAMPLE_CATALOG = PROJECT_ROOT / "deploy" / "catalog.example.yaml"


@dataclass(frozen=True)
class Op:
    name: str  # module.function
    where: str  # team | env | person | any | self | shared
    action: str | None
    run: Callable[[MatrixWorld, Session, Principal, int], Any]
    on_env: Callable[[MatrixWorld], int] | None = None  # the environment it acts on (default e1)


def _catalog_names(actor: Principal) -> list[str]:
    """The entries ``actor`` is offered by an envhub given the shipped example catalog."""
    with override_settings(get_settings().model_copy(update={"services_catalog": EXAMPLE_CATALOG})):
        return [entry["name"] for entry in backing.catalog_entries(actor=actor)]


def _acme_events(items: Any) -> bool:
    """Acme's own event from the world's setup (not one the principal caused itself)."""
    return any(e.actor == "envhub" and e.team_id is not None for e in items)


def _fresh_env(w: MatrixWorld) -> int:
    return w.environment()


def _service(w: MatrixWorld, session: Session, environment_id: int) -> int:
    """The environment, ready, its project declaring a database that it was given a credential for."""
    w.reset_e1()
    environment = session.get(Environment, environment_id)
    assert environment is not None
    project = session.get(Project, environment.project_id)
    assert project is not None
    project.backing = [{"name": "db", "kind": "postgres"}]
    row = session.exec(
        select(ServiceInstance).where(
            ServiceInstance.environment_id == environment_id, ServiceInstance.service == "db"
        )
    ).first() or ServiceInstance(
        environment_id=environment_id, project_id=project.id or 0, service="db", kind="postgres"
    )
    row.state, row.credential = InstanceState.ready, "sealed"
    session.add_all([project, row])
    session.commit()
    session.expire_all()
    return environment_id


def _backup(w: MatrixWorld, session: Session, environment_id: int) -> int:
    """A finished backup of the environment's database, with no restore of it under way; its id."""
    _service(w, session, environment_id)
    instance = session.exec(
        select(ServiceInstance).where(
            ServiceInstance.environment_id == environment_id, ServiceInstance.service == "db"
        )
    ).one()
    for busy in session.exec(select(ServiceRestore).where(ServiceRestore.environment_id == environment_id)):
        session.delete(busy)
    backup = ServiceBackup(
        instance_id=instance.id or 0,
        environment_id=environment_id,
        project_id=instance.project_id,
        service="db",
        state=BackupState.succeeded,
        key=f"backups/{instance.project_id}/{environment_id}/db/matrix.dump",
        size_bytes=1,
        sha256="0" * 64,
    )
    session.add(backup)
    session.commit()
    assert backup.id is not None
    return backup.id


def with_backup(w: MatrixWorld) -> int:
    """e1 with a finished backup of its database (REST and MCP matrices); the backup's id."""
    with w.session() as session:
        return _backup(w, session, w.e1)


def latest_backup(w: MatrixWorld, environment_id: int) -> int:
    """The id of the environment's newest backup (made by :func:`with_backup`)."""
    with w.session() as session:
        found = session.exec(
            select(ServiceBackup.id)
            .where(ServiceBackup.environment_id == environment_id)
            .order_by(col(ServiceBackup.id).desc())
        ).first()
    assert found is not None
    return found


def with_service(w: MatrixWorld) -> None:
    """e1 ready, with a database it was given a credential for (REST and MCP matrices)."""
    with w.session() as session:
        _service(w, session, w.e1)


def _url_access(session: Session, actor: Principal, environment_id: int) -> str:
    """Carry a session over to the environment's URL (it has one, as a ready environment does)."""
    environment = session.get(Environment, environment_id)
    assert environment is not None
    environment.public_url = environment.public_url or f"http://e{environment_id}.shop.acme.localhost:3000/"
    session.add(environment)
    session.commit()
    return url_access.grant(
        session=session, actor=actor, session_hash="0" * 64, environment_id=environment_id, next_path="/"
    )


OPS: list[Op] = [
    Op(
        "projects.create_project",
        "team",
        "project.create",
        lambda w, s, a, _e: projects.create_project(session=s, actor=a, team_id=w.acme, name=unique("new")),
    ),
    Op(
        "projects.list_projects",
        "team",
        "project.read",
        lambda w, s, a, _e: any(
            i.project.id == w.shop for i in projects.list_projects(session=s, actor=a, search="shop").items
        ),
    ),
    Op(
        "projects.get_project",
        "team",
        "project.read",
        lambda w, s, a, _e: projects.get_project(session=s, actor=a, project_id=w.shop),
    ),
    Op(
        "projects.update_project",
        "team",
        "project.update",
        lambda w, s, a, _e: projects.update_project(
            session=s, actor=a, project_id=w.shop, changes={"description": "x"}
        ),
    ),
    Op(
        "projects.delete_project",
        "team",
        "project.delete",
        lambda w, s, a, _e: projects.delete_project(session=s, actor=a, project_id=w.project()) or True,
    ),
    Op(
        "environments.suggest_environment_name",
        "team",
        "project.read",
        lambda w, s, a, _e: environments.suggest_environment_name(session=s, actor=a, project_id=w.shop),
    ),
    Op(
        "environments.create_environment",
        "team",
        "environment.create",
        lambda w, s, a, _e: environments.create_environment(
            session=s, actor=a, queue=FakeQueue(), project_id=w.shop
        ),
    ),
    Op(
        "environments.list_environments",
        "team",
        "project.read",
        lambda w, s, a, _e: environments.list_environments(session=s, actor=a, project_id=w.shop).total,
    ),
    Op("url_access.grant", "env", "environment.read", lambda _w, s, a, e: _url_access(s, a, e)),
    Op(
        "environments.get_environment",
        "env",
        "environment.read",
        lambda w, s, a, e: environments.get_environment(session=s, actor=a, environment_id=e),
    ),
    Op(
        "environments.environment_context",
        "env",
        "environment.read",
        lambda w, s, a, e: environments.environment_context(session=s, actor=a, environment_id=e),
    ),
    Op(
        "environments.latest_run",
        "env",
        "environment.read",
        lambda w, s, a, e: environments.latest_run(session=s, actor=a, environment_id=e) or True,
    ),
    Op(
        "environments.redeploy_environment",
        "env",
        "environment.redeploy",
        lambda w, s, a, e: (
            w.reset_e1(),
            environments.redeploy_environment(session=s, actor=a, queue=FakeQueue(), environment_id=e),
        )[1],
    ),
    Op(
        "backing.environment_services",
        "env",
        "environment.read",
        lambda w, s, a, e: backing.environment_services(session=s, actor=a, environment_id=_service(w, s, e)),
    ),
    # The operator's offer: whoever is signed in reads it (nothing of acme's in it).
    Op(
        "backing.catalog_entries",
        "self",
        None,
        lambda w, s, a, _e: _catalog_names(a) == ["rabbitmq"],
    ),
    Op(
        "backing.rotate_service_credentials",
        "env",
        "environment.redeploy",
        lambda w, s, a, e: backing.rotate_service_credentials(
            session=s, actor=a, queue=FakeQueue(), environment_id=_service(w, s, e), service="db"
        ),
    ),
    Op(
        "backups.environment_backups",
        "env",
        "environment.read",
        lambda w, s, a, e: backups.environment_backups(session=s, actor=a, environment_id=_service(w, s, e)),
    ),
    Op(
        "backups.request_backup",
        "env",
        "environment.redeploy",
        lambda w, s, a, e: backups.request_backup(
            session=s, actor=a, queue=FakeQueue(), environment_id=_service(w, s, e), service="db"
        ),
    ),
    Op(
        "backups.restore_backup",
        "env",
        "environment.redeploy",
        lambda w, s, a, e: backups.restore_backup(
            session=s, actor=a, queue=FakeQueue(), backup_id=_backup(w, s, e)
        ),
    ),
    Op(
        "environments.delete_environment",
        "env",
        "environment.delete",
        lambda w, s, a, e: environments.delete_environment(
            session=s, actor=a, queue=FakeQueue(), environment_id=e
        ),
        on_env=_fresh_env,
    ),
    Op(
        "logs.environment_logs",
        "env",
        "environment.read",
        lambda w, s, a, e: logs.environment_logs(session=s, actor=a, runtime=w.runtime, environment_id=e),
    ),  # type: ignore[arg-type]
    Op(
        "logs.follow_environment_logs",
        "env",
        "environment.read",
        lambda w, s, a, e: list(
            logs.follow_environment_logs(session=s, actor=a, runtime=w.runtime, environment_id=e)
        ),
    ),  # type: ignore[arg-type]
    Op(
        "costs.environment_costs",
        "env",
        "environment.read",
        lambda w, s, a, e: costs.environment_costs(session=s, actor=a, environment_id=e),
    ),
    Op(
        "costs.team_costs",
        "team",
        "team.read",
        lambda w, s, a, _e: costs.team_costs(session=s, actor=a, team_id=w.acme),
    ),
    Op(
        "usage.environment_usage",
        "env",
        "environment.read",
        lambda w, s, a, e: usage.environment_usage(session=s, actor=a, runtime=w.runtime, environment_id=e),
    ),  # type: ignore[arg-type]
    Op(
        "inspection.inspect_environment",
        "env",
        "environment.read",
        lambda w, s, a, e: inspection.inspect_environment(
            session=s, actor=a, runtime=w.runtime, environment_id=e
        ),
    ),  # type: ignore[arg-type]
    Op(
        "terminal.watch (authorize_environment)",
        "env",
        "environment.watch",
        lambda w, s, a, e: authorize_environment(
            s, a, s.get(Environment, e), Action.environment_watch, what="environment"
        ),
    ),  # type: ignore[arg-type]
    Op(
        "terminal.shell (authorize_environment)",
        "env",
        "environment.shell",
        lambda w, s, a, e: authorize_environment(
            s, a, s.get(Environment, e), Action.environment_shell, what="environment"
        ),
    ),  # type: ignore[arg-type]
    Op(
        "credentials.environment_credentials",
        "env",
        "environment.shell",
        lambda w, s, a, e: credentials.environment_credentials(
            session=s, actor=a, runtime=w.runtime, environment_id=e
        ),
    ),  # type: ignore[arg-type]
    Op(
        "credentials.kubernetes_groups",
        "team",
        "team.read",
        lambda w, s, a, _e: "envhub:team:acme" in credentials.kubernetes_groups(session=s, actor=a),
    ),
    Op(
        "audit_log.environment_audit_trail",
        "env",
        "environment.read",
        lambda w, s, a, e: audit_log.environment_audit_trail(session=s, actor=a, environment_id=e),
    ),
    Op(
        "audit_log.search_events",
        "team",
        "audit.read",
        lambda w, s, a, _e: _acme_events(
            audit_log.search_events(session=s, actor=a, filters=AuditFilter(action="test.setup")).items
        ),
    ),
    Op(
        "audit_log.export_pages",
        "team",
        "audit.read",
        lambda w, s, a, _e: any(
            r["team_id"] == w.acme and r["actor"] == "envhub"
            for page in audit_log.export_pages(session=s, actor=a, filters=AuditFilter(action="test.setup"))
            for r in page
        ),
    ),
    Op(
        "audit_log.recent_events",
        "team",
        "audit.read",
        lambda w, s, a, _e: _acme_events(audit_log.recent_events(session=s, actor=a, limit=200)),
    ),
    Op(
        "audit_log.distinct_actions",
        "team",
        "audit.read",
        lambda w, s, a, _e: "test.setup" in audit_log.distinct_actions(session=s, actor=a),
    ),
    Op(
        "audit_log.check_chain",
        "any",
        "audit.read",
        lambda w, s, a, _e: audit_log.check_chain(session=s, actor=a),
    ),
    Op(
        "audit_log.last_check",
        "any",
        "audit.read",
        lambda w, s, a, _e: audit_log.last_check(session=s, actor=a) or True,
    ),
    Op(
        "teams.create_team",
        "any",
        "team.own",
        lambda w, s, a, _e: teams.create_team(session=s, actor=a, name=unique("t")),
    ),
    Op(
        "teams.list_my_teams",
        "team",
        "team.read",
        lambda w, s, a, _e: any(t.team.id == w.acme for t in teams.list_my_teams(session=s, actor=a)),
    ),
    Op(
        "teams.get_team",
        "team",
        "team.read",
        lambda w, s, a, _e: teams.get_team(session=s, actor=a, team_id=w.acme),
    ),
    Op(
        "teams.list_members",
        "team",
        "team.read",
        lambda w, s, a, _e: teams.list_members(session=s, actor=a, team_id=w.acme),
    ),
    Op(
        "teams.list_invites",
        "team",
        "team.manage",
        lambda w, s, a, _e: teams.list_invites(session=s, actor=a, team_id=w.acme) or True,
    ),
    Op(
        "teams.invite",
        "team",
        "team.manage",
        lambda w, s, a, _e: teams.invite(
            session=s, actor=a, team_id=w.acme, email=f"{unique('x')}@acme.example"
        ),
    ),
    Op(
        "teams.revoke_invite",
        "team",
        "team.manage",
        lambda w, s, a, _e: teams.revoke_invite(session=s, actor=a, invite_id=w.invite()) or True,
    ),
    Op(
        "teams.change_role",
        "team",
        "team.manage",
        lambda w, s, a, _e: teams.change_role(
            session=s, actor=a, team_id=w.acme, user_id=w.member(), role="viewer"
        ),
    ),
    Op(
        "teams.remove_member",
        "team",
        "team.manage",
        lambda w, s, a, _e: (
            teams.remove_member(session=s, actor=a, team_id=w.acme, user_id=w.member()) or True
        ),
    ),
    Op(
        "sharing.list_access",
        "env",
        "environment.read",
        lambda w, s, a, e: sharing.list_access(session=s, actor=a, environment_id=e),
    ),
    Op(
        "sharing.share_environment",
        "env",
        "environment.share",
        lambda w, s, a, e: sharing.share_environment(
            session=s, actor=a, environment_id=e, role="viewer", user=w.outsider()
        ),
    ),
    Op(
        "sharing.revoke_share",
        "env",
        "environment.share",
        lambda w, s, a, _e: sharing.revoke_share(session=s, actor=a, share_id=w.share()) or True,
    ),
    Op(
        "sharing.list_shared_environments",
        "shared",
        None,
        lambda w, s, a, _e: any(
            i.environment.id == w.shared for i in sharing.list_shared_environments(session=s, actor=a)
        ),
    ),
    Op(
        "tokens.create_personal_token",
        "person",
        None,
        lambda w, s, a, _e: tokens.create_personal_token(
            session=s, actor=a, name="n", scopes=["read"], expires_in_days=1
        ),
    ),
    Op(
        "tokens.create_agent_token",
        "person",
        "environment.shell",
        lambda w, s, a, e: tokens.create_agent_token(
            session=s, actor=a, environment_id=e, name="n", scopes=["read"], expires_in_days=1
        ),
    ),
    Op(
        "tokens.list_tokens",
        "self",
        None,
        lambda w, s, a, _e: tokens.list_tokens(session=s, actor=a) or a.is_agent,
    ),
    Op(
        "tokens.revoke_token",
        "self",
        None,
        lambda w, s, a, _e: tokens.revoke_token(session=s, actor=a, token_id=w.own_token(a)),
    ),
    Op(
        "secrets.set_secret",
        "team",
        "secret.write",
        lambda w, s, a, _e: secrets.set_secret(
            session=s, actor=a, project_id=w.shop, name=unique("K").replace("-", "_"), value="v"
        ),
    ),
    Op(
        "secrets.list_secrets",
        "team",
        "project.read",
        lambda w, s, a, _e: secrets.list_secrets(session=s, actor=a, project_id=w.shop) or True,
    ),
    Op(
        "secrets.delete_secret",
        "team",
        "secret.write",
        lambda w, s, a, _e: secrets.delete_secret(session=s, actor=a, secret_id=w.secret()) or True,
    ),
    Op(
        "device.approve",
        "person",
        None,
        lambda w, s, a, _e: device.approve(
            s, actor=a, user_code=device.start(s, client_id="envhub-cli", scope="read").user_code
        ),
    ),
    Op(
        "device.deny",
        "person",
        None,
        lambda w, s, a, _e: (
            device.deny(s, actor=a, user_code=device.start(s, client_id="envhub-cli", scope="read").user_code)
            or True
        ),
    ),
    Op(
        "terminal.open_shell",
        "env",
        "environment.shell",
        lambda w, s, a, e: terminal.open_shell(
            session=s,
            actor=a,
            runtime=w.runtime,
            environment_id=e,  # type: ignore[arg-type]
            terminal_id=unique("t"),
            container=None,
            recording="recordings/x.cast",
        ),
    ),
    Op(
        "commands.start_command",
        "env",
        "environment.shell",
        lambda w, s, a, e: commands.start_command(
            session=s,
            actor=a,
            runtime=w.runtime,  # type: ignore[arg-type]
            environment_id=e,
            command=["true"],
        ),
    ),
    *[
        Op(
            f"files.{name}",
            "env",
            "environment.shell",
            lambda w, s, a, e, call=call, extra=extra: call(
                session=s,
                actor=a,
                runtime=w.runtime,  # type: ignore[arg-type]
                environment_id=e,
                **extra,
            ),
        )
        for name, call, extra in (
            ("read_file", files.read_file, {"path": "a.txt"}),
            ("write_file", files.write_file, {"path": "a.txt", "data": b"a"}),
            ("list_directory", files.list_directory, {"path": "."}),
            ("delete_file", files.delete_file, {"path": "a.txt"}),
        )
    ],
    Op(
        "background.start_process",
        "env",
        "environment.shell",
        lambda w, s, a, e: background.start_process(
            session=s,
            actor=a,
            runtime=w.runtime,  # type: ignore[arg-type]
            environment_id=e,
            name=unique("p"),
            command=["true"],
        ),
    ),
    Op(
        "background.list_processes",
        "env",
        "environment.shell",
        lambda w, s, a, e: background.list_processes(
            session=s,
            actor=a,
            runtime=w.runtime,  # type: ignore[arg-type]
            environment_id=e,
        ),
    ),
    Op(
        "background.process_output",
        "env",
        "environment.shell",
        lambda w, s, a, e: background.process_output(
            session=s,
            actor=a,
            runtime=w.runtime,  # type: ignore[arg-type]
            environment_id=e,
            process_id=w.process(e),
        ),
    ),
    Op(
        "background.stop_process",
        "env",
        "environment.shell",
        lambda w, s, a, e: background.stop_process(
            session=s,
            actor=a,
            runtime=w.runtime,  # type: ignore[arg-type]
            environment_id=e,
            process_id=w.process(e),
        ),
    ),
    Op(
        "terminal.join_shell",
        "env",
        "environment.watch",
        lambda w, s, a, e: terminal.join_shell(
            session=s, actor=a, environment_id=e, terminal_id="t", watching=True
        ),
    ),
    Op(
        "terminal.hand_over",
        "env",
        "environment.shell",
        lambda w, s, a, e: (
            terminal.hand_over(session=s, actor=a, environment_id=e, terminal_id="t", to=a) or True
        ),
    ),
    Op(
        "terminal.watchable",
        "env",
        "environment.watch",
        lambda w, s, a, e: terminal.watchable(session=s, actor=a, environment_id=e),
    ),
    Op(
        "terminal.find_recording",
        "team",
        "audit.read",
        lambda w, s, a, _e: terminal.find_recording(
            session=s, actor=a, event_id=w.recording_event, data_dir=w.data_dir, store=None
        ),
    ),
    # The view models every face shows (services/*_views.py, inspection.environment_workloads).
    Op(
        "environment_views.environment_overview",
        "env",
        "environment.read",
        lambda w, s, a, e: environment_views.environment_overview(
            session=s, actor=a, runtime=w.runtime, environment_id=e
        ),
    ),  # type: ignore[arg-type]
    Op(
        "environment_views.environment_permissions",
        "env",
        "environment.read",
        lambda w, s, a, e: environment_views.environment_permissions(session=s, actor=a, environment_id=e),
    ),
    Op(
        "environment_views.environment_summary",
        "env",
        "environment.read",
        lambda w, s, a, e: environment_views.environment_summary(session=s, actor=a, environment_id=e),
    ),
    Op(
        "environment_views.environment_rows",
        "team",
        "project.read",
        lambda w, s, a, _e: environment_views.environment_rows(session=s, actor=a, project_id=w.shop)[1][
            "total"
        ],
    ),
    Op(
        "inspection.environment_workloads",
        "env",
        "environment.read",
        lambda w, s, a, e: inspection.environment_workloads(
            session=s, actor=a, runtime=w.runtime, environment_id=e
        ),
    ),  # type: ignore[arg-type]
    Op(
        "project_views.projects_overview",
        "team",
        "project.read",
        lambda w, s, a, _e: any(
            row["id"] == w.shop
            for row in project_views.projects_overview(session=s, actor=a, search="shop")["rows"]
        ),
    ),
    Op(
        "project_views.project_overview",
        "team",
        "project.read",
        lambda w, s, a, _e: project_views.project_overview(session=s, actor=a, project_id=w.shop),
    ),
    Op(
        "project_views.project_summary",
        "team",
        "project.read",
        lambda w, s, a, _e: project_views.project_summary(session=s, actor=a, project_id=w.shop),
    ),
    Op(
        "identity_views.team_rows",
        "team",
        "team.read",
        lambda w, s, a, _e: any(
            row["id"] == str(w.acme) for row in identity_views.team_rows(session=s, actor=a)
        ),
    ),
    Op(
        "identity_views.team_overview",
        "team",
        "team.read",
        lambda w, s, a, _e: identity_views.team_overview(session=s, actor=a, team_id=w.acme),
    ),
    Op(
        "identity_views.token_rows",
        "self",
        None,
        lambda w, s, a, _e: identity_views.token_rows(session=s, actor=a) or a.is_agent,
    ),
    Op(
        "identity_views.access_overview",
        "env",
        "environment.read",
        lambda w, s, a, e: identity_views.access_overview(session=s, actor=a, environment_id=e),
    ),
    Op(
        "identity_views.shared_rows",
        "shared",
        None,
        lambda w, s, a, _e: any(
            row["id"] == w.shared for row in identity_views.shared_rows(session=s, actor=a)
        ),
    ),
    Op(
        "identity_views.secret_rows",
        "team",
        "project.read",
        lambda w, s, a, _e: identity_views.secret_rows(session=s, actor=a, project_id=w.shop) or True,
    ),
    Op(
        "identity_views.audit_page",
        "team",
        "audit.read",
        lambda w, s, a, _e: any(
            row["actor"] == "envhub" and row["target"] == "shop"
            for row in identity_views.audit_page(
                session=s, actor=a, filters=AuditFilter(action="test.setup")
            )["rows"]
        ),
    ),
    Op(
        "identity_views.chain_overview",
        "any",
        "audit.read",
        lambda w, s, a, _e: identity_views.chain_overview(session=s, actor=a),
    ),
    # Every environment one can see: acme's e1 is listed to whoever may read it.
    Op(
        "environment_views.visible_environments",
        "env",
        "environment.read",
        lambda w, s, a, e: any(
            row["id"] == e
            for row in environment_views.visible_environments(
                session=s, actor=a, filters=EnvironmentFilters(project=w.shop), limit=200
            )["rows"]
        ),
    ),
    Op(
        "environment_listing.list_visible_environments",
        "env",
        "environment.read",
        lambda w, s, a, e: any(
            item.environment.id == e
            for item in environment_listing.list_visible_environments(
                session=s, actor=a, filters=EnvironmentFilters(project=w.shop), limit=200
            ).items
        ),
    ),
    # What programs use (REST, MCP, the CLI): status without logs, the trail as events,
    # a command run to its end, waiting for a phase.
    Op(
        "environment_views.environment_status",
        "env",
        "environment.read",
        lambda w, s, a, e: environment_views.environment_status(session=s, actor=a, environment_id=e),
    ),
    Op(
        "environment_views.environment_events",
        "env",
        "environment.read",
        lambda w, s, a, e: environment_views.environment_events(session=s, actor=a, environment_id=e),
    ),
    Op(
        "commands.run_command",
        "env",
        "environment.shell",
        lambda w, s, a, e: commands.run_command(
            session=s,
            actor=a,
            runtime=w.runtime,  # type: ignore[arg-type]
            environment_id=e,
            command=["true"],
            timeout=5,
            cap=100,
        ),
    ),
    Op(
        "waiting.wait_for_environment",
        "env",
        "environment.read",
        lambda w, s, a, e: waiting.wait_for_environment(actor=a, environment_id=e, timeout=0)["environment"],
    ),
    # Cursor pages and requests that say which job does the work (services/listing.py,
    # environment_requests.py), for REST and MCP alike.
    Op(
        "listing.project_page",
        "team",
        "project.read",
        lambda w, s, a, _e: any(
            row["id"] == w.shop for row in listing.project_page(session=s, actor=a, search="shop").items
        ),
    ),
    Op(
        "listing.environment_page",
        "team",
        "project.read",
        lambda w, s, a, _e: bool(listing.environment_page(session=s, actor=a, project_id=w.shop).items),
    ),
    Op(
        "listing.audit_page",
        "team",
        "audit.read",
        lambda w, s, a, _e: any(
            r["team_id"] == w.acme and r["actor"] == "envhub"
            for r in listing.audit_page(session=s, actor=a, filters=AuditFilter(action="test.setup")).items
        ),
    ),
    Op(
        "environment_requests.create_environment_once",
        "team",
        "environment.create",
        lambda w, s, a, _e: environment_requests.create_environment_once(
            session=s, actor=a, queue=FakeQueue(), project_id=w.shop, idempotency_key=unique("key")
        ),
    ),
    Op(
        "environment_requests.follow_logs",
        "env",
        "environment.read",
        lambda w, s, a, e: (
            list(
                environment_requests.follow_logs(
                    session=s, actor=a, runtime=w.runtime, environment_id=e, seconds=0.2
                )
            )
            or True
        ),
    ),  # type: ignore[arg-type]
    Op(
        "environment_requests.redeploy",
        "env",
        "environment.redeploy",
        lambda w, s, a, e: (
            w.reset_e1(),
            environment_requests.redeploy(session=s, actor=a, queue=FakeQueue(), environment_id=e),
        )[1],
    ),
    Op(
        "environment_requests.sleep",
        "env",
        "environment.redeploy",
        lambda w, s, a, e: (
            w.reset_e1(),
            environment_requests.sleep(session=s, actor=a, queue=FakeQueue(), environment_id=e),
        )[1],
    ),
    Op(
        "environment_requests.wake",
        "env",
        "environment.redeploy",
        lambda w, s, a, e: environment_requests.wake(session=s, actor=a, queue=FakeQueue(), environment_id=e),
    ),
    Op(
        "environment_requests.pin",
        "env",
        "environment.redeploy",
        lambda w, s, a, e: environment_requests.pin(session=s, actor=a, environment_id=e, pinned=True),
    ),
    Op(
        "sleeping.sleep_environment",
        "env",
        "environment.redeploy",
        lambda w, s, a, e: (
            w.reset_e1(),
            sleeping.sleep_environment(session=s, actor=a, queue=FakeQueue(), environment_id=e),
        )[1],
    ),
    Op(
        "sleeping.wake_environment",
        "env",
        "environment.redeploy",
        lambda w, s, a, e: sleeping.wake_environment(session=s, actor=a, queue=FakeQueue(), environment_id=e),
    ),
    Op(
        "sleeping.pin_environment",
        "env",
        "environment.redeploy",
        lambda w, s, a, e: sleeping.pin_environment(session=s, actor=a, environment_id=e, pinned=False),
    ),
    Op(
        "environment_requests.delete",
        "env",
        "environment.delete",
        lambda w, s, a, e: environment_requests.delete(
            session=s, actor=a, queue=FakeQueue(), environment_id=e
        ),
        on_env=_fresh_env,
    ),
    Op(
        "environments.update_environment",
        "env",
        "environment.redeploy",
        lambda w, s, a, e: (
            w.reset_e1(),
            environments.update_environment(
                session=s, actor=a, queue=FakeQueue(), environment_id=e, changes={"env": {"GREETING": "hi"}}
            ),
        )[1],
    ),
    Op(
        "environment_requests.update",
        "env",
        "environment.redeploy",
        lambda w, s, a, e: (
            w.reset_e1(),
            environment_requests.update(
                session=s, actor=a, queue=FakeQueue(), environment_id=e, changes={"ref": "main"}
            ),
        )[1],
    ),
    # A project's GitHub repository (services/github.py); connect asks the GitHub stub.
    Op(
        "github.connect_github",
        "team",
        "secret.write",
        lambda w, s, a, _e: github.connect_github(
            session=s,
            actor=a,
            project_id=w.shop,
            repository="acme/shop",
            auth="token",
            api_url=_stub_url(),
            token=w.github_token(),
        ),
    ),
    Op(
        "github.github_connection",
        "team",
        "project.read",
        lambda w, s, a, _e: github.github_connection(session=s, actor=a, project_id=w.github()),
    ),
    Op(
        "github.update_github_policy",
        "team",
        "project.update",
        lambda w, s, a, _e: github.update_github_policy(
            session=s, actor=a, project_id=w.github(), changes={"drafts": True}
        ),
    ),
    Op(
        "github.rotate_webhook_secret",
        "team",
        "secret.write",
        lambda w, s, a, _e: github.rotate_webhook_secret(session=s, actor=a, project_id=w.github()),
    ),
    Op(
        "github.disconnect_github",
        "team",
        "project.update",
        lambda w, s, a, _e: github.disconnect_github(session=s, actor=a, project_id=w.github(w.project())),
    ),
]


# Deployment environments and releases (services/releases.py, release_views.py), in acme's
# project "deploys"; each case acts on a fresh release, so no case depends on another's.
OPS += [
    Op(
        "releases.configure_deployments",
        "team",
        "project.update",
        lambda w, s, a, _e: releases.configure_deployments(
            session=s, actor=a, project_id=w.deploying(), settings=DEPLOYMENTS
        ),
    ),
    Op(
        "releases.create_release",
        "team",
        "release.create",
        lambda w, s, a, _e: releases.create_release(
            session=s, actor=a, queue=FakeQueue(), project_id=w.deploying(), commit=_sha()
        ),
    ),
    Op(
        "releases.approve_release",
        "team",
        "release.approve",
        lambda w, s, a, _e: releases.approve_release(
            session=s, actor=a, queue=FakeQueue(), release_id=w.release("production")
        ),
    ),
    Op(
        "releases.cancel_release",
        "team",
        "release.cancel",
        lambda w, s, a, _e: releases.cancel_release(session=s, actor=a, release_id=w.release("production")),
    ),
    Op(
        "releases.rollback",
        "team",
        "release.rollback",
        lambda w, s, a, _e: releases.rollback(
            session=s, actor=a, queue=FakeQueue(), release_id=w.release("production", ReleaseStatus.ready)
        ),
    ),
    Op(
        "releases.promote",
        "team",
        "release.promote",
        lambda w, s, a, _e: releases.promote(
            session=s,
            actor=a,
            queue=FakeQueue(),
            release_id=w.release("staging", ReleaseStatus.ready),
            to="production",
        ),
    ),
    Op(
        "release_views.deployments_view",
        "team",
        "project.read",
        lambda w, s, a, _e: release_views.deployments_view(session=s, actor=a, project_id=w.deploying()),
    ),
    # An environment's history is the environment's to read (an agent confined to it included).
    Op(
        "release_views.list_releases",
        "env",
        "environment.read",
        lambda w, s, a, e: (
            w.release("staging"),
            release_views.list_releases(session=s, actor=a, environment_id=e).total,
        )[1],
        on_env=lambda w: (w.deploying(), w.stages["staging"])[1],
    ),
    Op(
        "release_views.release_detail",
        "team",
        "project.read",
        lambda w, s, a, _e: release_views.release_detail(
            session=s, actor=a, release_id=w.release("production")
        ),
    ),
]

_shas = itertools.count(1)


def _sha() -> str:
    """A commit nobody released yet."""
    return f"{next(_shas):040x}"


def _stub_url() -> str:
    from tests.support.github_stub import shared_stub

    return shared_stub().api_url
