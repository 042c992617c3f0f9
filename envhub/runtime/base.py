"""The runtime port: how envhub makes an environment real somewhere.

Jobs and services talk to a :class:`Runtime`; adapters (``runtime/local``, later
``runtime/kubernetes``) implement it. The contract, which every adapter keeps:

* :meth:`Runtime.apply` is idempotent. Calling it again with the same target
  changes nothing that is already right and finishes what is missing, so a job
  killed half-way can simply be run again.
* :meth:`Runtime.destroy` of an environment that does not exist (or is already
  half gone) returns quietly.
* "Not yet" — the world is still catching up (a process still starting, a
  health check not answering yet) — raises :class:`envhub.errors.NotReady`,
  which callers retry with backoff. Any other :class:`envhub.errors.EnvhubError`
  is a real failure with a code a person can act on.
* Adapters never leak vendor exceptions; they raise envhub errors ``from`` them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

import httpx
from websockets.asyncio.client import ClientConnection

from envhub.domain.devcontainer import Workspace
from envhub.domain.specs import EnvironmentTarget


class RuntimeState(StrEnum):
    absent = "absent"  # nothing exists for this environment
    starting = "starting"  # exists, not serving yet
    ready = "ready"  # serving and healthy
    degraded = "degraded"  # exists but unhealthy (crashed, exited)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where the environment's HTTP service answers, from envhub's point of view.

    With ``unix_socket`` set, connect to that UNIX socket (a path only envhub
    can reach) instead of ``host:port``; ``host:port`` is then the address the
    app listens on in its own network, which is what it sees as its Host.

    With ``relay`` set, envhub cannot connect to ``host:port`` itself (a
    cluster's Service): requests go through the runtime's :class:`HttpRelay`.
    """

    host: str
    port: int
    unix_socket: str | None = None
    relay: bool = False


@dataclass(frozen=True, slots=True)
class RuntimeStatus:
    state: RuntimeState
    message: str = ""
    generation: int | None = None
    endpoint: Endpoint | None = None
    details: dict[str, str] = field(default_factory=dict)
    # What :meth:`Runtime.apply` made of the repository's devcontainer.json (a cluster runtime's
    # workspace): the URL provider routes to it when it serves the app, and to its forwarded ports.
    workspace: Workspace | None = None


@dataclass(frozen=True, slots=True)
class ProbeInfo:
    """A health check as configured: ``kind`` liveness | readiness | startup."""

    kind: str
    action: str  # "HTTP GET :8080/healthz", "TCP :5432", "exec pg_isready"
    timing: str = ""  # "after 5s, every 10s, timeout 1s, 3 failures"


@dataclass(frozen=True, slots=True)
class EnvVarInfo:
    """One environment variable of a container, as configured (not as the process changed it).

    ``value`` is the literal value, or "" when it comes from elsewhere: ``source``
    says where (secret | configmap | field | resource) and ``reference`` what
    (``secret db-credentials, key password``). Adapters never read a Secret's
    value to fill this in; services redact secret-looking literals before any
    face shows them (domain/redaction.py).
    """

    name: str
    value: str = ""
    source: str = ""
    reference: str = ""


@dataclass(frozen=True, slots=True)
class LastTermination:
    """How the container's previous instance ended (the reason for a restart)."""

    exit_code: int | None
    reason: str  # OOMKilled, Error, Completed, ...
    finished_at: str = ""  # RFC 3339
    signal: int | None = None


@dataclass(frozen=True, slots=True)
class ContainerInfo:
    name: str
    state: str  # running | waiting | terminated
    ready: bool
    restarts: int = 0
    reason: str = ""
    image: str = ""  # as asked for (a tag, or the command the local runtime runs)
    image_id: str = ""  # what runs: the image's digest where the runtime reports one
    last_termination: LastTermination | None = None
    probes: tuple[ProbeInfo, ...] = ()
    requests: dict[str, str] = field(default_factory=dict)  # resource -> quantity ("cpu": "100m")
    limits: dict[str, str] = field(default_factory=dict)
    env: tuple[EnvVarInfo, ...] = ()


