"""Driving sign-in over plain HTTP, the way a browser would, with httpx."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx

from tests.identity.oidc_provider import TestProvider

_FORM_ACTION = re.compile(r'<form method="post" action="([^"]+)"')


def start_login(client: httpx.Client, base: str, next_path: str = "/") -> str:
    """GET /auth/login; returns the provider URL envhub redirects to."""
    response = client.get(f"{base}/auth/login", params={"next": next_path})
    assert response.status_code == 303, response.text
    return response.headers["location"]


def login_at_provider(client: httpx.Client, op: TestProvider, authorize_url: str, email: str) -> str:
    """Sign in on the provider's form; returns envhub's callback URL (not yet visited)."""
    response = client.get(authorize_url)
    while response.status_code in (302, 303):
        location = urljoin(op.issuer, response.headers["location"])
        if not location.startswith(op.issuer):
            return location  # the provider remembered the person (single sign-on)
        response = client.get(location)
    assert response.status_code == 200, response.text
    action = _FORM_ACTION.search(response.text)
    assert action, response.text
    response = client.post(urljoin(op.issuer, action.group(1)), data={"email": email})
    while response.status_code in (302, 303):
        location = urljoin(op.issuer, response.headers["location"])
        if not location.startswith(op.issuer):
            return location
        response = client.get(location)
    raise AssertionError(
        f"the provider did not send the browser back: {response.status_code} {response.text[:500]}"
    )


def sign_in(
    client: httpx.Client, base: str, op: TestProvider, email: str, next_path: str = "/"
) -> httpx.Response:
    """The whole dance; returns envhub's answer to the callback."""
    callback = login_at_provider(client, op, start_login(client, base, next_path), email)
    return client.get(callback)


def query_of(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}
