"""An environment's recent output, for the logs panel.

``services/`` has no use case for reading logs yet, so this helper reads them
through the runtime port. Callers must first check access with
``services.environments.get_environment`` (the loaders do). Replace it with a
service function once one exists.
"""

from __future__ import annotations

import logging
from itertools import islice

from envhub.domain.phases import Phase
from envhub.errors import EnvhubError
from envhub.services import ports

log = logging.getLogger(__name__)

TAIL_LINES = 200
# The local runtime creates an environment's folder when its logs are read, so
# never read them once a teardown may have removed that folder.
_NO_LOGS = frozenset({Phase.deleting, Phase.deleted})


def recent_logs(environment_id: int, phase: Phase, *, tail: int = TAIL_LINES) -> list[str]:
    if phase in _NO_LOGS:
        return []
    try:
        return list(islice(ports.runtime().logs(environment_id, tail=tail), tail))
    except (EnvhubError, OSError) as exc:
        log.debug("logs of environment %s unavailable: %s", environment_id, exc)
        return []
