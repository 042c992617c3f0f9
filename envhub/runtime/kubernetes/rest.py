"""Requests by path with plain JSON answers: apply, delete, discovery, and watch streams.

The generated API classes know only built-in kinds and build models the adapter
never uses. envhub applies any kind (user manifests too) and works with dicts,
so these calls go to the ApiClient's transport directly: still through
``client.py``'s request log, and through :func:`errors.kube_call` for error
translation and retries.

A watch is read on a thread of its own (:class:`EventStream`) so the caller can
keep heartbeating while it waits: one watch request serves a whole wait, where
reopening a short watch to get control back would repeat the request.
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from envhub.errors import RuntimeFailure
from envhub.runtime.kubernetes.errors import READ_TIMEOUT, kube_call, translate

Query = Sequence[tuple[str, str]]
APPLY_PATCH = "application/apply-patch+yaml"  # JSON is YAML: the body is sent as JSON


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: dict[str, Any]


def _send(
    api: ApiClient,
    method: str,
    path: str,
    *,
    query: Query = (),
    body: Any = None,
    content_type: str = "application/json",
    timeout: Any = READ_TIMEOUT,
    stream: bool = False,
) -> Any:
    """One request; raises ``ApiException`` for any answer but 2xx (as the generated API does)."""
    method, url, headers, body, _post = api.param_serialize(
        method,
        path,
        query_params=list(query),
        header_params={"Accept": "application/json", "Content-Type": content_type},
        body=body,
        auth_settings=["BearerToken"],
    )
    response = api.call_api(method, url, header_params=headers, body=body, _request_timeout=timeout)
    if stream and 200 <= response.status <= 299:
        return response.response  # the caller reads it, and releases it
    try:
        response.read()
    finally:
        response.response.release_conn()
    if not 200 <= response.status <= 299:
        raise ApiException(http_resp=response)
    return response


def request(
    api: ApiClient,
    action: str,
    method: str,
    path: str,
    *,
    query: Query = (),
    body: Any = None,
    content_type: str = "application/json",
) -> Answer:
    """``method path`` answered as JSON; errors translated and transient ones retried."""
    response = kube_call(action, _send, api, method, path, query=query, body=body, content_type=content_type)
    try:
        data = json.loads(response.data) if response.data else {}
    except (TypeError, ValueError) as exc:
        raise RuntimeFailure(f"{action}: the cluster sent a body that is not JSON") from exc
    if not isinstance(data, dict):
        raise RuntimeFailure(f"{action}: unexpected answer from the cluster")
    return Answer(int(response.status), data)


class WatchExpired(Exception):
    """The watch's resourceVersion is too old (410 Gone): start again from the current state."""


class StreamEnded(Exception):
    """The server ended the watch (its timeout, or the connection closed)."""


_END = object()


class EventStream:
    """One open watch request; :meth:`next` waits for its next event without blocking forever.

    Events are ``{"type": ..., "object": {...}}`` dicts. An ``ERROR`` event
    raises: :class:`WatchExpired` for 410, a translated envhub error otherwise.
    ``wake`` is set whenever something arrives, so one waiter can serve
    several streams (``waiting.Watchers``).
    """

    def __init__(
        self,
        api: ApiClient,
        action: str,
        path: str,
        *,
        query: Query,
        seconds: int,
        wake: threading.Event | None = None,
    ) -> None:
        self.action = action
        self._wake = wake
        query = [*query, ("watch", "true"), ("timeoutSeconds", str(max(1, seconds)))]
        # The read timeout only guards against a server gone silent; the watch ends itself.
        self._response = kube_call(
            action, _send, api, "GET", path, query=query, timeout=(5.0, seconds + 30.0), stream=True
        )
        self._events: queue.Queue[Any] = queue.Queue()
        self._closed = threading.Event()
        self._reader = threading.Thread(target=self._read, name="envhub-watch-reader", daemon=True)
        self._reader.start()

    def _lines(self) -> Iterator[bytes]:
        buffer = b""
        for chunk in self._response.stream(amt=None, decode_content=True):
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            yield from (line for line in lines if line.strip())
        if buffer.strip():
            yield buffer

    def _put(self, item: Any) -> None:
        self._events.put(item)
        if self._wake is not None:
            self._wake.set()

    def _read(self) -> None:
        try:
            for line in self._lines():
                self._put(json.loads(line))
        except Exception as exc:  # handed to the caller, who decides
            if not self._closed.is_set():
                self._put(exc)
        finally:
            self._put(_END)

    def next(self, timeout: float) -> dict[str, Any] | None:
        """The next event, or None when none came within ``timeout`` seconds."""
        try:
            item = self._events.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None
        if item is _END:
            self._events.put(_END)  # stays ended for later calls
            raise StreamEnded(self.action)
        if isinstance(item, Exception):
            raise item
        event: dict[str, Any] = item
        if event.get("type") == "ERROR":
            status = event.get("object") or {}
            if status.get("code") == 410:
                raise WatchExpired(str(status.get("message") or "too old resource version"))
            failure = ApiException(
                status=int(status.get("code") or 0), reason=str(status.get("message") or "")
            )
            raise translate(failure, action=self.action) from failure
        return event

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(Exception):
            self._response.shutdown()  # wakes the reader thread blocked on the socket
        with contextlib.suppress(Exception):
            self._response.close()
        with contextlib.suppress(Exception):
            self._response.release_conn()
        self._reader.join(timeout=2.0)
