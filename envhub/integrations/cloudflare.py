"""Cloudflare through the official ``cloudflare`` SDK: the one module that imports it.

A :class:`CloudflareClient` is built from plain values (the API token, the
account, the zone's name, the tunnel's id or name) and offers what the
``cloudflare`` URL provider (``urls/cloudflare.py``) needs, in envhub's own
types (``domain/public.py``):

* the cluster's tunnel: the configured id (checked once, adopted), else the
  account's live remotely-managed tunnel of the configured name, else a new one
  (``config_src: cloudflare``), and the token its connector runs with;
* the tunnel's configuration, read and replaced whole (Cloudflare keeps it as
  one document: the caller serialises its read-modify-write);
* the zone's DNS records: listed with the API's filters, created, deleted.

Errors become envhub's (``errors.py``), raised ``from`` the SDK's:
``cloudflare_unauthorized`` (401/403), ``cloudflare_rate_limited`` (429,
retryable, ``retry_after`` when Cloudflare said), ``cloudflare_unavailable``
(5xx, timeouts, no connection; retryable), ``cloudflare_rejected`` (anything
else Cloudflare refused, with its own error messages). The SDK itself retries
429/5xx ``max_retries`` times (honouring ``Retry-After``) before that.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import cloudflare
import httpx
from cloudflare import Cloudflare

from envhub.domain.public import DnsRecord
from envhub.errors import (
    CloudflareError,
    CloudflareRateLimited,
    CloudflareRejected,
    CloudflareUnauthorized,
    CloudflareUnavailable,
)

T = TypeVar("T")
# Cloudflare's "automatic" TTL; proxied records ignore TTLs anyway.
AUTOMATIC_TTL = 1
_PER_PAGE = 100


@dataclass(frozen=True, slots=True)
class CloudflareAccess:
    """How to reach Cloudflare and which tunnel and zone are envhub's (plain values, never logged)."""

    api_token: str = field(repr=False)
    account_id: str
    zone: str  # the zone's name, e.g. example.com
    tunnel_id: str = ""  # empty: find the tunnel by name, or create it
    tunnel_name: str = "envhub"
    base_url: str | None = None  # Cloudflare's API root; tests point it at a loopback stub
    max_retries: int = 2
    timeout: float = 20.0


class CloudflareClient:
    """Cloudflare as the ``cloudflare`` URL provider uses it; thread-safe, one per process."""

    def __init__(self, access: CloudflareAccess, *, http_client: httpx.Client | None = None) -> None:
        self.access = access
        self._sdk = Cloudflare(
            api_token=access.api_token,
            base_url=access.base_url,
            http_client=http_client,
            max_retries=access.max_retries,
            timeout=access.timeout,
        )
        self._lock = threading.Lock()
        self._tunnel_id = ""
        self._zone_id = ""

    # -- the tunnel -----------------------------------------------------------------------------

    def tunnel_id(self) -> str:
        """The cluster's tunnel: adopted by id, found by name, or created (once per process)."""
        with self._lock:
            if not self._tunnel_id:
                self._tunnel_id = self._find_or_create_tunnel()
            return self._tunnel_id

    def _find_or_create_tunnel(self) -> str:
        tunnels = self._sdk.zero_trust.tunnels.cloudflared
        account = self.access.account_id
        if self.access.tunnel_id:
            found = _call(lambda: tunnels.get(self.access.tunnel_id, account_id=account), "read the tunnel")
            if found.deleted_at is not None:
                raise CloudflareRejected(
                    f"tunnel {self.access.tunnel_id} was deleted",
                    hint="Unset ENVHUB_CLOUDFLARE_TUNNEL_ID to let envhub create one, or name a live tunnel.",
                )
            return self.access.tunnel_id
        existing = _call(
            lambda: _every(
                tunnels.list(
                    account_id=account, name=self.access.tunnel_name, is_deleted=False, per_page=_PER_PAGE
                )
            ),
            "list the account's tunnels",
        )
        for tunnel in existing:
            if tunnel.name == self.access.tunnel_name and tunnel.deleted_at is None and tunnel.id:
                if tunnel.config_src not in (None, "cloudflare"):
                    raise CloudflareRejected(
                        f"tunnel {tunnel.name!r} ({tunnel.id}) is locally managed; envhub configures "
                        "remotely-managed tunnels only",
                        hint="Name another tunnel in ENVHUB_CLOUDFLARE_TUNNEL_NAME, or migrate this one "
                        "to remote management in Cloudflare's dashboard.",
                    )
                return str(tunnel.id)
        created = _call(
            lambda: tunnels.create(account_id=account, name=self.access.tunnel_name, config_src="cloudflare"),
            "create the tunnel",
        )
        if not created.id:
            raise CloudflareUnavailable("Cloudflare created a tunnel but did not say its id")
        return created.id

    def tunnel_token(self) -> str:
        """The token ``cloudflared tunnel run --token`` needs (a secret: never log it)."""
        tunnel = self.tunnel_id()
        return _call(
            lambda: self._sdk.zero_trust.tunnels.cloudflared.token.get(
                tunnel, account_id=self.access.account_id
            ),
            "read the tunnel's token",
        )

    def tunnel_config(self) -> dict[str, Any]:
        """The tunnel's whole configuration (``ingress``, ``originRequest``...), API field names."""
        tunnel = self.tunnel_id()
        got = _call(
            lambda: self._sdk.zero_trust.tunnels.cloudflared.configurations.get(
                tunnel, account_id=self.access.account_id
            ),
            "read the tunnel's configuration",
        )
        if got is None or got.config is None:
            return {}
        return cast(dict[str, Any], got.config.to_dict(mode="json"))

    def put_tunnel_config(self, config: dict[str, Any]) -> None:
        """Replace the tunnel's configuration with ``config`` (one document: last writer wins)."""
        tunnel = self.tunnel_id()
        _call(
            lambda: self._sdk.zero_trust.tunnels.cloudflared.configurations.update(
                tunnel, account_id=self.access.account_id, config=cast(Any, config)
            ),
            "update the tunnel's configuration",
        )

    # -- DNS --------------------------------------------------------------------------------------

    def zone_id(self) -> str:
        with self._lock:
            if not self._zone_id:
                zones = _call(
                    lambda: list(
                        self._sdk.zones.list(name=self.access.zone, account={"id": self.access.account_id})
                    ),
                    "find the zone",
                )
                matching = [zone.id for zone in zones if zone.name == self.access.zone]
                if not matching:
                    raise CloudflareRejected(
                        f"the account has no zone {self.access.zone!r}",
                        hint="Set ENVHUB_CLOUDFLARE_ZONE to a zone of the account "
                        "(ENVHUB_CLOUDFLARE_ACCOUNT_ID) and give the token Zone > Zone > Read on it.",
                    )
                self._zone_id = matching[0]
            return self._zone_id

    def dns_records(
        self, *, name: str = "", comment_prefix: str = "", content: str = "", type: str = "CNAME"
    ) -> list[DnsRecord]:
        """The zone's records of ``type`` matching every given filter (all pages)."""
        zone = self.zone_id()
        filters: dict[str, Any] = {"type": type, "match": "all", "per_page": _PER_PAGE}
        if name:
            filters["name"] = {"exact": name}
        if comment_prefix:
            filters["comment"] = {"startswith": comment_prefix}
        if content:
            filters["content"] = {"exact": content}
        records = _call(
            lambda: _every(self._sdk.dns.records.list(zone_id=zone, **filters)), "list DNS records"
        )
        return [_record(record) for record in records]

    def create_cname(self, *, name: str, target: str, comment: str, proxied: bool = True) -> DnsRecord:
        zone = self.zone_id()
        created = _call(
            lambda: self._sdk.dns.records.create(
                zone_id=zone,
                name=name,
                type="CNAME",
                content=target,
                ttl=AUTOMATIC_TTL,
                proxied=proxied,
                comment=comment,
            ),
            f"create the DNS record {name}",
        )
        if created is None:
            raise CloudflareUnavailable(f"Cloudflare created the DNS record {name} but did not return it")
        return _record(created)

    def delete_record(self, record_id: str) -> None:
        """Delete one record; one already gone is fine."""
        zone = self.zone_id()

        def delete() -> None:
            try:
                self._sdk.dns.records.delete(record_id, zone_id=zone)
            except cloudflare.NotFoundError:
                return

        _call(delete, "delete a DNS record")

    def close(self) -> None:
        self._sdk.close()


