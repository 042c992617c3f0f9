"""Units of work for the faces: the session every use case is given.

A face (a dashboard event, a REST route, an MCP tool) opens one per operation
and hands it to the use cases, which commit what they change; it never opens
a table itself. ``read_only`` is for work that only reads (lists, the audit
log): on SQLite it never takes the write lock, on PostgreSQL it refuses writes.
"""

from __future__ import annotations

from sqlmodel import Session

from envhub.models.db import read_session as read_only
from envhub.models.db import session_scope as unit_of_work

__all__ = ["Session", "read_only", "unit_of_work"]
