"""The service proxy transport's pure parts: which hosts it serves, which paths it refuses, what it undoes."""

from __future__ import annotations

import httpx
import pytest

from envhub.runtime.kubernetes.service_proxy import (
    _accept_encoding,
    _Replacing,
    _undo_rewrites,
    confined,
    proxy_prefix,
    service_of,
)
from tests.support.loops import run_in_fresh_loop

PREFIX = proxy_prefix("envhub-acme-shop-dev-1", "web", 8080)


def test_hosts_are_services_of_a_namespace() -> None:
    assert service_of("web.envhub-acme-shop-dev-1.svc") == ("web", "envhub-acme-shop-dev-1")
    for host in ("web.ns.svc.cluster.local", "web.svc", "Web.ns.svc", "web..svc", "127.0.0.1", "web.ns.svc."):
        assert service_of(host) is None, host


@pytest.mark.parametrize(
    ("path", "ok"),
    [
        (b"/a/b?c=../..", True),  # the query is the app's business
        (b"/a..b/.c/..d", True),
        (b"/", True),
        (b"/a/../b", False),
        (b"/./a", False),
        (b"/a/%2e%2E/b", False),
        (b"/%2E", False),
        (b"/a/.%2e", False),
    ],
)
def test_paths_with_dot_segments_are_refused(path: bytes, ok: bool) -> None:
    assert confined(path) is ok


def test_gzip_is_never_asked_for() -> None:
    assert _accept_encoding("gzip, deflate, br") == "deflate, br"
    assert _accept_encoding("gzip;q=1.0, x-gzip") == "identity"
    assert _accept_encoding("") == "identity"


def _body(response: httpx.Response) -> bytes:
    async def read() -> bytes:
        return b"".join([chunk async for chunk in response.aiter_raw()])

    return run_in_fresh_loop(read())


def test_links_lose_the_proxy_prefix_however_the_body_is_cut() -> None:
    html = f'<a href="{PREFIX}/next">n</a><img src="{PREFIX}/">{PREFIX[:-3]}'.encode()
    expected = f'<a href="/next">n</a><img src="/">{PREFIX[:-3]}'.encode()
    for size in range(1, len(html) + 1):
        chunks = [html[i : i + size] for i in range(0, len(html), size)]
        upstream = httpx.Response(200, headers={"content-type": "text/html"}, stream=_Chunks(chunks))
        assert _body(_undo_rewrites(upstream, PREFIX)) == expected, size


def test_location_loses_the_prefix_and_other_bodies_are_untouched() -> None:
    body = f"{PREFIX}/x".encode()
    upstream = httpx.Response(
        302,
        headers={"location": f"{PREFIX}/login?next=/", "content-type": "application/json"},
        stream=_Chunks([body]),
    )
    answer = _undo_rewrites(upstream, PREFIX)
    assert answer.headers["location"] == "/login?next=/"
    assert _body(answer) == body
    compressed = httpx.Response(
        200, headers={"content-type": "text/html", "content-encoding": "br"}, stream=_Chunks([body])
    )
    assert _body(_undo_rewrites(compressed, PREFIX)) == body  # the proxy did not rewrite it either


def test_the_replacer_holds_back_only_a_possible_start() -> None:
    replacer = _Replacing(httpx.Response(200), b"/api/x/", b"/")
    assert replacer.replace(b"abc/ap") == (b"abc", b"/ap")
    assert replacer.replace(b"abc/api/x/d") == (b"abc/d", b"")
    assert replacer.replace(b"abc/") == (b"abc", b"/")


class _Chunks(httpx.AsyncByteStream):
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    async def __aiter__(self):  # type: ignore[no-untyped-def]
        for chunk in self.chunks:
            yield chunk
