"""Managed services: one environment's instance of a service its project declares (``project.backing``).

A row per (environment, declared service): what envhub made for it, on which
backend, and the credential the environment was given (sealed with AES-GCM,
``services/crypto.py``; opened only by the job that hands it over). The row is
the desired state: jobs converge the backend to it and remove the instance
when the environment goes.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Column, Integer, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from envhub.models.base import EnumText, UTCDateTime, utcnow


class InstanceState(StrEnum):
    provisioning = "provisioning"  # recorded; the backend may not have it yet
    ready = "ready"  # the backend has it and the environment was given its variables
    skipped = "skipped"  # the environment's own workloads bring this service (``reason`` says how)
    failed = "failed"  # the last attempt failed (``reason``, ``error_code``); retried with the environment
    removed = "removed"  # the environment is gone and so is the instance


class ServiceInstance(SQLModel, table=True):
    __tablename__ = "service_instance"
    __table_args__ = (
        UniqueConstraint("environment_id", "service", name="uq_service_instance_environment_service"),
    )

    id: int | None = Field(default=None, primary_key=True)
    environment_id: int = Field(foreign_key="environment.id", index=True, ondelete="CASCADE")
    project_id: int = Field(foreign_key="project.id", index=True, ondelete="CASCADE")
    service: str = Field(max_length=20)
    kind: str = Field(max_length=20)
    # The backend that holds it ("embedded", "server", "s3"); "" until provisioned.
    backend: str = Field(default="", max_length=40)
    state: InstanceState = Field(
        default=InstanceState.provisioning,
        sa_column=Column(EnumText(InstanceState), nullable=False, index=True),
    )
    reason: str = Field(default="", max_length=1000)
    error_code: str | None = Field(default=None, max_length=100)
    # The sealed credential: a password, or a bucket's key pair as JSON. "" before the first.
    credential: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    credential_set_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    # A database that starts as a copy of another environment's backup (``seed_from``): "pending"
    # when made, then what the copy gave ("copy of staging's backup 12: ..."); "" for no copy.
    seed_detail: str = Field(default="", max_length=500)
    # A CloudNativePG cluster: how many restores made it again (each generation archives apart), and
    # the data the current generation recovered from (a Recovery as JSON; "" for an empty start).
    generation: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    recovery: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    removed_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))


class BackupState(StrEnum):
    queued = "queued"  # recorded; a worker takes it
    running = "running"
    succeeded = "succeeded"  # the dump is in the store, its size and checksum recorded
    failed = "failed"  # ``error`` says why
    expired = "expired"  # past its retention: the stored dump was deleted


class BackupTrigger(StrEnum):
    schedule = "schedule"  # a deployment environment's regular backup
    manual = "manual"  # someone asked for one
    before_restore = "before_restore"  # the contents a restore replaced, kept in case
    final = "final"  # taken before a deployment environment's database was removed


ACTIVE_BACKUP_STATES = (BackupState.queued, BackupState.running)


class BackupMethod(StrEnum):
    dump = "pg_dump"  # envhub's logical backup in the object store: size, duration, SHA-256
    barman = "barman"  # a CloudNativePG cluster's base backup, made and kept by the operator


class ServiceBackup(SQLModel, table=True):
    """One backup of an environment's PostgreSQL instance: a ``pg_dump`` kept in the object store.

    Rows outlive their instance and environment: a removed database's last
    backup stays restorable until ``expires_at``.
    """

    __tablename__ = "service_backup"

    id: int | None = Field(default=None, primary_key=True)
    instance_id: int = Field(foreign_key="service_instance.id", index=True, ondelete="CASCADE")
    environment_id: int = Field(foreign_key="environment.id", index=True, ondelete="CASCADE")
    project_id: int = Field(foreign_key="project.id", index=True, ondelete="CASCADE")
    service: str = Field(max_length=20)
    state: BackupState = Field(
        default=BackupState.queued, sa_column=Column(EnumText(BackupState), nullable=False, index=True)
    )
    trigger: BackupTrigger = Field(
        default=BackupTrigger.manual, sa_column=Column(EnumText(BackupTrigger), nullable=False)
    )
    requested_by: str = Field(default="", max_length=200)
    key: str = Field(default="", max_length=500)  # where the dump is in the object store
    size_bytes: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default="0"))
    sha256: str = Field(default="", max_length=64)
    seconds: float = 0.0  # dump and upload
    attempts: int = 0
    error: str = Field(default="", max_length=2000)
    error_code: str | None = Field(default=None, max_length=100)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    started_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    heartbeat_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    finished_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    expires_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    # The last restore check of this backup: restored into a scratch database and compared.
    checked_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    check_passed: bool | None = None
    check_detail: str = Field(default="", max_length=500)
    # How it was taken: envhub's pg_dump into the store, or the operator's barman base backup (a
    # CloudNativePG cluster's; ``reference`` then holds the operator's report of it, as JSON).
    method: BackupMethod = Field(
        default=BackupMethod.dump,
        sa_column=Column(EnumText(BackupMethod), nullable=False, server_default=BackupMethod.dump.value),
    )
    reference: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))


class RestorePurpose(StrEnum):
    restore = "restore"  # replace an environment's database with the backup
    check = "check"  # restore into a scratch database, compare, drop it
    seed = "seed"  # a new development environment starts from a copy


class RestoreState(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"


ACTIVE_RESTORE_STATES = (RestoreState.queued, RestoreState.running)


class ServiceRestore(SQLModel, table=True):
    """One restore of a backup: into an environment's database, or into a scratch one to check it."""

    __tablename__ = "service_restore"

    id: int | None = Field(default=None, primary_key=True)
    backup_id: int = Field(foreign_key="service_backup.id", index=True, ondelete="CASCADE")
    # Where it goes: the environment and service whose database is replaced (a check: the backup's own).
    environment_id: int = Field(foreign_key="environment.id", index=True, ondelete="CASCADE")
    service: str = Field(max_length=20)
    purpose: RestorePurpose = Field(
        default=RestorePurpose.restore, sa_column=Column(EnumText(RestorePurpose), nullable=False)
    )
    state: RestoreState = Field(
        default=RestoreState.queued, sa_column=Column(EnumText(RestoreState), nullable=False, index=True)
    )
    requested_by: str = Field(default="", max_length=200)
    # The backup of what the restore replaced (taken first, kept like any other).
    safety_backup_id: int | None = Field(default=None)
    attempts: int = 0
    detail: str = Field(default="", max_length=500)
    error: str = Field(default="", max_length=2000)
    error_code: str | None = Field(default=None, max_length=100)
    seconds: float = 0.0
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    started_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    heartbeat_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    finished_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
