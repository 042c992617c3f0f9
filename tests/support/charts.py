"""Helm charts for tests: a small chart on disk, and a real chart repository on loopback.

The chart repository is what ``helm repo index`` makes of a folder of
packaged charts, served by a plain HTTP server, as any static chart
repository is. The tests' own helm calls (package, index) run with a home of
their own, like envhub's.
"""

from __future__ import annotations

import functools
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass
class ChartRepo:
    folder: Path  # the packaged charts and index.yaml
    url: str
    requests: list[str] = field(default_factory=list)  # every path asked for


def run_helm(helm: Path, *args: str, home: Path) -> str:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "XDG_CACHE_HOME": str(home / "cache"),
           "XDG_CONFIG_HOME": str(home / "config"), "XDG_DATA_HOME": str(home / "data")}  # fmt: skip
    done = subprocess.run(
        [str(helm), *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def write_chart(folder: Path, name: str, version: str, *, greeting: str = "hello", extra: str = "") -> Path:
    """A small chart: one ConfigMap showing what helm was given (``extra`` is appended to Chart.yaml)."""
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


@contextmanager
def serve_chart_repo(
    scratch: Path, helm: Path, versions: tuple[str, ...] = ("0.1.0", "0.2.0")
) -> Iterator[ChartRepo]:
    """A chart repository serving chart ``sub`` at each of ``versions`` (greeting ``sub <version>``)."""
    repo = ChartRepo(folder=scratch / "chart-repo", url="")
    repo.folder.mkdir(parents=True)
    home = scratch / "chart-repo-helm-home"
    for version in versions:
        source = write_chart(scratch / f"sub-{version}" / "sub", "sub", version, greeting=f"sub {version}")
        run_helm(helm, "package", str(source), "--destination", str(repo.folder), home=home)

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            repo.requests.append(self.path)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(repo.folder)))
    repo.url = f"http://127.0.0.1:{httpd.server_address[1]}/"
    run_helm(helm, "repo", "index", str(repo.folder), "--url", repo.url, home=home)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield repo
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)