@dataclass(frozen=True, slots=True)
class PodInfo:
    name: str
    phase: str
    containers: tuple[ContainerInfo, ...] = ()
    started_at: str | None = None


@dataclass(frozen=True, slots=True)
class EventInfo:
    time: str  # last seen
    type: str  # Normal | Warning
    reason: str
    object: str
    message: str
    count: int = 1
    first_time: str = ""  # first seen, when the runtime says


@dataclass(frozen=True, slots=True)
class Inspection:
    """What is running for an environment right now, for people to look at."""

    pods: tuple[PodInfo, ...] = ()
    events: tuple[EventInfo, ...] = ()
    location: str = ""  # namespace, or the workspace folder
    unavailable: str = ""  # why nothing could be read right now (cluster unreachable)


@dataclass(frozen=True, slots=True)
class WorkloadCredentials:
    """A short-lived credential for an environment's own identity (repr hides the token)."""

    token: str = field(repr=False)
    expires_at: str  # RFC 3339, as the issuer stated it
    namespace: str
    server: str
    account: str
    # The API server's CA bundle (PEM) as envhub trusts it; empty when envhub uses the system's.
    certificate_authority: str = ""
    insecure: bool = False  # envhub itself skips TLS verification of this server


StatusHandler = Callable[[int, RuntimeStatus], None]
# The detail of an ``absent`` status that says a removal :meth:`Runtime.destroy` started has ended.
REMOVED = "removed"


class ProgressReporter(Protocol):
    """Receives progress of long runtime calls; the job records it on its JobRun."""

    def begin(self, key: str, detail: str = "") -> None:
        """Step ``key`` has started."""

    def finish(self, key: str, detail: str = "") -> None:
        """Step ``key`` has completed."""

    def skip(self, key: str, detail: str = "") -> None:
        """Step ``key`` was already done (an idempotent re-run)."""

    def heartbeat(self) -> None:
        """Still alive; called periodically during long waits."""


class ExecSession(Protocol):
    """A process running inside an environment, attached to a PTY or pipes."""

    def read(self, max_bytes: int = 65536, timeout: float | None = None) -> bytes:
        """Output bytes (stdout and stderr merged); ``b""`` at end of stream.

        Raises ``TimeoutError`` when nothing arrived within ``timeout`` seconds.
        """

    def write(self, data: bytes) -> None:
        """Send bytes to the process's stdin."""

    def resize(self, columns: int, rows: int) -> None:
        """Change the terminal size (no-op without a TTY)."""

    def wait(self, timeout: float | None = None) -> int | None:
        """Exit code, or ``None`` if still running after ``timeout``."""

    def close(self) -> None:
        """End the process (and its children) and release the PTY."""


@dataclass(frozen=True, slots=True)
class BackgroundState:
    """Where a background process is: ``running``, or ``exited`` with its code (None: unknown)."""

    running: bool
    exit_code: int | None = None


@dataclass(frozen=True, slots=True)
class ProcessOutputChunk:
    """A read of a background process's output: ``data`` begins at byte ``offset`` of everything it
    printed (``size`` bytes so far); the oldest ``dropped`` bytes are no longer kept."""

    data: bytes
    offset: int
    size: int
    dropped: int = 0


