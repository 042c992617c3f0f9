"""Who is acting: a person, or envhub itself (jobs, the reconciler)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class PrincipalType(StrEnum):
    user = "user"
    system = "system"


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    type: PrincipalType = PrincipalType.user
    user_id: int | None = None

    @property
    def is_system(self) -> bool:
        return self.type is PrincipalType.system


SYSTEM = Principal(name="envhub", type=PrincipalType.system)
