"""envhub's API app for the MCP authorization matrix: production wiring, but the runtime
port answers from memory (tests/identity/matrix_world.PortRuntime), as in the service matrix,
so logs and commands reach the use cases without real workloads.
"""

from __future__ import annotations

from envhub import wiring
from envhub.api.app import create_api
from envhub.integrations.object_store import ObjectStore
from envhub.queue.base import ChangeNotifier, JobQueue, TerminalRegistry
from envhub.services import ports
from envhub.urls.base import UrlProvider
from tests.identity.matrix_world import PortRuntime


class MatrixPorts:
    """The settings' adapters, with the in-memory runtime."""

    def __init__(self) -> None:
        self._real = wiring.install()
        self._runtime = PortRuntime()

    def runtime(self) -> PortRuntime:
        return self._runtime

    def url_provider(self) -> UrlProvider:
        return self._real.url_provider()

    def queue(self) -> JobQueue:
        return self._real.queue()

    def changes(self) -> ChangeNotifier:
        return self._real.changes()

    def terminals(self) -> TerminalRegistry:
        return self._real.terminals()

    def object_store(self) -> ObjectStore | None:
        return self._real.object_store()

    def reset(self) -> None:
        self._real.reset()


ports.install(MatrixPorts())  # type: ignore[arg-type]
app = create_api()
