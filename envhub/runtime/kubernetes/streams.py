"""Logs and exec through the API server (``pods/log``, ``pods/exec``).

Exec speaks the WebSocket channel protocol; the client offers
``v5.channel.k8s.io`` and ``v4.channel.k8s.io`` and the server picks (a 1.20
kubelet picks v4). If the handshake is refused outright while v5 is offered,
the session tries again offering only the older protocols. Channel 4 carries
terminal resizes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from kubernetes.client import ApiClient, CoreV1Api
from kubernetes.client.exceptions import ApiException
from kubernetes.stream import stream
from kubernetes.stream.ws_client import (
    ERROR_CHANNEL,
    RESIZE_CHANNEL,
    STDERR_CHANNEL,
    STDOUT_CHANNEL,
    WSClient,
)
from urllib3.exceptions import ReadTimeoutError
from websocket import WebSocketBadStatusException

from envhub.errors import ClusterRejected, EnvhubError, NotFound
from envhub.runtime.kubernetes.errors import kube_call, translate

V5_PROTOCOL = "v5.channel.k8s.io"
V4_PROTOCOL = "v4.channel.k8s.io"
EXEC_PROTOCOLS = (V5_PROTOCOL, V4_PROTOCOL)


def follow_log(
    core: CoreV1Api,
    *,
    namespace: str,
    pod: str,
    container: str | None,
    follow: bool,
    tail: int | None,
    since_seconds: int | None,
    until: float | None = None,
    previous: bool = False,
    timestamps: bool = False,
) -> Iterator[str]:
    kwargs: dict[str, Any] = {"follow": follow, "_preload_content": False}
    if previous:
        kwargs["previous"] = True
    if timestamps:
        kwargs["timestamps"] = True
    if until is not None:
        # No read waits past the end: the stream answers within the time left, or times out.
        kwargs["_request_timeout"] = (10, max(1.0, until - time.monotonic()))
    if container:
        kwargs["container"] = container
    if tail is not None:
        kwargs["tail_lines"] = tail
    if since_seconds is not None:
        kwargs["since_seconds"] = since_seconds
    try:
        response: Any = kube_call(
            f"reading logs of {pod}", core.read_namespaced_pod_log, pod, namespace, **kwargs
        )
    except (ClusterRejected, NotFound):
        if previous:  # the kubelet keeps no previous instance (it never restarted)
            return
        raise
    buffer = b""
    try:
        for chunk in response.stream(4096, decode_content=True):
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                yield line.decode("utf-8", "replace")
            if until is not None and time.monotonic() >= until:
                response.close()  # unread data must not go back to the pool with the connection
                return
        if buffer:
            yield buffer.decode("utf-8", "replace")
    except ReadTimeoutError:
        if until is None:
            raise
        response.close()  # nothing printed before the end: the follow is over
    finally:
        response.release_conn()


class KubernetesExecSession:
    """An exec stream into a container; implements ``runtime.base.ExecSession``."""

    def __init__(
        self,
        core: CoreV1Api,
        *,
        namespace: str,
        pod: str,
        container: str | None,
        command: list[str],
        tty: bool,
        protocols: tuple[str, ...] = EXEC_PROTOCOLS,
    ) -> None:
        # stream() swaps call_api on the ApiClient it is given while it connects:
        # on the runtime's shared client, another thread's request at that moment
        # would be sent as a WebSocket handshake. Each session gets its own client.
        self._api = ApiClient(core.api_client.configuration)
        exec_api = CoreV1Api(self._api)
        action = f"opening a shell in {pod}"
        # All protocols in one offer first; if that is refused, the older ones alone.
        offers = [protocols] + [protocols[i:] for i in range(1, len(protocols))]
        for attempt, offer in enumerate(offers, start=1):
            try:
                self._ws: WSClient = stream(
                    exec_api.connect_get_namespaced_pod_exec, pod, namespace,
                    command=command, container=container or "",
                    stdin=True, stdout=True, stderr=True, tty=tty,
                    _preload_content=False, binary=True,
                    _headers={"sec-websocket-protocol": ",".join(offer)},
                )  # fmt: skip
                break
            except Exception as exc:
                error = _handshake_error(exc, action=action)
                if attempt < len(offers) and error.code == "cluster_rejected":
                    continue  # the server (or a proxy) does not take our newest protocol
                self._api.close()
                raise error from exc
        self._pending = b""
        self._exit: int | None = None

    @property
    def protocol(self) -> str:
        return str(getattr(self._ws, "subprotocol", "") or "")

    def read(self, max_bytes: int = 65536, timeout: float | None = None) -> bytes:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._pending:
            if not self._ws.is_open():
                self._collect_status()
                return b""
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            self._ws.update(timeout=remaining if remaining is not None else 1.0)
            for channel in (STDOUT_CHANNEL, STDERR_CHANNEL):
                data = self._ws.read_channel(channel)
                if data:
                    self._pending += data if isinstance(data, bytes) else data.encode()
            self._collect_status()
            if not self._pending and deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError("no output within the timeout")
        chunk, self._pending = self._pending[:max_bytes], self._pending[max_bytes:]
        return chunk

    def _collect_status(self) -> None:
        raw = self._ws.read_channel(ERROR_CHANNEL)
        if not raw:
            return
        text = raw.decode() if isinstance(raw, bytes) else raw
        try:
            status = json.loads(text)
        except ValueError:
            return
        if status.get("status") == "Success":
            self._exit = 0
            return
        for cause in (status.get("details") or {}).get("causes") or []:
            if cause.get("reason") == "ExitCode":
                self._exit = int(cause.get("message", "1"))
                return
        self._exit = 1

    def write(self, data: bytes) -> None:
        self._ws.write_stdin(data)

    def resize(self, columns: int, rows: int) -> None:
        self._ws.write_channel(RESIZE_CHANNEL, json.dumps({"Width": columns, "Height": rows}))

    def wait(self, timeout: float | None = None) -> int | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._exit is None and self._ws.is_open():
            self._ws.update(timeout=0.5)
            for channel in (STDOUT_CHANNEL, STDERR_CHANNEL):
                data = self._ws.read_channel(channel)
                if data:
                    self._pending += data if isinstance(data, bytes) else data.encode()
            self._collect_status()
            if deadline is not None and time.monotonic() >= deadline:
                return None
        self._collect_status()
        return self._exit

    def close(self) -> None:
        self._ws.close()
        self._api.close()


def _handshake_error(exc: BaseException, *, action: str) -> EnvhubError:
    """The envhub error for a failed exec handshake.

    The client reports every handshake failure as ``ApiException(status=0)``,
    which would read as "cluster unreachable"; the HTTP status the server
    answered is on the WebSocket exception underneath.
    """
    refused = exc.__context__ if isinstance(exc, ApiException) else exc
    if isinstance(refused, WebSocketBadStatusException):
        body = refused.resp_body.decode("utf-8", "replace") if refused.resp_body else ""
        return translate(ApiException(status=refused.status_code, reason=body.strip()), action=action)
    return translate(exc, action=action)
