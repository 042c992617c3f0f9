"""Facts about the client behind an ASGI scope: address, headers, origin."""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.types import Scope

from envhub.config import Settings, get_settings, is_loopback_host


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or []:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def client_ip(scope: Scope, settings: Settings | None = None) -> str:
    """The caller's address; X-Forwarded-For counts only through trusted proxies."""
    settings = settings or get_settings()
    client = scope.get("client")
    address = str(client[0]) if client else ""
    hops = settings.trusted_proxy_hops
    if hops:
        forwarded = [
            part.strip() for part in (header(scope, b"x-forwarded-for") or "").split(",") if part.strip()
        ]
        if len(forwarded) >= hops:
            address = forwarded[-hops]
    return address[:64]


def host_name(host_header: str) -> str:
    if host_header.startswith("["):
        return host_header[1 : host_header.find("]")].lower()
    return host_header.rsplit(":", 1)[0].lower() if host_header.count(":") == 1 else host_header.lower()


def allowed_hosts(settings: Settings) -> set[str]:
    base = urlsplit(settings.base_url).hostname or "localhost"
    return {base.lower(), "localhost", "127.0.0.1", "::1", *settings.extra_hosts}


def allowed_origins(settings: Settings) -> set[str]:
    """The base URL's origin, and the same server under its other allowed names."""
    parts = urlsplit(settings.base_url)
    port = f":{parts.port}" if parts.port else ""
    origins = {settings.base_origin}
    for host in allowed_hosts(settings):
        if is_loopback_host(host) or host in settings.extra_hosts:
            name = f"[{host}]" if ":" in host else host
            origins.add(f"{parts.scheme}://{name}{port}")
    return origins