@runtime_checkable
class BackgroundHost(Protocol):
    """A runtime that runs named processes in an environment beyond any one call.

    ``key`` is envhub's name for the process (its database row), unique per
    environment. The output (stdout and stderr merged) is kept where
    ``process_output`` can read it after the process has ended, up to a size
    limit past which the oldest bytes are dropped (offsets still count from
    the first byte ever printed). Every method
    raises ``NotFound`` for a key it never started; ``stop_process`` of an
    ended process returns quietly.
    """

    def start_process(self, environment_id: int, key: str, argv: list[str]) -> None:
        """Start ``argv`` in the environment's workspace, as an exec would, and return at once.

        Raises ``NotReady`` when the environment has no workspace yet.
        """

    def process_state(self, environment_id: int, key: str) -> BackgroundState:
        """Whether it runs, or how it ended."""

    def process_output(self, environment_id: int, key: str, offset: int, limit: int) -> ProcessOutputChunk:
        """At most ``limit`` bytes of its output from byte ``offset`` (from the oldest byte kept, when
        ``offset`` was dropped), with the output's size so far."""

    def stop_process(self, environment_id: int, key: str, grace: float) -> None:
        """SIGTERM its process tree, SIGKILL what is left after ``grace`` seconds."""


@runtime_checkable
class CredentialIssuer(Protocol):
    """A runtime that can hand out short-lived credentials for an environment's identity."""

    def issue_credentials(self, environment_id: int, *, ttl_seconds: int) -> WorkloadCredentials:
        """A fresh token for the environment's workload identity, valid ``ttl_seconds``.

        Issued at the moment of use, never stored. Raises ``NotFound`` when the
        environment has nothing on this runtime.
        """


@runtime_checkable
class WorkloadTokenReviewer(Protocol):
    """A runtime whose workloads prove which environment they run in with a token the cluster signed."""

    def environment_of_token(self, token: str) -> int | None:
        """The id of the environment whose workload presented ``token``, or None when the cluster does
        not vouch for it (expired, another audience, an account that is not the environment's workload
        account, a namespace that is no environment's). Raises a retryable error when the cluster
        cannot be asked."""


@dataclass(frozen=True, slots=True)
class ContainerUsage:
    """What one container uses now: CPU in millicores (a rate, 1000 = one core) and memory in bytes."""

    pod: str
    container: str
    cpu_millicores: float
    memory_bytes: int
    memory_peak_bytes: int | None = None  # the most since the container started, where the runtime knows


@dataclass(frozen=True, slots=True)
class Usage:
    """A runtime's measurement of an environment's containers.

    ``available`` False means the runtime cannot measure (a cluster without the
    metrics API): ``reason`` says why, and ``containers`` is empty, never zeros.
    """

    available: bool
    containers: tuple[ContainerUsage, ...] = ()
    reason: str = ""
    source: str = ""  # "metrics.k8s.io", "cgroup v2", "process tree (psutil)"
    source_note: str = ""  # why the figures come from a weaker source ("no cgroup here: ..."), else ""


@runtime_checkable
class UsageReader(Protocol):
    """A runtime that can say how much CPU and memory an environment's containers use now."""

    def usage(self, environment_id: int) -> Usage:
        """The current usage of each running container; nothing running is an empty, available answer.

        A runtime that cannot measure at all answers ``available=False`` with a
        reason instead of raising; an unreachable cluster raises a retryable error.
        """


@runtime_checkable
class HttpRelay(Protocol):
    """A runtime that carries envhub's HTTP requests to endpoints it cannot reach directly.

    The Kubernetes runtime goes through the API server's service proxy, so a
    cluster without an Ingress controller or a tunnel still serves public URLs
    through envhub's own gateway.
    """

    def http_transport(self) -> httpx.AsyncBaseTransport:
        """A new transport (the caller's to close) for ``http://<host>:<port>/...`` of relayed endpoints.

        It streams request and response bodies and passes methods, headers and
        statuses through, like a direct connection would; its timeouts are the
        request's. A request the environment cannot take yet (no ready
        endpoint behind the Service, no such Service) raises
        :class:`envhub.errors.NotReady`; one that cannot reach the app raises
        ``httpx.ConnectError``. It never forwards the caller's credentials for
        the relay itself (``Authorization``, impersonation headers).
        """

    async def connect_websocket(self, url: str, **options: Any) -> ClientConnection:
        """A WebSocket to ``ws://<host>:<port>/...`` of a relayed endpoint.

        ``options`` are those of ``websockets``' ``connect``; the same headers
        are withheld as for HTTP. Failures raise what ``connect`` raises
        (``OSError``, ``InvalidHandshake``, ``TimeoutError``).
        """


