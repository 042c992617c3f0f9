"""HTTP to envhub: the base URL, the bearer token, and errors turned into :class:`CliError`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from envhub.cli import store
from envhub.cli.errors import UNAUTHENTICATED, UNAVAILABLE, CliError

USER_AGENT = "envhub-cli/0.1"
TIMEOUT = httpx.Timeout(30.0, connect=10.0)


def error_from(response: httpx.Response) -> CliError:
    """The server's ``{code, message, hint}`` (or an OAuth ``error``) as a CliError."""
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    code = str(body.get("code") or body.get("error") or f"http_{response.status_code}")
    message = str(body.get("message") or body.get("error_description") or response.reason_phrase)
    return CliError(code, message, hint=str(body.get("hint") or ""), http_status=response.status_code)


def unreachable(server: str, exc: Exception) -> CliError:
    return CliError(
        "server_unreachable",
        f"cannot reach envhub at {server}: {exc}",
        hint="Check the address (`envhub login --server URL` or ENVHUB_SERVER) and that envhub is running.",
        exit_code=UNAVAILABLE,
    )


def resolve_server(explicit: str | None) -> str:
    server = store.normalize_server(explicit) if explicit else store.default_server()
    if not server:
        raise CliError(
            "not_signed_in",
            "no envhub server is configured",
            hint="Sign in with `envhub login --server URL`, or set ENVHUB_SERVER and ENVHUB_TOKEN.",
            exit_code=UNAUTHENTICATED,
        )
    return server


@dataclass
class Connection:
    server: str
    token: str | None = None
    login: store.Login | None = None

    @classmethod
    def signed_in(cls, explicit_server: str | None) -> Connection:
        """The server and its token; ``not_signed_in`` when there is no token for it."""
        server = resolve_server(explicit_server)
        login = store.load(server)
        if login is None:
            raise CliError(
                "not_signed_in",
                f"you are not signed in to {server}",
                hint=f"Run `envhub login --server {server}` (or set ENVHUB_TOKEN).",
                exit_code=UNAUTHENTICATED,
            )
        return cls(server, login.token, login)

    def headers(self) -> dict[str, str]:
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def http(self, timeout: httpx.Timeout = TIMEOUT) -> httpx.Client:
        return httpx.Client(base_url=self.server, headers=self.headers(), timeout=timeout)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """One request; the JSON answer, or a CliError with the server's code and next step."""
        try:
            with self.http() as http:
                response = http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise unreachable(self.server, exc) from exc
        if response.status_code >= 400:
            raise error_from(response)
        return response.json() if response.content else None

    @contextmanager
    def stream(
        self, method: str, path: str, timeout: httpx.Timeout, **kwargs: Any
    ) -> Iterator[httpx.Response]:
        try:
            with self.http(timeout) as http, http.stream(method, path, **kwargs) as response:
                if response.status_code >= 400:
                    response.read()
                    raise error_from(response)
                yield response
        except httpx.HTTPError as exc:
            raise unreachable(self.server, exc) from exc
