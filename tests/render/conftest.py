"""Fixtures for rendering: the pinned helm, and a real chart repository on loopback.

helm is installed once into a cache outside the checkout (tests/support/tools.py,
``make test-tools``); without it the tests fail naming it. The chart repository
is what ``helm repo index`` makes of a folder of packaged charts, served by a
plain HTTP server, as any static chart repository is.
"""

from __future__ import annotations

import functools
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.support.components import require_path


@pytest.fixture(scope="session")
def helm_binary() -> Path:
    return require_path("helm")


@dataclass
class ChartRepo:
    folder: Path
    url: str
    requests: list[str]


def run_helm(helm_binary: Path, *args: str, home: Path) -> str:
    """The test's own helm calls (package, index), with a home of their own."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "XDG_CACHE_HOME": str(home / "cache"),
           "XDG_CONFIG_HOME": str(home / "config"), "XDG_DATA_HOME": str(home / "data")}  # fmt: skip
    done = subprocess.run([str(helm_binary), *args], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def write_chart(folder: Path, name: str, version: str, *, greeting: str = "hello", extra: str = "") -> Path:
    """A small chart: one ConfigMap showing what helm was given, and a CRD."""
    (folder / "templates").mkdir(parents=True)
    (folder / "Chart.yaml").write_text(f"apiVersion: v2\nname: {name}\nversion: {version}\n{extra}")
    (folder / "values.yaml").write_text(f"greeting: {greeting}\n")
    (folder / "templates" / "configmap.yaml").write_text(
        "apiVersion: v1\n"
        "kind: ConfigMap\n"
        "metadata:\n"
        "  name: {{ .Release.Name }}-{{ .Chart.Name }}\n"
        "  namespace: {{ .Release.Namespace }}\n"
        "  labels:\n"
        '    chart: "{{ .Chart.Name }}-{{ .Chart.Version }}"\n'
        "data:\n"
        "  greeting: {{ .Values.greeting | quote }}\n"
        "  kube: {{ .Capabilities.KubeVersion.Version | quote }}\n"
    )
    return folder


@pytest.fixture
def chart_repo(tmp_path: Path, helm_binary: Path) -> Iterator[ChartRepo]:
    """A chart repository serving ``sub`` at 0.1.0 and 0.2.0 (each greeting with its version)."""
    folder = tmp_path / "chart-repo"
    folder.mkdir()
    home = tmp_path / "repo-helm-home"
    for version in ("0.1.0", "0.2.0"):
        source = write_chart(tmp_path / f"sub-{version}" / "sub", "sub", version, greeting=f"sub {version}")
        run_helm(helm_binary, "package", str(source), "--destination", str(folder), home=home)
    requests: list[str] = []

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            requests.append(self.path)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
    url = f"http://127.0.0.1:{httpd.server_address[1]}/"
    run_helm(helm_binary, "repo", "index", str(folder), "--url", url, home=home)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield ChartRepo(folder, url, requests)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)