@runtime_checkable
class PortEndpoints(Protocol):
    """A runtime that serves an environment's other forwarded ports (a devcontainer's) beside its app."""

    def port_endpoint(self, environment_id: int, port: int) -> Endpoint | None:
        """Where ``port`` of the environment answers now (no probing).

        None when the environment is not running or does not forward that port.
        """


@runtime_checkable
class KindCatalog(Protocol):
    """A runtime whose cluster says which kinds it serves (API discovery).

    Managed services ask it whether an operator is installed (CloudNativePG's
    ``Cluster``) before they render objects of that operator's kinds, and
    read and make the objects the operator answers through (its ``Backup``s).
    """

    def serves(self, api_version: str, kind: str) -> bool:
        """Whether the cluster serves ``kind`` at ``api_version``.

        A "no" is remembered for a minute at most, so a CRD installed since is
        seen. An unreachable cluster raises a retryable error: never a "no".
        """

    def environment_objects(self, api_version: str, kind: str) -> list[tuple[int, dict[str, Any]]]:
        """Every ``kind`` object in environments' namespaces (an operator's, say), with its environment."""

    def create_object(self, environment_id: int, obj: dict[str, Any]) -> bool:
        """Create ``obj`` in the environment's namespace; False when one of its name is there."""

    def read_object(
        self, environment_id: int, api_version: str, kind: str, name: str
    ) -> dict[str, Any] | None:
        """The object with its status; None when it is not there."""

    def delete_object(self, environment_id: int, api_version: str, kind: str, name: str) -> bool:
        """Delete the object; False when it was not there."""


@runtime_checkable
class PollableExecSession(ExecSession, Protocol):
    """An exec session whose output can be read without a thread.

    ``fileno()`` is a non-blocking descriptor that polls readable whenever
    output or end of stream is waiting, so an event loop can watch it
    (``loop.add_reader``) instead of parking a thread in :meth:`read`.
    """

    def fileno(self) -> int:
        """The descriptor to poll for output."""

    def read_nowait(self, max_bytes: int = 65536) -> bytes | None:
        """Output that is waiting now; ``None`` if there is none yet, ``b""`` at end of stream."""

    def write_nowait(self, data: bytes) -> int:
        """Send what fits without blocking; returns how many bytes were taken (0 when full)."""


