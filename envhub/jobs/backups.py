"""Backup and restore jobs of managed PostgreSQL: the use cases in services/backups.py, on a worker."""

from __future__ import annotations

from envhub.jobs.observed import observed
from envhub.models.db import session_scope
from envhub.services import backups, ports


@observed
def take_backup(backup_id: int) -> str:
    with session_scope() as session:
        return backups.perform_backup(
            session, backup_id, backends=ports.backing(), store=ports.backup_store()
        )


@observed
def run_restore(restore_id: int) -> str:
    with session_scope() as session:
        return backups.perform_restore(
            session, restore_id, backends=ports.backing(), store=ports.backup_store()
        )
