"""Browser testing from inside an environment: who gets Chromium and Playwright, and how they launch.

An environment's code or an agent working in it tests the app the way people
see it: Playwright driving Chromium against the environment's own public URL
(``ENVHUB_PUBLIC_URL``). The operator decides who gets a browser
(``ENVHUB_BROWSER``): nobody (``off``), the projects whose devcontainer.json
lists the :data:`FEATURE` (``feature``, the default), or every environment
(``all``). The local runtime lends the machine's Chromium and envhub's own
Playwright, read-only (``runtime/local/browser.py``); a cluster runs the
official Playwright image as a sidecar (``domain/kube/browser.py``).

Pure: the decisions and the names a script inside reads, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

if TYPE_CHECKING:  # devcontainer's reading names FEATURE: no import at run time
    from envhub.domain.devcontainer import Devcontainer

BrowserMode = Literal["off", "feature", "all"]

# The devcontainer.json feature id a project lists to ask for a browser (no registry: envhub's own).
FEATURE = "envhub/playwright"

# What a script inside reads (README, "Browser testing inside an environment").
CHROMIUM_VARIABLE = "PLAYWRIGHT_CHROMIUM_EXECUTABLE_PATH"
ARGS_VARIABLE = "ENVHUB_CHROMIUM_ARGS"
PYTHONPATH_VARIABLE = "ENVHUB_PLAYWRIGHT_PYTHONPATH"
NODE_VARIABLE = "ENVHUB_PLAYWRIGHT_NODE"
NODE_PATH_VARIABLE = "ENVHUB_PLAYWRIGHT_NODE_PATH"

# Headless Chromium as envhub launches it everywhere it runs one.
#  --no-sandbox: Chromium's own sandbox needs user namespaces (or a setuid helper);
#    the environment's sandbox forbids making them, and Chromium refuses to start as
#    root without it. The renderer then has exactly the rights of the environment's
#    own code, which is already treated as hostile: the boundary is the environment's.
#  --disable-dev-shm-usage: shared memory in /tmp, not a small or missing /dev/shm.
#  The rest keep Chromium from calling Google's services, which a closed network
#    refuses many times a second, and from needing a GPU.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-dev-shm-usage",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def wanted(mode: str, features: Iterable[str]) -> bool:
    """Whether an environment gets a browser: ``features`` are its devcontainer's honoured ones."""
    if mode == "all":
        return True
    return mode == "feature" and any(feature_id(f) == FEATURE for f in features)


def honour(config: Devcontainer | None, mode: str) -> Devcontainer | None:
    """``config`` with the browser feature listed as not honoured when the operator lends no browser."""
    if config is None or mode != "off":
        return config
    listed = [f for f in config.features if feature_id(f) == FEATURE]
    if not listed:
        return config
    kept = tuple(f for f in config.features if f not in listed)
    refused = config.refuse(
        f"features.{listed[0]}",
        "this envhub lends environments no browser (its operator set ENVHUB_BROWSER=off)",
    )
    return replace(refused, features=kept)


def feature_id(feature: str) -> str:
    """A feature reference without its version (``envhub/playwright:1`` -> ``envhub/playwright``)."""
    name, _, tag = feature.rpartition(":")
    return name if name and "/" not in tag else feature


@dataclass(frozen=True, slots=True)
class OwnUrl:
    """The environment's public URL as served inside its own network: ``host`` on 127.0.0.1:``port``."""

    host: str
    port: int


def own_url_inside(url: str, *, taken: Iterable[int] = ()) -> OwnUrl | None:
    """Where the environment reaches its own public URL inside its network namespace; None: nowhere.

    Locally the URL's host is a name under envhub's gateway (``*.localhost``), which
    only the host's loopback serves, and the environment has no route there (nor
    should it: the gateway is envhub's web app, in front of every environment). So
    the name resolves to the environment's own loopback, and its port there leads to
    its app: the same page people get, without a way to anyone else's. Only plain
    HTTP can be served so (a TLS URL needs the gateway's certificate), and a port
    already in use inside (``taken``: services, forwarded ports) is left to its owner;
    when it is the app's own ``$PORT`` the app already answers there.
    """
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        return None
    port = parts.port or 80
    if port in set(taken):
        return None
    return OwnUrl(host=parts.hostname, port=port)
