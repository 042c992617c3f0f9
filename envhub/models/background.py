"""Background processes an agent or a person started in an environment (``services/background.py``).

The row is envhub's record of the process: what was started, by whom, and how
it ended, kept after it has ended so its output can still be read. The runtime
runs it under the row's id (``runtime.base.BackgroundHost``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column
from sqlmodel import Field, SQLModel

from envhub.models.base import JSONType, UTCDateTime, utcnow


class BackgroundProcess(SQLModel, table=True):
    __tablename__ = "background_process"

    id: int | None = Field(default=None, primary_key=True)
    environment_id: int = Field(foreign_key="environment.id", index=True, ondelete="CASCADE")
    name: str = Field(max_length=63)
    command: list[str] = Field(default_factory=list, sa_column=Column(JSONType, nullable=False))
    # running | exited (by itself; exit_code None when nobody saw how) | stopped (by a stop call)
    state: str = Field(default="running", max_length=20)
    exit_code: int | None = Field(default=None)
    started_by: str = Field(default="", max_length=200)
    started_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime, nullable=False))
    ended_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
