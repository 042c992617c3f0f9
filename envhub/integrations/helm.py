"""Rendering a deployment environment's Helm chart with the ``helm`` binary.

envhub does not install releases with helm: it renders the chart once
(``helm template``, no cluster access) and applies the objects itself, so a
release record holds exactly what was applied and which chart it came from.
A chart from a repository or an OCI registry is pulled first, so the exact
archive rendered is the one whose digest is recorded; a chart folder of the
project's repository gets a digest over its files.

helm runs with a home of its own under the caller's work folder: none of the
machine's repositories, registry logins, plugins or kubeconfig, and values
arrive as a file envhub writes, never as ``--set`` strings.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from envhub.errors import ChartRefInvalid, ChartRenderFailed, HelmUnavailable
from envhub.integrations.charts import (
    archived_chart_metadata,
    chart_metadata,
    folder_digest,
    merged_values,
    missing_dependencies,
    refuse_escapes,
)
from envhub.integrations.sources import inside

MINIMUM_VERSION = (3, 8, 0)
TIMEOUT = 120.0
# Versions of the helm binaries already checked in this process, by _identity().
_CHECKED: dict[tuple[str, int, int], str] = {}
_VERSION = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)(?:[-+][0-9A-Za-z.+-]*)?$")
# An exact SemVer 2 version: what a release record can pin (no ranges, no "latest").
_EXACT = re.compile(r"^v?\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")
_CHART_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_KUBE_VERSION = re.compile(r"^v?\d+\.\d+(?:\.\d+)?$")
# The operator's proxy and CA bundle, for pulling charts.
_PASSED_THROUGH = (
    *("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"),
    *("SSL_CERT_FILE", "SSL_CERT_DIR"),
)


@dataclass(frozen=True, slots=True)
class LocalChart:
    """A chart folder at ``path`` (relative, ``/``-separated) in ``tree``, a checkout of the project's
    repository. ``file://`` dependencies must stay inside ``tree``."""

    tree: Path
    path: str


@dataclass(frozen=True, slots=True)
class RepoChart:
    """Chart ``name`` at exactly ``version`` from the chart repository at ``repo_url`` (http or https).

    ``digest`` (``sha256:<hex>`` of the archive, as :class:`RenderedChart` records it), when
    given, must match what the repository serves: a re-render of a record gets the same chart.
    """

    repo_url: str
    name: str
    version: str
    digest: str | None = None


@dataclass(frozen=True, slots=True)
class OciChart:
    """The chart at ``reference`` (``oci://registry/path/name``) at exactly ``version``;
    ``digest`` as for :class:`RepoChart`."""

    reference: str
    version: str
    digest: str | None = None


ChartRef = LocalChart | RepoChart | OciChart


@dataclass(frozen=True, slots=True)
class PreparedChart:
    """A chart ready for ``helm template``: ``source`` (a folder or a pulled archive) and its origin,
    as :class:`RenderedChart` records it."""

    source: Path
    name: str
    version: str
    digest: str
    helm_version: str


@dataclass(frozen=True, slots=True)
class RenderedChart:
    """What ``helm template`` produced, and what it was produced from.

    ``chart_digest`` is ``sha256:<hex>``: of the pulled archive for a remote
    chart; for a chart folder, over its files sorted by path, after its
    dependencies are built (a packaged dependency in ``charts/`` counts by
    the files it holds, ``Chart.lock`` without the time helm wrote into it),
    so the same content gives the same digest. ``values`` are the user values
    merged as helm merges them (the values files in order, then the
    overrides; maps merge, anything else is replaced), for the record.
    """

    manifests: str
    chart_name: str
    chart_version: str
    chart_digest: str
    helm_version: str
    values: dict[str, Any] = field(default_factory=dict)


