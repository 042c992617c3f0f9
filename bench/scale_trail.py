"""The audit trail bench/scale.py seeds: events built as ``services/common.audit`` builds them,
chained in time order with envhub's MAC as ``models/audit_chain.link`` chains them at commit, and
sealed by the chain head."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.engine import Engine

from envhub.domain.audit_chain import GENESIS, head_mac, mac
from envhub.domain.principals import SYSTEM, Principal
from envhub.models import AuditChainHead, AuditEvent
from envhub.models.audit_chain import HEAD_ID
from envhub.models.base import utcnow

BATCH = 5000  # rows per INSERT
AGENTS = ("Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0", "envhub-cli/0.1 python-httpx/0.28")


@dataclass
class Person:
    id: int
    name: str

    def principal(self) -> Principal:
        return Principal(name=self.name, user_id=self.id)


class Trail:
    """Audit events in the making, sealed into the chain in time order at the end."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def add(
        self,
        when: datetime,
        actor: Person | None,
        action: str,
        *,
        target_type: str,
        target_id: int | None,
        target: str,
        team_id: int | None,
        outcome: str = "success",
        error_code: str | None = None,
        details: dict[str, Any] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        person = actor is not None
        self.events.append(
            {
                "time": when,
                "actor_id": actor.id if actor else None,
                "actor": actor.name if actor else SYSTEM.name,
                "principal_type": "user" if person else SYSTEM.type.value,
                "token_id": None,
                "action": action,
                "target_type": target_type,
                "target_id": target_id,
                "target": target,
                "team_id": team_id,
                "outcome": outcome,
                "error_code": error_code,
                "source_ip": f"10.0.{rng.randrange(256)}.{rng.randrange(1, 255)}" if person and rng else None,
                "user_agent": rng.choice(AGENTS) if person and rng else None,
                "details": details or {},
            }
        )

    def seal(self, engine: Engine, key: bytes) -> int:
        """Chain every event in time order (as envhub's ``link`` does at commit) and write the head."""
        self.events.sort(key=lambda e: e["time"])
        last = GENESIS
        for seq, event in enumerate(self.events, start=1):
            event["seq"], event["prev_hash"] = seq, last
            event["hash"] = last = mac(key, event, last)
        with engine.begin() as conn:
            for chunk in chunks(self.events):
                conn.execute(insert(AuditEvent), chunk)
            conn.execute(
                insert(AuditChainHead),
                [
                    {
                        "id": HEAD_ID,
                        "seq": len(self.events),
                        "last_hash": last,
                        "mac": head_mac(key, len(self.events), last),
                        "updated_at": utcnow(),
                    }
                ],
            )
        return len(self.events)


def chunks(rows: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(rows), BATCH):
        yield rows[start : start + BATCH]
