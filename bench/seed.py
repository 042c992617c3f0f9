"""Seed a throwaway envhub database for a benchmark: ``python -m bench.seed``.

Run with ``ENVHUB_DATABASE_URL`` and ``ENVHUB_DATA_DIR`` pointing at scratch
space. Migrates, creates the local user's project ``bench`` with one
environment, and a personal token that may open terminals in it; prints the
environment's id and the token, separated by a space.
"""

from __future__ import annotations

from envhub.config import get_settings
from envhub.launcher import migrate
from envhub.models.db import session_scope
from envhub.services import identity, projects, tokens
from envhub.services.environments import create_environment
from envhub.wiring import install as wire_adapters
from tests.support.fakes import FakeQueue


def main() -> None:
    wire_adapters()
    migrate(get_settings())
    with session_scope() as session:
        me = identity.ensure_local_principal(session)
        team = identity.default_team_id(session, me)
        project = projects.create_project(session=session, actor=me, team_id=team, name="bench")
        # The benchmark opens terminals only: its provisioning job is never run.
        environment = create_environment(
            session=session, actor=me, queue=FakeQueue(), project_id=project.id, name="dev"
        )
        token = tokens.create_personal_token(
            session=session, actor=me, name="bench", scopes=["read", "shell"], expires_in_days=1, via="cli"
        )
        print(environment.id, token.token)


if __name__ == "__main__":
    main()