class Helm:
    """The ``helm`` binary named by ``binary`` (ENVHUB_HELM_BINARY: a name on PATH or a path).

    Every call runs with a timeout of ``timeout`` seconds. A missing,
    broken or too old helm raises :class:`HelmUnavailable`; helm refusing a
    chart (not found, bad values, a template error) raises
    :class:`ChartRenderFailed` quoting helm's error.
    """

    def __init__(self, binary: str = "helm", *, timeout: float = TIMEOUT) -> None:
        self.binary = binary
        self.timeout = timeout
        self._checked: str | None = None

    def version(self) -> str:
        """helm's version as it prints it (``v3.14.2``); :class:`HelmUnavailable` if it cannot say."""
        done = self._exec(["version", "--template", "{{.Version}}"], env=_bare_env(), cwd=None)
        printed = done.stdout.strip()
        if done.returncode != 0 or not _VERSION.fullmatch(printed):
            output = _trim(done.stderr or done.stdout, None)
            raise HelmUnavailable(
                f"{self.binary} did not report a helm version ({output or 'no output'})",
                details={"binary": self.binary},
            )
        return printed

    def check(self) -> str:
        """The version, once it is known to be at least 3.8; else :class:`HelmUnavailable`.

        Asked once per binary (by path, size and modification time) in the process.
        """
        if self._checked is None:
            key = _identity(self._which())
            printed = _CHECKED.get(key) or self.version()
            match = _VERSION.fullmatch(printed)
            assert match is not None
            found = tuple(int(part) for part in match.groups())
            if found < MINIMUM_VERSION:
                minimum = ".".join(map(str, MINIMUM_VERSION))
                raise HelmUnavailable(
                    f"{self.binary} is helm {printed}; envhub needs helm {minimum} or newer",
                    details={"binary": self.binary, "version": printed, "minimum": minimum},
                )
            _CHECKED[key] = self._checked = printed
        return self._checked

    def render(
        self,
        chart: ChartRef,
        *,
        release: str,
        namespace: str,
        values_files: list[Path],
        values: Mapping[str, Any],
        kube_version: str | None,
        workdir: Path,
    ) -> RenderedChart:
        """Render ``chart`` as release ``release`` in ``namespace``; returns the objects and their origin.

        :meth:`prepare` then :meth:`template`, both in ``workdir``: an empty
        folder the caller owns and removes.
        """
        prepared = self.prepare(chart, workdir=workdir)
        return self.template(
            prepared,
            release=release,
            namespace=namespace,
            values_files=values_files,
            values=values,
            kube_version=kube_version,
            workdir=workdir,
        )

    def prepare(self, chart: ChartRef, *, workdir: Path) -> PreparedChart:
        """The chart made ready to render, as many times as needed: pulled, or its dependencies built.

        ``workdir`` is an empty folder the caller owns and removes, which must
        outlive the renderings: helm's home and the pulled archive go there. A
        local chart whose ``Chart.yaml`` names dependencies missing from
        ``charts/`` gets ``helm dependency build``, which writes into the
        chart folder.

        Raises :class:`ChartRefInvalid` for a version that is not exact or a
        URL envhub will not use, :class:`SourcePathInvalid` for a local chart
        leaving its tree, :class:`ChartRenderFailed` when helm fails (or a
        pinned digest does not match), and :class:`HelmUnavailable` as
        :meth:`check` does.
        """
        helm_version = self.check()
        workdir.mkdir(parents=True, exist_ok=True)
        env = _isolated_env(workdir)
        if isinstance(chart, LocalChart):
            source, name, version, digest = self._prepare_local(chart, env=env, workdir=workdir)
        else:
            source, name, version, digest = self._pull(chart, env=env, workdir=workdir)
        return PreparedChart(source, name, version, digest, helm_version)

    def template(
        self,
        chart: PreparedChart,
        *,
        release: str,
        namespace: str,
        values_files: list[Path],
        values: Mapping[str, Any],
        kube_version: str | None,
        workdir: Path,
    ) -> RenderedChart:
        """``helm template`` of a prepared chart; safe to run for several environments at once.

        ``values_files`` (already checked to be the project's, e.g. with
        :func:`~envhub.integrations.sources.inside`) apply in order, then
        ``values`` (the environment's overrides), written by envhub into a
        values file. ``kube_version`` (``1.29`` or ``v1.29.3``) is the cluster's,
        for ``.Capabilities``; helm never contacts a cluster. CRDs are
        included; chart tests are not. ``workdir``, the caller's, holds helm's
        home and the values file: one per concurrent call.

        Raises :class:`ChartRefInvalid` for a ``kube_version`` that is not a
        version, and :class:`ChartRenderFailed` when helm fails (or a values
        file is not YAML).
        """
        if kube_version is not None and not _KUBE_VERSION.fullmatch(kube_version):
            raise ChartRefInvalid(
                f"{kube_version!r} is not a Kubernetes version such as 1.29 or v1.29.3",
                details={"field": "kube_version"},
            )
        workdir.mkdir(parents=True, exist_ok=True)
        merged = merged_values(values_files, values)
        overrides = workdir / "envhub-overrides.yaml"
        overrides.write_text(yaml.safe_dump(dict(values), sort_keys=True))
        args = [
            *("template", release, str(chart.source), "--namespace", namespace),
            *("--include-crds", "--skip-tests"),
        ]
        for values_file in [*values_files, overrides]:
            args += ["--values", str(values_file)]
        if kube_version is not None:
            args += ["--kube-version", kube_version]
        manifests = self._run(args, env=_isolated_env(workdir), workdir=workdir, what="template")
        return RenderedChart(manifests, chart.name, chart.version, chart.digest, chart.helm_version, merged)

    # -- charts ------------------------------------------------------------------------------------

    def _prepare_local(
        self, chart: LocalChart, *, env: dict[str, str], workdir: Path
    ) -> tuple[Path, str, str, str]:
        folder = inside(chart.tree, chart.path)
        root = chart.tree.resolve()
        meta = chart_metadata(folder / "Chart.yaml", shown=chart.path)
        dependencies = meta.get("dependencies") or []
        if not isinstance(dependencies, list):
            raise ChartRenderFailed(f"{chart.path}/Chart.yaml: dependencies must be a list")
        refuse_escapes(root, folder, chart.path)
        for dependency in dependencies:
            repository = str(dependency.get("repository", "")) if isinstance(dependency, dict) else ""
            if repository.startswith("file://"):
                relative = os.path.normpath(os.path.join(chart.path, repository.removeprefix("file://")))
                refuse_escapes(root, inside(chart.tree, relative), relative)
        if missing_dependencies(folder, dependencies):
            self._run(["dependency", "build", str(folder)], env=env, workdir=workdir, what="dependency build")
        return folder, str(meta.get("name", "")), str(meta.get("version", "")), folder_digest(folder)

    def _pull(
        self, chart: RepoChart | OciChart, *, env: dict[str, str], workdir: Path
    ) -> tuple[Path, str, str, str]:
        _exact(chart.version)
        if isinstance(chart, RepoChart):
            _url(chart.repo_url, schemes=("http", "https"), field_name="repo_url")
            if not _CHART_NAME.fullmatch(chart.name):
                raise ChartRefInvalid(f"{chart.name!r} is not a chart name", details={"field": "name"})
            target = [chart.name, "--repo", chart.repo_url]
        else:
            _url(chart.reference, schemes=("oci",), field_name="reference")
            target = [chart.reference]
        destination = workdir / "pulled"
        shutil.rmtree(destination, ignore_errors=True)
        destination.mkdir()
        args = ["pull", *target, "--version", chart.version, "--destination", str(destination)]
        self._run(args, env=env, workdir=workdir, what="pull")
        archives = sorted(destination.glob("*.tgz"))
        if len(archives) != 1:
            raise ChartRenderFailed(f"helm pull left {len(archives)} chart archives instead of one")
        archive = archives[0]
        digest = "sha256:" + hashlib.sha256(archive.read_bytes()).hexdigest()
        if chart.digest is not None and chart.digest != digest:
            raise ChartRenderFailed(
                f"the chart served as version {chart.version} is not the one recorded "
                f"(recorded {chart.digest}, served {digest})",
                details={"reason": "digest_mismatch", "recorded": chart.digest, "served": digest},
            )
        meta = archived_chart_metadata(archive)
        return archive, str(meta.get("name", "")), str(meta.get("version", "")), digest

    # -- running helm ------------------------------------------------------------------------------

    def _run(self, args: list[str], *, env: dict[str, str], workdir: Path, what: str) -> str:
        done = self._exec(args, env=env, cwd=workdir)
        if done.returncode != 0:
            raise ChartRenderFailed(
                f"helm {what} failed: {_trim(done.stderr or done.stdout, workdir)}",
                details={"command": f"helm {what}"},
            )
        return done.stdout

    def _which(self) -> str:
        binary = shutil.which(self.binary)
        if binary is None:
            raise HelmUnavailable(
                f"helm was not found: {self.binary!r} is not an executable on PATH",
                details={"binary": self.binary},
            )
        return binary

    def _exec(
        self, args: list[str], *, env: dict[str, str], cwd: Path | None
    ) -> subprocess.CompletedProcess[str]:
        binary = self._which()
        try:
            return subprocess.run(
                [binary, *args],
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
            )
        except OSError as exc:
            raise HelmUnavailable(
                f"{self.binary} could not be run: {exc}", details={"binary": self.binary}
            ) from exc
        except subprocess.TimeoutExpired as exc:
            raise ChartRenderFailed(
                f"helm {args[0]} took longer than {self.timeout:g}s", details={"command": f"helm {args[0]}"}
            ) from exc


