"""A real OpenID provider (npm ``oidc-provider``) on loopback, for sign-in tests.

The npm packages are installed once into a cache outside the checkout
(``$ENVHUB_OIDC_CACHE``, default ``/var/cache/envhub-test-oidc`` or
``~/.cache/envhub-test-oidc``), pinned, under a lock so parallel test runs
share it. Each provider runs ``tests/identity/op/provider.mjs`` with its own
clients and accounts.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.net import free_port
from tests.support.waiting import wait_for

PACKAGES = ("oidc-provider@9.13.3", "jose@6.2.18")
SCRIPT = Path(__file__).parent / "op" / "provider.mjs"


class ProviderUnavailable(RuntimeError):
    pass


def cache_dir() -> Path:
    configured = os.environ.get("ENVHUB_OIDC_CACHE")
    if configured:
        return Path(configured)
    system = Path("/var/cache/envhub-test-oidc")
    try:
        system.mkdir(parents=True, exist_ok=True)
        if os.access(system, os.W_OK):
            return system
    except OSError:
        pass
    return Path.home() / ".cache" / "envhub-test-oidc"


def install_packages() -> Path:
    """node_modules with the pinned packages (installed on first use)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise ProviderUnavailable("node and npm are needed for the test OpenID provider")
    folder = cache_dir() / "-".join(p.replace("@", "_").replace("/", "_") for p in PACKAGES)
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / ".installed"
    with (folder / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not marker.exists():
            (folder / "package.json").write_text(
                json.dumps({"name": "envhub-test-op", "private": True, "type": "module"})
            )
            done = subprocess.run(
                [
                    "npm",
                    "install",
                    "--no-audit",
                    "--no-fund",
                    "--loglevel=error",
                    "--prefix",
                    str(folder),
                    *PACKAGES,
                ],
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            if done.returncode != 0:
                raise ProviderUnavailable(f"npm install failed: {done.stderr[-2000:]}")
            marker.write_text("ok\n")
    return folder / "node_modules"


class TestProvider:
    """``with TestProvider(clients=..., accounts=...) as op: op.issuer``."""

    __test__ = False

    def __init__(self, *, clients: list[dict[str, Any]], accounts: dict[str, dict[str, Any]]) -> None:
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self._config = {"clients": clients, "accounts": accounts}
        self._workdir = Path(tempfile.mkdtemp(prefix="envhub-op-"))
        self._proc: subprocess.Popen[bytes] | None = None
        self.log = self._workdir / "op.log"

    def __enter__(self) -> TestProvider:
        modules = install_packages()
        (self._workdir / "node_modules").symlink_to(modules)
        script = self._workdir / "provider.mjs"
        shutil.copy(SCRIPT, script)
        config = self._workdir / "config.json"
        config.write_text(json.dumps(self._config))
        env = {**os.environ, "OP_PORT": str(self.port), "OP_CONFIG": str(config), "NODE_NO_WARNINGS": "1"}
        with self.log.open("wb") as out:
            self._proc = subprocess.Popen(
                ["node", str(script)], cwd=self._workdir, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        wait_for(self._ready, timeout=60, what="the test OpenID provider", describe=self.log_tail)
        return self

    def _ready(self) -> bool:
        if self._proc is not None and self._proc.poll() is not None:
            raise ProviderUnavailable(f"the test OpenID provider exited:\n{self.log_tail()}")
        try:
            with urllib.request.urlopen(
                f"{self.issuer}/.well-known/openid-configuration", timeout=2
            ) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    def control(self, **change: Any) -> dict[str, Any]:
        """Change accounts or make the next ID token misbehave (see provider.mjs)."""
        request = urllib.request.Request(
            f"{self.issuer}/__control",
            data=json.dumps(change).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            result: dict[str, Any] = json.loads(response.read())
            return result

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        shutil.rmtree(self._workdir, ignore_errors=True)