class Runtime(Protocol):
    """Where environments run. See the module docstring for the contract."""

    name: str
    # The steps apply/destroy report, as (key, title), shown before they start.
    provision_plan: tuple[tuple[str, str], ...]
    teardown_plan: tuple[tuple[str, str], ...]
    # True when :meth:`watch` pushes every status change, so nobody needs to
    # poll :meth:`status` to notice drift.
    pushes_status: bool

    def apply(self, target: EnvironmentTarget, *, progress: ProgressReporter) -> RuntimeStatus:
        """Converge the environment to ``target``; idempotent.

        Returns the ready status (with its endpoint). Raises ``NotReady`` when the
        environment exists but is not serving yet, and another ``EnvhubError``
        when it cannot become ready without someone changing something. A
        runtime that honours ``target.rollout_deadline`` (the Kubernetes one)
        treats not serving by then as such an error (``RolloutFailed``, naming
        each workload and why in ``details["workloads"]``), not ``NotReady``.
        """

    def prepare(self, target: EnvironmentTarget, *, progress: ProgressReporter) -> None:
        """Make the environment's place and run nothing: on a cluster its namespace with quota,
        limits, network policy and RBAC (steps ``namespace`` and ``isolation``), so that a later
        :meth:`apply` only adds workloads. Idempotent; never removes anything."""

    def status(self, environment_id: int) -> RuntimeStatus:
        """What exists now. Never raises for a missing environment (``absent``)."""

    def endpoint(self, environment_id: int) -> Endpoint | None:
        """Where the environment answers now (no probing); None when not running."""

    def inspect(self, environment_id: int) -> Inspection:
        """Its pods/processes with their containers' states, and recent events."""

    def watch(self, handler: StatusHandler, stop: threading.Event) -> None:
        """Report status changes of every managed environment until ``stop`` is set.

        Blocks; run it in a thread. It resumes by itself after errors, and while
        the runtime cannot be reached it reports ``degraded`` statuses with
        ``details["condition"] = "cluster_unreachable"`` instead of giving up.
        A removal that :meth:`destroy` left to finish is reported when it ends:
        an ``absent`` status with ``details[REMOVED]`` (what went).
        """

    def destroy(self, environment_id: int, *, progress: ProgressReporter) -> bool:
        """Remove everything the environment owns. Quiet when already gone.

        True once nothing is left. False when the removal has started and the
        runtime finishes it on its own (a Kubernetes namespace's finalizers can
        take minutes): nothing waits for it here. Call again later, or on the
        ``removed`` status :meth:`watch` reports; a call after the end returns True.
        """

    def stop(self, environment_id: int) -> None:
        """Stop the environment's processes but keep its data (envhub shutting down)."""

    def sleep(self, environment_id: int, *, progress: ProgressReporter) -> str:
        """Stop everything the environment runs, keep everything it stores; idempotent.

        Locally its app and background processes stop and its workspace stays; on a
        cluster its workloads scale to zero, each remembering the replicas it had so
        :meth:`wake` restores them, and its volumes, Services and Secrets stay. A
        second call (a job killed half-way and run again) finishes what the first
        left and never forgets the replicas the first one recorded. Quiet for an
        environment that does not exist. Reports the step ``sleep`` and returns
        what it did.
        """

    def wake(self, target: EnvironmentTarget, *, progress: ProgressReporter) -> RuntimeStatus:
        """Start again what :meth:`sleep` stopped, from what was kept; idempotent.

        The workspace is used as it is: nothing is fetched or checked out again,
        and ``target`` must be the generation that went to sleep (a change of
        spec goes through :meth:`apply`). Reports ``start`` and ``health``, and
        runs a dev container's lifecycle commands as a start does (each its own
        step: ``postStartCommand`` and ``postAttachCommand`` again, never
        ``postCreateCommand`` again for the same commit). Returns like
        :meth:`apply`: ready with its endpoint, ``NotReady`` while it is not
        serving yet. Waking something awake changes nothing.
        """

    def managed_environments(self) -> set[int]:
        """Ids of every environment that has anything on this runtime (for GC)."""

    def logs(
        self,
        environment_id: int,
        *,
        follow: bool = False,
        tail: int | None = 200,
        container: str | None = None,
        since_seconds: int | None = None,
        until: float | None = None,
        previous: bool = False,
        timestamps: bool = False,
    ) -> Iterator[str]:
        """Output lines of the environment's processes; with ``follow``, keeps going.

        ``container`` picks a service where the environment has several (default:
        the first); ``since_seconds`` limits to recent output where supported.
        ``until`` (a ``time.monotonic()`` moment) ends a follow then, even while
        nothing is printed, so a reader that stops is never left waiting.
        ``previous`` reads what the container's previous instance printed (the one
        before its last restart or crash); none yields nothing.
        ``timestamps`` starts each line with the time it was printed (RFC 3339,
        then one space); a runtime that records no such times raises
        :class:`envhub.errors.Unsupported`, never lines without them.
        """

    def exec(
        self,
        environment_id: int,
        command: list[str] | None = None,
        *,
        tty: bool = True,
        container: str | None = None,
    ) -> ExecSession:
        """Start ``command`` (default: a login shell) inside the environment."""
