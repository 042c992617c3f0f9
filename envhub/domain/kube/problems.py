"""What the manifest guards report: a field path and why it is refused.

The path is written the way ``kubectl explain`` and the API server's own
validation errors write it (``spec.template.spec.containers[0].securityContext``),
so a person can find the line in their YAML.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Problem:
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def child(path: str, key: str | int) -> str:
    """``path`` extended by a key (``.key``) or a list index (``[i]``)."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def dig(obj: Any, *keys: str) -> Any:
    """``obj[k1][k2]...``, or None as soon as a level is missing or not a mapping."""
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def listed(value: Any) -> list[Any]:
    """``value`` if it is a list, else nothing: odd shapes are the API server's to reject."""
    return value if isinstance(value, list) else []


def mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
