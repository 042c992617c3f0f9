"""A loopback Cloudflare API v4 for tests: a real HTTP server the real ``cloudflare`` SDK talks to.

envhub's client is pointed at :attr:`CloudflareStub.api_url` through the SDK's
``base_url`` (and may be given its own ``http_client``). The stub answers the
paths envhub uses, as Cloudflare documents them
(https://developers.cloudflare.com/api/), in Cloudflare's envelope
``{"success": ..., "errors": [...], "messages": [...], "result": ...}`` with
``result_info`` on lists:

* ``/accounts/{account}/cfd_tunnel`` (list with ``name``/``is_deleted``, create),
  ``/cfd_tunnel/{id}`` (get), ``/cfd_tunnel/{id}/token``,
  ``/cfd_tunnel/{id}/configurations`` (get, put: the whole document, its
  ``version`` counting up, refused unless the last rule is a catch-all);
* ``/zones`` (list by ``name``), ``/zones/{zone}/dns_records`` (list with
  ``type``, ``name.exact``, ``comment.startswith``, ``content.exact``, pages;
  create, refusing a second CNAME of a name as Cloudflare does; delete).

Credentials are checked as Cloudflare does (a bearer token it issued; anything
else is 403 "Authentication error", code 10000). :meth:`CloudflareStub.fail`
makes the next matching calls answer 401, 429 (with ``Retry-After``) or 5xx.
:attr:`CloudflareStub.delay` holds configuration reads, widening the window in
which two unserialised read-modify-writes would lose one another's rule. Every
call is recorded (method, path, status) so tests count them.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import secrets
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.support.servers import serve_asgi

API_PREFIX = "/client/v4"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Call:
    method: str
    path: str  # without the API prefix
    status: int = 0


@dataclass
class Failure:
    status: int
    times: int
    method: str | None
    path: str | None  # a prefix of the path (without the API prefix)
    retry_after: int | None


@dataclass
class Tunnel:
    id: str
    name: str
    account_id: str
    config_src: str = "cloudflare"
    deleted_at: str | None = None
    created_at: str = field(default_factory=_now)
    config: dict[str, Any] = field(default_factory=dict)
    version: int = 0
    token: str = field(default_factory=lambda: secrets.token_urlsafe(60))

    def json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "account_tag": self.account_id,
            "name": self.name,
            "created_at": self.created_at,
            "deleted_at": self.deleted_at,
            "connections": [],
            "conns_active_at": None,
            "conns_inactive_at": self.created_at,
            "tun_type": "cfd_tunnel",
            "metadata": {},
            "status": "inactive",
            "remote_config": self.config_src == "cloudflare",
            "config_src": self.config_src,
        }


class CloudflareStub:
    def __init__(self) -> None:
        self.port = 0
        self.token = "cf-" + secrets.token_urlsafe(30)
        self.account_id = uuid.uuid4().hex
        self.zone_name = "example.com"
        self.zone_id = uuid.uuid4().hex
        self.tunnels: dict[str, Tunnel] = {}
        self.records: dict[str, dict[str, Any]] = {}
        self.calls: list[Call] = []
        self.failures: list[Failure] = []
        self.delay = 0.0  # seconds each configuration read is held
        self._lock = threading.RLock()

    # -- addresses and data ---------------------------------------------------------------------

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return self.origin + API_PREFIX

    def reset(self) -> None:
        with self._lock:
            self.tunnels.clear()
            self.records.clear()
            self.calls.clear()
            self.failures.clear()
            self.delay = 0.0

    def add_tunnel(self, name: str = "envhub", *, config_src: str = "cloudflare") -> Tunnel:
        tunnel = Tunnel(str(uuid.uuid4()), name, self.account_id, config_src=config_src)
        self.tunnels[tunnel.id] = tunnel
        return tunnel

    def add_record(
        self, name: str, content: str, *, type: str = "CNAME", comment: str = ""
    ) -> dict[str, Any]:
        """A record someone else made (through the dashboard, say)."""
        with self._lock:
            record = self._new_record({"name": name, "type": type, "content": content, "comment": comment})
            self.records[record["id"]] = record
            return record

    def rules(self, tunnel_id: str) -> list[dict[str, Any]]:
        return list(self.tunnels[tunnel_id].config.get("ingress", []))

    def fail(
        self,
        status: int,
        *,
        times: int = 1,
        method: str | None = None,
        path: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        """Answer the next ``times`` matching calls with ``status`` (401, 429, 5xx...)."""
        self.failures.append(Failure(status, times, method, path, retry_after))

    def count(self, method: str | None = None, path: str | None = None) -> int:
        return sum(
            1
            for c in self.calls
            if (method is None or c.method == method) and (path is None or c.path.startswith(path))
        )

    # -- the HTTP side ----------------------------------------------------------------------------

    def app(self) -> Starlette:
        methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
        return Starlette(routes=[Route(API_PREFIX + "/{path:path}", self._dispatch, methods=methods)])

    async def _dispatch(self, request: Request) -> JSONResponse:
        path = "/" + request.path_params["path"].rstrip("/")
        call = Call(request.method, path)
        self.calls.append(call)
        body = await request.json() if request.method in ("POST", "PUT", "PATCH") else None
        response = self._answer(request, path, body)
        call.status = response.status_code
        if self.delay and request.method == "GET" and path.endswith("/configurations"):
            await asyncio.sleep(self.delay)  # the answer holds the document as it was when read
        return response

    def _answer(self, request: Request, path: str, body: Any) -> JSONResponse:
        failure = self._failure(request.method, path)
        if failure is not None:
            headers = {"Retry-After": str(failure.retry_after)} if failure.retry_after is not None else {}
            messages = {
                401: (10000, "Authentication error"),
                429: (971, "Please wait and consider throttling your request speed"),
            }
            code, message = messages.get(failure.status, (10002, "An unknown error has occurred"))
            return _error(failure.status, code, message, headers=headers)
        if request.headers.get("authorization", "") != f"Bearer {self.token}":
            return _error(403, 10000, "Authentication error")
        parts = path.strip("/").split("/")
        query = request.query_params
        with self._lock:
            if parts[:1] == ["accounts"] and len(parts) >= 3 and parts[2] == "cfd_tunnel":
                if parts[1] != self.account_id:
                    return _error(403, 9109, "Unauthorized to access requested resource")
                return self._tunnels(request.method, parts[3:], query, body)
            if parts == ["zones"] and request.method == "GET":
                zones = [
                    {"id": self.zone_id, "name": self.zone_name, "status": "active",
                     "account": {"id": self.account_id, "name": "Acme"}}
                ]  # fmt: skip
                chosen = [z for z in zones if query.get("name") in (None, z["name"])]
                if query.get("account.id") not in (None, self.account_id):
                    chosen = []
                return _page(chosen, query)
            if parts[:1] == ["zones"] and len(parts) >= 3 and parts[2] == "dns_records":
                if parts[1] != self.zone_id:
                    return _error(
                        404, 7003, "Could not route to /zones/..., perhaps your object identifier is invalid?"
                    )
                return self._dns(request.method, parts[3:], query, body)
        return _error(404, 7000, "No route for that URI")

    def _failure(self, method: str, path: str) -> Failure | None:
        with self._lock:
            for failure in self.failures:
                if (
                    failure.times > 0
                    and failure.method in (None, method)
                    and path.startswith(failure.path or "")
                ):
                    failure.times -= 1
                    return failure
        return None

    def _tunnels(self, method: str, rest: list[str], query: Any, body: Any) -> JSONResponse:
        if not rest:
            if method == "GET":
                found = [
                    t.json()
                    for t in self.tunnels.values()
                    if query.get("name") in (None, t.name)
                    and (query.get("is_deleted") != "false" or t.deleted_at is None)
                    and (query.get("is_deleted") != "true" or t.deleted_at is not None)
                ]
                return _page(found, query)
            if method == "POST":
                if not body.get("name"):
                    return _error(400, 1003, "Tunnel name is required")
                if any(t.name == body["name"] and t.deleted_at is None for t in self.tunnels.values()):
                    return _error(409, 1013, "You already have a tunnel with this name")
                made = self.add_tunnel(body["name"], config_src=body.get("config_src", "local"))
                return _ok(made.json())
        existing = self.tunnels.get(rest[0])
        if existing is None:
            return _error(404, 1002, "Tunnel not found")
        tunnel = existing
        if rest[1:] == [] and method == "GET":
            return _ok(tunnel.json())
        if rest[1:] == ["token"] and method == "GET":
            return _ok(tunnel.token)
        if rest[1:] == ["configurations"]:
            if tunnel.config_src != "cloudflare":
                return _error(
                    400,
                    1056,
                    "This tunnel is locally configured: its configuration is not managed by Cloudflare",
                )
            if method == "GET":
                return _ok(self._configuration(tunnel))
            if method == "PUT":
                config = (body or {}).get("config") or {}
                ingress = config.get("ingress") or []
                problem = _bad_ingress(ingress)
                if problem:
                    return _error(400, 1055, f"Validation failed: {problem}")
                tunnel.config = config
                tunnel.version += 1
                return _ok(self._configuration(tunnel))
        return _error(405, 10405, "Method not allowed for this endpoint")

    def _configuration(self, tunnel: Tunnel) -> dict[str, Any]:
        return {
            "account_id": self.account_id,
            "tunnel_id": tunnel.id,
            "version": tunnel.version,
            "config": copy.deepcopy(tunnel.config) or None,
            "source": "cloudflare",
            "created_at": _now(),
        }

    def _new_record(self, values: dict[str, Any]) -> dict[str, Any]:
        now = _now()
        return {
            "id": uuid.uuid4().hex,
            "name": values["name"],
            "type": values["type"],
            "content": values.get("content", ""),
            "proxiable": True,
            "proxied": bool(values.get("proxied", False)),
            "ttl": values.get("ttl", 1),
            "comment": values.get("comment") or None,
            "tags": values.get("tags") or [],
            "settings": {},
            "meta": {},
            "created_on": now,
            "modified_on": now,
        }

    def _dns(self, method: str, rest: list[str], query: Any, body: Any) -> JSONResponse:
        if not rest and method == "GET":

            def matches(record: dict[str, Any]) -> bool:
                return (
                    query.get("type") in (None, record["type"])
                    and query.get("name.exact") in (None, record["name"])
                    and query.get("content.exact") in (None, record["content"])
                    and (record["comment"] or "").startswith(query.get("comment.startswith", ""))
                    and ("comment.startswith" not in query or record["comment"] is not None)
                )

            return _page([r for r in self.records.values() if matches(r)], query)
        if not rest and method == "POST":
            name = str(body.get("name", "")).lower().rstrip(".")
            if not name.endswith("." + self.zone_name) and name != self.zone_name:
                return _error(400, 9005, "DNS name is invalid")
            if body.get("comment") and len(body["comment"]) > 100:
                return _error(
                    400,
                    9100,
                    "DNS record has 1 comment validation error: "
                    "comment exceeds the maximum length of 100 characters",
                )
            if any(r["name"] == name for r in self.records.values()):
                return _error(400, 81053, "An A, AAAA, or CNAME record with that host already exists.")
            record = self._new_record({**body, "name": name})
            self.records[record["id"]] = record
            return _ok(record)
        if len(rest) == 1 and method == "DELETE":
            if self.records.pop(rest[0], None) is None:
                return _error(404, 81044, "Record does not exist.")
            return _ok({"id": rest[0]})
        return _error(405, 10405, "Method not allowed for this endpoint")


def _bad_ingress(ingress: list[dict[str, Any]]) -> str:
    if not ingress:
        return ""
    last = ingress[-1]
    if last.get("hostname") or last.get("path"):
        return "The last ingress rule must match all URLs (i.e. it should not have a hostname or path filter)"
    for rule in ingress:
        if not rule.get("service"):
            return "every ingress rule needs a service"
    return ""


def _envelope(
    result: Any, *, success: bool = True, errors: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {"success": success, "errors": errors or [], "messages": [], "result": result}


def _ok(result: Any) -> JSONResponse:
    return JSONResponse(_envelope(result))


def _error(status: int, code: int, message: str, *, headers: dict[str, str] | None = None) -> JSONResponse:
    body = _envelope(None, success=False, errors=[{"code": code, "message": message}])
    return JSONResponse(body, status_code=status, headers=headers)


def _page(items: list[dict[str, Any]], query: Any) -> JSONResponse:
    page = int(query.get("page", 1))
    per_page = int(float(query.get("per_page", 20)))
    chunk = items[(page - 1) * per_page : page * per_page]
    body = _envelope(chunk)
    body["result_info"] = {
        "page": page,
        "per_page": per_page,
        "count": len(chunk),
        "total_count": len(items),
        "total_pages": max(1, -(-len(items) // per_page)),
    }
    return JSONResponse(body)


@contextlib.contextmanager
def cloudflare_stub() -> Iterator[CloudflareStub]:
    """A stub serving on a free loopback port for the block."""
    stub = CloudflareStub()
    with serve_asgi(stub.app()) as port:
        stub.port = port
        yield stub