def _identity(binary: str) -> tuple[str, int, int]:
    """A binary as the version check knows it: replaced in place, it is asked again."""
    found = os.stat(binary)
    return binary, found.st_size, found.st_mtime_ns


def _bare_env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"), "LANG": "C.UTF-8"}


def _isolated_env(workdir: Path) -> dict[str, str]:
    """helm's own home under ``workdir``: no repositories, logins, plugins or cluster of the machine's."""
    home = workdir / ".helm"
    env = {
        **_bare_env(),
        "HOME": str(home),
        "XDG_CACHE_HOME": str(home / "cache"),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_DATA_HOME": str(home / "data"),
        "HELM_CACHE_HOME": str(home / "cache" / "helm"),
        "HELM_CONFIG_HOME": str(home / "config" / "helm"),
        "HELM_DATA_HOME": str(home / "data" / "helm"),
        "HELM_PLUGINS": str(home / "plugins"),
        "KUBECONFIG": str(home / "no-kubeconfig"),
    }
    for name in _PASSED_THROUGH:
        if name in os.environ:
            env[name] = os.environ[name]
    return env


def _trim(output: str, workdir: Path | None) -> str:
    text = output.strip()
    if workdir is not None:
        text = text.replace(f"{workdir}/", "").replace(str(workdir), ".")
    return text if len(text) <= 2000 else "..." + text[-2000:]


def _exact(version: str) -> None:
    if not _EXACT.fullmatch(version):
        raise ChartRefInvalid(
            f"{version!r} is not an exact chart version (such as 1.2.3): ranges and 'latest' are not pinned",
            details={"field": "version"},
        )


def _url(url: str, *, schemes: tuple[str, ...], field_name: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in schemes or not parts.hostname or parts.username or parts.password or parts.query:
        raise ChartRefInvalid(
            f"the chart's {field_name} must be a {' or '.join(s + '://' for s in schemes)} URL "
            "without credentials or query",
            details={"field": field_name},
        )
