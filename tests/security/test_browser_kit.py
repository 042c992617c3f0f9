"""Attack: an environment lent a browser changes what it was lent, or reaches more than its own URL.

With ``ENVHUB_BROWSER=all`` a local environment's sandbox gets the machine's
Chromium and envhub's Playwright, read-only, and serves its own public URL on
its own loopback. From a shell beside its app (the way an agent's commands
run), writing into the lent Playwright and node fails, the folder shows only
what was lent (not the rest of envhub's virtualenv), no capability came with
it, and the public URL's port leads to the environment's own app, never to
the host's server on that port (standing in for envhub's gateway, which the
host reaches there: the failure is the boundary, not a port that is closed).
"""

from __future__ import annotations

import dataclasses
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from envhub.runtime.local import LocalRuntime
from envhub.runtime.local.browser import INSIDE
from tests.support.components import require
from tests.support.inside import probe_in_shell
from tests.support.runtime import RecordingProgress, endpoint_get, kill_environments, make_target

pytestmark = pytest.mark.slow


class _Gateway(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"the host's gateway"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def host_gateway() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Gateway)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_the_lent_browser_is_read_only_and_the_own_url_leads_only_to_the_own_app(
    tmp_path: Path, host_gateway: int
) -> None:
    for component in ("root", "bwrap", "slirp4netns", "chromium"):
        require(component)
    runtime = LocalRuntime(tmp_path / "envs", health_timeout=30, browser_mode="all")
    url = f"http://dev.shop.acme.localhost:{host_gateway}/"
    target = dataclasses.replace(
        make_target(1, command="echo own app > index.html; exec python3 -m http.server $PORT"), public_url=url
    )
    try:
        runtime.apply(target, progress=RecordingProgress())
        endpoint = runtime.endpoint(1)
        assert endpoint is not None
        assert endpoint_get(endpoint, "/index.html").text == "own app\n"
        assert httpx.get(f"http://127.0.0.1:{host_gateway}/", timeout=10).text == "the host's gateway"

        seen = probe_in_shell(
            runtime,
            1,
            {
                "http": {
                    "own-url": url + "index.html",  # its host resolves to the sandbox's own loopback
                    "own-port": f"http://127.0.0.1:{host_gateway}/index.html",
                },
                "write": {
                    "playwright": f"{INSIDE}/python/playwright/__init__.py",
                    "new-file": f"{INSIDE}/python/planted.py",
                    "node": f"{INSIDE}/bin/node",
                    "core": f"{INSIDE}/node_modules/playwright-core/cli.js",
                },
                "list": {"python": f"{INSIDE}/python"},
            },
        )
        # No capability came with what was lent; and the lent Node driver loads from the sealed folder.
        node = "console.log(require('playwright-core').chromium.name())"
        line = (
            'grep -E "^(CapEff|CapBnd|NoNewPrivs)" /proc/self/status; '
            f'NODE_PATH="$ENVHUB_PLAYWRIGHT_NODE_PATH" "$ENVHUB_PLAYWRIGHT_NODE" -e "{node}"'
        )
        shell = runtime.exec(1, ["sh", "-c", line], tty=False)
        try:
            status = b""
            while chunk := shell.read(timeout=30):
                status += chunk
            assert shell.wait(30) == 0, status
        finally:
            shell.close()
    finally:
        kill_environments(runtime)
    assert seen["own-url"] == "ok: own app\n"
    assert seen["own-port"] == "ok: own app\n"
    for name in ("playwright", "new-file", "node", "core"):
        assert "Read-only file system" in seen[name], (name, seen[name])
    assert seen["python"] == "listed: greenlet,playwright"
    assert status.decode().split() == [
        "CapEff:", "0000000000000000", "CapBnd:", "0000000000000000", "NoNewPrivs:", "1", "chromium",
    ]  # fmt: skip