def _every(page: Any) -> list[Any]:
    """Every item of a paged list: the next page is asked for only after a full one (the SDK's
    own iteration asks once more, for the empty page after the last)."""
    items = list(page.result or [])
    while len(page.result or []) >= _PER_PAGE:
        page = page.get_next_page()
        items.extend(page.result or [])
    return items


def _record(record: Any) -> DnsRecord:
    return DnsRecord(
        id=str(record.id),
        name=str(record.name),
        type=str(record.type),
        content=str(getattr(record, "content", "") or ""),
        proxied=bool(getattr(record, "proxied", False)),
        comment=str(getattr(record, "comment", "") or ""),
    )


def _messages(exc: cloudflare.APIStatusError) -> str:
    body = exc.body
    errors: Iterable[Any] = body.get("errors", []) if isinstance(body, dict) else []
    parts = [
        f"{error.get('message')} (code {error.get('code')})" if isinstance(error, dict) else str(error)
        for error in errors
    ]
    return "; ".join(parts) or f"HTTP {exc.status_code}"


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _call(operation: Callable[[], T], what: str) -> T:
    """Run one SDK call; its errors become envhub's, raised ``from`` the SDK's."""
    try:
        return operation()
    except CloudflareError:
        raise
    except cloudflare.RateLimitError as exc:
        retry_after = _retry_after(exc.response)
        raise CloudflareRateLimited(
            f"Cloudflare rate-limited envhub trying to {what}: {_messages(exc)}",
            details={"retry_after": retry_after} if retry_after is not None else {},
        ) from exc
    except (cloudflare.AuthenticationError, cloudflare.PermissionDeniedError) as exc:
        raise CloudflareUnauthorized(
            f"Cloudflare refused the API token trying to {what}: {_messages(exc)}"
        ) from exc
    except cloudflare.APIStatusError as exc:
        if exc.status_code >= 500:
            raise CloudflareUnavailable(f"Cloudflare failed trying to {what}: {_messages(exc)}") from exc
        raise CloudflareRejected(f"Cloudflare refused to {what}: {_messages(exc)}") from exc
    except cloudflare.APIConnectionError as exc:
        raise CloudflareUnavailable(f"Cloudflare did not answer trying to {what}: {exc}") from exc
    except cloudflare.APIError as exc:  # a malformed answer
        raise CloudflareUnavailable(f"Cloudflare answered oddly trying to {what}: {exc}") from exc


@functools.cache
def shared_client(access: CloudflareAccess) -> CloudflareClient:
    """One client per access for the process (the tunnel and zone ids are looked up once)."""
    return CloudflareClient(access)
